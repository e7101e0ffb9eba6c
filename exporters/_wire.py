"""Which Sentry wire a process uses: span mode, log items, sessions (see docs/sentry-wire.md).

:func:`widgettrace.exporters.sentry.configure_sentry` calls :func:`extend_init_options` before
``sentry_sdk.init`` (log items) and :func:`span_processor` after it (transactions or span
streaming, plus the request-session tracker as a companion processor the configurator adds
next to it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from opentelemetry.sdk.trace import SpanProcessor

from widgettrace.exporters import _logs, _sessions
from widgettrace.exporters._stream import (
    StreamSpanProcessor,
    stream_processor_options,
    wants_stream,
)

__all__ = ["extend_init_options", "span_mode", "span_processor"]


def span_mode(settings: Any, options: dict[str, Any]) -> str:
    """``stream`` or ``transactions`` for this process (``WIDGETTRACE_SENTRY_SPANS``)."""
    setting = getattr(settings, "sentry_spans", "auto")
    streaming = wants_stream(setting, options.get("dsn"), options.get("spotlight"))
    return "stream" if streaming else "transactions"


def extend_init_options(options: dict[str, Any], settings: Any) -> None:
    """Log items (``WIDGETTRACE_SENTRY_LOGS_LEVEL``) in the ``sentry_sdk.init`` options."""
    _logs.configure_log_options(options, settings)


def span_processor(
    settings: Any,
    options: dict[str, Any],
    kwargs: dict[str, Any],
    transactions: Callable[..., SpanProcessor],
) -> SpanProcessor:
    """The span processor for the chosen mode, with ``companions`` (sessions) attached."""
    if span_mode(settings, options) == "stream":
        processor: SpanProcessor = StreamSpanProcessor(**stream_processor_options(kwargs))
    else:
        processor = transactions(**kwargs)
    mode = getattr(settings, "sessions", "auto")
    release = kwargs.get("release")
    environment = kwargs.get("environment")
    _sessions.configure_sessions(mode, release, environment)
    companions: list[SpanProcessor] = []
    if mode != "off":
        companions.append(_sessions.SessionProcessor(release, environment, blocks=mode == "blocks"))
    processor.companions = companions  # type: ignore[attr-defined]
    resource = kwargs.get("resource")
    service = resource.attributes.get("service.name", "") if resource is not None else ""
    _logs.instrument_log_records(str(service))
    return processor
