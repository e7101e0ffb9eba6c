"""Catch every exception that escapes an instrumented span, sampled or not.

OTel records an escaping exception on the span in ``opentelemetry.trace.use_span`` (which the
SDK's ``start_as_current_span``, the ASGI middleware and manual ``use_span`` all go through), but
only when the span is recording: an unsampled trace's errors vanish. :func:`install` replaces
``use_span`` with :class:`_UseSpan`, a class-based context manager with the same behaviour (and
lower cost than the generator it replaces) that also forwards the exception to
:func:`widgettrace.instrumentation.scope.report_escaped` when it leaves the *outermost* span that
will see it:

* the span has no local parent in the current context (no parent, or a remote one), or
* the span is a SERVER or CONSUMER span (work for someone else ends there), or
* the parent span was made current by another thread or asyncio task (the exception cannot
  propagate into it: it ends the thread or the task).

Inner spans only note themselves as the exception's origin (the innermost span wins), so the
error event links to the span where it was raised while its traceback runs from the outermost
span down to the raise point. An exception the application catches between two spans never
reaches a boundary and is not reported. :func:`uninstall` restores the original.
"""

from __future__ import annotations

import contextlib
import threading
from types import TracebackType
from typing import Any

from opentelemetry import context as context_api
from opentelemetry import trace as trace_api
from opentelemetry.trace import Span, Status, StatusCode
from opentelemetry.trace.propagation import _SPAN_KEY

from widgettrace.instrumentation import scope
from widgettrace.instrumentation._guard import internal_errors

__all__ = ["install", "installed", "uninstall"]

_OWNER_KEY = scope.SPAN_OWNER_KEY
_owner = scope.span_owner
_exception_escaped = scope.exception_escaped
_original: Any = None
_lock = threading.Lock()
_Context = context_api.Context
_get_current = context_api.get_current
_attach = context_api.attach
_detach = context_api.detach


class _UseSpan(contextlib.ContextDecorator):
    """``opentelemetry.trace.use_span`` plus escape detection (see the module docstring)."""

    __slots__ = ("_end", "_record", "_set_status", "_span", "_token")

    def __init__(
        self,
        span: Span,
        end_on_exit: bool = False,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> None:
        self._span = span
        self._end = end_on_exit
        self._record = record_exception
        self._set_status = set_status_on_exception
        self._token: object = None

    def _recreate_cm(self) -> _UseSpan:
        # Used as a decorator: each call gets its own activation.
        return _UseSpan(self._span, self._end, self._record, self._set_status)

    def __enter__(self) -> Span:
        # One Context copy holding both the span and who activated it (same cost as
        # context_api.set_value, which also copies).
        values = dict(_get_current())
        values[_SPAN_KEY] = self._span
        values[_OWNER_KEY] = _owner()
        self._token = _attach(_Context(values))
        return self._span

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        span = self._span
        try:
            _detach(self._token)  # type: ignore[arg-type]
            # Like upstream: only Exception subclasses are errors (not GeneratorExit & co).
            if isinstance(exc, Exception):
                if isinstance(span, Span) and span.is_recording():
                    if self._record:
                        span.record_exception(exc)
                    if self._set_status:
                        span.set_status(
                            Status(
                                status_code=StatusCode.ERROR,
                                description=f"{type(exc).__name__}: {exc}",
                            )
                        )
                with internal_errors("sentry.error_capture"):
                    # After detach: the current context is the one the span was activated in.
                    _exception_escaped(exc, span)
        finally:
            if self._end:
                span.end()


def installed() -> bool:
    """Whether :func:`install` is in effect."""
    return _original is not None


def install() -> None:
    """Replace ``opentelemetry.trace.use_span`` (idempotent)."""
    global _original
    with _lock:
        if _original is not None:
            return
        _original = trace_api.use_span
        trace_api.use_span = _UseSpan  # type: ignore[assignment]


def uninstall() -> None:
    """Restore the original ``use_span``."""
    global _original
    with _lock:
        if _original is None:
            return
        trace_api.use_span = _original
        _original = None
