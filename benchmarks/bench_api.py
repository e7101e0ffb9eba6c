"""Cost of widgettrace's hot-path API and function-tracing wrapper against their baselines.

Run from the repository root::

    .venv/bin/python benchmarks/bench_api.py [--quick]

Groups (each measured interleaved, medians of the rounds, ratio against the group's baseline):

1. ``sdk_span`` (baseline) vs ``api_span``: ``with tracer.start_as_current_span(...)`` against
   ``with widgettrace.span(...)``, both recording on an SDK provider with no processor (the
   exporting pipeline is the same for both and measured elsewhere); plus the typed helper
   ``api_discovery_span`` against ``sdk_span_attrs`` (the same span and attributes by hand).
2. ``plain_call`` (baseline) vs ``traced_below_min``: a function traced by
   ``WIDGETTRACE_TRACE_FUNCTIONS`` with ``WIDGETTRACE_TRACE_MIN_DURATION_MS=1`` called below
   the threshold. The row ``overhead_below_min`` is the difference (goal: <= 1 us a call).
3. ``noop_tracer`` (baseline) vs ``api_span_unsampled``: the OpenTelemetry no-op tracer's
   ``start_as_current_span`` against our span on an SDK provider whose sampler drops it
   (goal: <= 1.7x). ``sdk_span_unsampled`` is the bare SDK in the same situation.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

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
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased

from widgettrace.instrumentation import api
from widgettrace.instrumentation import semconv as sc
from widgettrace.instrumentation.functions import FunctionsInstrumentor


def main() -> None:
    args = bench_args(__doc__ or "")
    rounds, number = (5, 2000) if args.quick else (21, 20000)
    rows: list[dict[str, Any]] = []

    # 1. recording spans -----------------------------------------------------------------------
    provider = TracerProvider()
    sdk = provider.get_tracer("bench")
    api.set_tracer_provider(provider)

    def sdk_span() -> None:
        with sdk.start_as_current_span("work"):
            pass

    def api_span() -> None:
        with api.span("work"):
            pass

    def sdk_span_attrs() -> None:
        with sdk.start_as_current_span("discover hub") as s:
            s.set_attributes(
                {
                    sc.WIDGET_OP: sc.WIDGET_OP_DISCOVERY,
                    sc.WIDGET_DISCOVERY_SOURCE: "hub",
                    sc.WIDGET_DISCOVERY_QUERY: "q",
                }
            )
            s.set_attribute(sc.WIDGET_OUTCOME, sc.WIDGET_OUTCOME_SUCCESS)

    def api_discovery_span() -> None:
        with api.discovery_span("hub", query="q"):
            pass

    stats = interleaved({"sdk_span": sdk_span, "api_span": api_span}, rounds=rounds, number=number)
    rows += ratio_rows(stats, unit="us/span", baseline="sdk_span", scale=1e6)
    stats = interleaved(
        {"sdk_span_attrs": sdk_span_attrs, "api_discovery_span": api_discovery_span},
        rounds=rounds,
        number=number,
    )
    rows += ratio_rows(stats, unit="us/span", baseline="sdk_span_attrs", scale=1e6)

    # 2. function wrapper below the minimum duration -------------------------------------------
    module = types.ModuleType("bench_traced_module")
    exec("def work(x):\n    return x + 1\n", module.__dict__)
    module.work.__module__ = module.__name__
    sys.modules[module.__name__] = module
    plain_module = types.ModuleType("bench_plain_module")
    exec("def work(x):\n    return x + 1\n", plain_module.__dict__)
    instrumentor = FunctionsInstrumentor()
    instrumentor.instrument(
        tracer_provider=provider, trace_functions=f"{module.__name__}:work", min_duration_ms=1
    )
    traced_work = module.work
    plain_work = plain_module.work
    assert traced_work is not plain_work
    assert hasattr(traced_work, "__wrapped__")

    def plain_call() -> None:
        plain_work(1)

    def traced_below_min() -> None:
        traced_work(1)

    stats = interleaved(
        {"plain_call": plain_call, "traced_below_min": traced_below_min},
        rounds=rounds,
        number=number * 5,
    )
    fn_rows = ratio_rows(stats, unit="us/call", baseline="plain_call", scale=1e6)
    overhead = [
        (t - p) * 1e6
        for t, p in zip(stats["traced_below_min"].samples, stats["plain_call"].samples, strict=True)
    ]
    overhead.sort()
    fn_rows.append(
        {
            "case": "overhead_below_min",
            "unit": "us/call",
            "median": overhead[len(overhead) // 2],
            "min": overhead[0],
            "max": overhead[-1],
            "baseline": "plain_call",
            "ratio": None,
            "goal": "<= 1 us/call",
        }
    )
    rows += fn_rows
    instrumentor.uninstrument()

    # 3. unsampled spans against the no-op tracer ---------------------------------------------
    dropping = TracerProvider(sampler=ParentBased(ALWAYS_OFF))
    sdk_off = dropping.get_tracer("bench")
    noop = trace.NoOpTracer()
    api.set_tracer_provider(dropping)

    def noop_tracer() -> None:
        with noop.start_as_current_span("work"):
            pass

    def api_span_unsampled() -> None:
        with api.span("work"):
            pass

    def sdk_span_unsampled() -> None:
        with sdk_off.start_as_current_span("work"):
            pass

    stats = interleaved(
        {
            "noop_tracer": noop_tracer,
            "api_span_unsampled": api_span_unsampled,
            "sdk_span_unsampled": sdk_span_unsampled,
        },
        rounds=rounds,
        number=number,
    )
    unsampled = ratio_rows(stats, unit="us/span", baseline="noop_tracer", scale=1e6)
    for row in unsampled:
        if row["case"] == "api_span_unsampled":
            row["goal"] = "<= 1.7x"
    rows += unsampled
    api.set_tracer_provider(None)

    print(format_rows(rows))
    path = write_result("api", rows, command_line())
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
