"""Which Sentry wire a process uses: span mode, log items, sessions (see docs/sentry-wire.md).

:func:`widgettrace.exporters.sentry.configure_sentry` calls :func:`extend_init_options` before
``sentry_sdk.init`` (log items) and :func:`span_processor` after it (transactions or span
streaming, plus the request-session tracker as a companion processor the configurator adds
next to it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry.sdk.trace import SpanProcessor

from widgettrace.exporters import _logs, _sessions
from widgettrace.exporters._stream import StreamSpanProcessor

__all__ = [
    "extend_init_options",
    "span_mode",
    "span_processor",
    "stream_processor_options",
    "wants_stream",
]


def wants_stream(setting: str, dsn: str | None, spotlight: Any) -> bool:
    """Whether ``WIDGETTRACE_SENTRY_SPANS`` (``auto`` / ``transactions`` / ``stream``) streams.

    ``auto`` streams to sentry.io (its ingest hosts), which takes span v2 items. Self-hosted
    Sentry (its version, so whether it ingests span items, is unknown here), Bugsink (errors
    only), Spotlight (4.11 relays span items but its UI reads only event, transaction, profile
    and log items: ``tests/test_wire_spotlight.py``) and the local log alone (whose
    readers, ``widgettrace summary`` and the insights layer, count transactions) get
    transactions. With sentry.io and the local log, the local log gets one line per span.
    """
    if setting in ("stream", "transactions"):
        return setting == "stream"
    if spotlight or not dsn:
        return False
    host = dsn.split("@", 1)[-1].split("/", 1)[0].split(":", 1)[0].lower()
    return host == "sentry.io" or host.endswith(".sentry.io")


def stream_processor_options(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The subset of the transaction processor's options the stream processor takes."""
    keep = (
        "resource",
        "release",
        "environment",
        "send_default_pii",
        "queue_size",
        "get_client",
        "scrubber",
        "shutdown_timeout_s",
    )
    return {key: kwargs[key] for key in keep if key in kwargs}


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
