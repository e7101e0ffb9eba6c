"""Deliver what is queued when the process ends: normal exit, SIGINT, SIGTERM; errors first.

Three ways a Python server ends, and what each needs:

* normal exit and SIGINT (``KeyboardInterrupt`` unwinds, then the interpreter exits): ``atexit``
  runs. :func:`install` registers one handler *after* ``sentry_sdk.init``, so it runs before the
  SDK's own (``atexit`` is last in, first out): it sends every transaction the span processor
  still holds, then flushes the transport (errors, sessions, logs and client reports go first:
  :mod:`widgettrace.exporters._delivery`) and closes the client, all within
  ``WIDGETTRACE_SHUTDOWN_TIMEOUT_S`` (default 2 s). What is left is counted as lost and its client
  report written to the local log.
* SIGTERM with no handler of the app's (a container stop; uvicorn, which re-raises SIGTERM after
  its graceful shutdown with the handler it found at start restored): the default action kills
  the process and ``atexit`` never runs. When SIGTERM's handler is the default at start-up, a
  handler is installed that does the same flush, then restores the default and re-sends the
  signal to the process, so it still dies of SIGTERM (exit status -15 / 143) as before.
* SIGTERM with a handler of the app's: left alone; the flush runs from ``atexit`` when the app
  exits.
* uvicorn, also as gunicorn's ``uvicorn.workers.UvicornWorker`` (which resets SIGTERM to the
  default after the fork, so no handler of ours survives there): uvicorn catches the signal, shuts
  down gracefully (lifespan included), then re-raises it and dies of it without ``atexit``. A
  post-import hook wraps ``uvicorn.Server.shutdown``: when a shutdown caused by a signal is
  complete, the flush runs before uvicorn re-raises the signal.

The flush runs on its own thread and the signal handler waits for it at most the timeout (plus
a second): a handler interrupts the main thread wherever it is, possibly inside a lock the flush
would need.
"""

from __future__ import annotations

import atexit
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

import sentry_sdk
import wrapt

from widgettrace.instrumentation._guard import internal_errors

__all__ = ["install", "shutdown_now"]

_lock = threading.Lock()
_done = threading.Event()
_state: dict[str, Any] = {}


def install(processor: Any, timeout_s: float) -> None:
    """Flush ``processor`` and the Sentry client at exit and on SIGTERM (see the module doc)."""
    with _lock:
        first = not _state
        _state["processor"] = processor
        _state["timeout"] = timeout_s
        _done.clear()
    if first:
        atexit.register(shutdown_now)
        wrapt.register_post_import_hook(_hook_uvicorn, "uvicorn.server")
    _install_sigterm()


def shutdown_now() -> None:
    """Send what is held, flush errors first, close the client; at most the timeout. Idempotent."""
    with _lock:
        if _done.is_set() or not _state:
            return
        _done.set()
        processor = _state.get("processor")
        timeout = float(_state.get("timeout", 2.0))
    deadline = time.monotonic() + timeout
    # The tracer provider's own atexit handler may have shut the processor down first: it spent
    # the budget flushing then, so the client is only closed now (what is left is counted).
    flushed = processor is None or processor.stopped
    if processor is not None and not flushed:
        with internal_errors("shutdown.processor"):
            processor.shutdown_within(timeout)
    with internal_errors("shutdown.client"):
        client = sentry_sdk.get_client()
        if client.is_active():
            client.close(timeout=0.0 if flushed else max(0.0, deadline - time.monotonic()))


def _install_sigterm() -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    try:
        current = signal.getsignal(signal.SIGTERM)
    except (ValueError, OSError):
        return
    if current is _on_sigterm or current not in (signal.SIG_DFL, None):
        return  # the app's own handler (or ours already): it exits normally, atexit flushes
    with internal_errors("shutdown.install_sigterm"):
        signal.signal(signal.SIGTERM, _on_sigterm)


def _on_sigterm(signum: int, frame: Any) -> None:
    timeout = float(_state.get("timeout", 2.0))
    _run_bounded(shutdown_now, timeout + 1.0)
    # The behaviour the process had: die of SIGTERM.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _hook_uvicorn(module: Any) -> None:
    with internal_errors("shutdown.hook_uvicorn"):
        server = getattr(module, "Server", None)
        if server is None or getattr(server.shutdown, "_widgettrace", False):
            return

        original = server.shutdown

        async def shutdown(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return await original(self, *args, **kwargs)
            finally:
                # Only a shutdown a signal caused: uvicorn re-raises it next, and the process
                # dies of it without atexit. (A server stopped in a thread of a process that
                # goes on is left alone.)
                if getattr(self, "_captured_signals", None):
                    timeout = float(_state.get("timeout", 2.0))
                    _run_bounded(shutdown_now, timeout + 1.0)

        shutdown._widgettrace = True  # type: ignore[attr-defined]
        server.shutdown = shutdown


def _run_bounded(fn: Callable[[], None], timeout: float) -> None:
    thread = threading.Thread(target=fn, name="widgettrace-shutdown", daemon=True)
    thread.start()
    thread.join(timeout)
