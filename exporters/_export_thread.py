"""What the two Sentry span processors share: one export thread, flushed and stopped the same way.

:class:`~widgettrace.exporters._transactions.WidgetTraceSpanProcessor` (transactions) and
:class:`~widgettrace.exporters._stream.StreamSpanProcessor` (span v2 items) both queue ended
spans on the application's thread and do everything else on their own daemon thread. A flush
asks that thread to send what it holds (it sets the request's event when done), then flushes the
SDK transport with the time left; shutdown flushes, stops the thread and joins it, all within
one deadline (``WIDGETTRACE_SHUTDOWN_TIMEOUT_S``).

Envelopes leave the thread through ``_send_out``. A transport that can deliver them on this
thread (the HTTP delivery's ``deliver_inline``, while its destination is healthy and fast) gets
them in batches at the end of each pass (``_ship``); any other transport, and whatever the
inline delivery declines, gets each one queued with its ``capture_envelope``, behind the
subclass's back-pressure (``_enqueue``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from opentelemetry.sdk.trace import SpanProcessor
from sentry_sdk.envelope import Envelope

from widgettrace.instrumentation._guard import internal_errors

__all__ = ["INLINE_BATCH", "ExportThreadProcessor"]

#: Envelopes held for inline delivery before they are sent mid-pass (one pipelined batch).
INLINE_BATCH = 64


class ExportThreadProcessor(SpanProcessor):
    """Base of the span processors with an export thread (see the module doc).

    Subclasses set ``_stopped``, ``_wake``, ``_thread``, ``_shutdown_timeout`` and
    ``_get_client``, and implement :meth:`_final_flush`.
    """

    _stopped: bool
    _wake: threading.Event
    _thread: threading.Thread
    _shutdown_timeout: float
    _get_client: Callable[[], Any]
    #: Envelopes of the current pass held for the inline delivery of ``_inline_for``.
    _outbox: list[Envelope]
    #: The transport last handed an envelope, and its ``deliver_inline`` (None: it has none).
    _inline_for: Any = None
    _inline: Callable[[list[Envelope]], list[Envelope]] | None = None

    @property
    def stopped(self) -> bool:
        """Whether :meth:`shutdown` ran (the exit handler asks)."""
        return self._stopped

    def shutdown(self) -> None:
        """Send everything still held, stop the thread, flush the transport."""
        self.shutdown_within(self._shutdown_timeout)

    def shutdown_within(self, timeout: float) -> None:
        """:meth:`shutdown`, giving up after ``timeout`` seconds."""
        if self._stopped:
            return
        deadline = time.monotonic() + timeout
        self._final_flush(timeout)
        self._stopped = True
        self._wake.set()
        self._thread.join(timeout=max(0.1, deadline - time.monotonic()))
        self._after_stop(timeout)

    def _final_flush(self, timeout: float) -> None:
        """Send everything the thread holds, within ``timeout`` (before the thread stops)."""
        raise NotImplementedError

    def _after_stop(self, timeout: float) -> None:
        """After the thread stopped: what the subclass still has to report."""

    # --- handing envelopes to the transport (export thread) --------------------------------

    def _enqueue(self, transport: Any, envelope: Envelope) -> None:
        """Queue ``envelope`` with ``transport.capture_envelope`` (with back-pressure)."""
        raise NotImplementedError

    def _reset_outbox(self) -> None:
        """Nothing held and no transport known (at set-up, and in a forked child)."""
        self._outbox = []
        self._inline_for = None
        self._inline = None

    def _send_out(self, transport: Any, envelope: Envelope) -> None:
        """Hand ``envelope`` to ``transport``: held for :meth:`_ship` when the transport
        delivers inline, else queued now."""
        if transport is not self._inline_for:
            self._ship()
            self._inline_for = transport
            self._inline = getattr(transport, "deliver_inline", None)
        if self._inline is None:
            self._enqueue(transport, envelope)
            return
        outbox = self._outbox
        outbox.append(envelope)
        if len(outbox) >= INLINE_BATCH:
            self._ship()

    def _ship(self) -> None:
        """Deliver what :meth:`_send_out` held; queue what the inline delivery declined."""
        outbox = self._outbox
        inline = self._inline
        if not outbox or inline is None:
            return
        self._outbox = []
        transport = self._inline_for
        for envelope in inline(outbox):  # never raises: each batch's outcome is settled
            try:
                self._enqueue(transport, envelope)
            except Exception as exc:  # one envelope that fails must not cost the others
                with internal_errors("export.enqueue"):
                    raise exc

    def _flush_after(self, done: threading.Event, timeout: float, what: str) -> bool:
        """Wake the thread (the caller queued ``done``), wait for it, then flush the transport
        with the time left; True when everything finished within ``timeout``."""
        deadline = time.monotonic() + timeout
        if not self._thread.is_alive():
            return False
        self._wake.set()
        if not done.wait(timeout):
            return False
        with internal_errors(what):
            client = self._get_client()
            remaining = deadline - time.monotonic()
            if client.transport is not None and remaining > 0:
                client.transport.flush(remaining)
        return time.monotonic() < deadline
