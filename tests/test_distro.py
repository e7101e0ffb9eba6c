"""The entry points, loaded for real by `opentelemetry-instrument` in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]
# A real opentelemetry-distro, installed beside ours by scripts/test.sh (pip --target).
OTHER_DISTRO = ROOT / ".venv-extra" / "opentelemetry-distro"

PROBE = r"""
import json, sys
from opentelemetry import trace, propagate
from opentelemetry.instrumentation.requests import RequestsInstrumentor
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from widgettrace.instrumentation.configurator import is_configured
fields = sorted(propagate.get_global_textmap().fields)
provider = trace.get_tracer_provider()
print(json.dumps({
    "configured": is_configured(),
    "provider": type(provider).__name__,
    "propagator_fields": fields,
    "requests": RequestsInstrumentor().is_instrumented_by_opentelemetry,
    "fastapi": FastAPIInstrumentor().is_instrumented_by_opentelemetry,
}))
"""


def run_instrumented(
    tmp_path: Path, extra_env: dict[str, str] | None = None, args: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OTEL_", "SENTRY_", "WIDGETTRACE_"))
    }
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["WIDGETTRACE_LOG_PATH"] = str(tmp_path / "sentry.log")
    env.pop("PYTHONPATH", None)
    env.update(extra_env or {})
    cmd = [str(BIN / "opentelemetry-instrument"), *(args or ["python", "-c", PROBE])]
    return subprocess.run(
        cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )


def probe(result: subprocess.CompletedProcess[str]) -> dict[str, object]:
    assert result.returncode == 0, result.stderr
    last = result.stdout.strip().splitlines()[-1]
    data: dict[str, object] = json.loads(last)
    return data


def test_opentelemetry_instrument_loads_our_distro_and_configurator(tmp_path: Path) -> None:
    result = run_instrumented(tmp_path)
    data = probe(result)
    assert data["configured"] is True, result.stderr
    assert data["provider"] == "TracerProvider"
    assert data["requests"] is True
    assert data["fastapi"] is True
    # Composite default: W3C tracecontext + baggage + sentry-trace.
    assert {"traceparent", "baggage", "sentry-trace"} <= set(data["propagator_fields"])  # type: ignore[arg-type]
    assert "Failed to auto initialize" not in result.stderr


def test_sdk_disabled_turns_everything_off(tmp_path: Path) -> None:
    data = probe(run_instrumented(tmp_path, {"OTEL_SDK_DISABLED": "true"}))
    assert data["configured"] is False
    assert data["provider"] != "TracerProvider"
    assert data["requests"] is False
    assert data["fastapi"] is False
    assert not (tmp_path / "sentry.log").exists()


def test_disabled_instrumentations_are_honoured(tmp_path: Path) -> None:
    data = probe(
        run_instrumented(tmp_path, {"OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "requests, fastapi"})
    )
    assert data["configured"] is True
    assert data["requests"] is False
    assert data["fastapi"] is False


def test_a_bad_setting_logs_one_line_and_the_app_runs(tmp_path: Path) -> None:
    result = run_instrumented(tmp_path, {"SENTRY_TRACES_SAMPLE_RATE": "lots"})
    data = probe(result)
    assert data["configured"] is True
    lines = [line for line in result.stderr.splitlines() if "SENTRY_TRACES_SAMPLE_RATE" in line]
    assert len(lines) == 1, result.stderr
    assert "'lots'" in lines[0]
    assert "using 1.0" in lines[0]


def test_help_lists_our_variables(tmp_path: Path) -> None:
    result = run_instrumented(tmp_path, args=["--help"])
    assert result.returncode == 0
    assert "--widgettrace_log_path" in result.stdout
    assert "--widgettrace_sentry_mode" in result.stdout


def test_flag_sets_our_variable(tmp_path: Path) -> None:
    code = (
        "from widgettrace.instrumentation._config import get_settings;"
        "print(get_settings().sentry_mode)"
    )
    result = run_instrumented(
        tmp_path, args=["--widgettrace_sentry_mode", "off", "python", "-c", code]
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "off"


def test_ours_wins_when_opentelemetry_distro_is_installed_too(tmp_path: Path) -> None:
    if not (OTHER_DISTRO / "opentelemetry" / "distro").is_dir():
        pytest.fail(f"scripts/test.sh installs opentelemetry-distro into {OTHER_DISTRO}")
    env = {"PYTHONPATH": str(OTHER_DISTRO)}
    # Without our claim the other distro could be picked first: it sets an OTLP exporter that
    # is not installed there and auto-instrumentation fails.
    data = probe(run_instrumented(tmp_path, env))
    assert data["configured"] is True
    assert data["requests"] is True


def test_told_in_one_line_when_another_configurator_wins(tmp_path: Path) -> None:
    if not (OTHER_DISTRO / "opentelemetry" / "distro").is_dir():
        pytest.fail(f"scripts/test.sh installs opentelemetry-distro into {OTHER_DISTRO}")
    env = {
        "PYTHONPATH": str(OTHER_DISTRO),
        "OTEL_PYTHON_DISTRO": "distro",
        "OTEL_PYTHON_CONFIGURATOR": "configurator",
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
    }
    result = run_instrumented(tmp_path, env)
    data = probe(result)
    assert data["configured"] is False
    lines = [
        line
        for line in result.stderr.splitlines()
        if "OTEL_PYTHON_CONFIGURATOR=widgettrace" in line
    ]
    assert len(lines) == 1, result.stderr


COLLECTOR_PROBE = r"""
import json
from opentelemetry import trace
provider = trace.get_tracer_provider()
tracer = trace.get_tracer("probe")
with tracer.start_as_current_span("to-the-collector"):
    pass
provider.force_flush()
print(json.dumps({"exporter": __import__("os").environ.get("OTEL_TRACES_EXPORTER")}))
"""


def test_otlp_to_a_collector_and_a_missing_exporter(tmp_path: Path) -> None:
    import http.server
    import threading

    received: list[str] = []

    class Collector(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            received.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        env = {
            "OTEL_TRACES_EXPORTER": "otlp,no-such-exporter",
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{server.server_address[1]}",
            "WIDGETTRACE_SENTRY_MODE": "off",
        }
        result = run_instrumented(tmp_path, env, args=["python", "-c", COLLECTOR_PROBE])
    finally:
        server.shutdown()
        server.server_close()
    data = probe(result)
    # `otlp` resolves to the HTTP exporter the otlp extra installs; the unknown one is dropped
    # with one line, and the rest of telemetry still runs.
    assert data["exporter"] == "otlp_proto_http"
    lines = [line for line in result.stderr.splitlines() if "no-such-exporter" in line]
    assert len(lines) == 1, result.stderr
    assert "/v1/traces" in received


METER_PROBE = r"""
import json
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
counter = metrics.get_meter("probe").create_counter("probe.requests")
print(json.dumps({"sdk": isinstance(metrics.get_meter_provider(), MeterProvider),
                  "enabled": counter._is_enabled()}))
"""


@pytest.mark.parametrize(
    ("exporter", "enabled"), [("none", False), ("console", True), (None, True)]
)
def test_meters_are_off_only_when_nothing_can_read_them(
    tmp_path: Path, exporter: str | None, enabled: bool
) -> None:
    # No metrics exporter: a MeterProvider without readers, whose measurements (a histogram
    # and a counter per request in the FastAPI instrumentation) nobody can ever read.
    env = {} if exporter is None else {"OTEL_METRICS_EXPORTER": exporter}
    env["OTEL_METRIC_EXPORT_INTERVAL"] = "600000"  # console: nothing printed during the probe
    data = probe(run_instrumented(tmp_path, env, ["python", "-c", METER_PROBE]))
    assert data == {"sdk": True, "enabled": enabled}
