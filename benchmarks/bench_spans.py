"""Per-span CPU cost of exporting to Sentry: ours against the OTel baselines and sentry-sdk's own.

Run from the repository root::

    .venv/bin/python benchmarks/bench_spans.py [--quick]

Pipelines (one ``TracerProvider`` each, all measured interleaved in the same run):

* ``noop``: the OpenTelemetry API's no-op tracer;
* ``sdk``: the SDK with no span processor (the bare cost of a recording span);
* ``sdk_batch``: the SDK with a ``BatchSpanProcessor`` and an exporter that drops (the baseline
  of the goal: ours <= 1.3x);
* ``sentry_sdk``: sentry-sdk 2.x's own ``SentrySpanProcessor`` (``instrumenter="otel"``);
* ``widgettrace``: our ``WidgetTraceSpanProcessor``.

Both Sentry pipelines send to a transport that drops each envelope (the counterpart of the
dropping exporter), so what is measured is the processors, not a network. Each still pays for
what it does itself: sentry-sdk's processor its event preparation (``serialize``), ours the JSON
encoding of the transaction on its export thread.

Workloads: ``root`` (one root span per call) and ``tree`` (a root and 9 children per call,
reported per span). ``child`` is derived: (tree cost - root cost) / 9. Time is process CPU time
(``time.process_time``, every thread), with ``provider.force_flush()`` inside the timed region,
so background export threads are charged to their pipeline.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sentry_sdk
from _harness import (
    bench_args,
    command_line,
    format_rows,
    interleaved,
    ratio_rows,
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


def main() -> None:
    args = bench_args(__doc__ or "")
    rounds, number = (5, 300) if args.quick else (15, 2000)

    dsn = "http://public@127.0.0.1:9/1"
    # The transport must know the DSN: sentry-sdk's processor does nothing without one.
    transport = _DropTransport({"dsn": dsn})
    sentry_sdk.init(
        dsn=dsn,
        transport=transport,
        instrumenter="otel",
        traces_sample_rate=1.0,
        default_integrations=False,
        auto_enabling_integrations=False,
    )
    from sentry_sdk.integrations.opentelemetry import SentrySpanProcessor

    batch, sentry_native, ours = TracerProvider(), TracerProvider(), TracerProvider()
    batch.add_span_processor(BatchSpanProcessor(_DropExporter()))
    sentry_native.add_span_processor(SentrySpanProcessor())
    ours.add_span_processor(WidgetTraceSpanProcessor())
    providers: dict[str, TracerProvider | None] = {
        "noop": None,
        "sdk": TracerProvider(),
        "sdk_batch": batch,
        "sentry_sdk": sentry_native,
        "widgettrace": ours,
    }

    cases: dict[str, Callable[[], None]] = {}
    finish: dict[str, Callable[[], object]] = {}
    for name, provider in providers.items():
        tracer = (
            trace.NoOpTracerProvider().get_tracer("bench")
            if provider is None
            else provider.get_tracer("bench")
        )
        root, tree = _workloads(tracer)
        cases[f"{name}/root"] = root
        cases[f"{name}/tree"] = tree
        if provider is not None:
            finish[f"{name}/root"] = finish[f"{name}/tree"] = provider.force_flush

    stats = interleaved(cases, rounds=rounds, number=number, finish=finish)
    per_span = {}
    for name in providers:
        root_s = stats[f"{name}/root"]
        tree_s = stats[f"{name}/tree"]
        per_span[f"{name}/root"] = root_s
        per_span[f"{name}/tree"] = tree_s.scaled(1 / (CHILDREN + 1))
    rows = []
    for workload in ("root", "tree"):
        subset = {k: v for k, v in per_span.items() if k.endswith("/" + workload)}
        rows += ratio_rows(subset, unit="us/span", baseline=f"sdk_batch/{workload}", scale=1e6)
    # child = (tree - root) / CHILDREN, from medians (min/max are not meaningful differences).
    base_child = (stats["sdk_batch/tree"].median - stats["sdk_batch/root"].median) / CHILDREN
    for name in providers:
        child = (stats[f"{name}/tree"].median - stats[f"{name}/root"].median) / CHILDREN
        rows.append(
            {
                "case": f"{name}/child",
                "unit": "us/span",
                "median": child * 1e6,
                "min": None,
                "max": None,
                "baseline": "sdk_batch/child",
                "ratio": child / base_child if base_child else None,
                "n": rounds,
                "derived": "(tree - root) / 9 from medians",
            }
        )
    print(format_rows(rows))
    path = write_result("spans", rows, command_line())
    print(f"wrote {path}; transport saw {transport.count} envelopes")


if __name__ == "__main__":
    main()
