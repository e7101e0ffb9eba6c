"""Envelopes to Sentry over HTTP at no cost to the app: priorities, byte bounds, backoff.

What the SDK's ``HttpTransport`` does, and why widgettrace replaces its queue and worker:

* one worker thread, one envelope per round trip: at 50 ms about 18 envelopes a second;
* one queue bounded only in count (100, or 10,000 as we configured it), first in first out: a
  backlog of transactions holds errors back, at exit too, and a slow Sentry holds 10,000
  transactions (tens of MB);
* a Sentry that is down costs a connection attempt (and a dropped envelope) per envelope, and
  nothing says so.

:class:`DeliveryHttpTransport` keeps what the SDK does right (envelope preparation, rate limits
from ``Retry-After`` / ``X-Sentry-Rate-Limits``, client reports, ``record_lost_event``) and puts
in front of it:

* :class:`EnvelopeQueue`: one queue per priority (:data:`PRIORITY`: errors, sessions, logs and
  client reports before spans and transactions), each bounded in envelopes *and* bytes; what does
  not fit is counted (client report ``queue_overflow``), never waited for;
* up to :data:`MAX_CONNECTIONS` sender threads, each with its own kept-alive connection, sized
  from the measured round trip (Little's law: envelopes in flight = arrival rate x round trip);
* :class:`Destination`: after a failure (refused, reset, timeout, garbage, 5xx) the destination
  gets one attempt per backoff window (1 s doubling to 60 s) while envelopes wait in the bounded
  queue; one log line names it when it starts failing and one when it recovers, with counts.

The queue, the destination's backoff, the drop log and the envelope filters (functions every
envelope passes once, on a background thread, before any sink) live in
:mod:`widgettrace.exporters._envelopes`.
"""

from __future__ import annotations

import math
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from sentry_sdk.consts import EndpointType
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import HttpTransport
from sentry_sdk.utils import capture_internal_exceptions

from widgettrace.exporters._batching import FastEnvelopes
from widgettrace.exporters._envelopes import (
    HIGH,
    LOW,
    PIPELINE,
    PIPELINE_BYTES,
    QUEUE_LIMITS,
    Destination,
    DropLog,
    EnvelopeQueue,
    envelope_priority,
    envelope_size,
    filter_envelope,
)
from widgettrace.exporters._http import KeepAliveRequests, _Response

__all__ = ["MAX_CONNECTIONS", "DeliveryHttpTransport", "http_transport_class"]

#: Sender threads (and kept-alive connections) per transport at most: 640 envelopes a second
#: at a 50 ms round trip, 160 at 200 ms.
MAX_CONNECTIONS = 32
PIPELINE_TARGET_S = 0.05
#: How long a sender lets spans and transactions gather before it writes them together: one
#: write and a few reads for a batch instead of a round trip, two system calls and a thread
#: wake-up per envelope (at 1,500 transactions a second those cost ~100 us of CPU each).
#: Errors, sessions and other HIGH items, a full batch, ``flush`` and exit end the wait.
LINGER_S = 0.02
#: Window over which the shortest round trip sizes the senders.
RTT_WINDOW_S = 1.0
#: A request that takes longer than this is a stalled Sentry (the SDK waits 30 s).
REQUEST_TIMEOUT_S = 5
#: gzip level when the options name none (the SDK's is 9): a 10 KB envelope of ten spans
#: compresses to 1.0 KB at level 1 in ~22 us and to 0.9 KB at level 9 in ~45-50 us
#: (``benchmarks/bench_stream_delivery.py``); over a network the 10% more bytes cost less.
GZIP_LEVEL = 1
#: Inline delivery (:meth:`DeliveryHttpTransport.deliver_inline`) only while the last batch's
#: whole round trip took less than this: a producer that sends its own envelopes must never
#: wait long on the network (its spans wait meanwhile; a slower destination gets the senders).
INLINE_MAX_S = 0.025


class DeliveryHttpTransport(FastEnvelopes, KeepAliveRequests, HttpTransport):
    """sentry-sdk's ``HttpTransport`` with widgettrace's queue, senders and backoff (module doc)."""

    TIMEOUT = REQUEST_TIMEOUT_S

    def __init__(self, options: dict[str, Any]) -> None:
        limits = dict(QUEUE_LIMITS)
        size = options.get("transport_queue_size")
        if size:
            limits[LOW] = (int(size), limits[LOW][1])  # spans and transactions, in envelopes
        self._queue = EnvelopeQueue(limits)
        self._lost_lock = threading.RLock()
        self._senders: list[threading.Thread] = []
        self._senders_lock = threading.Lock()
        self._killed = False
        # Envelopes each sender thread is sending now (without an outcome yet), and threads
        # whose envelopes kill() counted.
        self._sending: dict[int, list[Envelope]] = {}
        self._abandoned: set[int] = set()
        # Round trip for sizing the senders: the shortest successful one of the last window
        # (RTT_WINDOW_S), seconds. Not an average: on a busy machine a request also waits for
        # the CPU and the GIL, which more senders make worse, not better (an average grew the
        # senders to 32 for a local receiver at 1,000 envelopes a second).
        self._rtt = 0.0
        self._rtt_low = math.inf
        self._rtt_since = time.monotonic()
        self._arrivals = 0
        self._rate = 0.0  # envelopes per second, over the last measuring window
        self._rate_since = time.monotonic()
        self._local = threading.local()
        #: Whole round trip of the last request or pipelined batch (inline delivery is allowed
        #: after a fast one; inf until the senders made one).
        self._batch_s = math.inf
        self._auth_headers: dict[str, str] | None = None
        #: Envelopes refused by the queue or lost in flight (exact, for tests and the benchmark).
        self.dropped = 0
        self.delivered = 0
        super().__init__(options)
        experiments = options.get("_experiments") or {}
        if self._compression_algo == "gzip" and not any(
            key in experiments
            for key in ("transport_compression_level", "transport_zlib_compression_level")
        ):
            self._compression_level = GZIP_LEVEL
        #: Envelopes a sender writes at once at most: pipelined on the fast path (module doc),
        #: and now (PIPELINE_TARGET_S).
        self.pipeline = PIPELINE if self.uses_fast_path else 1
        self._depth = min(2, self.pipeline)
        dsn = self.parsed_dsn
        self.destination = Destination(f"{dsn.host}:{dsn.port}" if dsn is not None else "<no dsn>")
        self._drops = DropLog(self.destination.name)
        #: Run :func:`filter_envelope` on the senders (off when the local log's writer did).
        self.filtering = True
        if hasattr(os, "register_at_fork"):
            ref = weakref.ref(self)

            def after_in_child() -> None:
                alive = ref()
                if alive is not None:
                    alive._reset_after_fork()

            os.register_at_fork(after_in_child=after_in_child)

    # -- the SDK's worker, replaced ----------------------------------------------------------
    def _create_worker(self, options: dict[str, Any]) -> Any:
        return _NoWorker()

    def capture_envelope(self, envelope: Envelope) -> None:
        """Queue ``envelope`` by priority; a full queue counts it (client reports), never waits."""
        if self._killed:
            return
        priority = envelope_priority(envelope)
        if not self._queue.put(envelope, priority, envelope_size(envelope)):
            self._count_lost(envelope, "queue_overflow")
            return
        self._arrivals += 1
        self._ensure_senders()

    def queue_full(self) -> bool:
        """Never: a remote destination must not hold the caller back (its overflow is counted)."""
        return False

    def wait_for_room(self, envelope: Envelope, timeout: float) -> bool:
        """Back-pressure for a background producer (the span stream's export thread, never an
        application thread): wait at most ``timeout`` until ``capture_envelope`` would queue
        ``envelope``; True when it would. Returns at once while the destination is failing or
        the transport is closed: an outage is counted at the queue, never waited out."""
        priority = envelope_priority(envelope)
        size = envelope_size(envelope)
        queue = self._queue
        deadline = time.monotonic() + timeout
        with queue.settled:  # done() notifies it whenever a sender finishes an envelope
            while not queue.has_room(priority, size):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._killed or self.destination.failing:
                    return False
                queue.settled.wait(min(remaining, 0.05))
        return True

    def pending_envelopes(self) -> int:
        """Envelopes queued or being sent."""
        with self._queue.cond:
            return self._queue.busy()

    def pending_bytes(self) -> int:
        return self._queue.nbytes()

    def is_healthy(self) -> bool:
        return not (self.destination.failing or self._is_rate_limited() or self._queue.full(LOW))

    def _is_worker_full(self) -> bool:
        return self._queue.full(LOW)

    def record_lost_event(self, *args: Any, **kwargs: Any) -> None:
        # The senders run concurrently: the SDK's counters swap dicts when a report is fetched.
        with self._lost_lock:
            super().record_lost_event(*args, **kwargs)

    def _fetch_pending_client_report(self, force: bool = False, interval: int = 60) -> Any:
        with self._lost_lock:
            return super()._fetch_pending_client_report(force=force, interval=interval)

    def _add_dropped(self) -> None:
        with self._lost_lock:
            self.dropped += 1

    def _count_lost(self, envelope: Envelope, reason: str, *, quiet: bool = False) -> None:
        self._add_dropped()
        self.on_dropped_event(reason)
        for item in envelope.items:
            self.record_lost_event(reason, item=item)
        self._drops.add(reason, quiet=quiet)

    # -- senders -----------------------------------------------------------------------------
    def _ensure_senders(self) -> None:
        running = len(self._senders)
        if running and running >= self._wanted_senders():
            return
        with self._senders_lock:
            if self._killed or len(self._senders) >= max(1, self._wanted_senders()):
                return
            thread = threading.Thread(
                target=self._send_loop,
                name=f"widgettrace-sentry-sender-{len(self._senders)}",
                daemon=True,
            )
            self._senders.append(thread)
            thread.start()

    def _wanted_senders(self) -> int:
        """Little's law: envelopes in flight = arrival rate x round trip (plus one for slack);
        with a backlog, enough connections to drain it within about a second."""
        now = time.monotonic()
        elapsed = now - self._rate_since
        if elapsed >= 0.2:
            self._rate = self._arrivals / elapsed
            self._arrivals = 0
            self._rate_since = now
        backlog = len(self._queue)
        senders = len(self._senders)
        rtt = self._rtt  # per envelope: a pipelined batch's round trip over its envelopes
        if backlog <= senders or (
            # pipelined: a batch's worth per sender is normal, unless it takes long to send
            self.pipeline > 1 and backlog <= senders * self.pipeline and backlog * rtt < senders
        ):
            return senders or 1
        # One more for slack when each connection has one envelope in flight; pipelined, a
        # burst (the export thread hands over a tick's transactions at once) is one batch.
        slack = 1 if self.pipeline == 1 else 0
        wanted = max(math.ceil(self._rate * rtt) + slack, math.ceil(backlog * rtt))
        return max(1, min(MAX_CONNECTIONS, wanted))

    def _send_loop(self) -> None:
        destination = self.destination
        queue = self._queue
        while not self._killed:
            if not destination.permit(timeout=0.5):
                continue
            # A failing destination gets one envelope per attempt (its probe), not a batch.
            limit = 1 if destination.failing else self._depth
            batch = queue.get_many(0.5, limit, LINGER_S if limit > 1 else 0.0)
            if not batch:
                destination.release()
                continue
            tid = threading.get_ident()
            with queue.cond:
                self._sending[tid] = list(batch)
            try:
                self._deliver(batch)
            finally:
                destination.release()  # when succeeded() / failed() did not settle it
                with queue.cond:
                    self._sending.pop(tid, None)
                queue.done(len(batch))  # flush() waits on it
            if not destination.failing:
                self._ensure_senders()

    def deliver_inline(self, envelopes: list[Envelope]) -> list[Envelope]:
        """Send ``envelopes`` on the calling thread; return those it did not send.

        For a background producer (the span processors' export thread, never an application
        thread) that has a pass's envelopes at hand. Handing them to a sender costs a second
        thread's wake-ups and GIL hand-offs on top of the sending (on ``bench_e2e.py``'s light
        endpoint the background threads took 50-72 us of CPU a request with senders, 38-56 us
        inline); sending them here does not. Only while that is safe:
        the destination is healthy, its last pipelined batch came back within
        :data:`INLINE_MAX_S`, and nothing waits in the queue (errors, sessions and anything
        queued earlier go first, through the senders). What is not sent here is returned, in
        order, for the caller to queue with :meth:`capture_envelope`. Outcomes, rate limits,
        client reports and :meth:`flush` / :meth:`kill` accounting are the senders'.
        """
        queue = self._queue
        tid = threading.get_ident()
        done = 0
        total = len(envelopes)
        while done < total:
            if (
                self._killed
                or self.pipeline <= 1
                or self.destination.failing
                or self._batch_s >= INLINE_MAX_S
            ):
                break
            batch: list[Envelope] = []
            taken = 0
            while done + len(batch) < total and len(batch) < self._depth:
                envelope = envelopes[done + len(batch)]
                size = envelope_size(envelope)
                if batch and taken + size > PIPELINE_BYTES:
                    break
                batch.append(envelope)
                taken += size
            with queue.cond:
                if queue.waiting():
                    break
                queue.in_flight += len(batch)  # flush() waits for them like queued ones
                self._sending[tid] = list(batch)  # kill() counts them if it comes first
            try:
                with capture_internal_exceptions():  # sent or counted: never sent twice
                    self._deliver(batch)
            finally:
                with queue.cond:
                    self._sending.pop(tid, None)
                queue.done(len(batch))
            done += len(batch)
        return envelopes[done:]

    def _deliver(self, batch: list[Envelope]) -> None:
        """Send ``batch`` (pipelined on the fast path) and settle each envelope's outcome the
        way the SDK's ``_send_request`` does: ``_handle_request_error`` for a failed request,
        ``_handle_response`` (rate limits, 413, client reports) for an answer."""
        local = self._local
        try:
            prepared: list[tuple[Envelope, Envelope, bytes, dict[str, str]]] = []
            for original in batch:
                envelope: Envelope | None = original
                local.current = original
                with capture_internal_exceptions():
                    if self.filtering:  # here, on a sender thread, never on the caller's
                        envelope = filter_envelope(original)
                    if envelope is not None:
                        ready = self._prepare_envelope(envelope)  # None: rate limited
                        if ready is not None:
                            sent, body, headers = ready
                            self._update_headers(headers)
                            prepared.append((original, sent, body.getvalue(), headers))
                            continue
                self._settle()  # nothing to send for it
            if prepared:
                self._settle_batch(prepared)
        finally:
            local.current = None
            self._flush_client_reports()

    def _settle_batch(
        self, prepared: list[tuple[Envelope, Envelope, bytes, dict[str, str]]]
    ) -> None:
        local = self._local
        started = time.monotonic()
        results = self._request_many(
            "POST", EndpointType.ENVELOPE, [(body, headers) for _, _, body, headers in prepared]
        )
        took = time.monotonic() - started
        self._batch_s = took
        self._adapt_depth(len(prepared), results)
        abandoned = self._abandoned
        tid = threading.get_ident()
        destination = self.destination
        delivered = 0
        answered: list[Envelope] = []
        last = ""  # the destination hears of each change of outcome along the batch, in order
        for (original, sent, _, _), result in zip(prepared, results, strict=True):
            if (
                type(result) is _Response
                and 200 <= result.status < 300
                and "x-sentry-rate-limits" not in result.headers
            ):
                # Accepted, no rate limit: the SDK's _handle_response does nothing more for
                # it, so it is settled with the others at the end (one lock, not one each).
                answered.append(original)
                if last != "ok":
                    last = "ok"
                    self._note_round_trip(took / len(prepared))
                    destination.succeeded(self.dropped)
                continue
            local.current = original
            local.status = None
            with capture_internal_exceptions():
                if isinstance(result, BaseException):
                    # The SDK's _send_request: the envelope is counted lost (network_error).
                    self._handle_request_error(envelope=sent, loss_reason="network")
                    if tid in abandoned:
                        continue  # kill() counted it
                    self._add_dropped()
                    self._drops.add("network_error")
                    if last != "failed":
                        last = "failed"
                        text = str(result)
                        reason = type(result).__name__
                        destination.failed(
                            f"{reason}: {text}" if text else reason, self.dropped, len(self._queue)
                        )
                    continue
                try:
                    self._handle_response(response=result, envelope=sent)
                finally:
                    result.close()
                status = local.status
                if status is None or tid in abandoned:
                    continue  # kill() counted it
                if 200 <= status < 300:
                    delivered += 1
                    if last != "ok":
                        last = "ok"
                        self._note_round_trip(took / len(prepared))
                        destination.succeeded(self.dropped)
                elif status == 429:
                    # The SDK now holds back what the limits name; each is counted as it is.
                    if last != "429":
                        last = "429"
                        destination.failed(
                            "HTTP 429 rate limited", self.dropped, len(self._queue), backoff=False
                        )
                elif status != 413:  # 413: this envelope is too large, not the destination
                    self._add_dropped()
                    self._drops.add("network_error")
                    if last != "failed":
                        last = "failed"
                        destination.failed(f"HTTP {status}", self.dropped, len(self._queue))
        if answered:
            with self._queue.cond:
                if tid not in abandoned:  # else kill() counted them
                    delivered += len(answered)
                    sending = self._sending.get(tid)
                    if sending is not None:
                        done = set(map(id, answered))
                        sending[:] = [env for env in sending if id(env) not in done]
        if delivered:
            with self._lost_lock:
                self.delivered += delivered

    def _adapt_depth(self, sent: int, results: list[Any]) -> None:
        """Pipeline depth from how far apart the answers of a batch came (PIPELINE_TARGET_S)."""
        times = [result.at for result in results if hasattr(result, "at")]
        if len(times) < 2:
            return
        per_answer = (times[-1] - times[0]) / (len(times) - 1)
        if per_answer * self._depth > PIPELINE_TARGET_S:
            self._depth = max(2, min(self.pipeline, int(PIPELINE_TARGET_S / per_answer)))
        elif sent >= self._depth:
            self._depth = min(self.pipeline, self._depth * 2)

    def _note_round_trip(self, took: float) -> None:
        self._rtt_low = min(self._rtt_low, took)
        now = time.monotonic()
        if not self._rtt or now - self._rtt_since >= RTT_WINDOW_S:
            self._rtt, self._rtt_low, self._rtt_since = self._rtt_low, math.inf, now

    def _handle_request_error(
        self,
        envelope: Envelope | None,
        loss_reason: str = "network",
        record_reason: str = "network_error",
    ) -> None:
        if not self._settle():
            return
        if envelope is not None and _reports_only(envelope):
            # A client report that could not go: its counts wait for the next one (or the
            # local log at exit) instead of turning into one lost "internal" item.
            self._unfetch(envelope)
            return
        super()._handle_request_error(envelope, loss_reason, record_reason)

    def _handle_response(self, response: Any, envelope: Envelope | None) -> None:
        if not self._settle():
            return
        self._local.status = response.status
        if response.status == 429 and envelope is not None:
            # A client report refused with the rest: its counts wait for the next report (the
            # SDK counts nothing for a 429, trusting Relay, which does not count reports).
            reports = [item for item in envelope.items if item.type == "client_report"]
            if reports:
                self._unfetch(Envelope(items=reports))
        super()._handle_response(response, envelope)

    def _update_headers(self, headers: dict[str, str]) -> None:
        # The SDK formats the same User-Agent and X-Sentry-Auth for every envelope: once here.
        auth = self._auth_headers
        if auth is None:
            auth = {}
            super()._update_headers(auth)
            self._auth_headers = auth
        headers.update(auth)

    def _prepare_envelope(self, envelope: Envelope) -> Any:
        if _reports_only(envelope) and self._check_disabled("internal"):
            self._unfetch(envelope)  # rate limited now: the counts go with a later report
            return None
        return super()._prepare_envelope(envelope)

    def _settle(self) -> bool:
        """The sending thread's current envelope has its outcome; False when kill() already
        counted it as lost (whichever takes the lock first decides, so nothing is counted
        twice)."""
        tid = threading.get_ident()
        current = getattr(self._local, "current", None)
        with self._queue.cond:
            if tid in self._abandoned:
                return False
            sending = self._sending.get(tid)
            if sending is not None:
                for index, envelope in enumerate(sending):
                    if envelope is current:
                        del sending[index]
                        break
            return True

    def _flush_client_reports(self, force: bool = False) -> None:
        client_report = self._fetch_pending_client_report(force=force, interval=60)
        if client_report is not None:
            envelope = Envelope(items=[client_report])
            if not self._queue.put(envelope, HIGH, envelope_size(envelope)):
                self._add_dropped()

    # -- flush and exit ----------------------------------------------------------------------
    def flush(self, timeout: float, callback: Any | None = None) -> None:
        """Wait until everything queued went out, at most ``timeout`` seconds (HIGH goes first).

        Returns early when the destination is failing and its next attempt falls after the
        deadline: waiting could not deliver anything.
        """
        if timeout <= 0 or self._killed:
            return
        deadline = time.monotonic() + timeout
        self._flush_client_reports(force=True)
        self._ensure_senders()
        queue = self._queue
        queue.hurry(+1)
        try:
            with queue.cond:
                while queue.busy() > 0:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return
                    dest = self.destination
                    if dest.failing and not dest.probing and dest.retry_at > deadline:
                        return
                    queue.settled.wait(min(remaining, 0.05))
        finally:
            queue.hurry(-1)

    def kill(self) -> None:
        """Stop the senders; what is still queued is counted as lost (client reports)."""
        if self._killed:
            return
        reason = "network_error" if self.destination.failing else "queue_overflow"
        for envelope in self._queue.take_all():
            if _reports_only(envelope):
                self._unfetch(envelope)  # its counts go to the final report
                continue
            self._count_lost(envelope, reason, quiet=True)
        with self._queue.cond:
            # In flight (a stalled or slow request): lost too, unless its answer came first.
            in_flight = [(tid, env) for tid, envs in self._sending.items() for env in envs]
            self._abandoned.update(self._sending)
            self._sending.clear()
        for _, envelope in in_flight:
            if _reports_only(envelope):
                self._unfetch(envelope)
            else:
                self._count_lost(envelope, "network_error", quiet=True)
        self._drops.log_now()
        self._killed = True
        self.destination.wake()
        with self._queue.cond:
            self._queue.cond.notify_all()
            self._queue.settled.notify_all()
            self._queue.gather.notify_all()
        super().kill()

    def _unfetch(self, envelope: Envelope) -> None:
        """Put an unsent client report's counts back into the SDK's counters."""
        with self._lost_lock:
            for item in envelope.items:
                report = item.payload.json or {}
                for entry in report.get("discarded_events") or ():
                    key = (entry["category"], entry["reason"])
                    self._discarded_events[key] += int(entry["quantity"])

    def final_client_report(self) -> dict[str, Any] | None:
        """What was counted as lost and not yet reported (a client report payload), or None.

        Taken once at exit, after :meth:`kill`, for sinks that can still be written (the local
        log): a client report can no longer be sent once the transport is down.
        """
        item = self._fetch_pending_client_report(force=True)
        if item is None or item.payload.json is None:
            return None
        report: dict[str, Any] = item.payload.json
        return report

    def _reset_after_fork(self) -> None:
        self._queue.clear_after_fork()
        self._lost_lock = threading.RLock()
        self._senders_lock = threading.Lock()
        self._senders = []
        self._sending = {}
        self._abandoned = set()
        self.destination = Destination(self.destination.name)
        self._drops = DropLog(self.destination.name)
        self.dropped = self.delivered = 0
        self._batch_s = math.inf


def http_transport_class(options: dict[str, Any]) -> type[HttpTransport] | None:
    """The transport class to pass as ``sentry_sdk.init(transport=...)`` for HTTP, or None.

    None (the SDK's own choice) when the options ask for a transport of another kind: HTTP/2 or
    asyncio (sentry-sdk experiments), or one the user passed.
    """
    experiments = options.get("_experiments") or {}
    if experiments.get("transport_http2") or experiments.get("transport_async"):
        return None
    if options.get("transport") is not None:
        return None
    return DeliveryHttpTransport


def _reports_only(envelope: Envelope) -> bool:
    return all(item.type == "client_report" for item in envelope.items)


class _NoWorker:
    """Stands where the SDK expects its ``BackgroundWorker``; the senders do its job."""

    def full(self) -> bool:
        return False

    def submit(self, callback: Callable[[], Any]) -> bool:
        with capture_internal_exceptions():
            callback()
        return True

    def flush(self, timeout: float, callback: Any | None = None) -> None:
        return None

    def kill(self) -> None:
        return None

    @property
    def is_alive(self) -> bool:
        return True
