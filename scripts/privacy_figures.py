"""Print the privacy figures: secret-corpus hits on the wire and in the local log, error size.

    .venv/bin/python scripts/privacy_figures.py

Runs the same real apps as ``tests/test_privacy_corpus.py`` and ``tests/test_event_size.py``
(FastAPI under ``opentelemetry-instrument``, our Sentry-protocol receiver, the local log) and
prints what the tests assert on, as numbers, so a before/after comparison is one command on each
commit.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from peers.secret_corpus import SECRETS
from receivers.sentry_receiver import SentryReceiver
from test_event_size import _event
from test_privacy_corpus import _sentry_run, _wire_bytes, hits


def main() -> None:
    with SentryReceiver() as receiver:
        log = _sentry_run(Path(tempfile.mkdtemp()), receiver, pii=False)
        wire, local = hits(_wire_bytes(receiver)), hits(log.read_bytes())
    print(f"secret corpus: {len(SECRETS)} patterns")
    print(f"  on the wire:   {len(wire)} patterns leaked, {sum(wire.values())} hits")
    print(f"  in the local log: {len(local)} patterns leaked, {sum(local.values())} hits")
    _, size = _event(Path(tempfile.mkdtemp()))
    print(f"FastAPI error event (tests/peers/size_app.py): {size} bytes on the wire")


if __name__ == "__main__":
    main()
