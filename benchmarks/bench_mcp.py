"""Round trip of one MCP tool call: widgettrace's instrumentation vs none vs mcp's built-in tracing.

Run from the repository root::

    .venv/bin/python benchmarks/bench_mcp.py [--quick]

Scenario: an in-process ``mcp`` client calls an async tool ``add`` on an ``MCPServer`` and waits
for the result, over two in-process transports:

* ``memory``: JSON-RPC over anyio memory streams (``Client(server, mode="legacy")``): the full
  dispatcher, serialisation and validation path stdio and HTTP use, minus the OS;
* ``direct``: the ``DirectDispatcher`` (``Client(server)``, 2026-07-28 protocol, no JSON-RPC);
* ``stdio``: a real subprocess server (``_mcp_stdio_server.py``, traced the same way as the
  client) over pipes; wall time per round trip, since half the work is in the other process.

Cases, measured interleaved (A B C A B C ...) in the same process:

* ``uninstrumented``: mcp's own OpenTelemetry switched off (its server middleware removed, its
  client span and ``_meta`` injection replaced by no-ops): the goal's baseline;
* ``mcp_builtin``: mcp 2.3.0 as shipped, its tracer on an SDK provider;
* ``widgettrace``: ``McpInstrumentor`` (which switches the built-in off and records a CLIENT and
  a SERVER span per call, the context in ``_meta``), no ``MeterProvider`` configured (the
  default: the histograms go to the API's no-op meter);
* ``widgettrace_metrics``: the same with an SDK ``MeterProvider``, so the two duration histograms
  are recorded too (the built-in records no metrics);
* ``widgettrace_unsampled``: the same with an ``ALWAYS_OFF`` sampler: our wrappers, propagation
  and non-recording spans, without the SDK's cost of recording and exporting two spans. The
  difference to ``widgettrace`` is what the SDK charges per recorded span on this machine.

Spans go to one SDK ``TracerProvider`` (the same for ``mcp_builtin`` and ``widgettrace``) with a
``BatchSpanProcessor`` and an exporter that drops them, as a production pipeline would: the
provider is flushed inside the timed region, so the export thread's CPU is paid by the sample;
metrics to an SDK ``MeterProvider`` with an in-memory reader. Each sample is ``number`` round
trips on a session opened for that sample (outside the timing), after switching the case's
instrumentation on; it records both the process CPU time (``time.process_time``, all threads:
rows ``memory/...``, ``direct/...``) and the wall time (rows ``memory-wall/...``,
``direct-wall/...``) per round trip. Medians over the rounds, min-max, ratio to
``uninstrumented`` (goal: ``widgettrace`` <= 1.3x).
"""

from __future__ import annotations

import contextlib
import gc
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import anyio
import mcp.shared._otel as mcp_otel
import mcp.shared.jsonrpc_dispatcher as jd
from _harness import bench_args, command_line, format_rows, ratio_rows, stats_of, write_result
from mcp import Client, StdioServerParameters
from mcp.server._otel import OpenTelemetryMiddleware
from mcp.server.mcpserver import MCPServer
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import INVALID_SPAN

from widgettrace.instrumentation.mcp import McpInstrumentor

CASES = (
    "uninstrumented",
    "mcp_builtin",
    "widgettrace",
    "widgettrace_metrics",
    "widgettrace_unsampled",
)
TRANSPORTS = {"memory": "legacy", "direct": "auto"}


class _DropExporter(SpanExporter):
    def __init__(self) -> None:
        self.count = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.count += len(spans)
        return SpanExportResult.SUCCESS


def _server() -> MCPServer:
    server = MCPServer("bench")

    @server.tool()
    async def add(a: int, b: int) -> int:
        return a + b

    return server


@contextlib.contextmanager
def _noop_span(*_args: Any, **_kwargs: Any) -> Iterator[Any]:
    yield INVALID_SPAN


def _no_inject(meta: dict[str, Any]) -> None:
    return None


class Setup:
    def __init__(self) -> None:
        self.exporter = _DropExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(BatchSpanProcessor(self.exporter))
        self.meters = MeterProvider(metric_readers=[InMemoryMetricReader()])
        # Everything but recording: our wrappers, ids, propagation, non-recording spans.
        self.unsampled = TracerProvider(sampler=ALWAYS_OFF)
        self.instrumentor = McpInstrumentor()
        self._saved_tracer = mcp_otel._tracer
        self._saved_span = vars(jd)["otel_span"]
        self._saved_inject = vars(jd)["inject_trace_context"]
        self.spans_per_case: dict[str, int] = {}

    def switch(self, case: str, server: MCPServer) -> None:
        """Put mcp in the state of ``case`` (outside the timing)."""
        if self.instrumentor.is_instrumented_by_opentelemetry:
            self.instrumentor.uninstrument()
        low = server._lowlevel_server
        builtin = [m for m in low.middleware if isinstance(m, OpenTelemetryMiddleware)]
        if case == "uninstrumented":
            low.middleware = [m for m in low.middleware if m not in builtin]
            setattr(jd, "otel_span", _noop_span)  # noqa: B010 (not re-exported by mcp)
            setattr(jd, "inject_trace_context", _no_inject)  # noqa: B010
        else:
            if not builtin:
                low.middleware.insert(0, OpenTelemetryMiddleware())
            setattr(jd, "otel_span", self._saved_span)  # noqa: B010
            setattr(jd, "inject_trace_context", self._saved_inject)  # noqa: B010
            mcp_otel._tracer = self.provider.get_tracer("mcp-python-sdk")
            if case == "widgettrace":
                # No MeterProvider configured (widgettrace's default pipeline): no-op meters.
                self.instrumentor.instrument(tracer_provider=self.provider)
            elif case == "widgettrace_metrics":
                self.instrumentor.instrument(
                    tracer_provider=self.provider, meter_provider=self.meters
                )
            elif case == "widgettrace_unsampled":
                self.instrumentor.instrument(tracer_provider=self.unsampled)

    def restore(self) -> None:
        if self.instrumentor.is_instrumented_by_opentelemetry:
            self.instrumentor.uninstrument()
        mcp_otel._tracer = self._saved_tracer
        setattr(jd, "otel_span", self._saved_span)  # noqa: B010
        setattr(jd, "inject_trace_context", self._saved_inject)  # noqa: B010


async def _sample(setup: Setup, case: str, mode: str, number: int) -> tuple[float, float]:
    server = _server()
    setup.switch(case, server)
    before = setup.exporter.count
    async with Client(server, mode=mode) as client:
        await client.call_tool("add", {"a": 1, "b": 2})  # warm the session
        setup.provider.force_flush()
        gc.collect()
        start = time.process_time()
        wall = time.perf_counter()
        for _ in range(number):
            await client.call_tool("add", {"a": 1, "b": 2})
        setup.provider.force_flush()
        wall = time.perf_counter() - wall
        elapsed = time.process_time() - start
    setup.spans_per_case[case] = setup.exporter.count - before
    return elapsed / number, wall / number


def run(rounds: int, number: int) -> tuple[list[dict[str, Any]], dict[str, int]]:
    setup = Setup()
    rows: list[dict[str, Any]] = []
    spans: dict[str, int] = {}
    try:
        for transport, mode in TRANSPORTS.items():
            samples: dict[str, list[tuple[float, float]]] = {case: [] for case in CASES}

            async def one_round(
                samples: dict[str, list[tuple[float, float]]] = samples, mode: str = mode
            ) -> None:
                for case in CASES:
                    samples[case].append(await _sample(setup, case, mode, number))

            anyio.run(one_round)  # warm-up round, discarded
            samples = {case: [] for case in CASES}
            for _ in range(rounds):
                anyio.run(one_round, samples)
            stats = {
                f"{transport}/{case}": stats_of([c for c, _ in v]) for case, v in samples.items()
            }
            walls = {
                f"{transport}-wall/{case}": stats_of([w for _, w in v])
                for case, v in samples.items()
            }
            for case in CASES:
                spans[f"{transport}/{case}"] = setup.spans_per_case.get(case, 0)
            rows.extend(
                ratio_rows(
                    stats,
                    unit="us/call",
                    baseline=f"{transport}/uninstrumented",
                    scale=1e6,
                    extra={key: {"spans_per_session": spans[key]} for key in stats},
                )
            )
            rows.extend(
                ratio_rows(
                    walls,
                    unit="us/call (wall)",
                    baseline=f"{transport}-wall/uninstrumented",
                    scale=1e6,
                )
            )
    finally:
        setup.restore()
    return rows, spans


def run_stdio(rounds: int, number: int) -> list[dict[str, Any]]:
    """Wall time per round trip to a stdio subprocess server traced the same way as the client.

    One session (and server process) per case, opened in that case's mode; the rounds then
    switch the client side's mode and time ``number`` calls on that case's session.
    """
    setup = Setup()
    script = Path(__file__).resolve().parent / "_mcp_stdio_server.py"
    samples: dict[str, list[float]] = {case: [] for case in CASES}

    async def main() -> None:
        async with contextlib.AsyncExitStack() as stack:
            clients: dict[str, Client] = {}
            for case in CASES:
                setup.switch(case, _server())
                params = StdioServerParameters(command=sys.executable, args=[str(script), case])
                clients[case] = await stack.enter_async_context(Client(params, mode="legacy"))
            for round_no in range(rounds + 1):  # round 0 warms up
                for case in CASES:
                    setup.switch(case, _server())
                    client = clients[case]
                    await client.call_tool("add", {"a": 1, "b": 2})
                    gc.collect()
                    start = time.perf_counter()
                    for _ in range(number):
                        await client.call_tool("add", {"a": 1, "b": 2})
                    if round_no:
                        samples[case].append((time.perf_counter() - start) / number)

    try:
        anyio.run(main)
    finally:
        setup.restore()
    stats = {f"stdio/{case}": stats_of(v) for case, v in samples.items()}
    return ratio_rows(stats, unit="us/call (wall)", baseline="stdio/uninstrumented", scale=1e6)


def main(argv: Sequence[str] | None = None) -> int:
    args = bench_args(__doc__ or "", argv)
    rounds, number = (3, 30) if args.quick else (9, 150)
    rows, _spans = run(rounds, number)
    rows.extend(run_stdio(rounds, number))
    print(format_rows(rows))
    path = write_result(
        "mcp",
        rows,
        command_line(),
        notes="CPU (memory/, direct/) and wall (*-wall/, stdio/) time per tool-call round trip "
        "(client + in-process server; stdio: subprocess server); median of interleaved rounds; "
        "BatchSpanProcessor + dropping exporter, flushed inside the timing; "
        "baseline: mcp's own tracing off.",
    )
    print(f"wrote {path}")
    ours = [f"{r['case']} {r['ratio']:.2f}x" for r in rows if r["case"].endswith("/widgettrace")]
    print(f"widgettrace / uninstrumented: {', '.join(ours)} (goal <= 1.3x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
