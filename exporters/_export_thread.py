"""What the two Sentry span processors share: one export thread, flushed and stopped the same way.

:class:`~widgettrace.exporters._transactions.WidgetTraceSpanProcessor` (transactions) and
:class:`~widgettrace.exporters._stream.StreamSpanProcessor` (span v2 items) both queue ended
spans on the application's thread and do everything else on their own daemon thread. A flush
asks that thread to send what it holds (it sets the request's event when done), then flushes the
SDK transport with the time left; shutdown flushes, stops the thread and joins it, all within
one deadline (``WIDGETTRACE_SHUTDOWN_TIMEOUT_S``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from opentelemetry.sdk.trace import SpanProcessor

from widgettrace.instrumentation._guard import internal_errors

__all__ = ["ExportThreadProcessor"]


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
