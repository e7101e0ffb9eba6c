"""Per-span CPU cost of exporting to Sentry: ours against the OTel baselines and sentry-sdk's own.

Run from the repository root::

    .venv/bin/python benchmarks/bench_spans.py [--quick]

Pipelines (one ``TracerProvider`` each, all measured interleaved in the same run):

* ``noop``: the OpenTelemetry API's no-op tracer;
* ``sdk``: the SDK with no span processor (the bare cost of a recording span);
* ``sdk_batch``: the SDK with a ``BatchSpanProcessor`` and an exporter that drops (the baseline
  of the goals: transactions <= 1.3x, streaming <= 1.1x);
* ``sdk_batch_otlp``: the same with an exporter that encodes each batch as OTLP protobuf (what
  the OTLP exporter does before its POST) and drops the bytes: a batch pipeline that builds its
  wire format, as both Sentry pipelines below do;
* ``sentry_sdk``: sentry-sdk 2.x's own ``SentrySpanProcessor`` (``instrumenter="otel"``);
* ``widgettrace``: our ``WidgetTraceSpanProcessor`` (transactions);
* ``widgettrace_stream``: our ``StreamSpanProcessor`` (``WIDGETTRACE_SENTRY_SPANS=stream``: span
  v2 items in the SDK's envelopes; goal: <= 1.1x ``sdk_batch``).

Both Sentry pipelines send to a transport that drops each envelope (the counterpart of the
dropping exporter), so what is measured is the processors, not a network. Each still pays for
what it does itself: sentry-sdk's processor its event preparation (``serialize``), ours the JSON
encoding of the transaction on its export thread.

Workloads: ``root`` (one root span per call) and ``tree`` (a root and 9 children per call,
reported per span). ``child`` is derived: (tree cost - root cost) / 9. Two clocks per sample:

* process CPU time (``time.process_time``, every thread), with ``provider.force_flush()`` inside
  the timed region, so background export threads are charged to their pipeline (case names
  ``<pipeline>/<workload>``): what a saturated one-core server pays in all;
* the application thread's own CPU time (``time.thread_time``, ``force_flush`` excluded; cases
  ``<pipeline>/<workload>.app``): what ending spans adds to the request that ends them, the
  cost the batch processor's design keeps small by leaving everything else to its thread.

Each pipeline runs in its own worker process, and the driver asks them for one sample at a time
in A B C D E A B C D E ... order (the others wait, blocked on a pipe): interleaved as before, but
no pipeline pays for another's heap (the garbage collector walks every live object of its
process, and sentry-sdk's processor keeps many alive) or for its idle background thread. The
workers are started afresh three times (6 rounds each): a process's memory layout can make
everything in it faster or slower for its whole life.

CPUs: with two or more, every worker (with its background threads) is pinned to one CPU and the
driver to another, so a pipeline's export thread competes with its application thread for the
same core, as in a one-process-per-core server, and no run depends on where the scheduler put
the threads (``--spread`` turns this off: on a shared 2-core VM that moved results by a third).
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sentry_sdk
from _harness import (
    bench_args,
    command_line,
    format_rows,
    pin_cpus,
    ratio_rows,
    stats_of,
    write_result,
)
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import SpanKind
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

from widgettrace.exporters._stream import StreamSpanProcessor
from widgettrace.exporters.sentry import WidgetTraceSpanProcessor

CHILDREN = 9
ROOT_ATTRS: dict[str, str | int] = {
    "http.request.method": "GET",
    "http.route": "/api/widgets/{id}",
    "url.path": "/api/widgets/7",
    "url.scheme": "http",
    "http.response.status_code": 200,
    "server.address": "127.0.0.1",
    "user_agent.original": "bench",
}
CHILD_ATTRS: dict[str, str | int] = {
    "widget.op": "widget.conversion",
    "widget.id": "w-7",
    "code.function.name": "f",
}


class _DropTransport(Transport):
    """Counts and drops each envelope."""

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.count = 0

    def capture_envelope(self, envelope: Envelope) -> None:
        self.count += 1


class _DropExporter(SpanExporter):
    def export(self, spans: Any) -> SpanExportResult:
        return SpanExportResult.SUCCESS


class _EncodeExporter(SpanExporter):
    """Encodes each batch as the OTLP exporter does (protobuf bytes), then drops them."""

    def export(self, spans: Any) -> SpanExportResult:
        from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans

        encode_spans(spans).SerializePartialToString()
        return SpanExportResult.SUCCESS


def _workloads(tracer: trace.Tracer) -> tuple[Callable[[], None], Callable[[], None]]:
    def root() -> None:
        with tracer.start_as_current_span(
            "GET /api/widgets/{id}", kind=SpanKind.SERVER, attributes=ROOT_ATTRS
        ):
            pass

    def tree() -> None:
        with tracer.start_as_current_span(
            "GET /api/widgets/{id}", kind=SpanKind.SERVER, attributes=ROOT_ATTRS
        ):
            for _ in range(CHILDREN):
                with tracer.start_as_current_span("convert", attributes=CHILD_ATTRS):
                    pass

    return root, tree


PIPELINES = (
    "noop",
    "sdk",
    "sdk_batch",
    "sdk_batch_otlp",
    "sentry_sdk",
    "widgettrace",
    "widgettrace_stream",
)
DSN = "http://public@127.0.0.1:9/1"


def _pipeline(name: str) -> tuple[TracerProvider | None, _DropTransport | None]:
    """The provider of one pipeline (None: the no-op tracer) and its Sentry transport."""
    if name == "noop":
        return None, None
    provider = TracerProvider()
    if name == "sdk_batch":
        provider.add_span_processor(BatchSpanProcessor(_DropExporter()))
    if name == "sdk_batch_otlp":
        provider.add_span_processor(BatchSpanProcessor(_EncodeExporter()))
    if name in ("sentry_sdk", "widgettrace", "widgettrace_stream"):
        # The transport must know the DSN: sentry-sdk's processor does nothing without one.
        transport = _DropTransport({"dsn": DSN})
        sentry_sdk.init(
            dsn=DSN,
            transport=transport,
            instrumenter="otel",
            traces_sample_rate=1.0,
            default_integrations=False,
            auto_enabling_integrations=False,
        )
        if name == "sentry_sdk":
            from sentry_sdk.integrations.opentelemetry import SentrySpanProcessor

            provider.add_span_processor(SentrySpanProcessor())
        elif name == "widgettrace_stream":
            provider.add_span_processor(
                StreamSpanProcessor(release="bench@1.0", environment="bench")
            )
        else:
            provider.add_span_processor(WidgetTraceSpanProcessor())
        return provider, transport
    return provider, None


def worker(name: str, cpu: int | None = None) -> None:
    """Serve samples of one pipeline: read ``<workload> <number>``, answer CPU seconds per call
    (``s``: the process, ``app``: this thread without the flush)."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})  # its export threads too (they inherit it)
    provider, transport = _pipeline(name)
    tracer = (
        trace.NoOpTracerProvider().get_tracer("bench")
        if provider is None
        else provider.get_tracer("bench")
    )
    root, tree = _workloads(tracer)
    workloads = {"root": root, "tree": tree}
    print("ready", flush=True)
    for line in sys.stdin:
        workload, number = line.split()
        fn = workloads[workload]
        n = int(number)
        gc.collect()
        start = time.process_time()
        app_start = time.thread_time()
        for _ in range(n):
            fn()
        app = time.thread_time() - app_start
        if provider is not None:
            provider.force_flush()
        print(json.dumps({"s": (time.process_time() - start) / n, "app": app / n}), flush=True)
    if transport is not None:
        print(json.dumps({"envelopes": transport.count}), flush=True)


class _Worker:
    def __init__(self, name: str, cpu: int | None) -> None:
        command = [sys.executable, str(Path(__file__).resolve()), "--worker", name]
        if cpu is not None:
            command.append(str(cpu))
        self.proc = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        if self._read() != "ready":
            raise RuntimeError(f"bench_spans worker {name} did not start")

    def _read(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def sample(self, workload: str, number: int) -> tuple[float, float]:
        """(process CPU, application thread CPU) seconds per call."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{workload} {number}\n")
        self.proc.stdin.flush()
        answer = json.loads(self._read())
        return float(answer["s"]), float(answer["app"])

    def close(self) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        tail = self._read()
        self.proc.wait(timeout=30)
        return int(json.loads(tail)["envelopes"]) if tail else 0


def _rows(stats: dict[str, Any], clock: str, rounds: int) -> list[dict[str, Any]]:
    """Per-span rows of one clock (``""``: process, ``".app"``: application thread): root and
    tree against ``sdk_batch``, and child derived from them."""
    per_span = {}
    for name in PIPELINES:
        per_span[f"{name}/root{clock}"] = stats[f"{name}/root{clock}"]
        per_span[f"{name}/tree{clock}"] = stats[f"{name}/tree{clock}"].scaled(1 / (CHILDREN + 1))
    rows = []
    for workload in ("root", "tree"):
        subset = {k: v for k, v in per_span.items() if k.endswith(f"/{workload}{clock}")}
        rows += ratio_rows(
            subset, unit="us/span", baseline=f"sdk_batch/{workload}{clock}", scale=1e6
        )

    # child = (tree - root) / CHILDREN, from medians (min/max are not meaningful differences).
    def child_of(name: str) -> float:
        tree = stats[f"{name}/tree{clock}"].median
        return float(tree - stats[f"{name}/root{clock}"].median) / CHILDREN

    base_child = child_of("sdk_batch")
    for name in PIPELINES:
        child = child_of(name)
        rows.append(
            {
                "case": f"{name}/child{clock}",
                "unit": "us/span",
                "median": child * 1e6,
                "min": None,
                "max": None,
                "baseline": f"sdk_batch/child{clock}",
                "ratio": child / base_child if base_child else None,
                "n": rounds,
                "derived": "(tree - root) / 9 from medians",
            }
        )
    return rows


def main() -> None:
    args = bench_args(
        __doc__ or "",
        flags=[("--spread", "do not pin the workers to one CPU and the driver to another")],
    )
    generations, rounds, number = (1, 5, 300) if args.quick else (3, 6, 2000)
    pins = None if args.spread else pin_cpus()
    if pins is not None:
        os.sched_setaffinity(0, {pins[0]})
    samples: dict[str, list[float]] = {
        f"{n}/{w}{clock}": [] for n in PIPELINES for w in ("root", "tree") for clock in ("", ".app")
    }
    envelopes = 0
    for _ in range(generations):
        # Fresh processes per generation: one process's memory layout can make everything in it
        # slower or faster for its whole life; several generations average that out.
        workers = {name: _Worker(name, pins[1] if pins else None) for name in PIPELINES}
        try:
            for round_no in range(rounds + 1):  # round 0 warms up
                for workload in ("root", "tree"):
                    for name, w in workers.items():
                        value, app = w.sample(workload, number)
                        if round_no:
                            samples[f"{name}/{workload}"].append(value)
                            samples[f"{name}/{workload}.app"].append(app)
        finally:
            for w in workers.values():
                envelopes += w.close()
    rounds *= generations
    stats = {case: stats_of(values) for case, values in samples.items()}
    rows = []
    for clock in ("", ".app"):
        rows += _rows(stats, clock, rounds)
    for row in rows:
        row["cpus"] = (
            f"workers pinned to CPU {pins[1]}, driver to CPU {pins[0]}" if pins else "not pinned"
        )
    print(format_rows(rows))
    path = write_result("spans", rows, command_line())
    print(f"wrote {path}; the Sentry transports saw {envelopes} envelopes")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        worker(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else None)
    else:
        main()
