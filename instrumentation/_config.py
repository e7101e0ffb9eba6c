"""Every setting widgettrace reads, in one typed table.

Configuration is by environment variables only: the standard ``OTEL_*`` and ``SENTRY_*`` first,
ours (``WIDGETTRACE_*``) only where no standard exists. :data:`SETTINGS` lists each one with its
type, default and a one-line doc; the README's configuration table is generated from it
(``widgettrace config --markdown``) and a test keeps the two in sync.

A bad value never crashes the application: :func:`load_settings` logs ONE line naming the
variable, the value and what is used instead, then carries on with the safe default.

Usage::

    from widgettrace.instrumentation._config import get_settings
    settings = get_settings()
    settings.traces_sample_rate  # None when unset
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "DEFAULT_LOG_PATH",
    "SETTINGS",
    "Setting",
    "Settings",
    "get_settings",
    "load_settings",
    "markdown_table",
    "reset_settings",
]

_logger = logging.getLogger("widgettrace")

DEFAULT_LOG_PATH = ".claude/logs/sentry.log"
DEFAULT_AUDIT_PATH = ".claude/logs/audit.log"
DEFAULT_AUDIT_EXCEPTIONS = "builtins.PermissionError,fastapi.exceptions.RequestValidationError"

SentryMode = Literal["processor", "otlp", "off"]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class _Invalid(ValueError):
    """A value that cannot be used; the message says why (it ends up in the log line)."""


def _parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise _Invalid("not a boolean (use true or false)")


def _parse_str(raw: str) -> str | None:
    value = raw.strip()
    return value or None


def _float_in(low: float, high: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            raise _Invalid("not a number") from None
        if math.isnan(value) or not low <= value <= high:
            raise _Invalid(f"outside [{low:g}, {high:g}]")
        return value

    return parse


def _int_in(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise _Invalid("not a whole number") from None
        if not low <= value <= high:
            raise _Invalid(f"outside [{low}, {high}]")
        return value

    return parse


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise _Invalid(f"unknown value (choose one of: {', '.join(choices)})")
        return value

    return parse


def _parse_dsn(raw: str) -> str | None:
    value = raw.strip()
    if not value:
        return None
    # The SDK's own parser decides what a valid DSN is; a bad one would otherwise make
    # sentry_sdk.init raise inside auto-instrumentation and leave the app uninstrumented.
    from sentry_sdk.utils import BadDsn, Dsn

    try:
        Dsn(value)
    except BadDsn as exc:
        raise _Invalid(f"not a valid DSN ({exc})") from None
    return value


def _parse_log_path(raw: str) -> str | None:
    value = raw.strip()
    if value.lower() in {"", "off", "none", "false", "0"}:
        return None
    if "\x00" in value:
        raise _Invalid("contains a NUL byte")
    return value


def _parse_url(raw: str) -> str | None:
    value = raw.strip()
    if not value:
        return None
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        raise _Invalid(f"not a URL ({exc})") from None
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise _Invalid("not an http(s) URL with a host")
    return value


def _parse_spotlight(raw: str) -> bool | str:
    value = raw.strip()
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    if lowered.startswith(("http://", "https://")):
        return value
    raise _Invalid("neither a boolean nor an http(s) URL")


_LOG_LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG", "OFF")


def _parse_log_level(raw: str) -> str:
    value = raw.strip().upper()
    if value in {"WARN", "FATAL"}:
        value = {"WARN": "WARNING", "FATAL": "CRITICAL"}[value]
    if value in _FALSE_UPPER:
        value = "OFF"
    if value not in _LOG_LEVELS:
        raise _Invalid(f"not a log level (choose one of: {', '.join(_LOG_LEVELS)})")
    return value


_FALSE_UPPER = {"0", "FALSE", "NO", "NONE"}


def _parse_sampler(raw: str) -> str | None:
    value = raw.strip().lower()
    if not value:
        return None
    known = {
        "always_on",
        "always_off",
        "traceidratio",
        "parentbased_always_on",
        "parentbased_always_off",
        "parentbased_traceidratio",
    }
    if value not in known:
        raise _Invalid(f"unknown sampler (choose one of: {', '.join(sorted(known))})")
    return value


def _parse_patterns(raw: str) -> str | None:
    value = raw.strip()
    if not value:
        return None
    import json
    import re

    patterns: object = value.split()
    if value.startswith("["):
        try:
            patterns = json.loads(value)
        except ValueError:
            raise _Invalid("not a JSON list of regular expressions") from None
    if not isinstance(patterns, list):
        raise _Invalid("not a list of regular expressions")
    for pattern in patterns:
        try:
            re.compile(str(pattern))
        except re.error as exc:
            raise _Invalid(f"{pattern!r} is not a regular expression ({exc})") from None
    return value


@dataclass(frozen=True)
class Setting:
    """One row of the configuration table."""

    env: str
    field: str
    type_name: str
    default: Any
    doc: str
    parse: Callable[[str], Any] = dataclasses.field(repr=False, compare=False)
    #: "otel", "sentry" (standard variables) or "widgettrace" (ours).
    origin: str = "widgettrace"
    #: Read by a library other than ours (we validate and document it, the SDK applies it).
    read_by: str = "widgettrace"
    #: What an unset (or rejected) value means, when the default is "unset".
    unset_means: str = ""

    @property
    def default_repr(self) -> str:
        """The default as the README shows it."""
        if self.default is None:
            return "unset"
        if isinstance(self.default, bool):
            return "true" if self.default else "false"
        return str(self.default)


def _row(
    env: str,
    field: str,
    type_name: str,
    default: Any,
    doc: str,
    parse: Callable[[str], Any],
    origin: str = "widgettrace",
    *,
    read_by: str = "widgettrace",
    unset_means: str = "",
) -> Setting:
    return Setting(env, field, type_name, default, doc, parse, origin, read_by, unset_means)


_MiB = 1024 * 1024

#: The whole configuration surface, standard variables first.
SETTINGS: tuple[Setting, ...] = (
    # --- OpenTelemetry (standard) ---------------------------------------------------------
    _row(
        "OTEL_SDK_DISABLED",
        "sdk_disabled",
        "bool",
        False,
        "Turn all of widgettrace and the OTel SDK off (no provider, no Sentry, no patches).",
        _parse_bool,
        "otel",
    ),
    _row(
        "OTEL_SERVICE_NAME",
        "service_name",
        "str",
        None,
        "service.name resource attribute; also the Sentry `service` tag.",
        _parse_str,
        "otel",
        read_by="opentelemetry-sdk",
    ),
    _row(
        "OTEL_RESOURCE_ATTRIBUTES",
        "resource_attributes",
        "str",
        None,
        "Extra resource attributes (k=v,...); service.version becomes the release if "
        "SENTRY_RELEASE is unset.",
        _parse_str,
        "otel",
        read_by="opentelemetry-sdk",
    ),
    _row(
        "OTEL_TRACES_SAMPLER",
        "traces_sampler",
        "str",
        None,
        "Standard sampler name; wins over SENTRY_TRACES_SAMPLE_RATE. Default "
        "parentbased_always_on.",
        _parse_sampler,
        "otel",
        unset_means="parentbased_always_on, or SENTRY_TRACES_SAMPLE_RATE",
    ),
    _row(
        "OTEL_TRACES_SAMPLER_ARG",
        "traces_sampler_arg",
        "float in [0, 1]",
        None,
        "Ratio for the *traceidratio samplers.",
        _float_in(0.0, 1.0),
        "otel",
        unset_means="1.0",
    ),
    _row(
        "OTEL_PROPAGATORS",
        "propagators",
        "str",
        None,
        "Propagators; unset means tracecontext,baggage,sentry (W3C and sentry-trace).",
        _parse_str,
        "otel",
        read_by="opentelemetry-api",
    ),
    _row(
        "OTEL_TRACES_EXPORTER",
        "traces_exporter",
        "str",
        None,
        "Extra span exporters, e.g. `otlp` to also send to a collector (needs the `otlp` "
        "extra). Sentry export does not depend on it.",
        _parse_str,
        "otel",
        read_by="opentelemetry-sdk",
    ),
    _row(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "otlp_endpoint",
        "URL",
        None,
        "Collector endpoint for OTEL_TRACES_EXPORTER=otlp.",
        _parse_url,
        "otel",
        read_by="opentelemetry-exporter-otlp",
    ),
    _row(
        "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS",
        "disabled_instrumentations",
        "str",
        None,
        "Comma-separated entry-point names not to instrument (fastapi, requests, mcp, "
        "widgettrace_functions, ...).",
        _parse_str,
        "otel",
        read_by="opentelemetry-instrumentation",
    ),
    # --- Sentry (standard) --------------------------------------------------------------------
    _row(
        "SENTRY_DSN",
        "sentry_dsn",
        "DSN",
        None,
        "Where to send errors and transactions; unset means the local log only.",
        _parse_dsn,
        "sentry",
        unset_means="no DSN (local log only)",
    ),
    _row(
        "SENTRY_RELEASE",
        "sentry_release",
        "str",
        None,
        "Release tag on every event (default: service.version, else the SDK's detection).",
        _parse_str,
        "sentry",
        unset_means="service.version or the SDK's detection",
    ),
    _row(
        "SENTRY_ENVIRONMENT",
        "sentry_environment",
        "str",
        None,
        "Environment tag on every event (the SDK defaults to production).",
        _parse_str,
        "sentry",
        unset_means="the SDK's default (production)",
    ),
    _row(
        "SENTRY_DEBUG",
        "sentry_debug",
        "bool",
        False,
        "The Sentry SDK's debug logging.",
        _parse_bool,
        "sentry",
    ),
    _row(
        "SENTRY_SPOTLIGHT",
        "sentry_spotlight",
        "bool or URL",
        False,
        "Also send every envelope to Spotlight (true = its default URL).",
        _parse_spotlight,
        "sentry",
    ),
    _row(
        "SENTRY_TRACES_SAMPLE_RATE",
        "traces_sample_rate",
        "float in [0, 1]",
        None,
        "Share of new traces sampled (the SDK does not read it; we map it onto the OTel "
        "parent-based ratio sampler). Default 1.0.",
        _float_in(0.0, 1.0),
        "sentry",
        unset_means="1.0 (every new trace)",
    ),
    # --- widgettrace's own ----------------------------------------------------------------------
    _row(
        "WIDGETTRACE_SENTRY_MODE",
        "sentry_mode",
        "processor | otlp | off",
        "processor",
        "How spans reach Sentry: our span processor, Sentry's OTLP endpoint, or not at all.",
        _choice("processor", "otlp", "off"),
    ),
    _row(
        "WIDGETTRACE_LOG_PATH",
        "log_path",
        "path or off",
        DEFAULT_LOG_PATH,
        "Local log of every event and transaction as JSON lines (written with or without a "
        "DSN), relative to the working directory; `off` disables it.",
        _parse_log_path,
    ),
    _row(
        "WIDGETTRACE_LOG_MAX_BYTES",
        "log_max_bytes",
        "int >= 4096",
        10 * _MiB,
        "Size at which the local log rotates.",
        _int_in(4096, 1 << 40),
    ),
    _row(
        "WIDGETTRACE_LOG_BACKUPS",
        "log_backups",
        "int in [0, 100]",
        3,
        "Rotated files kept (sentry.log.1, .2, ...).",
        _int_in(0, 100),
    ),
    _row(
        "WIDGETTRACE_SEND_DEFAULT_PII",
        "send_default_pii",
        "bool",
        False,
        "Opt in to sending emails, IPs, cookies, headers and user names (scrubbed by default).",
        _parse_bool,
    ),
    _row(
        "WIDGETTRACE_SCRUB_KEYS",
        "scrub_keys",
        "comma-separated words",
        None,
        "More secret key words: any attribute, variable or field whose key contains one is "
        "sent as [Filtered] (see docs/privacy.md).",
        _parse_str,
    ),
    _row(
        "WIDGETTRACE_SCRUB_PATTERNS",
        "scrub_patterns",
        "regexes",
        None,
        "More patterns to filter out of any text: whitespace-separated regular expressions, or "
        "a JSON list of them.",
        _parse_patterns,
    ),
    _row(
        "WIDGETTRACE_LOCAL_VARIABLES",
        "local_variables",
        "app | all | off",
        "app",
        "Frame local variables in error events: in-app frames only (bounded, scrubbed), every "
        "frame, or none (see docs/privacy.md).",
        _choice("app", "all", "off"),
    ),
    _row(
        "WIDGETTRACE_ASGI_MESSAGE_SPANS",
        "asgi_message_spans",
        "bool",
        False,
        "Keep the per-message ASGI `http send`/`http receive` spans (about 40% of FastAPI's "
        "tracing cost; off by default).",
        _parse_bool,
    ),
    _row(
        "WIDGETTRACE_TRACE_FUNCTIONS",
        "trace_functions",
        "spec",
        None,
        "Zero-code tracing of your own functions (see 'Tracing your functions').",
        _parse_str,
    ),
    _row(
        "WIDGETTRACE_TRACE_MIN_DURATION_MS",
        "trace_min_duration_ms",
        "float >= 0",
        0.0,
        "Keep function spans only for calls at least this slow.",
        _float_in(0.0, 1e9),
    ),
    _row(
        "WIDGETTRACE_CAPTURE_PAYLOADS",
        "capture_payloads",
        "bool",
        False,
        "Capture MCP tool arguments and results (size-capped, secrets redacted).",
        _parse_bool,
    ),
    _row(
        "WIDGETTRACE_PAYLOAD_MAX_BYTES",
        "payload_max_bytes",
        "int in [64, 1048576]",
        4096,
        "Cap on each captured payload.",
        _int_in(64, _MiB),
    ),
    _row(
        "WIDGETTRACE_PRICES",
        "prices",
        "path or JSON",
        None,
        "LLM price table (USD per 1M tokens per model) for gen_ai cost attributes.",
        _parse_str,
    ),
    _row(
        "WIDGETTRACE_MAX_SPANS_PER_TRANSACTION",
        "max_spans_per_transaction",
        "int in [1, 10000]",
        1000,
        "Spans per Sentry transaction; the rest are counted as dropped (client reports).",
        _int_in(1, 10000),
    ),
    _row(
        "WIDGETTRACE_BUFFER_MAX_SPANS",
        "buffer_max_spans",
        "int in [100, 10000000]",
        100000,
        "Ended spans held while their transaction is open; beyond it the oldest traces are "
        "sent early, incomplete (nothing dropped).",
        _int_in(100, 10_000_000),
    ),
    _row(
        "WIDGETTRACE_OPEN_SPAN_TIMEOUT_S",
        "open_span_timeout_s",
        "float in [1, 86400]",
        300.0,
        "A transaction whose root never ends is sent with what it has after this long.",
        _float_in(1.0, 86400.0),
    ),
    _row(
        "WIDGETTRACE_QUEUE_SIZE",
        "queue_size",
        "int in [100, 10000000]",
        20000,
        "Ended spans waiting for the export thread; beyond it spans are dropped and counted.",
        _int_in(100, 10_000_000),
    ),
    _row(
        "WIDGETTRACE_SHUTDOWN_TIMEOUT_S",
        "shutdown_timeout_s",
        "float in [0, 600]",
        2.0,
        "At exit (normal, SIGINT, SIGTERM) wait at most this long to deliver what is queued "
        "(errors, sessions and logs first); what is left is counted as lost.",
        _float_in(0.0, 600.0),
    ),
    # --- findings: pytest plugin, audit trail, frontend tunnel (docs/findings.md) ----------------
    _row(
        "WIDGETTRACE_PYTEST",
        "pytest_enabled",
        "bool",
        False,
        "Turn the pytest plugin on (also `-p widgettrace` or the `widgettrace` ini option).",
        _parse_bool,
    ),
    _row(
        "WIDGETTRACE_AUDIT_PATH",
        "audit_path",
        "path or off",
        DEFAULT_AUDIT_PATH,
        "Append-only, hash-chained audit file (`widgettrace audit verify`); `off` disables it.",
        _parse_log_path,
    ),
    _row(
        "WIDGETTRACE_AUDIT_EXCEPTIONS",
        "audit_exceptions",
        "class list",
        DEFAULT_AUDIT_EXCEPTIONS,
        "Exception classes (module.Name, comma-separated) whose raising is an audit event.",
        _parse_str,
    ),
    _row(
        "WIDGETTRACE_TUNNEL_MAX_BYTES",
        "tunnel_max_bytes",
        "int in [1024, 104857600]",
        _MiB,
        "Largest envelope the frontend tunnel accepts (413 beyond).",
        _int_in(1024, 100 * _MiB),
    ),
    _row(
        "WIDGETTRACE_TUNNEL_RATE",
        "tunnel_rate",
        "int in [1, 1000000]",
        120,
        "Envelopes per minute the frontend tunnel accepts from one client address (429 beyond).",
        _int_in(1, 1_000_000),
    ),
    # --- Sentry's current wire: span streaming, logs, sessions (docs/sentry-wire.md) -------------
    _row(
        "WIDGETTRACE_SENTRY_SPANS",
        "sentry_spans",
        "auto | transactions | stream",
        "auto",
        "How spans are sent: one transaction per local trace, or streamed in batches as span "
        "v2 items. `auto`: stream to sentry.io, transactions elsewhere (self-hosted Sentry, "
        "Spotlight, Bugsink, the local log alone); see docs/sentry-wire.md.",
        _choice("auto", "transactions", "stream"),
    ),
    _row(
        "WIDGETTRACE_SENTRY_LOGS_LEVEL",
        "sentry_logs_level",
        "log level or off",
        "WARNING",
        "Python `logging` records at or above this level become Sentry log items (with trace "
        "and span ids); `off` sends none.",
        _parse_log_level,
    ),
    _row(
        "WIDGETTRACE_SESSIONS",
        "sessions",
        "auto | blocks | off",
        "auto",
        "Release-health sessions: `auto` aggregates server requests per minute and sends "
        "explicit `widgettrace.session()` blocks; `blocks` also wraps each cascade block in a "
        "session; `off` sends none.",
        _choice("auto", "blocks", "off"),
    ),
    _row(
        "WIDGETTRACE_ALERT_WEBHOOK",
        "alert_webhook",
        "http(s) URL",
        None,
        "Slack-compatible webhook: a background `widgettrace watch` process follows the local "
        "log and posts alerts (new issue, regression, spike) to it.",
        _parse_url,
    ),
)


@dataclass(frozen=True)
class Settings:
    """Parsed configuration; attribute names are the table's ``field`` column.

    Spelled out (rather than built from :data:`SETTINGS`) so type checkers see each field; a
    test keeps the fields and defaults identical to the table.
    """

    sdk_disabled: bool = False
    service_name: str | None = None
    resource_attributes: str | None = None
    traces_sampler: str | None = None
    traces_sampler_arg: float | None = None
    propagators: str | None = None
    traces_exporter: str | None = None
    otlp_endpoint: str | None = None
    disabled_instrumentations: str | None = None
    sentry_dsn: str | None = None
    sentry_release: str | None = None
    sentry_environment: str | None = None
    sentry_debug: bool = False
    sentry_spotlight: bool | str = False
    traces_sample_rate: float | None = None
    sentry_mode: SentryMode = "processor"
    log_path: str | None = DEFAULT_LOG_PATH
    log_max_bytes: int = 10 * _MiB
    log_backups: int = 3
    send_default_pii: bool = False
    scrub_keys: str | None = None
    scrub_patterns: str | None = None
    local_variables: Literal["app", "all", "off"] = "app"
    asgi_message_spans: bool = False
    trace_functions: str | None = None
    trace_min_duration_ms: float = 0.0
    capture_payloads: bool = False
    payload_max_bytes: int = 4096
    prices: str | None = None
    max_spans_per_transaction: int = 1000
    buffer_max_spans: int = 100000
    open_span_timeout_s: float = 300.0
    queue_size: int = 20000
    shutdown_timeout_s: float = 2.0
    pytest_enabled: bool = False
    audit_path: str | None = DEFAULT_AUDIT_PATH
    audit_exceptions: str | None = DEFAULT_AUDIT_EXCEPTIONS
    tunnel_max_bytes: int = _MiB
    tunnel_rate: int = 120
    sentry_spans: str = "auto"
    sentry_logs_level: str = "WARNING"
    sessions: str = "auto"
    alert_webhook: str | None = None


def _show(raw: str) -> str:
    # Never echo a whole secret back into logs: DSNs carry a public key, which is fine, but a
    # pasted token in the wrong variable should not end up in log files.
    shown = raw if len(raw) <= 80 else raw[:77] + "..."
    return repr(shown)


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Parse every setting from ``environ``; log one line per bad value and use its default."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        raw = None
        if setting.origin == "widgettrace":
            # `opentelemetry-instrument --widgettrace_log_path X` sets OTEL_WIDGETTRACE_LOG_PATH
            # (it only forwards OTEL_* names); a flag on the command line beats the environment.
            raw = env.get("OTEL_" + setting.env)
        if raw is None:
            raw = env.get(setting.env)
        if raw is None:
            continue
        try:
            values[setting.field] = setting.parse(raw)
        except _Invalid as exc:
            if environ is None and setting.read_by != "widgettrace":
                # Another library reads it itself: take the rejected value out of its view.
                os.environ.pop(setting.env, None)
            _logger.warning(
                "widgettrace: %s=%s is invalid (%s); using %s instead",
                setting.env,
                _show(raw),
                exc,
                setting.default_repr
                if setting.default is not None
                else setting.unset_means or "unset",
            )
    return Settings(**values)


_cached: Settings | None = None
_lock = threading.Lock()


def get_settings() -> Settings:
    """The process's settings, parsed once (bad values are logged once, not on every read)."""
    global _cached
    settings = _cached
    if settings is None:
        with _lock:
            if _cached is None:
                _cached = load_settings()
            settings = _cached
    return settings


def reset_settings() -> None:
    """Forget the cached settings so the next :func:`get_settings` re-reads the environment."""
    global _cached
    with _lock:
        _cached = None


def markdown_table() -> str:
    """The README's configuration table, generated from :data:`SETTINGS`."""
    lines = [
        "| Variable | Type | Default | What it does |",
        "| --- | --- | --- | --- |",
    ]
    for s in SETTINGS:
        default = s.default_repr.replace("|", "\\|")
        type_name = s.type_name.replace("|", "\\|")
        lines.append(f"| `{s.env}` | {type_name} | `{default}` | {s.doc} |")
    return "\n".join(lines) + "\n"
