"""The reading side at scale: standup on a 1,000,000-event log, and alert latency.

Rows (``results/insights.json``), each measured by running the real CLI as a subprocess:

* ``cat`` of the log to /dev/null: the baseline, reading the file's bytes once;
* the first ``widgettrace standup`` (no derived tables yet: parses everything), with its ratio
  to ``cat`` from the same round;
* the next ``standup`` after 10,000 more events were appended (incremental);
* a ``standup`` with nothing new (the queries alone);
* then ``journeys --user``, the first view that reads single spans: it writes the span rows the
  ingestion deferred (a second read of the log's transactions);
* alert latency: from an error line's write (a new issue each time) to the webhook receiver's
  receipt, ``widgettrace watch --interval 0.2``, over 20 alerts (p50 and max).

The log comes from ``gen_log.py``: 90% transactions with 10 spans, 10% errors over 200 issues,
20 releases, 500 users. Wall time and the child's CPU time (user + system) are both recorded:
on a loaded machine the wall time includes waiting for a core.

    .venv/bin/python benchmarks/bench_insights.py            # 1,000,000 events, 3 rounds
    .venv/bin/python benchmarks/bench_insights.py --quick    # 100,000 events, 3 rounds
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gen_log
from _harness import bench_args, command_line, format_rows, machine_info, write_result

CLI = [sys.executable, "-m", "widgettrace"]


def _timed(cmd: list[str], **kwargs: Any) -> tuple[float, float]:
    """(wall seconds, child CPU seconds) of one command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, **kwargs)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def _row(case: str, samples: list[float], unit: str, baseline: float | None = None,
         **extra: Any) -> dict[str, Any]:
    median = statistics.median(samples)
    return {
        "case": case, "median": median, "min": min(samples), "max": max(samples),
        "unit": unit, "ratio": median / baseline if baseline else None, "n": len(samples),
        **extra,
    }


def standup_rounds(log: Path, events: int, rounds: int) -> list[dict[str, Any]]:
    cat, first, first_cpu, second, second_cpu, idle, ratios = [], [], [], [], [], [], []
    spans, spans_cpu = [], []
    store = log.with_name(log.name + ".insights.duckdb")
    base = log.with_name("base.log")
    gen_log.generate(base, events, seed=1)
    for _ in range(rounds):
        # Same bytes every round: the base log, then 10,000 events appended.
        subprocess.run(["cp", str(base), str(log)], check=True)
        # The copy's 2.8 GB of dirty pages are written back now, not by the kernel's flusher
        # threads while the timed commands run.
        os.sync()
        for leftover in (store, store.with_name(store.name + ".wal")):
            leftover.unlink(missing_ok=True)
        wall, _ = _timed(["cat", str(log)])
        cat.append(wall)
        wall, cpu = _timed([*CLI, "standup", str(log)])
        first.append(wall)
        first_cpu.append(cpu)
        ratios.append(wall / cat[-1])
        gen_log.generate(log, 10_000, append=True, seed=2, span_hours=0.2)
        os.sync()
        wall, cpu = _timed([*CLI, "standup", str(log)])
        second.append(wall)
        second_cpu.append(cpu)
        wall, _ = _timed([*CLI, "standup", str(log)])
        idle.append(wall)
        # The first view that reads single spans writes their rows (deferred at ingestion).
        wall, cpu = _timed([*CLI, "journeys", str(log), "--user", "user-7"])
        spans.append(wall)
        spans_cpu.append(cpu)
    size = log.stat().st_size
    return [
        _row("cat log > /dev/null", cat, "s", bytes=size),
        _row("first standup (wall)", first, "s", statistics.median(cat), events=events),
        _row("first standup (CPU)", first_cpu, "s", statistics.median(cat)),
        _row("standup after +10,000 events (wall)", second, "s", statistics.median(cat)),
        _row("standup after +10,000 events (CPU)", second_cpu, "s"),
        _row("standup, nothing new (wall)", idle, "s"),
        _row("first standup / cat, per round", ratios, "x"),
        _row("then a first view reading spans: journeys --user (wall)", spans, "s"),
        _row("then a first view reading spans: journeys --user (CPU)", spans_cpu, "s"),
    ]


class _Hook(BaseHTTPRequestHandler):
    arrivals: ClassVar[list[tuple[float, str]]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Hook.arrivals.append((time.time(), body["text"]))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


def alert_latency(tmp: Path, n: int = 20) -> dict[str, Any]:
    log = tmp / "alerts.log"
    gen_log.generate(log, 10_000, seed=3, span_hours=1)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "WIDGETTRACE_"))}
    watch = subprocess.Popen([*CLI, "watch", str(log), "--webhook", url, "--interval", "0.2"],
                             env=env, stderr=subprocess.PIPE, text=True)
    latencies: list[float] = []
    try:
        assert watch.stderr is not None
        watch.stderr.readline()  # "watching ...": the baseline is read
        for i in range(n):
            written = time.time()
            gen_log.write_lines(log, [gen_log.error_event(written, f"BenchError{i}", "bench",
                                                          f"step_{i}")])
            deadline = time.time() + 30
            while not any(f"BenchError{i} " in text for _, text in _Hook.arrivals):
                if time.time() > deadline:
                    raise TimeoutError(f"alert {i} never arrived")
                time.sleep(0.005)
            at = next(t for t, text in _Hook.arrivals if f"BenchError{i} " in text)
            latencies.append(at - written)
            time.sleep(0.3)
    finally:
        watch.terminate()
        watch.wait(10)
        server.shutdown()
    return _row("alert latency (write -> webhook)", latencies, "s",
                p50=statistics.median(latencies), max_=max(latencies))


def main() -> None:
    args = bench_args(__doc__.splitlines()[0])
    events = 100_000 if args.quick else 1_000_000
    machine = machine_info(["duckdb"])
    with tempfile.TemporaryDirectory(prefix="bench-insights-") as tmp:
        rows = standup_rounds(Path(tmp) / "sentry.log", events, rounds=3)
        rows.append(alert_latency(Path(tmp)))
    path = write_result(
        "insights", rows, command_line(), machine=machine,
        notes=f"{events} events; load average at start {machine['loadavg']}",
    )
    print(format_rows(rows))
    print(f"written to {path}")


if __name__ == "__main__":
    main()
