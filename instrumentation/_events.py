"""Custom events (test failures, tool findings, audit records) through the one error sink.

The pytest plugin, the findings importers and the audit API all produce events that are not
"an exception escaped a span": they need their own fingerprint, tags, message and sometimes a
fixed event id. :func:`send_event` builds the vendor-neutral
:class:`~widgettrace.instrumentation.scope.ErrorReport` with those ``fields`` and hands it to
the sink the exporter registered (the Sentry exporter turns it into a Sentry event, written to
the local log and/or sent to the DSN). :func:`flush` waits for what was queued.

No ``sentry_sdk`` import here: the sink decides what the report becomes.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span

from widgettrace.instrumentation import scope as wscope
from widgettrace.instrumentation._guard import internal_errors

__all__ = ["MAX_TAG_LENGTH", "flush", "ready", "send_event", "stable_event_id", "tag_value"]

#: Sentry truncates tag values at 200 characters; longer ones are cut here so the cut is ours.
MAX_TAG_LENGTH = 200


def tag_value(value: object) -> str:
    """A value as a Sentry tag: a string of at most 200 characters, no newlines."""
    text = str(value).replace("\n", " ").strip()
    return text if len(text) <= MAX_TAG_LENGTH else text[: MAX_TAG_LENGTH - 1] + "…"


def stable_event_id(*parts: str) -> str:
    """A 32-hex event id derived from ``parts``: importing the same thing twice gives one id.

    Sentry drops an event whose id it has already stored, so a re-import is idempotent there;
    the local log's readers do the same by id.
    """
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return uuid.UUID(bytes=digest[:16], version=4).hex


def ready() -> bool:
    """Whether an exporter is listening (``configure()`` ran and Sentry/local log is on)."""
    return wscope.get_error_sink() is not None


def send_event(
    *,
    level: str,
    message: str | None = None,
    exception: BaseException | None = None,
    traceback: TracebackType | None = None,
    fields: Mapping[str, Any] | None = None,
    span: Span | None = None,
    transaction: str | None = None,
    handled: bool = True,
) -> bool:
    """Send one event (message and/or exception) with ``fields``; False when nobody listens.

    Linked to ``span`` (default: the current span) when it is valid. Never raises.
    """
    with internal_errors("events.send_event"):
        sink = wscope.get_error_sink()
        if sink is None:
            return False
        target = span if span is not None else trace.get_current_span()
        ctx = target.get_span_context()
        trace_id = ctx.trace_id if ctx.is_valid else 0
        report = wscope.ErrorReport(
            exception=exception,
            message=message,
            level=level,
            trace_id=trace_id,
            span_id=ctx.span_id if ctx.is_valid else 0,
            handled=handled,
            transaction=transaction,
            scope=wscope.scope_for_trace(trace_id),
            traceback=traceback,
            fields=dict(fields or {}),
        )
        sink(report)
        return True
    return False


def flush(timeout: float = 10.0) -> bool:
    """Wait up to ``timeout`` seconds for spans and events queued so far to be written/sent."""
    with internal_errors("events.flush"):
        provider = trace.get_tracer_provider()
        force_flush = getattr(provider, "force_flush", None)
        if callable(force_flush):
            return bool(force_flush(int(timeout * 1000)))
    return False
