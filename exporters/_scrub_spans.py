"""A span exporter wrapper that scrubs spans before another exporter sends them (OTLP).

``WIDGETTRACE_SENTRY_MODE=otlp`` sends spans to Sentry's OTLP endpoint, and
``OTEL_TRACES_EXPORTER=otlp`` to a collector, through the standard OTLP exporter, which sends
attributes as they are. :class:`ScrubbingSpanExporter` sits between
the ``BatchSpanProcessor`` and that exporter: on the batch processor's export thread (never the
application's) it hands on copies of the spans whose name, attributes, event attributes, link
attributes and status description went through :class:`widgettrace.exporters._scrub.Scrubber`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Link, Status

from widgettrace.exporters._scrub import Scrubber
from widgettrace.instrumentation._guard import internal_errors

__all__ = ["ScrubbingSpanExporter", "scrubbing_export_processor"]


def _attributes(scrubber: Scrubber, attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    if not attributes:
        return {}
    out = scrubber.data(attributes)
    # Keep OTel's types: sequences stay tuples (data() returns JSON-ready lists).
    return {k: tuple(v) if isinstance(v, list) else v for k, v in out.items()}


class ScrubbingSpanExporter(SpanExporter):
    """Scrubs each span, then exports it with ``inner`` (see the module docstring)."""

    def __init__(self, inner: SpanExporter, scrubber: Scrubber) -> None:
        self.inner = inner
        self.scrubber = scrubber

    def _scrub(self, span: ReadableSpan) -> ReadableSpan:
        s = self.scrubber
        status = span.status
        if status.description:
            status = Status(status.status_code, s.text(status.description))
        return ReadableSpan(
            name=s.text_cached(span.name),
            context=span.context,
            parent=span.parent,
            resource=span.resource,
            attributes=_attributes(s, span.attributes),
            events=[
                Event(e.name, _attributes(s, e.attributes), timestamp=e.timestamp)
                for e in span.events
            ],
            links=[Link(link.context, _attributes(s, link.attributes)) for link in span.links],
            kind=span.kind,
            status=status,
            start_time=span.start_time,
            end_time=span.end_time,
            instrumentation_scope=span.instrumentation_scope,
        )

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        scrubbed: list[ReadableSpan] = []
        for span in spans:
            with internal_errors("otlp.scrub"):
                scrubbed.append(self._scrub(span))
        # A span the scrubber failed on is not sent: never its unscrubbed original.
        return self.inner.export(scrubbed)

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


def scrubbing_export_processor(scrubber: Scrubber) -> Callable[[SpanExporter], SpanProcessor]:
    """The ``export_span_processor`` factory for the OTel SDK's auto-configuration: each exporter
    named by ``OTEL_TRACES_EXPORTER`` (``otlp`` to a collector) gets the usual
    ``BatchSpanProcessor``, with this scrubbing in front of the exporter."""

    def make(exporter: SpanExporter) -> SpanProcessor:
        return BatchSpanProcessor(ScrubbingSpanExporter(exporter, scrubber))

    return make
