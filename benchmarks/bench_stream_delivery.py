"""Span streaming under sustained load: 10,000 spans a second into a local receiver.

Run: ``.venv/bin/python benchmarks/bench_stream_delivery.py [--quick]`` from the repo root.
Starts ``benchmarks/e2e/sink.py`` (a counting Sentry ingest endpoint, its own process: it counts
every streamed span and segment and the client reports' drops), configures widgettrace with
``WIDGETTRACE_SENTRY_SPANS=stream`` against it over real HTTP, and ends 1,000 traces a second of
10 spans each (a SERVER root and 9 children: 10,000 spans/s) for 60 s (5 s with ``--quick``),
paced on the wall clock. Then ``force_flush`` and a wait until the sink's count stops moving.

Reported (``benchmarks/results/stream_delivery.json``): spans offered, delivered within the
window and in total (the goal: 100%), drops reported by client reports, unaccounted; the
achieved rate; and the sender's CPU per span: the CPU of every thread except the one ending the
spans (export thread, the SDK's transport worker; goal <= 20 us), and the application thread's
own CPU per span for comparison.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import sentry_sdk  # noqa: E402
from _harness import bench_args, command_line, format_rows, write_result  # noqa: E402
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.trace import SpanKind  # noqa: E402

from widgettrace.exporters.sentry import configure_sentry  # noqa: E402
from widgettrace.instrumentation._config import Settings  # noqa: E402

__all__ = ["main"]

RESOURCE = Resource.create({"service.name": "widgets-api", "service.version": "2.1.0"})
CHILDREN = 9
TRACES_PER_S = 1000


def _process_cpu() -> float:
    """User + system CPU seconds of this process, every thread."""
    times = os.times()
    return times.user + times.system


def _thread_cpu() -> dict[str, float]:
    """CPU seconds per live thread of this process, by thread name."""
    out: dict[str, float] = {}
    for thread in threading.enumerate():
        if thread.native_id is None:
            continue
        try:
            with open(f"/proc/self/task/{thread.native_id}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        seconds = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        out[thread.name] = out.get(thread.name, 0.0) + seconds
    return out


def _stats(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stats", timeout=5) as response:
        return dict(json.loads(response.read()))


def _start_sink() -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "benchmarks" / "e2e" / "sink.py")],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("PORT "):
        proc.kill()
        raise RuntimeError(f"sink did not start: {line!r}")
    return proc, int(line.split()[1])


def run(duration: float) -> dict[str, Any]:
    sink, port = _start_sink()
    try:
        settings = Settings(
            sentry_dsn=f"http://public@127.0.0.1:{port}/1",
            sentry_release="widgets@2.1.0",
            sentry_environment="bench",
            log_path=None,
            sentry_spans="stream",
            sentry_logs_level="OFF",
            sessions="off",
            queue_size=100_000,
        )
        processor = configure_sentry(settings, RESOURCE)
        assert processor is not None
        provider = TracerProvider(resource=RESOURCE, shutdown_on_exit=False)
        provider.add_span_processor(processor)
        tracer = provider.get_tracer("bench")
        attrs = {"http.request.method": "GET", "http.route": "/api/widgets/{id}"}
        child_attrs = {"widget.op": "widget.conversion", "widget.id": "w-7"}
        total = int(duration * TRACES_PER_S)
        cpu0, app0, wall0 = _process_cpu(), time.thread_time(), time.perf_counter()
        for i in range(total):
            with tracer.start_as_current_span(
                "GET /api/widgets/{id}", kind=SpanKind.SERVER, attributes=attrs
            ):
                for _ in range(CHILDREN):
                    with tracer.start_as_current_span("convert", attributes=child_attrs):
                        pass
            lead = wall0 + (i + 1) / TRACES_PER_S - time.perf_counter()
            if lead > 0:
                time.sleep(lead)
        window = time.perf_counter() - wall0
        in_window = _stats(port)["spans"]
        app_cpu = time.thread_time() - app0
        processor.force_flush(60_000)
        offered = total * (CHILDREN + 1)
        last, stable_since = -1, time.monotonic()
        while time.monotonic() - stable_since < 1.0:
            now = _stats(port)["spans"]
            if now != last:
                last, stable_since = now, time.monotonic()
            if now >= offered:
                break
            time.sleep(0.1)
        cpu = _process_cpu() - cpu0
        threads = _thread_cpu()
        stats = _stats(port)
        provider.shutdown()
        sentry_sdk.get_client().close(timeout=5)
    finally:
        sink.terminate()
        sink.wait(timeout=10)
    dropped = sum(v for k, v in stats["discarded"].items() if k.startswith("span:"))
    delivered = int(stats["spans"])
    return {
        "offered": offered,
        "window_s": window,
        "offered_per_s": offered / window,
        "delivered": delivered,
        "delivered_in_window": int(in_window),
        "delivered_pct": 100.0 * delivered / offered,
        "reported_dropped": dropped,
        "unaccounted": offered - delivered - dropped,
        "envelopes": stats["envelopes"],
        "sender_cpu_us_per_span": (cpu - app_cpu) / offered * 1e6,
        "app_thread_cpu_us_per_span": app_cpu / offered * 1e6,
        "thread_cpu_us_per_span": {
            name: seconds / offered * 1e6 for name, seconds in sorted(threads.items())
        },
    }


def main() -> None:
    args = bench_args(__doc__ or "")
    duration = 5.0 if args.quick else 60.0
    result = run(duration)
    rows = [
        {"case": "stream/offered_per_s", "unit": "spans/s", "median": result["offered_per_s"]},
        {"case": "stream/delivered_pct", "unit": "%", "median": result["delivered_pct"]},
        {
            "case": "stream/delivered_in_window_pct",
            "unit": "%",
            "median": 100.0 * result["delivered_in_window"] / result["offered"],
        },
        {
            "case": "stream/sender_cpu",
            "unit": "us/span",
            "median": result["sender_cpu_us_per_span"],
        },
        {
            "case": "stream/app_thread_cpu",
            "unit": "us/span",
            "median": result["app_thread_cpu_us_per_span"],
        },
    ]
    for row in rows:
        row.update({"min": None, "max": None, "ratio": None, "baseline": None, "n": 1})
    print(format_rows(rows))
    print(json.dumps(result, indent=2))
    path = write_result(
        "stream_delivery",
        rows,
        command_line(),
        notes=json.dumps(result),
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    threading.current_thread().name = "app"
    main()
