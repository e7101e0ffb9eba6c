"""Batched hand-over to the SDK's worker, and the default HTTP transport, on the real receiver."""

from __future__ import annotations

import json
import logging
import os
import threading
from typing import Any

import sentry_sdk
from receivers.sentry_receiver import SentryReceiver
from sentry_sdk.client import _get_options
from sentry_sdk.envelope import Envelope, Item, PayloadRef
from sentry_sdk.utils import logger as sdk_logger
from sentry_sdk.worker import BackgroundWorker
from test_sentry_support import make_settings

from widgettrace.exporters._batching import (
    COMPRESS_MIN_BYTES,
    BatchedSubmit,
    envelope_bytes,
)
from widgettrace.exporters._delivery import DeliveryHttpTransport
from widgettrace.exporters.sentry import configure_sentry


def _envelope(i: int, pad: int = 0) -> Envelope:
    event = {
        "type": "transaction",
        "event_id": f"{i:032x}",
        "transaction": f"job {i}",
        "start_timestamp": 1.0,
        "timestamp": 2.0,
        "contexts": {"trace": {"trace_id": "ab" * 16, "span_id": "cd" * 8, "op": "function"}},
        "spans": [],
        "extra": {"pad": "x" * pad},
    }
    payload = json.dumps(event).encode()
    return Envelope(
        headers={"event_id": event["event_id"], "sent_at": "2026-11-28T00:00:00Z"},
        items=[Item(payload=PayloadRef(bytes=payload, json=event), type="transaction")],
    )


class _CountingWorker(BackgroundWorker):
    def __init__(self) -> None:
        super().__init__(queue_size=100)
        self.jobs = 0

    def submit(self, callback: Any) -> bool:
        self.jobs += 1
        return super().submit(callback)


def test_a_burst_of_envelopes_is_one_worker_job_and_all_are_sent() -> None:
    worker = _CountingWorker()
    sent: list[int] = []
    gate = threading.Event()

    def send(items: list[int]) -> None:
        gate.wait(5)  # hold the first job so the rest of the burst queues behind it
        sent.extend(items)

    batch: BatchedSubmit[int] = BatchedSubmit(worker, send, max_pending=1000)
    for i in range(500):
        assert batch.submit(i)
    gate.set()
    worker.flush(5)
    assert sent == list(range(500))
    assert worker.jobs <= 2  # one job (and one GIL handoff) per burst, not 500
    # After the burst, the next envelope schedules a new job.
    assert batch.submit(500)
    worker.flush(5)
    assert sent[-1] == 500
    worker.kill()


def test_a_full_batch_refuses_by_bytes_too() -> None:
    worker = BackgroundWorker(queue_size=10)
    gate = threading.Event()
    sent: list[bytes] = []
    batch: BatchedSubmit[bytes] = BatchedSubmit(
        worker, lambda b: (gate.wait(5), sent.extend(b)), max_pending=1000, size=len, max_bytes=100
    )
    assert batch.submit(b"x" * 60)
    assert not batch.submit(b"y" * 60)  # 120 bytes would be over the bound
    assert batch.submit(b"z" * 40)
    assert batch.full()
    gate.set()
    worker.flush(5)
    worker.kill()
    assert sent == [b"x" * 60, b"z" * 40]


def test_small_bodies_go_uncompressed_and_large_ones_gzip(sentry_receiver: SentryReceiver) -> None:
    options = _get_options(dsn=sentry_receiver.dsn, _experiments={"transport_compression_level": 1})
    transport = DeliveryHttpTransport(options)
    transport.capture_envelope(_envelope(1))
    transport.capture_envelope(_envelope(2, pad=COMPRESS_MIN_BYTES * 2))
    transport.flush(5)
    assert sentry_receiver.wait_for(lambda r: len(r.envelopes) == 2, timeout=5)
    by_name = {e.items[0].json["transaction"]: e for e in sentry_receiver.envelopes}
    assert by_name["job 1"].content_encoding == ""
    assert by_name["job 2"].content_encoding == "gzip"
    transport.kill()


def test_preparing_an_envelope_keeps_the_sdks_rate_limits_and_client_reports() -> None:
    from datetime import datetime, timedelta, timezone

    from sentry_sdk.transport import HttpTransport

    options = _get_options(dsn="http://public@127.0.0.1:9/1")
    ours, sdks = DeliveryHttpTransport(options), HttpTransport(options)
    for transport in (ours, sdks):
        # A loss waiting to be reported rides along with the next envelope.
        transport.record_lost_event("queue_overflow", data_category="span", quantity=3)
        transport._last_client_report_sent = 0.0  # due now
    prepared = [t._prepare_envelope(_envelope(1)) for t in (ours, sdks)]
    ours_env, body, headers = prepared[0]  # type: ignore[misc]
    sdks_env = prepared[1][0]  # type: ignore[index]
    assert [i.type for i in ours_env.items] == [i.type for i in sdks_env.items]
    assert [i.type for i in ours_env.items] == ["transaction", "client_report"]
    assert ours_env.items[1].payload.json["discarded_events"] == [
        {"reason": "queue_overflow", "category": "span", "quantity": 3}
    ]
    assert headers == {"Content-Type": "application/x-sentry-envelope"}  # small: uncompressed
    assert body.getvalue() == envelope_bytes(ours_env)
    # Under a rate limit the SDK's own method decides: the transaction is dropped and counted.
    ours._disabled_until["transaction"] = datetime.now(timezone.utc) + timedelta(seconds=60)
    assert ours._prepare_envelope(_envelope(2)) is None
    assert ours._discarded_events[("transaction", "ratelimit_backoff")] == 1
    for transport in (ours, sdks):
        transport.kill()


def test_envelope_bytes_is_the_sdk_serialisation() -> None:
    envelope = _envelope(7, pad=100)
    assert envelope_bytes(envelope) == envelope.serialize()


def test_a_forked_child_does_not_resend_what_the_parent_queued() -> None:
    worker = BackgroundWorker(queue_size=10)
    sent: list[int] = []
    gate = threading.Event()
    batch: BatchedSubmit[int] = BatchedSubmit(
        worker, lambda i: (gate.wait(5), sent.extend(i)), max_pending=10
    )
    batch.submit(1)
    batch.submit(2)
    pid = os.fork()
    if pid == 0:  # the child: nothing pending, and a fresh lock
        code = 0 if batch.pending() == 0 and not batch._lock.locked() else 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    gate.set()
    worker.flush(5)
    worker.kill()
    assert os.waitstatus_to_exitcode(status) == 0
    assert sent == [1, 2]


def test_configure_sentry_picks_the_batching_transport_and_quiets_sdk_debug(
    sentry_receiver: SentryReceiver,
) -> None:
    settings = make_settings(sentry_dsn=sentry_receiver.dsn, log_path=None)
    processor = configure_sentry(settings, None)
    try:
        assert isinstance(sentry_sdk.get_client().transport, DeliveryHttpTransport)
        # Debug off: the SDK's logger no longer builds a record per envelope sent.
        assert not sdk_logger.isEnabledFor(logging.DEBUG)
    finally:
        assert processor is not None
        processor.shutdown()
        sentry_sdk.get_client().close()
        sentry_sdk.init(default_integrations=False, auto_enabling_integrations=False)
    debug = make_settings(sentry_dsn=sentry_receiver.dsn, log_path=None, sentry_debug=True)
    processor = configure_sentry(debug, None)
    try:
        assert sdk_logger.isEnabledFor(logging.DEBUG)
    finally:
        assert processor is not None
        processor.shutdown()
        sentry_sdk.get_client().close()
        sentry_sdk.init(default_integrations=False, auto_enabling_integrations=False)
        sdk_logger.setLevel(logging.DEBUG)


def test_a_reserve_beyond_the_bound_for_what_must_not_be_refused() -> None:
    # Errors into a local-log queue that transactions filled (the span processor waits at the
    # bound, errors come from the app's threads and are never refused for that).
    worker = BackgroundWorker(queue_size=10)
    gate, busy = threading.Event(), threading.Event()
    batch: BatchedSubmit[int] = BatchedSubmit(
        worker, lambda i: (busy.set(), gate.wait(5)), max_pending=3
    )
    assert batch.submit(0)
    assert busy.wait(5)  # the worker holds 0: what follows waits in the batch
    for i in range(1, 4):
        assert batch.submit(i)
    assert batch.full()
    assert not batch.submit(4)
    assert batch.submit(5, reserve=True)
    gate.set()
    worker.flush(5)
    worker.kill()
