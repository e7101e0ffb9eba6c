"""The test suite's Sentry receiver in a process of its own, driven over stdin (for benchmarks).

Prints its DSN, then answers one JSON line per command line:

* ``fault <mode> [delay_s]``: ``slow``, ``stall``, ``garbage``, ``500``, ``429`` (with
  ``Retry-After: 1`` and no rate-limit header, so the SDK backs off on ``Retry-After``), ``reset``;
* ``heal``: no fault; ``down``: stop listening (connections refused); ``up``: listen again on the
  same port;
* ``counts``: items received per type, client-report drops per (reason, category), requests
  refused, connections accepted.

Lean counting mode (no relay normalisation, no payloads kept): the receiver stands in for Relay,
so it must not be what limits a measurement. Runs with ``tests/`` on ``sys.path``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from receivers.sentry_receiver import SentryReceiver

__all__ = ["main"]


def main() -> None:
    with SentryReceiver(normalize=False, keep_payloads=False) as server:
        print(server.dsn, flush=True)
        for line in sys.stdin:
            words = line.split()
            if not words:
                continue
            command = words[0]
            if command == "fault":
                delay = float(words[2]) if len(words) > 2 else 2.0
                server.set_fault(words[1], delay=delay, retry_after=1, rate_limits="")  # type: ignore[arg-type]
            elif command == "heal":
                server.set_fault(None)
            elif command == "down":
                server.stop()
            elif command == "up":
                server.restart()
            answer = {
                "counts": server.counts(),
                "discarded": {f"{r}/{c}": n for (r, c), n in server.discarded().items()},
                "rejected": server.rejected_count,
                "connections": server.connections_accepted,
            }
            print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
