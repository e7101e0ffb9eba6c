"""The stdio MCP server for bench_mcp.py: ``python _mcp_stdio_server.py <case>``.

``case`` is one of bench_mcp's cases; the server process traces (or not) the same way as the
client side, into an SDK provider whose exporter drops the spans.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import anyio
import mcp.shared._otel as mcp_otel
import mcp.shared.jsonrpc_dispatcher as jd
from mcp.server._otel import OpenTelemetryMiddleware
from mcp.server.mcpserver import MCPServer
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import INVALID_SPAN

from widgettrace.instrumentation.mcp import McpInstrumentor


class _Drop(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


@contextlib.contextmanager
def _noop_span(*_args: Any, **_kwargs: Any) -> Iterator[Any]:
    yield INVALID_SPAN


def main() -> None:
    case = sys.argv[1]
    server = MCPServer("bench")

    @server.tool()
    async def add(a: int, b: int) -> int:
        return a + b

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(_Drop()))
    low = server._lowlevel_server
    if case == "uninstrumented":
        low.middleware = [m for m in low.middleware if not isinstance(m, OpenTelemetryMiddleware)]
        setattr(jd, "otel_span", _noop_span)  # noqa: B010 (not re-exported by mcp)
        setattr(jd, "inject_trace_context", lambda meta: None)  # noqa: B010
    else:
        mcp_otel._tracer = provider.get_tracer("mcp-python-sdk")
        if case == "widgettrace":
            McpInstrumentor().instrument(tracer_provider=provider)
        elif case == "widgettrace_unsampled":
            McpInstrumentor().instrument(tracer_provider=TracerProvider(sampler=ALWAYS_OFF))
        elif case == "widgettrace_metrics":
            meters = MeterProvider(metric_readers=[InMemoryMetricReader()])
            McpInstrumentor().instrument(tracer_provider=provider, meter_provider=meters)
    anyio.run(server.run_stdio_async)


if __name__ == "__main__":
    main()
