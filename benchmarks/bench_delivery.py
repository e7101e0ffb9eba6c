"""Delivery under load: transactions sent at a target rate vs received by a local Sentry receiver.

Run: ``.venv/bin/python benchmarks/bench_delivery.py [--quick]`` from the repo root. Starts the
test suite's ``SentryReceiver`` in its own process (a cheap counter: no relay normalisation, no
payloads kept), configures widgettrace's Sentry processor against it, ends root-only transactions
at 1,000 a second for 20 s (3 s with --quick), waits for the transport to drain, and writes
``benchmarks/results/delivery.json``: sent, delivered, counted as dropped (client reports) and
unaccounted, through the transport widgettrace uses by default (sentry-sdk's HttpTransport).
"""

from __future__ import annotations

import json
import subprocess
import sys
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
# Same reason as tests/test_sentry_wire.py: without TCP_NODELAY every response costs 40 ms.
sentry_receiver._Handler.disable_nagle_algorithm = True
with SentryReceiver(normalize=False, keep_payloads=False) as server:
    print(server.dsn, flush=True)
    for line in sys.stdin:
        dropped = sum(n for (_r, cat), n in server.discarded().items() if cat == "transaction")
        print(json.dumps({"counts": server.counts(), "dropped": dropped}), flush=True)
"""


class _Receiver:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _RECEIVER],
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


def run(rate: float, seconds: float, transport: Any = None) -> dict[str, Any]:
    server = _Receiver()
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
        transport_name = type(sentry_sdk.get_client().transport).__name__
        provider.force_flush()
        client = sentry_sdk.get_client()
        client.flush(timeout=60)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and server.query()[0] < total:
            time.sleep(0.1)
        end_s = time.perf_counter() - start
        delivered = server.query()[0]
        provider.shutdown()
        client.close(timeout=5)
        time.sleep(0.5)
        dropped = server.query()[1]
        return {
            "sent": total,
            "delivered": delivered,
            "dropped_counted": dropped,
            "unaccounted": total - delivered - dropped,
            "send_s": round(send_s, 2),
            "end_to_end_s": round(end_s, 2),
            "offered_per_s": round(total / send_s, 1),
            "delivered_per_s": round(delivered / end_s, 1),
            "transport": transport_name,
        }
    finally:
        server.close()


def main() -> None:
    args = bench_args(__doc__ or "")
    rate, seconds = (1000.0, 3.0) if args.quick else (1000.0, 20.0)
    rows = []
    # widgettrace's default with a DSN: sentry-sdk's own HttpTransport (one sender thread).
    for label, transport in (("widgettrace default (sentry-sdk HttpTransport)", None),):
        res = run(rate, seconds, transport)
        print(label, res, flush=True)
        rows.append(
            {
                "case": f"{label}: root-only transactions at {rate:.0f}/s for {seconds:.0f}s",
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
