"""Delivery under load: transactions sent at a target rate vs received by a local Sentry receiver.

Run: ``.venv/bin/python benchmarks/bench_delivery.py [--quick]`` from the repo root. Starts the
test suite's ``SentryReceiver`` in its own process (its lean counting mode: no relay normalisation,
no payloads kept or even JSON-decoded, client-report drop counts kept), configures widgettrace's
Sentry processor against it, ends root-only transactions at 1,000 a second for 60 s (the issue's
"a minute"; 5 s with --quick), waits for the transport to drain, and writes
``benchmarks/results/delivery.json``. Per case: offered and delivered rates, how many arrived
within the sending window vs in total, drops counted by client reports, unaccounted, and the CPU
of the sending process (per thread) and of the receiver process.

Cases, interleaved (one round: each case once, in turn, so machine drift hits them alike):

* sentry-sdk's own ``HttpTransport`` (urllib3), at 1,000/s and at 500/s (a rate it keeps up with);
* widgettrace's default HTTP transport (what ``configure_sentry`` picks for a DSN:
  ``exporters._delivery.DeliveryHttpTransport``: priority queues, concurrent senders sized from
  the measured round trip, over ``exporters._http``'s kept-alive connections);
* both again with 50 ms and 200 ms added to every answer (the receiver's ``slow`` fault: a
  Sentry far away), at 1,000/s offered: envelopes per second delivered and sender CPU per
  envelope show whether delivery waits a round trip per envelope.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import sentry_sdk  # noqa: E402
from _harness import bench_args, command_line, write_result  # noqa: E402
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from sentry_sdk.transport import HttpTransport  # noqa: E402

from widgettrace.exporters.sentry import configure_sentry  # noqa: E402
from widgettrace.instrumentation._config import Settings  # noqa: E402

__all__ = ["main"]

RESOURCE = Resource.create({"service.name": "widgets-api", "service.version": "2.1.0"})


# The receiver runs in its own process: in ours it would share the GIL with the sender.
# It answers "counts" on stdin with one JSON line: items per type and client-report drops.
_RECEIVER = """
import json, sys
from receivers import sentry_receiver
from receivers.sentry_receiver import SentryReceiver
# Without TCP_NODELAY every response can cost 40 ms (Nagle plus the client's delayed ACK).
sentry_receiver._Handler.disable_nagle_algorithm = True
with SentryReceiver(normalize=False, keep_payloads=False) as server:
    if float(sys.argv[1]) > 0:
        server.set_fault("slow", delay=float(sys.argv[1]))
    print(server.dsn, flush=True)
    for line in sys.stdin:
        dropped = sum(n for (_r, cat), n in server.discarded().items() if cat == "transaction")
        print(json.dumps({"counts": server.counts(), "dropped": dropped}), flush=True)
"""


class _Receiver:
    def __init__(self, delay_s: float = 0.0) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _RECEIVER, str(delay_s)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=str(ROOT / "tests"),
        )
        assert self.proc.stdout is not None
        self.dsn = self.proc.stdout.readline().strip()

    def query(self) -> tuple[int, int]:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write("counts\n")
        self.proc.stdin.flush()
        doc = json.loads(self.proc.stdout.readline())
        return int(doc["counts"].get("transaction", 0)), int(doc["dropped"])

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int, tid: int | None = None) -> float:
    """User + system CPU seconds of a process (all its threads, dead ones too) or one thread."""
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return 0.0
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _thread_cpu() -> dict[str, float]:
    """CPU seconds per live thread of this process, by thread name."""
    out: dict[str, float] = {}
    for thread in threading.enumerate():
        if thread.native_id is not None:
            out[thread.name] = out.get(thread.name, 0.0) + _cpu_s(os.getpid(), thread.native_id)
    return out


def _default_class() -> type[HttpTransport]:
    try:
        from widgettrace.exporters._delivery import http_transport_class
    except ImportError:
        return HttpTransport
    chosen = http_transport_class({})
    return chosen if isinstance(chosen, type) else HttpTransport


def run(rate: float, seconds: float, transport: Any = None, delay_s: float = 0.0) -> dict[str, Any]:
    server = _Receiver(delay_s)
    try:
        settings = replace(
            Settings(log_path=None, sentry_environment="bench", sentry_release="widgets@1.0"),
            sentry_dsn=server.dsn,
        )
        processor = configure_sentry(settings, RESOURCE, transport=transport)
        assert processor is not None
        provider = TracerProvider(resource=RESOURCE, shutdown_on_exit=False)
        provider.add_span_processor(processor)
        tracer = provider.get_tracer("bench")
        total = int(rate * seconds)
        threads_before = _thread_cpu()
        sender0, receiver0 = _cpu_s(os.getpid()), _cpu_s(server.proc.pid)
        start = time.perf_counter()
        for i in range(total):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            with tracer.start_as_current_span("GET /api/widgets/status") as span:
                span.set_attribute("http.request.method", "GET")
                span.set_attribute("http.route", "/api/widgets/status")
        send_s = time.perf_counter() - start
        in_window = server.query()[0]
        client = sentry_sdk.get_client()
        transport_name = type(client.transport).__name__
        provider.force_flush()
        client.flush(timeout=60)
        # Until all arrived, or nothing more arrives for a second (the rest was dropped).
        deadline = time.monotonic() + 60
        last, arrived_at = -1, time.perf_counter()
        while time.monotonic() < deadline:
            count = server.query()[0]
            if count != last:
                last, arrived_at = count, time.perf_counter()
            if count >= total or time.perf_counter() - arrived_at > 1.0:
                break
            time.sleep(0.05)
        end_s = arrived_at - start  # at the last arrival
        delivered = server.query()[0]
        threads_after = _thread_cpu()  # before close(): the SDK's worker thread is still alive
        sender_cpu = _cpu_s(os.getpid()) - sender0
        receiver_cpu = _cpu_s(server.proc.pid) - receiver0
        provider.shutdown()
        client.close(timeout=5)
        time.sleep(0.5)
        dropped = server.query()[1]
        threads = {
            name: round(cpu - threads_before.get(name, 0.0), 2)
            for name, cpu in threads_after.items()
            if cpu - threads_before.get(name, 0.0) >= 0.01
        }
        return {
            "sent": total,
            "delivered": delivered,
            "delivered_in_window": in_window,
            "dropped_counted": dropped,
            "unaccounted": total - delivered - dropped,
            "send_s": round(send_s, 2),
            "end_to_end_s": round(end_s, 2),
            "offered_per_s": round(total / send_s, 1),
            "delivered_in_window_per_s": round(in_window / send_s, 1),
            "delivered_per_s": round(delivered / end_s, 1),
            "sender_cpu_s": round(sender_cpu, 2),
            "sender_threads_cpu_s": threads,
            "receiver_cpu_s": round(receiver_cpu, 2),
            "sender_cpu_us_per_tx": round(sender_cpu / total * 1e6),
            "receiver_cpu_us_per_tx": round(receiver_cpu / total * 1e6),
            "transport": transport_name,
        }
    finally:
        server.close()


def main() -> None:
    args = bench_args(__doc__ or "")
    seconds = 5.0 if args.quick else 60.0
    default = _default_class()
    ours = f"widgettrace default ({default.__name__})"
    cases: list[tuple[str, float, Any, float]] = [
        ("sentry-sdk HttpTransport", 1000.0, HttpTransport, 0.0),
        ("sentry-sdk HttpTransport", 500.0, HttpTransport, 0.0),
        (ours, 1000.0, None, 0.0),
        ("sentry-sdk HttpTransport", 1000.0, HttpTransport, 0.05),
        (ours, 1000.0, None, 0.05),
        (ours, 1000.0, None, 0.2),
    ]
    rows = []
    for label, rate, transport, delay in cases:
        res = run(rate, seconds, transport, delay)
        res["added_latency_ms"] = delay * 1000
        res["sender_cpu_us_per_delivered"] = round(
            res["sender_cpu_s"] / max(1, res["delivered"]) * 1e6
        )
        print(label, rate, delay, res, flush=True)
        rows.append(
            {
                "case": f"{label}: root-only transactions at {rate:.0f}/s for {seconds:.0f}s, "
                f"+{delay * 1000:.0f} ms",
                "unit": "tx/s delivered",
                "median": res["delivered_per_s"],
                "min": res["delivered_per_s"],
                "max": res["delivered_per_s"],
                "baseline": None,
                "ratio": None,
                **res,
            }
        )
        sentry_sdk.init(default_integrations=False, auto_enabling_integrations=False)
    write_result("delivery", rows, command_line())


if __name__ == "__main__":
    main()
