"""Inline delivery: an export thread sends its own envelopes, on the real receiver, only when safe.

``DeliveryHttpTransport.deliver_inline`` lets the span processors' export thread send a pass's
envelopes itself instead of waking a sender thread for them. These tests hold it to its
promises: it sends synchronously (the receiver has everything when it returns) and settles
every envelope as the senders do; it declines, returning every envelope in order, whenever a
sender should go instead (something queued goes first, a failing or slow destination); an
envelope in flight when the transport is killed is counted once; and both span processors, on a
fast receiver, send inline after their first batch.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
from receivers.sentry_receiver import SentryReceiver
from sentry_sdk.client import _get_options
from sentry_sdk.envelope import Envelope
from test_delivery import _error, _transaction
from test_sentry_stream import streaming
from test_sentry_support import make_settings
from test_sentry_wire import configured

from widgettrace.exporters import _delivery
from widgettrace.exporters._delivery import DeliveryHttpTransport


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[SentryReceiver]:
    # Without TCP_NODELAY the receiver's two writes meet the client's delayed ACK: 40 ms a
    # request, which inline delivery rightly declines (test_sentry_wire.py has the same fix).
    from receivers import sentry_receiver

    monkeypatch.setattr(sentry_receiver._Handler, "disable_nagle_algorithm", True, raising=False)
    with SentryReceiver(normalize=False) as server:
        yield server


@pytest.fixture
def patient(monkeypatch: pytest.MonkeyPatch) -> None:
    """A loaded CI machine can take longer than INLINE_MAX_S for a local round trip, which
    inline delivery would rightly decline; tests of what it does when it sends allow 1 s."""
    monkeypatch.setattr(_delivery, "INLINE_MAX_S", 1.0)


def _measured(receiver: SentryReceiver, **options: object) -> DeliveryHttpTransport:
    """A transport whose senders have made one request (inline delivery needs a round trip)."""
    transport = DeliveryHttpTransport(_get_options(dsn=receiver.dsn, **options))
    transport.capture_envelope(_transaction(10_000))
    transport.flush(5)
    assert receiver.wait_for(lambda r: r.counts().get("transaction") == 1, timeout=5)
    return transport


def test_it_sends_on_the_callers_thread_and_settles_like_the_senders(
    receiver: SentryReceiver,
    patient: None,
) -> None:
    transport = _measured(receiver)
    try:
        before = transport.delivered
        declined = transport.deliver_inline([_transaction(i) for i in range(150)])
        # Synchronous: everything is at the receiver when it returns, nothing waits anywhere.
        assert declined == []
        assert receiver.counts().get("transaction") == 151
        assert transport.delivered - before == 150
        assert transport.pending_envelopes() == 0
        names = [event["transaction"] for event in receiver.transactions()[1:]]
        assert names == [f"job {i}" for i in range(150)]  # in order
    finally:
        transport.kill()


def test_it_declines_while_anything_is_queued_so_errors_go_first(
    receiver: SentryReceiver, patient: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    transport = _measured(receiver)
    queue = transport._queue
    try:
        # The senders find nothing for now, so the error waits in the queue.
        monkeypatch.setattr(queue, "get_many", lambda *args, **kwargs: time.sleep(0.01) or [])
        transport.capture_envelope(_error(1))
        envelopes = [_transaction(i) for i in range(5)]
        assert transport.deliver_inline(envelopes) == envelopes
        assert receiver.counts().get("transaction") == 1  # nothing went out ahead of it
        monkeypatch.undo()
        for envelope in envelopes:  # what the export thread does with what was declined
            transport.capture_envelope(envelope)
        transport.flush(5)
        kinds = [env.items[0].type for env in receiver.envelopes[1:]]
        assert kinds == ["event"] + ["transaction"] * 5
    finally:
        transport.kill()


def test_it_declines_a_failing_destination(receiver: SentryReceiver, patient: None) -> None:
    transport = _measured(receiver)
    try:
        transport.destination.failed("refused", 0, 0)
        envelopes = [_transaction(i) for i in range(3)]
        assert transport.deliver_inline(envelopes) == envelopes
        assert receiver.counts().get("transaction") == 1
    finally:
        transport.kill()


def test_it_declines_a_destination_slower_than_inline_max(receiver: SentryReceiver) -> None:
    receiver.set_fault("slow", delay=_delivery.INLINE_MAX_S * 3)
    transport = _measured(receiver)
    try:
        envelopes = [_transaction(i) for i in range(3)]
        assert transport.deliver_inline(envelopes) == envelopes
    finally:
        receiver.set_fault(None)
        transport.kill()


def test_a_transport_that_never_sent_declines(receiver: SentryReceiver) -> None:
    transport = DeliveryHttpTransport(_get_options(dsn=receiver.dsn))
    try:
        envelopes = [_transaction(1)]
        assert transport.deliver_inline(envelopes) == envelopes  # no round trip measured yet
    finally:
        transport.kill()


def test_a_batch_in_flight_at_kill_is_counted_lost_once(
    receiver: SentryReceiver, patient: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(DeliveryHttpTransport, "TIMEOUT", 1)
    transport = _measured(receiver)
    receiver.set_fault("stall")
    declined: list[object] = []
    sender = threading.Thread(
        target=lambda: declined.extend(
            transport.deliver_inline([_transaction(i) for i in range(4)])
        )
    )
    sender.start()
    try:
        assert _wait(lambda: transport._sending, 5)  # the batch is in flight
        transport.kill()
        sender.join(10)
        assert not sender.is_alive()
    finally:
        receiver.set_fault(None)
    # The batch in flight is lost and counted once (by kill(), not again when its request
    # timed out afterwards); what came after it was never sent and went back to the caller.
    in_flight = 4 - len(declined)
    assert in_flight >= 1
    assert transport.dropped == in_flight
    assert transport._discarded_events[("transaction", "network_error")] == in_flight


@pytest.mark.parametrize("mode", ["stream", "transactions"])
def test_the_span_processors_send_inline_after_their_first_batch(
    receiver: SentryReceiver, patient: None, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    queued: list[str] = []
    original = DeliveryHttpTransport.capture_envelope

    def counting(self: DeliveryHttpTransport, envelope: Envelope) -> None:
        queued.append(envelope.items[0].type or "")
        original(self, envelope)

    monkeypatch.setattr(DeliveryHttpTransport, "capture_envelope", counting)
    settings = make_settings(sentry_dsn=receiver.dsn, sentry_spans=mode, sessions="off")
    setup = streaming(settings) if mode == "stream" else configured(settings)
    with setup as (provider, processor):
        tracer = provider.get_tracer("inline")
        with tracer.start_as_current_span("warm-up"):
            pass
        processor.force_flush(5_000)
        warm = len(queued)
        for i in range(300):
            with tracer.start_as_current_span(f"job {i}"):
                pass
        processor.force_flush(10_000)
        after = queued[warm:]
    arrived = _spans if mode == "stream" else _transactions
    assert receiver.wait_for(lambda r: arrived(r) == 301, timeout=10), arrived(receiver)
    # Queued for the senders: a client report perhaps, not the 300 new traces.
    assert len([kind for kind in after if kind in ("span", "transaction")]) == 0, after


def _transactions(receiver: SentryReceiver) -> int:
    return receiver.counts().get("transaction", 0)


def _spans(receiver: SentryReceiver) -> int:
    return sum(len(payload["items"]) for payload in receiver.payloads("span"))


def _wait(predicate: Callable[[], object], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False
