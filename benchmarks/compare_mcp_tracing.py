"""Side by side: what mcp 2.3.0's built-in tracing emits and what widgettrace's emits.

Run from the repository root::

    .venv/bin/python benchmarks/compare_mcp_tracing.py [--out FILE.md]

The same scenario runs twice in this process, once with mcp's own OpenTelemetry (its tracer on
an SDK provider, as shipped) and once with ``McpInstrumentor`` (which switches the built-in off):
inside an application span ``widget A`` a client connects to the demo server
(tests/mcp_servers/widgets.py) and calls ``add``, ``boom`` (the tool crashes), ``slow`` (two
progress notifications), ``ask_llm`` (the server sends ``sampling/createMessage`` back) and
``notify`` (the server sends ``notifications/tools/list_changed``). Two transports: JSON-RPC
over memory streams (``mode="legacy"``, the path stdio and HTTP use) and the in-process
``DirectDispatcher`` (``mode="auto"``). Prints a Markdown table: one row per message and side,
each cell the span (kind, name), its parent and its attributes.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import anyio
import mcp.shared._otel as mcp_otel
from mcp import Client
from mcp_servers.widgets import CALLBACKS, build_server
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from widgettrace.instrumentation.mcp import McpInstrumentor

# Values worth printing; ids and other per-call values are shown by key only.
_SHOW_VALUES = {
    "network.transport",
    "mcp.protocol.version",
    "error.type",
    "rpc.response.status_code",
    "gen_ai.tool.name",
    "gen_ai.operation.name",
}


async def _progress(progress: float, total: float | None, message: str | None) -> None:
    return None


async def _scenario(provider: TracerProvider, mode: str) -> None:
    tracer = provider.get_tracer("app")
    with tracer.start_as_current_span("widget A"):
        async with Client(build_server(), mode=mode, **CALLBACKS) as client:
            await client.call_tool("add", {"a": 1, "b": 2})
            await client.call_tool("boom", {})

            await client.call_tool("slow", {"steps": 2}, progress_callback=_progress)
            if mode == "legacy":  # the 2026-07-28 protocol has no server-to-client requests
                await client.call_tool("ask_llm", {})
            await client.call_tool("notify", {})
            await anyio.sleep(0.05)


def _run(which: str, mode: str) -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    saved = mcp_otel._tracer
    instrumentor = McpInstrumentor()
    try:
        if which == "builtin":
            mcp_otel._tracer = provider.get_tracer("mcp-python-sdk")
        else:
            instrumentor.instrument(tracer_provider=provider)
        anyio.run(_scenario, provider, mode)
    finally:
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()
        mcp_otel._tracer = saved
    return list(exporter.get_finished_spans())


def _key(span: ReadableSpan) -> tuple[str, str, str] | None:
    attrs = span.attributes or {}
    method = attrs.get("mcp.method.name")
    if not isinstance(method, str):
        return None
    # The built-in's client spans carry the target only in their name ("MCP send tools/call x").
    target = span.name.removeprefix("MCP send ").removeprefix(method).strip()
    return method, target, span.kind.name


def _describe(span: ReadableSpan, by_id: dict[int, ReadableSpan], app_trace: int) -> str:
    assert span.context is not None
    parent = "no parent"
    if span.parent is not None:
        found = by_id.get(span.parent.span_id)
        parent = f"`{found.name}` ({found.kind.name})" if found else "remote"
    trace_note = "" if span.context.trace_id == app_trace else " **(new trace)**"
    attrs = []
    for key, value in sorted((span.attributes or {}).items()):
        attrs.append(f"{key}={value!s}" if key in _SHOW_VALUES else key)
    events = Counter(e.name for e in span.events)
    extra = ""
    if events:
        extra = "; events: " + ", ".join(f"{n}x{c}" for n, c in sorted(events.items()))
    status = (
        f"; status {span.status.status_code.name}"
        if span.status.status_code.name != "UNSET"
        else ""
    )
    links = f"; {len(span.links)} link(s)" if span.links else ""
    return (
        f"{span.kind.name} `{span.name}` <- {parent}{trace_note}{status}{links}{extra}"
        f"<br>attrs: {', '.join(attrs) or '-'}"
    )


def _table(mode: str) -> list[str]:
    runs = {which: _run(which, mode) for which in ("builtin", "widgettrace")}
    cells: dict[tuple[str, str, str, int], dict[str, str]] = {}
    order: list[tuple[str, str, str, int]] = []
    for which, spans in runs.items():
        by_id = {s.context.span_id: s for s in spans if s.context is not None}
        app = next(s for s in spans if s.name == "widget A")
        assert app.context is not None
        seen: Counter[tuple[str, str, str]] = Counter()
        for span in sorted(spans, key=lambda s: s.start_time or 0):
            key = _key(span)
            if key is None:
                continue
            full = (*key, seen[key])
            seen[key] += 1
            if full not in cells:
                cells[full] = {}
                order.append(full)
            cells[full][which] = _describe(span, by_id, app.context.trace_id)
    transport = (
        "JSON-RPC over memory streams (legacy handshake)"
        if mode == "legacy"
        else "DirectDispatcher (in-process, 2026-07-28)"
    )
    lines = [
        f"**Transport: {transport}**",
        "",
        "| message (side) | mcp 2.3.0 built-in | widgettrace |",
        "|---|---|---|",
    ]
    for method, target, kind, n in order:
        side = "sender" if kind == "CLIENT" else "receiver"
        label = (
            f"`{method}`{' ' + target if target else ''} ({side}{', #' + str(n + 1) if n else ''})"
        )
        row = cells[(method, target, kind, n)]
        builtin = row.get("builtin", "*nothing*")
        ours = row.get("widgettrace", "*nothing*")
        lines.append(f"| {label} | {builtin} | {ours} |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, help="also write the Markdown here")
    args = parser.parse_args()
    lines: list[str] = []
    for mode in ("legacy", "auto"):
        lines.extend(_table(mode))
        lines.append("")
    lines.append(
        "Metrics: built-in none; widgettrace `mcp.client.operation.duration`, "
        "`mcp.server.operation.duration`, `mcp.client.session.duration`, "
        "`mcp.server.session.duration` (s, the conventions' buckets) when a MeterProvider is set."
    )
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
