"""Cost as work grows: CPU per span for traces of 1, 10, 100 and 1000 spans with 0, 10 and 50
attributes per span, the bare SDK with a batch processor against ours.

Run from the repository root::

    .venv/bin/python benchmarks/bench_scaling.py [--quick]

Pipelines (one ``TracerProvider`` each):

* ``sdk_batch``: the OTel SDK with a ``BatchSpanProcessor`` (queue large enough that nothing is
  dropped) and an exporter that drops every batch: the cost of recording and handing spans off;
* ``widgettrace``: our ``WidgetTraceSpanProcessor`` behind ``sentry_sdk.init`` with a transport
  that drops each envelope, so its grouping of the trace and the transaction's serialisation are
  measured, not a network. Skipped with a note when the processor is not importable.

One call = one trace: a SERVER root with ``spans - 1`` children, every span carrying
``attrs`` attributes (mixed strings, ints, floats, bools). For each (spans, attrs) pair the two
pipelines run interleaved (ABAB...) with ``provider.force_flush()`` inside the timed region, so
background export threads are paid for (process CPU time, every thread). Rows are microseconds
per span, with the ratio of ours to ``sdk_batch`` at the same size.

Writes ``benchmarks/results/scaling.json``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import bench_args, command_line, format_rows, interleaved, ratio_rows, write_result
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, Tracer

__all__ = ["ATTRS", "SPANS", "main"]

SPANS = (1, 10, 100, 1000)
ATTRS = (0, 10, 50)


class _DropExporter(SpanExporter):
    """Accepts and forgets every batch."""

    def export(self, spans: Any) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def _attributes(n: int) -> dict[str, Any]:
    values: tuple[Any, ...] = ("widget-value-0123456789", 42, 3.25, True)
    return {f"widget.attr_{i:02d}": values[i % len(values)] for i in range(n)}


def _workload(tracer: Tracer, spans: int, attrs: int) -> Callable[[], None]:
    root_attrs = {"http.request.method": "GET", "http.route": "/api/widgets", **_attributes(attrs)}
    child_attrs = _attributes(attrs)
    children = spans - 1

    def one_trace() -> None:
        with tracer.start_as_current_span(
            "GET /api/widgets", kind=SpanKind.SERVER, attributes=root_attrs
        ):
            for _ in range(children):
                with tracer.start_as_current_span("convert", attributes=child_attrs):
                    pass

    return one_trace


def _our_provider() -> tuple[TracerProvider | None, str | None]:
    try:
        import sentry_sdk
        from sentry_sdk.envelope import Envelope
        from sentry_sdk.transport import Transport

        from widgettrace.exporters.sentry import WidgetTraceSpanProcessor
    except ImportError as exc:
        return None, f"widgettrace case skipped: {exc}"

    class _DropTransport(Transport):
        def capture_envelope(self, envelope: Envelope) -> None:
            return None

    dsn = "http://public@127.0.0.1:9/1"
    sentry_sdk.init(
        dsn=dsn,
        transport=_DropTransport({"dsn": dsn}),
        traces_sample_rate=1.0,
        default_integrations=False,
        auto_enabling_integrations=False,
    )
    provider = TracerProvider()
    provider.add_span_processor(WidgetTraceSpanProcessor())
    return provider, None


def main(argv: Sequence[str] | None = None) -> int:
    args = bench_args(__doc__.split("\n", 1)[0] if __doc__ else "", argv)
    rounds, spans_per_sample = (3, 1000) if args.quick else (5, 8000)

    providers: dict[str, TracerProvider] = {}
    batch = TracerProvider()
    # Big enough that no span is dropped between flushes (a dropped span would look cheap).
    batch.add_span_processor(
        BatchSpanProcessor(_DropExporter(), max_queue_size=4 * spans_per_sample)
    )
    providers["sdk_batch"] = batch
    ours, note = _our_provider()
    if ours is not None:
        providers["widgettrace"] = ours
    else:
        print(note)

    rows: list[dict[str, Any]] = []
    for spans in SPANS:
        for attrs in ATTRS:
            size = f"spans={spans}/attrs={attrs}"
            cases = {
                f"{name}/{size}": _workload(p.get_tracer("bench"), spans, attrs)
                for name, p in providers.items()
            }
            finish = {f"{name}/{size}": p.force_flush for name, p in providers.items()}
            number = max(1, spans_per_sample // spans)
            stats = interleaved(cases, rounds=rounds, number=number, warmup=1, finish=finish)
            # Per span, in microseconds: a call is one trace of `spans` spans.
            rows += ratio_rows(
                stats,
                unit="us/span",
                baseline=f"sdk_batch/{size}",
                scale=1e6 / spans,
                extra={case: {"spans": spans, "attrs": attrs} for case in cases},
            )
            print(format_rows(rows[-len(cases) :]).split("\n", 1)[1], flush=True)

    for p in providers.values():
        p.shutdown()
    path = write_result(
        "scaling",
        rows,
        command_line(),
        notes=f"{rounds} rounds, ~{spans_per_sample} spans per sample"
        + (f"; {note}" if note else ""),
    )
    print(format_rows(rows))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
