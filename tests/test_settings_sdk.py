"""Every SENTRY_* value widgettrace validates is what the SDK uses: a rejected one never leaks in.

The SDK reads ``SENTRY_DSN``, ``SENTRY_RELEASE``, ``SENTRY_ENVIRONMENT``, ``SENTRY_DEBUG`` and
``SENTRY_SPOTLIGHT`` itself whenever an option is left unset. widgettrace validates them first
(one clear line and a safe default for a bad value); these tests start a real program under
``opentelemetry-instrument`` with bad values and read the live client's options.
"""

from __future__ import annotations

import json
from pathlib import Path

from test_distro import run_instrumented

PROBE = r"""
import json
import sentry_sdk

client = sentry_sdk.get_client()
print(json.dumps({
    "active": client.is_active(),
    "dsn": client.options.get("dsn"),
    "spotlight": client.spotlight is not None,
    "debug": client.options.get("debug"),
    "release": client.options.get("release"),
    "environment": client.options.get("environment"),
}))
"""


def _probe(tmp_path: Path, env: dict[str, str]) -> tuple[dict[str, object], str]:
    result = run_instrumented(tmp_path, env, ["python", "-c", PROBE])
    assert result.returncode == 0, result.stderr
    data: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return data, result.stderr


def test_rejected_sentry_values_never_reach_the_sdk(tmp_path: Path) -> None:
    bad = {
        "SENTRY_SPOTLIGHT": "maybe",
        "SENTRY_DSN": "not-a-dsn",
        "SENTRY_DEBUG": "perhaps",
        "SENTRY_RELEASE": "   ",
        "SENTRY_ENVIRONMENT": "  ",
        "OTEL_RESOURCE_ATTRIBUTES": "service.version=widgets@2,deployment.environment.name=qa",
    }
    data, stderr = _probe(tmp_path, bad)
    assert data["active"] is True  # the local log still works
    assert data["spotlight"] is False
    assert not data["dsn"]
    assert data["debug"] is False
    # The fallbacks widgettrace names, not the raw blanks.
    assert data["release"] == "widgets@2"
    assert data["environment"] == "qa"
    lines = [line for line in stderr.splitlines() if line.strip()]
    # One clear line per rejected value and nothing else (no second word from the SDK).
    for name in ("SENTRY_SPOTLIGHT", "SENTRY_DSN", "SENTRY_DEBUG"):
        assert sum(name in line for line in lines) == 1, stderr
    assert not any("Spotlight" in line for line in lines), stderr
    assert len(lines) == 3, stderr


def test_valid_sentry_values_are_passed(tmp_path: Path) -> None:
    data, _ = _probe(
        tmp_path,
        {
            "SENTRY_DSN": "http://key@127.0.0.1:9/1",
            "SENTRY_RELEASE": "widgets@3",
            "SENTRY_ENVIRONMENT": "staging",
            "SENTRY_SPOTLIGHT": "http://127.0.0.1:9/stream",
        },
    )
    assert data["dsn"] == "http://key@127.0.0.1:9/1"
    assert data["release"] == "widgets@3"
    assert data["environment"] == "staging"
    assert data["spotlight"] is True


DESCRIBE = r"""
import json
from widgettrace.exporters.destinations import describe
print(json.dumps(describe()))
"""


def _describe(tmp_path: Path, env: dict[str, str]) -> list[str]:
    result = run_instrumented(tmp_path, env, ["python", "-c", DESCRIBE])
    assert result.returncode == 0, result.stderr
    lines: list[str] = json.loads(result.stdout.strip().splitlines()[-1])
    return lines


def test_report_shows_the_validated_destinations(tmp_path: Path) -> None:
    """What the example prints under "telemetry went to:" comes from the validated settings."""
    # A rejected DSN is not a destination (it was shown as "://Nonenot-a-dsn").
    where = _describe(tmp_path, {"SENTRY_DSN": "not-a-dsn", "SENTRY_SPOTLIGHT": "maybe"})
    assert where == [f"local log: {tmp_path / 'sentry.log'}  (read it with: widgettrace tail)"]
    # A DSN keeps its port and path, never its key.
    where = _describe(tmp_path, {"SENTRY_DSN": "http://secretkey@127.0.0.1:9/sub/7"})
    assert where[0] == "Sentry (processor): http://127.0.0.1:9/sub/7", where
    assert not any("secretkey" in line for line in where)


def test_report_shows_the_fallback_log_path(tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where a directory should be")
    where = _describe(tmp_path, {"WIDGETTRACE_LOG_PATH": str(blocked / "sentry.log")})
    (line,) = where
    assert line.startswith("local log: ")
    assert str(blocked) not in line  # the file really written, not the one asked for
    path = Path(line.removeprefix("local log: ").split("  (")[0])
    assert path.exists(), where
