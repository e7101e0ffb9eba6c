"""Envelopes waiting for delivery: priorities, queues bounded in count and bytes, backoff.

The parts of :mod:`widgettrace.exporters._delivery` that hold and order envelopes, apart from
the transport that sends them:

* :data:`PRIORITY`: errors, sessions, logs and client reports go before spans and transactions;
* :class:`EnvelopeQueue`: one queue per priority, each bounded in envelopes *and* bytes (what
  does not fit is refused, never waited for); senders take envelopes one at a time or in
  pipelined batches;
* :class:`Destination`: after a failure the destination gets one attempt per backoff window
  (1 s doubling to 60 s); :class:`DropLog` names an outage once when it starts and once when it
  ends, with counts;
* envelope filters (:func:`add_envelope_filter`): functions every envelope passes once, on a
  background thread, before it reaches any sink.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from sentry_sdk.envelope import Envelope

from widgettrace.instrumentation._guard import internal_errors, logger

__all__ = [
    "BACKOFF_MAX_S",
    "BACKOFF_MIN_S",
    "HIGH",
    "LOW",
    "PIPELINE",
    "PIPELINE_BYTES",
    "PRIORITY",
    "QUEUE_LIMITS",
    "Destination",
    "DropLog",
    "EnvelopeQueue",
    "add_envelope_filter",
    "envelope_priority",
    "envelope_size",
    "filter_envelope",
    "remove_envelope_filter",
]

HIGH = 0
LOW = 1
#: Item types sent (and flushed at exit) before spans and transactions; any other type is LOW.
PRIORITY: dict[str, int] = {
    name: HIGH
    for name in (
        "event",
        "session",
        "sessions",
        "log",
        "client_report",
        "check_in",
        "attachment",
        "user_report",
        "feedback",
    )
}

#: Per priority: (envelopes, bytes) held at most. Errors are rare and matter most; spans and
#: transactions are many and are dropped first. 4 MB is ~2,000 transactions of a few spans: a
#: few seconds of a busy server riding out a short outage, within the 20 MB an app may grow by
#: while its Sentry is down (bytes counted with the objects around them: _ENVELOPE_OVERHEAD).
QUEUE_LIMITS: dict[int, tuple[int, int]] = {HIGH: (2_000, 4 << 20), LOW: (20_000, 4 << 20)}
#: Most envelopes (and bytes) one sender writes at once, pipelined on its connection (the fast
#: request path only; through urllib3 each envelope is one round trip). A sender starts at 2
#: and doubles while the server answers a batch within PIPELINE_TARGET_S; a server that
#: answers pipelined requests one by one slowly gets smaller batches (and, by the round trip,
#: more connections), so a slow receiver is not fed 64 requests to work through in turn.
PIPELINE = 64
PIPELINE_BYTES = 1 << 20

#: Backoff after a failure: first window, and the ceiling it doubles up to.
BACKOFF_MIN_S = 1.0
BACKOFF_MAX_S = 60.0

#: What an envelope costs beyond its payload bytes: the Envelope, Item and PayloadRef objects,
#: their header dicts (measured with tracemalloc on the span processor's transactions: ~1.25 KB).
_ENVELOPE_OVERHEAD = 1280

_filters: list[Callable[[Envelope], Envelope | None]] = []


def add_envelope_filter(fn: Callable[[Envelope], Envelope | None]) -> None:
    """Run ``fn`` on every envelope before any sink sees it; ``None`` from it drops the envelope.

    It runs once per envelope on a background thread (the local log's writer, or the HTTP
    sender when the local log is off), never on the application's thread.
    """
    if fn not in _filters:
        _filters.append(fn)


def remove_envelope_filter(fn: Callable[[Envelope], Envelope | None]) -> None:
    """Undo :func:`add_envelope_filter`."""
    if fn in _filters:
        _filters.remove(fn)


def filter_envelope(envelope: Envelope) -> Envelope | None:
    """``envelope`` through every registered filter. A filter that raises drops the envelope:
    sending what a scrubber could not look at would be worse than losing it."""
    for fn in list(_filters):
        try:
            result = fn(envelope)
        except Exception:
            with internal_errors("delivery.envelope_filter"):
                raise
            return None
        if result is None:
            return None
        envelope = result
    return envelope


def envelope_priority(envelope: Envelope) -> int:
    """The highest priority of the envelope's items (:data:`PRIORITY`)."""
    best = LOW
    for item in envelope.items:
        if PRIORITY.get(item.type or "", LOW) == HIGH:
            return HIGH
    return best


def envelope_size(envelope: Envelope) -> int:
    """Bytes the envelope holds (its payloads; a JSON payload is serialised once and kept)."""
    return _ENVELOPE_OVERHEAD + sum(len(item.get_bytes()) for item in envelope.items)


class EnvelopeQueue:
    """One FIFO per priority, each bounded in envelopes and bytes; HIGH is taken first."""

    def __init__(self, limits: dict[int, tuple[int, int]] | None = None) -> None:
        self.limits = dict(QUEUE_LIMITS if limits is None else limits)
        self._queues: dict[int, deque[tuple[Envelope, int]]] = {p: deque() for p in self.limits}
        self._bytes = dict.fromkeys(self.limits, 0)
        self.in_flight = 0
        self._new_conditions()

    def _new_conditions(self) -> None:
        lock = threading.Lock()
        #: Senders wait on it for an envelope (one woken per envelope put).
        self.cond = threading.Condition(lock)
        #: flush() waits on it for an outcome. A separate condition on the same lock: waking
        #: every idle sender at each outcome cost a third of the senders' CPU at 1,000/s.
        self.settled = threading.Condition(lock)
        #: A sender lingering for a fuller batch waits on it: woken only by what must not
        #: wait (a HIGH envelope, a full batch, :meth:`hurry`), not by every envelope.
        self.gather = threading.Condition(lock)
        #: While above 0 (a flush, exit), senders do not linger.
        self.urgent = 0
        #: Senders waiting on ``cond`` for an envelope.
        self.idle = 0

    def _wait_for_one(self, timeout: float) -> None:
        self.idle += 1
        try:
            self.cond.wait(timeout)
        finally:
            self.idle -= 1

    def put(self, envelope: Envelope, priority: int, size: int) -> bool:
        """Queue the envelope; False (and nothing queued) when its priority's queue is full."""
        with self.cond:
            if not self.has_room(priority, size):
                return False
            queue = self._queues[priority]
            queue.append((envelope, size))
            self._bytes[priority] += size
            if self.idle:  # notify() costs even with nobody waiting, at every envelope
                self.cond.notify()
            if priority == HIGH or len(queue) == PIPELINE:
                self.gather.notify_all()
            return True

    def get(self, timeout: float) -> Envelope | None:
        """The oldest envelope of the highest priority waiting, or None after ``timeout``."""
        batch = self.get_many(timeout, 1)
        return batch[0] if batch else None

    def get_many(
        self, timeout: float, limit: int, linger: float = 0.0, max_bytes: int = PIPELINE_BYTES
    ) -> list[Envelope]:
        """Up to ``limit`` envelopes (HIGH first, then oldest first, at least one, at most
        ``max_bytes`` beyond the first), or none after ``timeout``. With ``linger``, while only
        spans and transactions wait and fewer than ``limit``, wait that long for more."""
        with self.cond:
            if not self.waiting():
                self._wait_for_one(timeout)
                if not self.waiting():
                    return []
            waiting = sum(len(q) for q in self._queues.values())
            if linger and not self.urgent and not self._queues.get(HIGH) and waiting < limit:
                self.gather.wait(linger)
            out: list[Envelope] = []
            taken = 0
            for priority in sorted(self._queues):
                queue = self._queues[priority]
                while queue and len(out) < limit:
                    envelope, size = queue[0]
                    if out and taken + size > max_bytes:
                        break
                    queue.popleft()
                    self._bytes[priority] -= size
                    taken += size
                    out.append(envelope)
            self.in_flight += len(out)  # under the same lock: flush() never sees a gap
            return out

    def hurry(self, by: int) -> None:
        """``+1``: senders stop lingering until the matching ``-1`` (flush, exit)."""
        with self.cond:
            self.urgent += by
            self.gather.notify_all()

    def done(self, count: int = 1) -> None:
        """``count`` envelopes :meth:`get` or :meth:`get_many` returned have their outcome."""
        with self.cond:
            self.in_flight -= count
            self.settled.notify_all()

    def busy(self) -> int:
        """Envelopes queued or taken and not yet done (call with ``cond`` held)."""
        return sum(len(q) for q in self._queues.values()) + self.in_flight

    def waiting(self) -> bool:
        """Whether any envelope is queued (call with ``cond`` held)."""
        return any(self._queues.values())

    def has_room(self, priority: int, size: int) -> bool:
        """Whether :meth:`put` would take an envelope of ``size`` bytes now (call with ``cond``
        held: its lock is not reentrant)."""
        count_limit, byte_limit = self.limits[priority]
        queue = self._queues[priority]
        return len(queue) < count_limit and (
            not queue or self._bytes[priority] + size <= byte_limit
        )

    def full(self, priority: int) -> bool:
        with self.cond:
            count_limit, byte_limit = self.limits[priority]
            return len(self._queues[priority]) >= count_limit or self._bytes[priority] >= byte_limit

    def __len__(self) -> int:
        with self.cond:
            return sum(len(q) for q in self._queues.values())

    def nbytes(self) -> int:
        with self.cond:
            return sum(self._bytes.values())

    def take_all(self) -> list[Envelope]:
        """Empty the queue and return what it held (HIGH first)."""
        with self.cond:
            out = [env for p in sorted(self._queues) for env, _ in self._queues[p]]
            for priority, queue in self._queues.items():
                queue.clear()
                self._bytes[priority] = 0
            return out

    def clear_after_fork(self) -> None:
        self._new_conditions()
        self.in_flight = 0
        self.urgent = 0
        self.idle = 0
        for priority, queue in self._queues.items():
            queue.clear()
            self._bytes[priority] = 0


class Destination:
    """Whether a destination may be tried now, and the honest story of its failures.

    Closed (healthy): every sender sends. After a failure: open for a backoff window (doubling),
    then ONE sender probes; its success closes it, its failure opens a longer window. One
    warning when it starts failing, one when it recovers, each with counts.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.cond = threading.Condition()
        self.failing_since: float | None = None
        self.retry_at = 0.0
        self.backoff = 0.0
        self.probing = False
        self.prober = 0  # the thread that holds the probe
        self.failures = 0  # requests that failed during this outage
        self.dropped_at_start = 0
        self.last_reason = ""
        #: Totals over the transport's life (tests and the benchmark read them).
        self.total_failures = 0
        self.outages = 0

    @property
    def failing(self) -> bool:
        return self.failing_since is not None

    def permit(self, timeout: float) -> bool:
        """Wait (at most ``timeout``) until a request may be made; True when it may."""
        if self.failing_since is None:
            return True  # healthy: no lock per envelope (a failure just now costs one request)
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                if self.failing_since is None:
                    return True
                now = time.monotonic()
                if not self.probing and now >= self.retry_at:
                    self.probing = True
                    self.prober = threading.get_ident()
                    return True
                wait = min(deadline, self.retry_at if not self.probing else deadline) - now
                if wait <= 0:
                    return False
                self.cond.wait(wait)

    def succeeded(self, dropped: int) -> None:
        with self.cond:
            self.probing = False
            if self.failing_since is None:
                return
            took = time.monotonic() - self.failing_since
            failures, self.failures = self.failures, 0
            self.failing_since = None
            self.backoff = 0.0
            self.cond.notify_all()
        logger.warning(
            "widgettrace: Sentry at %s recovered after %.1f s: %d request(s) failed (%s), "
            "%d envelope(s) dropped meanwhile (in client reports)",
            self.name,
            took,
            failures,
            self.last_reason,
            dropped - self.dropped_at_start,
        )

    def failed(self, reason: str, dropped: int, queued: int, *, backoff: bool = True) -> None:
        with self.cond:
            self.probing = False
            self.failures += 1
            self.total_failures += 1
            self.last_reason = reason
            first = self.failing_since is None
            if first:
                self.failing_since = time.monotonic()
                self.dropped_at_start = dropped
                self.outages += 1
            if backoff:
                self.backoff = min(BACKOFF_MAX_S, max(BACKOFF_MIN_S, self.backoff * 2))
                self.retry_at = time.monotonic() + self.backoff
            self.cond.notify_all()
        if first:
            logger.warning(
                "widgettrace: Sentry at %s is failing (%s); %d envelope(s) queued, retrying "
                "%s; a line follows when it recovers",
                self.name,
                reason,
                queued,
                f"every {BACKOFF_MIN_S:g}-{BACKOFF_MAX_S:g} s" if backoff else "as allowed",
            )

    def release(self) -> None:
        """The calling thread's request had no outcome (nothing was sent: rate limited by the
        SDK, dropped by a filter): give the probe back, or no sender would ever try again."""
        if not self.probing:
            return  # set only under the lock, by permit(); nothing to give back
        with self.cond:
            if self.probing and self.prober == threading.get_ident():
                self.probing = False
                self.cond.notify_all()

    def wake(self) -> None:
        with self.cond:
            self.cond.notify_all()


class DropLog:
    """Exact drop counts in at most one warning a minute (the first drop is told at once)."""

    def __init__(self, name: str, interval: float = 60.0) -> None:
        self.name = name
        self.interval = interval
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._last = -1e9

    def add(self, reason: str, count: int = 1, *, quiet: bool = False) -> None:
        with self._lock:
            self._counts[reason] = self._counts.get(reason, 0) + count
            due = not quiet and time.monotonic() - self._last >= self.interval
        if due:
            self.log_now()

    def log_now(self) -> None:
        with self._lock:
            counts, self._counts = self._counts, {}
            self._last = time.monotonic()
        if counts:
            logger.warning(
                "widgettrace: %d envelope(s) for Sentry at %s dropped since the last such line "
                "(%s; counted in client reports)",
                sum(counts.values()),
                self.name,
                ", ".join(f"{reason}: {n}" for reason, n in sorted(counts.items())),
            )
