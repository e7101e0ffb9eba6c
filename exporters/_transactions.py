"""Sentry transactions from OTel spans: widgettrace's span processor (transactions mode).

How spans travel (why it is cheap for the application):

1. ``on_end`` on the application's thread only appends the ended span's fields (a tuple of
   references, no copying or encoding) to a bounded deque (``WIDGETTRACE_QUEUE_SIZE``). Full:
   the span is counted, never waited for. The span object itself is then freed on the thread
   that wrote it, where its memory is hot.
2. A daemon thread encodes each span as it drains the queue (so what waits is bytes, not span
   objects; the encoding is :mod:`widgettrace.exporters._transaction_json`) and groups them by
   *local root* (no parent, or a remote parent): a short grace after the root ends, the root and
   every buffered descendant become one Sentry transaction event, handed to the SDK client's
   transport (rate limits, retries, the worker queue and client reports stay the SDK's). If the
   local log's queue is full the thread waits (up to 2 s) instead of dropping, so bursts back up
   into our larger queue; the HTTP half never makes it wait (a slow or dead Sentry must not cost
   the local log or memory: :mod:`widgettrace.exporters._delivery`).
3. A span that ends after its transaction was sent (a late child, or one started after the root
   ended) is sent as its own transaction in the same trace with its real ``parent_span_id``.
   Spans whose parent never ends are held at most ``WIDGETTRACE_OPEN_SPAN_TIMEOUT_S`` and at most
   ``WIDGETTRACE_BUFFER_MAX_SPANS`` in total (beyond it the oldest traces are sent early).
4. A transaction carries at most ``WIDGETTRACE_MAX_SPANS_PER_TRANSACTION`` child spans (Sentry's
   limit is 1000); the rest are counted as lost (client report ``buffer_overflow``, category
   ``span``) with one log line. Queue overflow is counted the same way (``queue_overflow``).

Only sampled spans are sent: the OTel sampler decides once (parent-based, from
``SENTRY_TRACES_SAMPLE_RATE``); this processor never samples again.

:mod:`widgettrace.exporters.sentry` sets up the SDK and creates this processor.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sentry_sdk
from opentelemetry import context as context_api
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from sentry_sdk.envelope import Envelope

from widgettrace.exporters._export_thread import ExportThreadProcessor
from widgettrace.exporters._scrub import Scrubber
from widgettrace.exporters._sentry_convert import Ended, ended
from widgettrace.exporters._transaction_json import Rec, TransactionEncoder, resource_tags_of
from widgettrace.instrumentation._guard import internal_errors, logger

__all__ = ["WidgetTraceSpanProcessor"]

#: How long shutdown waits for the transport to deliver what is queued before it gives up
#: (and logs how much was left): ``WIDGETTRACE_SHUTDOWN_TIMEOUT_S``'s default.
SHUTDOWN_FLUSH_S = 2.0
#: Time after a root ends before its transaction is sent, so children ending just after it
#: (async cleanup, response streaming) are included.
DEFAULT_GRACE_S = 0.1
#: Ended spans queued that wake the export thread before its tick.
WAKE_AT_QUEUED = 256
#: How often the export thread looks at its queue when nothing wakes it.
DEFAULT_TICK_S = 0.05
#: Span ids of sent transactions are remembered this long to recognise late children quickly
#: (after that a late child still goes out, when the open-span timeout expires).
SENT_RETENTION_S = 30.0
#: ... and at most this many sends (a busy server sends a thousand traces a second: 30 s of
#: them was ~10 MB of ids, most of the RSS the process gained under load).
SENT_RETENTION_MAX = 10_000
#: How long the export thread waits for room in a full transport queue before letting the SDK
#: drop (and count) a transaction.
BACKPRESSURE_WAIT_S = 2.0


@dataclass(slots=True)
class _Trace:
    """Ended spans of one trace waiting for their transaction."""

    first: float
    hex: str
    #: span id -> its record
    spans: dict[int, Rec] = field(default_factory=dict)
    due: float | None = None


@dataclass
class _FlushRequest:
    expire: bool
    done: threading.Event = field(default_factory=threading.Event)


class _RateLimitedLog:
    """One warning per reason per minute, with the counts since the last one."""

    def __init__(self, interval: float = 60.0) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}
        self._pending: dict[str, int] = {}
        self._messages: dict[str, str] = {}

    def add(self, reason: str, count: int, message: str) -> None:
        self._pending[reason] = self._pending.get(reason, 0) + count
        self._messages[reason] = message
        now = time.monotonic()
        if now - self._last.get(reason, -1e9) >= self.interval:
            self._last[reason] = now
            logger.warning(message, self._pending.pop(reason))

    def flush(self) -> None:
        """Log what is counted but not yet told (at exit: every count is told once)."""
        for reason, count in list(self._pending.items()):
            del self._pending[reason]
            logger.warning(self._messages[reason], count)


def _contains(sent: int | set[int] | None, span_id: int) -> bool:
    """Whether ``span_id`` is among a trace's sent span ids (see ``_sent``)."""
    if sent is None:
        return False
    if type(sent) is int:
        return sent == span_id
    return span_id in sent  # type: ignore[operator]


class WidgetTraceSpanProcessor(ExportThreadProcessor):
    """Turns each local trace tree into Sentry transactions, off the application's thread."""

    def __init__(
        self,
        *,
        resource: Resource | None = None,
        release: str | None = None,
        environment: str | None = None,
        send_default_pii: bool = False,
        max_spans_per_transaction: int = 1000,
        buffer_max_spans: int = 100_000,
        open_span_timeout_s: float = 300.0,
        queue_size: int = 20_000,
        shutdown_timeout_s: float = SHUTDOWN_FLUSH_S,
        grace_s: float = DEFAULT_GRACE_S,
        tick_s: float = DEFAULT_TICK_S,
        get_client: Callable[[], Any] = sentry_sdk.get_client,
        scrubber: Scrubber | None = None,
    ) -> None:
        self._release = release
        self._environment = environment
        self._scrubber = scrubber or Scrubber(send_default_pii)
        self._max_spans = max_spans_per_transaction
        self._buffer_max = buffer_max_spans
        self._timeout = open_span_timeout_s
        self._queue_size = queue_size
        self._shutdown_timeout = shutdown_timeout_s
        self._grace = grace_s
        self._tick = tick_s
        self._get_client = get_client
        self._resource_tags = resource_tags_of(resource)
        self._log = _RateLimitedLog()
        self._setup()
        if hasattr(os, "register_at_fork"):
            # A forked worker (gunicorn, multiprocessing) needs its own thread and queue; a weak
            # reference so processors already shut down stay down (and can be collected).
            ref = weakref.ref(self)

            def restart_in_child() -> None:
                processor = ref()
                if processor is not None and not processor._stopped:
                    processor._setup()

            os.register_at_fork(after_in_child=restart_in_child)

    def _setup(self) -> None:
        self._queue: deque[Ended] = deque()
        # A forked child gets its own encoder: event ids are unique per process.
        self._encoder = TransactionEncoder(
            scrubber=self._scrubber,
            release=self._release,
            environment=self._environment,
            resource_tags=self._resource_tags,
        )
        self._client: Any = self._get_client()
        self._encoder.begin(self._client)
        self._workers: list[Callable[[], bool]] = []
        self._workers_for: Any = None
        self._reset_outbox()
        self._dropped = 0
        self._drop_lock = threading.Lock()
        # Traces with ended spans waiting for their transaction.
        self._open: dict[int, _Trace] = {}
        # Span ids already sent, per trace (an int while it is one), kept SENT_RETENTION_S to
        # recognise late children; _forget orders them by when they were last added to.
        self._sent: dict[int, int | set[int]] = {}
        self._forget: deque[tuple[float, int]] = deque()
        self._last_sent: dict[int, float] = {}  # only traces sent to more than once
        self._due: deque[tuple[float, int]] = deque()
        self._buffered = 0
        self._next_expiry_scan = 0.0
        self._requests: list[_FlushRequest] = []
        self._requests_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = False
        self._thread = threading.Thread(
            target=self._run, name="widgettrace-sentry-export", daemon=True
        )
        self._thread.start()

    # --- application thread: record only -----------------------------------------------------

    def on_start(self, span: Any, parent_context: context_api.Context | None = None) -> None:
        """Nothing to do: all work happens when the span ends, in the background."""

    def on_end(self, span: ReadableSpan) -> None:
        """Queue what the span holds (O(1), no encoding); count it if the queue is full."""
        try:
            # Private fields and tuple indexing (a SpanContext is a tuple; [3] is trace_flags):
            # the public properties cost a Python call each, on the application's thread.
            if not span._context[3] & 1 or self._stopped:  # type: ignore[index]
                return
            queued = len(self._queue)
            if queued >= self._queue_size:
                with self._drop_lock:
                    self._dropped += 1
                return
            # Its fields, not the span: the span object is then freed here, by the thread that
            # just wrote it, not by the export thread on another core (measured: that cost more
            # than the rest of the export).
            record = ended(span)
        except Exception:  # not an SDK span after all; never raise into the application
            with internal_errors("sentry.on_end"):
                raise
            return
        self._queue.append(record)
        if queued == WAKE_AT_QUEUED:
            # Under load, drain before the tick: the garbage collector walks every queued
            # attribute dict until it is serialised.
            self._wake.set()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Send every transaction whose root has ended, then flush the SDK transport."""
        return self._flush(expire=False, timeout=timeout_millis / 1000)

    def _final_flush(self, timeout: float) -> None:
        # Incomplete trees too, and errors first (the transport's priorities).
        self._flush(expire=True, timeout=timeout)

    def _after_stop(self, timeout: float) -> None:
        with internal_errors("sentry.shutdown_count"):
            self._report_dropped()
            self._log.flush()
            self._log_undelivered(timeout)

    def _log_undelivered(self, timeout: float) -> None:
        # At exit the SDK kills its workers and what they still hold is gone without a client
        # report (none can be sent any more): say so, so a backlog is never lost silently.
        client = self._get_client()
        pending = _pending_envelopes(client.transport) + len(self._queue)
        if pending:
            logger.warning(
                "widgettrace: exiting with %d Sentry envelope(s)/span(s) not delivered after "
                "%.1f s (WIDGETTRACE_SHUTDOWN_TIMEOUT_S); they are lost (counted in client "
                "reports)",
                pending,
                timeout,
            )

    def _flush(self, *, expire: bool, timeout: float) -> bool:
        request = _FlushRequest(expire)
        with self._requests_lock:
            self._requests.append(request)
        return self._flush_after(request.done, timeout, "sentry.flush_transport")

    # --- export thread -------------------------------------------------------------------------

    def _run(self) -> None:
        # HTTP requests made from this thread (Spotlight) must not become spans themselves.
        context_api.attach(context_api.set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
        while True:
            self._wake.wait(self._tick)
            self._wake.clear()
            with self._requests_lock:
                requests, self._requests = self._requests, []
            with internal_errors("sentry.export"):
                now = time.monotonic()
                self._drain(now)
                if requests:
                    self._flush_all(now, expire=any(r.expire for r in requests))
                else:
                    self._send_due(now)
                if now >= self._next_expiry_scan:
                    self._next_expiry_scan = now + 1.0
                    self._expire(now)
                self._ship()
                self._report_dropped()
            for request in requests:
                request.done.set()
            if self._stopped:
                return

    def _drain(self, now: float) -> None:
        self._client = self._get_client()
        self._encoder.begin(self._client)
        queue = self._queue
        open_ = self._open
        sent = self._sent
        due = now + self._grace
        popleft = queue.popleft
        record = self._encoder.record
        count = 0
        while queue:
            span = popleft()
            # A SpanContext is a tuple (trace_id, span_id, is_remote, ...): indexing it skips a
            # property call per field, per span.
            ctx = span[0]
            parent = span[1]
            tid = ctx[0]
            sid = ctx[1]
            # parent id 0: a local root (no parent, or a remote one).
            psid = 0 if parent is None or parent[2] else parent[1]
            buf = open_.get(tid)
            trace_hex = format(tid, "032x") if buf is None else buf.hex
            # Serialised now, not when its transaction is due: what waits is then bytes and
            # small tuples, which the garbage collector does not walk, instead of span objects.
            try:
                rec = record(span, sid, psid, trace_hex)
            except Exception as exc:
                with internal_errors("sentry.build_span"):
                    raise exc
                continue
            if rec is None:
                continue
            if buf is None:
                buf = open_[tid] = _Trace(now, trace_hex)
            buf.spans[sid] = rec
            count += 1
            if buf.due is None and (not psid or _contains(sent.get(tid), psid)):
                buf.due = due
                self._due.append((due, tid))
        self._buffered += count
        if self._buffered > self._buffer_max:
            self._shed(now)

    def _send_due(self, now: float) -> None:
        pending = self._due
        while pending and pending[0][0] <= now:
            _, tid = pending.popleft()
            buf = self._open.get(tid)
            if buf is not None and buf.due is not None and buf.due <= now:
                self._flush_trace(tid, buf, now, force=False)

    def _flush_all(self, now: float, *, expire: bool) -> None:
        self._due.clear()
        for tid, buf in list(self._open.items()):
            self._flush_trace(tid, buf, now, force=expire)

    def _expire(self, now: float) -> None:
        limit = now - self._timeout
        forget = now - SENT_RETENTION_S
        for tid, buf in list(self._open.items()):
            if buf.first <= limit:
                self._flush_trace(tid, buf, now, force=True)
        pending = self._forget
        sent = self._sent
        while pending and (pending[0][0] <= forget or len(pending) > SENT_RETENTION_MAX):
            when, tid = pending.popleft()
            # A trace sent to again later is queued again; only its last entry forgets it.
            last = self._last_sent.get(tid)
            if last is None or last <= max(forget, when):
                sent.pop(tid, None)
                self._last_sent.pop(tid, None)

    def _shed(self, now: float) -> None:
        """Too many ended spans held: send the oldest traces as they are."""
        for tid, buf in list(self._open.items()):
            if self._buffered <= self._buffer_max * 0.9:
                break
            self._flush_trace(tid, buf, now, force=True)
        self._log.add(
            "buffer_full",
            1,
            "widgettrace: more than WIDGETTRACE_BUFFER_MAX_SPANS ended spans were waiting for "
            "their transactions; sent the oldest traces incomplete (%d times)",
        )

    def _flush_trace(self, tid: int, buf: _Trace, now: float, *, force: bool) -> None:
        spans = buf.spans
        buf.due = None
        children: dict[int, list[tuple[int, Rec]]] = {}
        if len(spans) == 1:  # a root alone, the most common transaction
            tops = list(spans.items())
        else:
            tops = []
            for sid, rec in spans.items():
                psid = rec[0]
                if psid and psid in spans:
                    kids = children.get(psid)
                    if kids is None:
                        children[psid] = [(sid, rec)]
                    else:
                        kids.append((sid, rec))
                else:
                    tops.append((sid, rec))
        sent = self._sent.get(tid)
        for top_sid, top in tops:
            psid = top[0]
            if psid and not force and not _contains(sent, psid):
                continue  # its parent is still open: wait for it (or the timeout)
            members: list[Rec] = []
            ids: list[int] = []
            if children:
                stack = [top_sid]
                while stack:
                    kids = children.get(stack.pop())
                    if kids:
                        for sid, rec in kids:
                            members.append(rec)
                            ids.append(sid)
                            stack.append(sid)
                            del spans[sid]
            del spans[top_sid]
            self._buffered -= len(members) + 1
            if sent is None:
                # A root alone (the common case) is remembered as a bare int: no set to walk.
                sent = {top_sid, *ids} if ids else top_sid
            else:
                if type(sent) is int:
                    sent = {sent}
                sent.add(top_sid)  # type: ignore[union-attr]
                sent.update(ids)  # type: ignore[union-attr]
                self._last_sent[tid] = now  # sent to again: forget from this send on
            self._sent[tid] = sent
            self._forget.append((now, tid))
            try:
                self._send_transaction(buf.hex, top_sid, top, members)
            except Exception as exc:
                # One broken transaction must not stop the batch; the guard's context manager
                # costs a few microseconds, so it is only entered on failure.
                with internal_errors("sentry.build_transaction"):
                    raise exc
        if not spans:
            self._open.pop(tid, None)

    # --- building and sending --------------------------------------------------------------

    def _send_transaction(
        self, trace_hex: str, top_sid: int, top: Rec, members: Sequence[Rec]
    ) -> None:
        client = self._client
        transport = client.transport
        spotlight = getattr(client, "spotlight", None)
        if transport is None and spotlight is None:
            return
        dropped = len(members) - self._max_spans
        if dropped > 0:
            members = sorted(members, key=lambda m: m[1])[: self._max_spans]
            self._record_lost("buffer_overflow", dropped)
            self._log.add(
                "max_spans",
                dropped,
                "widgettrace: a transaction had more than "
                "WIDGETTRACE_MAX_SPANS_PER_TRANSACTION spans; %d spans dropped (counted in "
                "Sentry client reports as buffer_overflow)",
            )
        envelope = self._encoder.envelope(trace_hex, top, members)
        if spotlight is not None:
            with internal_errors("sentry.spotlight"):
                spotlight.capture_envelope(envelope)
        if transport is not None:
            self._send_out(transport, envelope)

    def _enqueue(self, transport: Any, envelope: Envelope) -> None:
        self._wait_for_room(transport)
        transport.capture_envelope(envelope)

    def _wait_for_room(self, transport: Any) -> None:
        if transport is not self._workers_for:
            self._workers_for = transport
            # Our transports say whether they would drop now: the local log's queue (the
            # embedded default is worth waiting for); the HTTP delivery never makes us wait
            # (a slow Sentry must not hold back the local log or grow our queue). The SDK's
            # own transports queue on a BackgroundWorker, whose full() says the same.
            self._workers = []
            check = getattr(transport, "queue_full", None)
            if check is None:
                check = getattr(getattr(transport, "_worker", None), "full", None)
            if callable(check):
                self._workers.append(check)
        workers = self._workers
        for full in workers:
            if full():
                break
        else:
            return
        deadline = time.monotonic() + BACKPRESSURE_WAIT_S
        while any(full() for full in workers):
            if time.monotonic() >= deadline or self._stopped:
                self._log.add(
                    "transport_full",
                    1,
                    "widgettrace: the Sentry transport cannot keep up; transactions dropped "
                    "(counted in Sentry client reports as queue_overflow; waited %d times)",
                )
                return
            time.sleep(0.002)

    def _record_lost(self, reason: str, quantity: int) -> None:
        with internal_errors("sentry.record_lost"):
            transport = self._client.transport
            if transport is not None and quantity > 0:
                transport.record_lost_event(reason, data_category="span", quantity=quantity)

    def _report_dropped(self) -> None:
        if not self._dropped:
            return
        with self._drop_lock:
            dropped, self._dropped = self._dropped, 0
        self._record_lost("queue_overflow", dropped)
        self._log.add(
            "queue_full",
            dropped,
            "widgettrace: the span export queue (WIDGETTRACE_QUEUE_SIZE) was full; %d spans "
            "dropped (counted in Sentry client reports as queue_overflow)",
        )


def _pending_envelopes(transport: Any) -> int:
    """Envelopes still queued in the SDK transport's background worker(s)."""
    counted = getattr(transport, "pending_envelopes", None)
    if callable(counted):
        return int(counted())
    pending = 0
    for holder in (transport, getattr(transport, "inner", None)):
        queue = getattr(getattr(holder, "_worker", None), "_queue", None)
        if queue is not None:
            pending += queue.qsize()
    return pending
