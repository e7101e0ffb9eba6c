"""A bad OTEL_* value never stops the application: one clear line, a safe default, the app runs.

Each variable widgettrace reads (its configuration table's ``OTEL_*`` rows, plus the upstream
SDK's limits it passes through) is set to a bad value in turn, and a real FastAPI app is started
under ``opentelemetry-instrument``: it must serve its request, exit 0, and the only thing on
stderr must be one line naming the variable.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_distro import run_instrumented

from widgettrace.instrumentation._config import SETTINGS

APP = r"""
from fastapi import FastAPI
from fastapi.testclient import TestClient
from opentelemetry import propagate, trace

app = FastAPI()

@app.get("/ping")
def ping() -> dict[str, str]:
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return {"traceparent": carrier.get("traceparent", "")}

with TestClient(app) as client:
    response = client.get("/ping")
print("served", response.status_code, type(trace.get_tracer_provider()).__name__)
"""

# One bad value for each OTEL_* variable we read.
BAD = {
    "OTEL_SDK_DISABLED": "perhaps",
    "OTEL_SERVICE_NAME": "   ",
    "OTEL_RESOURCE_ATTRIBUTES": "this is=not,=a list,%zz=1",
    "OTEL_TRACES_SAMPLER": "sometimes",
    "OTEL_TRACES_SAMPLER_ARG": "lots",
    "OTEL_PROPAGATORS": "b3",
    "OTEL_TRACES_EXPORTER": "zipkin",
    "OTEL_EXPORTER_OTLP_ENDPOINT": "not a url",
    "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": ",,;",
    "OTEL_ATTRIBUTE_COUNT_LIMIT": "many",
    "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT": "-5",
    "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT": "long",
    "OTEL_PYTHON_ID_GENERATOR": "bogus",
    "OTEL_PYTHON_CONTEXT": "bogus",
}
# Values that need no line: they are accepted as written (blank, or free text).
SILENT = {"OTEL_SERVICE_NAME", "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"}


def test_every_otel_variable_of_the_table_is_tried() -> None:
    ours = {s.env for s in SETTINGS if s.origin == "otel"}
    assert ours <= set(BAD), sorted(ours - set(BAD))


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_value_gives_one_line_and_the_app_runs(tmp_path: Path, name: str) -> None:
    script = tmp_path / "app.py"
    script.write_text(APP)
    result = run_instrumented(tmp_path, {name: BAD[name]}, ["python", str(script)])
    assert result.returncode == 0, result.stderr
    assert "served 200 TracerProvider" in result.stdout, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    if name in SILENT:
        assert lines == [], result.stderr
    else:
        assert len(lines) == 1, result.stderr
        assert name in lines[0], lines
        assert "Traceback" not in result.stderr


def test_ratio_sampler_with_a_bad_argument_gives_one_line(tmp_path: Path) -> None:
    """Our line only: the sampler is built from the validated setting, not re-read upstream."""
    script = tmp_path / "app.py"
    script.write_text(APP)
    env = {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "lots"}
    result = run_instrumented(tmp_path, env, ["python", str(script)])
    assert result.returncode == 0, result.stderr
    assert "served 200 TracerProvider" in result.stdout
    (line,) = [line for line in result.stderr.splitlines() if line.strip()]
    assert "OTEL_TRACES_SAMPLER_ARG" in line


def test_startup_hook_is_installed_beside_the_packages() -> None:
    """The .pth that checks OTEL_PROPAGATORS before OpenTelemetry's API reads it."""
    import sysconfig

    pth = Path(sysconfig.get_paths()["purelib"]) / "widgettrace-startup.pth"
    assert pth.exists()
    assert "widgettrace.instrumentation._startup" in pth.read_text()


def test_propagator_names_that_are_installed_are_kept(tmp_path: Path) -> None:
    probe = "import os; print(os.environ.get('OTEL_PROPAGATORS'))"
    result = run_instrumented(
        tmp_path, {"OTEL_PROPAGATORS": "tracecontext, b3 ,baggage"}, ["python", "-c", probe]
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "tracecontext,baggage"
    (line,) = [line for line in result.stderr.splitlines() if line.strip()]
    assert "OTEL_PROPAGATORS" in line and "b3" in line
