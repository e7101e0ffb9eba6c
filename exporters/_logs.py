"""Python ``logging`` records as Sentry ``log`` items, with the current OTel trace and span ids.

Built on the SDK's own pieces: its logging integration's ``SentryLogsHandler`` turns records at
or above ``WIDGETTRACE_SENTRY_LOGS_LEVEL`` (default WARNING; ``off`` for none) into logs
(severity, body, ``logger.name``, ``code.*``, ``thread.*``, the message template and its
parameters as attributes), and its ``LogBatcher`` sends them in batches (100 a flush, 5 s
deadline, beyond 1000 waiting dropped and counted as ``queue_overflow``, category
``log_item``) through the client's transport: rate limits, retries and client reports stay the
SDK's. :func:`before_send_log` (the SDK's ``before_send_log`` hook, run on the logging thread)
adds what the SDK cannot know:

* ``trace_id`` / ``span_id`` of the current OpenTelemetry span (the SDK would use its own
  propagation context, which has nothing to do with OTel's);
* scrubbing of the body and every attribute, by the same rules as span attributes;
* dropping the ``otel*`` record attributes that ``opentelemetry-instrumentation-logging`` adds
  (the ids are already fields).

The user's own log lines carry the ids too: :func:`instrument_log_records` installs a record
factory setting ``otelTraceID``, ``otelSpanID``, ``otelTraceSampled`` and ``otelServiceName``
on every record (the names ``opentelemetry-instrumentation-logging`` uses; why not that package:
see the function); with ``OTEL_PYTHON_LOG_CORRELATION=true`` it also sets that package's default
format on an unconfigured root logger.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from opentelemetry import trace as trace_api

from widgettrace.exporters._scrub import Scrubber, scrubber_for
from widgettrace.instrumentation._guard import internal_errors

__all__ = [
    "before_send_log",
    "configure_log_options",
    "instrument_log_records",
    "logs_level",
]

_OTEL_RECORD_ATTRS = ("otelTraceID", "otelSpanID", "otelTraceSampled", "otelServiceName")
_scrubber = Scrubber(False)
_SDK_PREFIXES = ("sentry.", "process.runtime.", "server.address")
_USER_SENTRY_PREFIX = "sentry.message."


def logs_level(setting: str | None) -> int | None:
    """The ``logging`` level of ``WIDGETTRACE_SENTRY_LOGS_LEVEL`` (None: logs off)."""
    if not setting or setting.upper() == "OFF":
        return None
    level = logging.getLevelName(setting.upper())
    return level if isinstance(level, int) else logging.WARNING


def before_send_log(log: dict[str, Any], hint: Any) -> dict[str, Any] | None:
    """Current OTel ids, scrubbed body and attributes (see the module docstring)."""
    with internal_errors("logs.before_send_log"):
        ctx = trace_api.get_current_span().get_span_context()
        if ctx.is_valid:
            log["trace_id"] = format(ctx.trace_id, "032x")
            log["span_id"] = format(ctx.span_id, "016x")
        attrs = log.get("attributes")
        if attrs:
            for key in _OTEL_RECORD_ATTRS:
                attrs.pop(key, None)
            # The SDK's own attributes (release, environment, sdk, origin) are not user data;
            # the message template and its parameters are.
            user = {
                k: v
                for k, v in attrs.items()
                if not k.startswith(_SDK_PREFIXES) or k.startswith(_USER_SENTRY_PREFIX)
            }
            attrs.update(_scrubber.data(user))
        body = log.get("body")
        if isinstance(body, str):
            log["body"] = _scrubber.text(body)
    return log


def configure_log_options(options: dict[str, Any], settings: Any) -> None:
    """Switch the SDK's log items on in ``sentry_sdk.init`` options (or leave them off).

    Replaces the ``LoggingIntegration`` in ``options["integrations"]`` by one that also sends
    log items at the configured level; its breadcrumb and event levels stay as they were.
    """
    from sentry_sdk.integrations.logging import LoggingIntegration

    level = logs_level(getattr(settings, "sentry_logs_level", "WARNING"))
    global _scrubber
    _scrubber = scrubber_for(settings)
    integrations = []
    breadcrumbs: int | None = logging.INFO
    events: int | None = None
    for integration in options.get("integrations", []):
        if isinstance(integration, LoggingIntegration):
            # Keep its breadcrumb and event levels (None: off), whatever set them.
            crumb = integration._breadcrumb_handler
            breadcrumbs = crumb.level if crumb is not None else None
            event = integration._handler
            events = event.level if event is not None else None
        else:
            integrations.append(integration)
    integrations.append(
        LoggingIntegration(level=breadcrumbs, event_level=events, sentry_logs_level=level)
    )
    options["integrations"] = integrations
    if level is not None:
        options["enable_logs"] = True
        options["before_send_log"] = before_send_log


_factory_installed = False


def instrument_log_records(service_name: str = "") -> None:
    """Trace and span ids on every ``logging`` record, as ``opentelemetry-instrumentation-logging``
    names them (``otelTraceID``, ``otelSpanID``, ``otelTraceSampled``, ``otelServiceName``), so
    formats written for it work unchanged. Idempotent; the factory never raises.

    Not that package itself: its ``opentelemetry_instrumentor`` entry point also puts an OTel
    logs handler on the root logger in every process started by ``opentelemetry-instrument``
    (whichever distro runs), which silences Python's last-resort output of warnings to stderr
    (``tests/test_distro.py`` caught it): installing it would change every application's logging.
    """
    global _factory_installed
    if _factory_installed:
        return
    _factory_installed = True
    previous = logging.getLogRecordFactory()
    get_current_span = trace_api.get_current_span

    def record_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            ctx = get_current_span().get_span_context()
            if ctx.is_valid:
                record.otelTraceID = format(ctx.trace_id, "032x")
                record.otelSpanID = format(ctx.span_id, "016x")
                record.otelTraceSampled = ctx.trace_flags.sampled
            else:
                record.otelTraceID = "0"
                record.otelSpanID = "0"
                record.otelTraceSampled = False
            record.otelServiceName = service_name
        except Exception:  # never break a log call
            pass
        return record

    logging.setLogRecordFactory(record_factory)
    if os.environ.get("OTEL_PYTHON_LOG_CORRELATION", "false").strip().lower() == "true":
        # The standard variable's meaning: a format with the ids on an unconfigured root logger.
        logging.basicConfig(
            format=os.environ.get("OTEL_PYTHON_LOG_FORMAT")
            or "%(asctime)s %(levelname)s [%(name)s] [%(filename)s:%(lineno)d] "
            "[trace_id=%(otelTraceID)s span_id=%(otelSpanID)s "
            "resource.service.name=%(otelServiceName)s trace_sampled=%(otelTraceSampled)s] "
            "- %(message)s"
        )
