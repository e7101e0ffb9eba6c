"""Pytest fixtures for the MCP tests: explicit providers, instrumentation on, mcp's tracer captured.

``tracing`` instruments mcp with a fresh ``TracerProvider`` (in-memory exporter) and
``MeterProvider`` (in-memory reader), and points mcp's *built-in* tracer at the same provider,
so a span mcp emitted on its own would show up in ``tracing.spans()`` (under the scope
``mcp-python-sdk``) and fail the "never duplicates" assertions.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import mcp.shared._otel as mcp_otel
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from widgettrace.instrumentation.mcp import McpInstrumentor

__all__ = ["Tracing", "builtin_tracer", "by_name", "tracing"]


@dataclass
class Tracing:
    provider: TracerProvider
    exporter: InMemorySpanExporter
    reader: InMemoryMetricReader
    instrumentor: McpInstrumentor

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def histograms(self) -> dict[str, Any]:
        """Metric name -> the SDK metric object (data points, bucket boundaries)."""
        data = self.reader.get_metrics_data()
        found: dict[str, Any] = {}
        if data is None:
            return found
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    found[metric.name] = metric
        return found


def by_name(spans: list[ReadableSpan], name: str, kind: str | None = None) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name and (kind is None or s.kind.name == kind)]


@pytest.fixture
def builtin_tracer() -> Iterator[TracerProvider]:
    """mcp's own tracer pointed at a provider we read, restored afterwards."""
    provider = TracerProvider()
    saved = mcp_otel._tracer
    mcp_otel._tracer = provider.get_tracer("mcp-python-sdk")
    try:
        yield provider
    finally:
        mcp_otel._tracer = saved


@pytest.fixture
def tracing() -> Iterator[Tracing]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    saved = mcp_otel._tracer
    # mcp's built-in spans would land in the same exporter: any duplicate is visible.
    mcp_otel._tracer = provider.get_tracer("mcp-python-sdk")
    instrumentor = McpInstrumentor()
    instrumentor.instrument(tracer_provider=provider, meter_provider=meters, capture_payloads=False)
    try:
        yield Tracing(provider, exporter, reader, instrumentor)
    finally:
        instrumentor.uninstrument()
        mcp_otel._tracer = saved
        meters.shutdown()
