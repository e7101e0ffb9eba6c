"""The demo server over stdio, instrumented, writing its spans to $WIDGETTRACE_TEST_SPANS.

Run by the stdio tests as ``python tests/mcp_servers/stdio_server.py`` (a real subprocess).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import anyio
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from mcp_servers.spans_file import JsonLinesSpanExporter
from mcp_servers.widgets import build_server
from widgettrace.instrumentation.mcp import McpInstrumentor


def main() -> None:
    provider = TracerProvider()
    path = os.environ.get("WIDGETTRACE_TEST_SPANS")
    if path:
        provider.add_span_processor(SimpleSpanProcessor(JsonLinesSpanExporter(path)))
    if os.environ.get("WIDGETTRACE_TEST_INSTRUMENT", "1") == "1":
        McpInstrumentor().instrument(tracer_provider=provider)
    anyio.run(build_server().run_stdio_async)


if __name__ == "__main__":
    main()
