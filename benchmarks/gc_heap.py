"""What an instrumented process leaves for the garbage collector: tracked objects after start-up
and the time of one full collection (the pause every request waiting behind it sees).

Run it under each setup and compare, e.g.::

    .venv/bin/opentelemetry-instrument .venv/bin/python benchmarks/gc_heap.py
    .venv-bench/bin/opentelemetry-instrument .venv-bench/bin/python benchmarks/gc_heap.py
    .venv/bin/python benchmarks/gc_heap.py        # no instrumentation

(with ``OTEL_METRICS_EXPORTER=none OTEL_LOGS_EXPORTER=none`` and, for ours, a ``SENTRY_DSN``).
"""

from __future__ import annotations

import gc
import statistics
import sys
import time

import fastapi  # noqa: F401  (what the example services import)


def main() -> None:
    gc.collect()
    pauses = []
    for _ in range(5):
        start = time.perf_counter()
        gc.collect()
        pauses.append((time.perf_counter() - start) * 1000)
    print(
        f"tracked objects {len(gc.get_objects())}, modules {len(sys.modules)}, "
        f"full collection {statistics.median(pauses):.1f} ms (median of 5), "
        f"mcp imported: {'mcp' in sys.modules}"
    )


if __name__ == "__main__":
    main()
