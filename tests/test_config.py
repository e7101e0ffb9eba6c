"""The configuration table: every setting parsed, every bad value logged once, README in sync."""

from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path

import pytest

from widgettrace.instrumentation import _config
from widgettrace.instrumentation._config import SETTINGS, Settings, load_settings

README = Path(__file__).resolve().parents[1] / "README.md"

# One bad value per kind of setting, and what the log line must say is used instead.
BAD_VALUES = [
    ("SENTRY_TRACES_SAMPLE_RATE", "abc", "not a number", "1.0"),
    ("SENTRY_TRACES_SAMPLE_RATE", "1.5", "outside [0, 1]", "1.0"),
    ("SENTRY_TRACES_SAMPLE_RATE", "nan", "outside [0, 1]", "1.0"),
    ("SENTRY_DSN", "not-a-dsn", "not a valid DSN", "no DSN"),
    ("SENTRY_DSN", "http://127.0.0.1:9000/1", "not a valid DSN", "no DSN"),
    ("SENTRY_DEBUG", "maybe", "not a boolean", "false"),
    ("SENTRY_SPOTLIGHT", "ftp://x", "neither a boolean nor an http(s) URL", "false"),
    ("WIDGETTRACE_SENTRY_MODE", "carrier-pigeon", "unknown value", "processor"),
    ("WIDGETTRACE_LOG_MAX_BYTES", "12", "outside", str(10 * 1024 * 1024)),
    ("WIDGETTRACE_LOG_BACKUPS", "three", "not a whole number", "3"),
    ("WIDGETTRACE_TRACE_MIN_DURATION_MS", "-1", "outside", "0.0"),
    ("WIDGETTRACE_MAX_SPANS_PER_TRANSACTION", "0", "outside", "1000"),
    ("OTEL_TRACES_SAMPLER", "sometimes", "unknown sampler", "parentbased_always_on"),
    ("OTEL_TRACES_SAMPLER_ARG", "x", "not a number", "1.0"),
    ("OTEL_SDK_DISABLED", "perhaps", "not a boolean", "false"),
]


def test_settings_class_matches_the_table() -> None:
    fields = {f.name: f.default for f in dataclasses.fields(Settings)}
    table = {s.field: s.default for s in SETTINGS}
    assert fields == table


def test_every_variable_is_standard_or_prefixed() -> None:
    for s in SETTINGS:
        assert s.origin in {"otel", "sentry", "widgettrace"}
        prefix = {"otel": "OTEL_", "sentry": "SENTRY_", "widgettrace": "WIDGETTRACE_"}[s.origin]
        assert s.env.startswith(prefix), s.env


def test_defaults_when_nothing_is_set() -> None:
    settings = load_settings({})
    assert settings == Settings()
    assert settings.log_path == ".claude/logs/sentry.log"
    assert settings.sentry_mode == "processor"
    assert settings.traces_sample_rate is None
    assert settings.send_default_pii is False


def test_good_values_are_parsed() -> None:
    settings = load_settings(
        {
            "SENTRY_DSN": "http://public@127.0.0.1:9000/1",
            "SENTRY_TRACES_SAMPLE_RATE": "0.25",
            "SENTRY_SPOTLIGHT": "http://127.0.0.1:8969/stream",
            "SENTRY_DEBUG": "yes",
            "WIDGETTRACE_SENTRY_MODE": "OTLP",
            "WIDGETTRACE_LOG_PATH": "off",
            "WIDGETTRACE_LOG_BACKUPS": "0",
            "OTEL_SDK_DISABLED": "true",
        }
    )
    assert settings.sentry_dsn == "http://public@127.0.0.1:9000/1"
    assert settings.traces_sample_rate == 0.25
    assert settings.sentry_spotlight == "http://127.0.0.1:8969/stream"
    assert settings.sentry_debug is True
    assert settings.sentry_mode == "otlp"
    assert settings.log_path is None
    assert settings.log_backups == 0
    assert settings.sdk_disabled is True


def test_command_line_flag_spelling_wins() -> None:
    # opentelemetry-instrument --widgettrace_log_path X sets OTEL_WIDGETTRACE_LOG_PATH.
    settings = load_settings(
        {"WIDGETTRACE_LOG_PATH": "/tmp/a.log", "OTEL_WIDGETTRACE_LOG_PATH": "/tmp/b.log"}
    )
    assert settings.log_path == "/tmp/b.log"


@pytest.mark.parametrize(("env", "value", "reason", "fallback"), BAD_VALUES)
def test_a_bad_value_logs_one_line_and_uses_the_default(
    caplog: pytest.LogCaptureFixture, env: str, value: str, reason: str, fallback: str
) -> None:
    with caplog.at_level(logging.WARNING, logger="widgettrace"):
        settings = load_settings({env: value})
    lines = [r.getMessage() for r in caplog.records if r.name == "widgettrace"]
    assert len(lines) == 1, lines
    (line,) = lines
    assert env in line
    assert repr(value) in line
    assert reason in line
    assert f"using {fallback}" in line
    field = next(s.field for s in SETTINGS if s.env == env)
    assert getattr(settings, field) == getattr(Settings(), field)


def test_get_settings_parses_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("SENTRY_TRACES_SAMPLE_RATE", "bogus")
    _config.reset_settings()
    try:
        with caplog.at_level(logging.WARNING, logger="widgettrace"):
            first = _config.get_settings()
            second = _config.get_settings()
        assert first is second
        assert (
            len([r for r in caplog.records if "SENTRY_TRACES_SAMPLE_RATE" in r.getMessage()]) == 1
        )
    finally:
        _config.reset_settings()


def test_readme_configuration_table_is_generated_from_the_table() -> None:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"<!-- config-table:start -->\n(.*?)<!-- config-table:end -->", text, re.S)
    assert match, "README lacks the generated configuration table markers"
    assert match.group(1) == _config.markdown_table()
