"""Envelopes to a transport's background worker in batches: one job per burst, not per envelope.

sentry-sdk's transports queue one job per envelope on a ``BackgroundWorker``, whose thread runs
it and then calls ``time.sleep(0)``: a GIL handoff to the application for every envelope. At a
thousand transactions a second that ping-pong, not the sending, is what a web server feels (on
this project's 2-core machines it cost a FastAPI endpoint more CPU per request than building the
transactions). widgettrace's export thread hands over transactions in bursts, so
:class:`BatchedSubmit` keeps them in a bounded deque and schedules a single job that hands every
envelope waiting to ``send`` as one list, however many arrive while it runs, bounded in count
and in bytes. The
worker, its thread and its flush semantics stay the SDK's. The local log's writer uses it.

:class:`FastEnvelopes` is the SDK's envelope preparation for HTTP, cheaper: it serialises
envelopes with orjson and leaves bodies under ``COMPRESS_MIN_BYTES`` (a transaction of a few
spans) uncompressed: starting a gzip stream costs ~80 us here, more than building the
transaction, to save about a kilobyte. The rest (rate limits, retries, client reports,
``record_lost_event``) is unchanged. :mod:`widgettrace.exporters._delivery` sends with it.
"""

from __future__ import annotations

import io
import logging
import os
import threading
import weakref
import zlib
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import orjson
from sentry_sdk.client import _client_init_debug
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import HttpTransport
from sentry_sdk.utils import capture_internal_exceptions, json_dumps
from sentry_sdk.utils import logger as sdk_logger

if TYPE_CHECKING:
    _Base = HttpTransport
else:
    _Base = object

__all__ = [
    "COMPRESS_MIN_BYTES",
    "BatchedSubmit",
    "FastEnvelopes",
    "envelope_bytes",
]

T = TypeVar("T")

#: Bodies smaller than this go out uncompressed (see the module docstring).
COMPRESS_MIN_BYTES = 4096


def _json(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:
        return json_dumps(value)


def envelope_bytes(envelope: Envelope) -> bytes:
    """``envelope.serialize()``, byte for byte the SDK's format, at orjson's speed."""
    parts = [_json(envelope.headers), b"\n"]
    for item in envelope.items:
        payload = item.get_bytes()
        headers = dict(item.headers)
        headers["length"] = len(payload)
        parts += (_json(headers), b"\n", payload, b"\n")
    return b"".join(parts)


class BatchedSubmit(Generic[T]):
    """A bounded queue of envelopes in front of a ``BackgroundWorker`` (see the module doc)."""

    def __init__(
        self,
        worker: Any,
        send: Callable[[list[T]], None],
        *,
        max_pending: int,
        after_batch: Callable[[], None] | None = None,
        size: Callable[[T], int] | None = None,
        max_bytes: int = 0,
    ) -> None:
        self._worker = worker
        #: Takes each batch whole (the local log writes it in a few writes); an envelope that
        #: fails must not cost the others: ``send`` guards each.
        self._send = send
        self._after_batch = after_batch
        self.max_pending = max_pending
        #: With ``size``: bytes held at most (0: no byte bound).
        self._size = size
        self.max_bytes = max_bytes
        self._bytes = 0
        self._pending: deque[T] = deque()
        self._lock = threading.Lock()
        self._scheduled = False
        if hasattr(os, "register_at_fork"):
            ref = weakref.ref(self)

            def after_in_child() -> None:
                alive = ref()
                if alive is not None:
                    alive._reset_after_fork()

            os.register_at_fork(after_in_child=after_in_child)

    def _reset_after_fork(self) -> None:
        # The parent sends what it queued; a child must not send it a second time, and a lock
        # held by the parent's worker at fork time would never be released here.
        self._lock = threading.Lock()
        self._pending.clear()
        self._bytes = 0
        self._scheduled = False

    def submit(self, envelope: T, *, reserve: bool = False) -> bool:
        """Queue ``envelope``; False when full (the caller counts the loss, as the SDK does).

        ``reserve``: may use a second bound's worth beyond :meth:`full` (for errors, which must
        not be refused because transactions filled the queue).
        """
        size = self._size(envelope) if self._size is not None else 0
        factor = 2 if reserve else 1
        with self._lock:
            if len(self._pending) >= self.max_pending * factor:
                return False
            if self.max_bytes and self._pending and self._bytes + size > self.max_bytes * factor:
                return False
            self._pending.append(envelope)
            self._bytes += size
            if self._scheduled:
                return True
            self._scheduled = True
        if self._worker.submit(self._run):
            return True
        # The worker's own queue is full (it never should be: it holds one job of ours).
        with self._lock:
            self._scheduled = False
            try:
                self._pending.remove(envelope)
            except ValueError:
                return True  # already taken by a running batch
            self._bytes -= size
        return False

    def pending(self) -> int:
        """Envelopes waiting for the worker."""
        return len(self._pending)

    def pending_bytes(self) -> int:
        """Bytes waiting for the worker (with a ``size`` function)."""
        return self._bytes

    def full(self) -> bool:
        """Whether the next :meth:`submit` would be refused."""
        return len(self._pending) >= self.max_pending or bool(
            self.max_bytes and self._bytes >= self.max_bytes
        )

    def _run(self) -> None:
        """The worker's job: send every envelope waiting, including those that arrive meanwhile."""
        pending = self._pending
        while True:
            with self._lock:
                if not pending:
                    self._scheduled = False
                    break
                batch = list(pending)
                pending.clear()
                self._bytes = 0
            with capture_internal_exceptions():
                self._send(batch)
        if self._after_batch is not None:
            with capture_internal_exceptions():
                self._after_batch()


def _sdk_debug(options: Any) -> bool:
    """Whether the SDK's debug log line would be written (``debug=True``). Its logger is at
    DEBUG whenever ``sentry_sdk.init`` ran, with a filter that reads the client's option (the
    transport's ``options`` are the client's: no ``get_client()`` per envelope)."""
    if not sdk_logger.isEnabledFor(logging.DEBUG):
        return False
    return bool(_client_init_debug.get(False) or (options or {}).get("debug"))


class FastEnvelopes(_Base):
    """Mixin for ``HttpTransport`` subclasses: the SDK's envelope preparation, cheaper (see the
    module doc). Put it before the ``HttpTransport`` class in the bases."""

    def _prepare_envelope(
        self, envelope: Envelope
    ) -> tuple[Envelope, io.BytesIO, dict[str, str]] | None:
        """The SDK's ``_prepare_envelope`` while no rate limit was ever received.

        The SDK's version checks every item against ``_disabled_until`` (two clock reads each),
        copies the envelope, and builds a debug log line (its ``description`` walks the items)
        that is then dropped: several microseconds a transaction. With ``_disabled_until``
        empty no item can be over quota, so what remains is attaching a pending client report
        and serialising. Once a rate limit arrives, the SDK's own method runs from then on.
        """
        if self._disabled_until or _sdk_debug(self.options):
            return super()._prepare_envelope(envelope)
        client_report = self._fetch_pending_client_report(interval=30)
        if client_report is not None:
            envelope = Envelope(headers=envelope.headers, items=[*envelope.items, client_report])
        content_encoding, body = self._serialize_envelope(envelope)
        headers = {"Content-Type": "application/x-sentry-envelope"}
        if content_encoding:
            headers["Content-Encoding"] = content_encoding
        return envelope, body, headers

    def _serialize_envelope(self, envelope: Envelope) -> tuple[str | None, io.BytesIO]:
        algo = self._compression_algo
        level = self._compression_level
        if algo == "br":
            return super()._serialize_envelope(envelope)
        body = envelope_bytes(envelope)
        if algo is None or level == 0 or len(body) < COMPRESS_MIN_BYTES:
            return None, io.BytesIO(body)
        # zlib's one-shot gzip (wbits 31): what GzipFile writes, without its Python layers.
        return "gzip", io.BytesIO(zlib.compress(body, 9 if level is None else level, 31))
