"""Span plumbing shared by widgettrace's API and its instrumentors: the tracer, error records.

:func:`set_tracer_provider` chooses where the API's spans go (the global provider by default);
:func:`record_error` / :func:`forward_error` mark a span failed and remember it as the
exception's origin for the Sentry exporter. Used by :mod:`widgettrace.instrumentation.api` and
:mod:`widgettrace.instrumentation.functions`; applications use the API module.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode, Tracer, TracerProvider
from opentelemetry.util.types import AttributeValue

from widgettrace.instrumentation import semconv as sc
from widgettrace.instrumentation._guard import internal_errors

__all__ = [
    "Attrs",
    "fast_context_getter",
    "forward_error",
    "record_error",
    "set_tracer_provider",
]

try:
    from importlib.metadata import version as _dist_version

    __version__ = _dist_version("widgettrace")
except Exception:  # pragma: no cover - running from a source tree without metadata
    __version__ = "0.0.0"

#: Attributes as the helpers build them.
Attrs = dict[str, AttributeValue]

# --- tracer ---------------------------------------------------------------------------------


# The API's instrumentation scope name, as before the split (spans keep their scope).
_TRACER_NAME = "widgettrace.instrumentation.api"


class _TracerState:
    __slots__ = ("provider", "tracer", "unresolved")

    def __init__(self) -> None:
        self.provider: TracerProvider | None = None
        self.tracer: Tracer = trace.get_tracer(_TRACER_NAME, __version__)
        # A ProxyTracer (no global provider yet) costs an extra property and *args call per
        # span; once the global provider exists we swap in the real tracer (see _tracer()).
        self.unresolved = isinstance(self.tracer, trace.ProxyTracer)


_state = _TracerState()


def set_tracer_provider(provider: TracerProvider | None) -> None:
    """Send this API's spans to ``provider`` (None: back to the global provider).

    The global provider set by ``opentelemetry-instrument`` is used by default; tests and
    embedding applications pass their own.
    """
    _state.provider = provider
    _state.tracer = trace.get_tracer(_TRACER_NAME, __version__, provider)
    _state.unresolved = isinstance(_state.tracer, trace.ProxyTracer)


def _tracer() -> Tracer:
    if _state.unresolved:
        proxy = _state.tracer
        real: Tracer | None = getattr(proxy, "_real_tracer", None)
        if real is None and trace._TRACER_PROVIDER is not None:  # set once, at startup
            real = trace.get_tracer(_TRACER_NAME, __version__)
        if real is not None and not isinstance(real, trace.ProxyTracer):
            _state.tracer = real
            _state.unresolved = False
            return real
    return _state.tracer


def fast_context_getter() -> Callable[[], context_api.Context]:
    """The fastest way to read the current OTel context (a C-level ContextVar.get when possible).

    ``context.get_current()`` goes through two Python calls; on a path costing a few hundred
    nanoseconds that matters. Falls back to it for any other runtime context.
    """
    runtime = getattr(context_api, "_RUNTIME_CONTEXT", None)
    var = getattr(runtime, "_current_context", None)
    get = getattr(var, "get", None)
    if callable(get) and isinstance(get(), context_api.Context):
        return cast("Callable[[], context_api.Context]", get)
    return context_api.get_current


_get_current = fast_context_getter()


# --- errors ---------------------------------------------------------------------------------

_remember: Callable[..., Any] | None = None
_remember_resolved = False


def _error_type(exc: BaseException) -> str:
    cls = type(exc)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def record_error(span: Span, exc: BaseException) -> None:
    """Mark ``span`` failed by ``exc``: status ERROR, ``error.type``, exception event.

    Used by every widgettrace wrapper; the exception itself is never swallowed here (the caller
    re-raises it). Only ``Exception`` subclasses get an exception event: a cancelled task or a
    KeyboardInterrupt marks the span failed but is not an application error.
    """
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
    span.set_attribute(sc.ERROR_TYPE, _error_type(exc))
    forward_error(span, exc)


def forward_error(span: Span, exc: BaseException) -> None:
    """Record ``exc`` on ``span`` (when recording) and remember ``span`` as where it escaped.

    Called for unsampled spans too. Reporting is left to the exporter: the exception event on a
    span, and the origin remembered by the Sentry helper's ``scope.remember_origin`` (innermost
    span wins), let it send exactly one error event, linked to this span, if the exception
    escapes the outermost span. ``scope.capture_exception`` is not used here: it would report
    every exception the application later handles as an error.
    """
    global _remember, _remember_resolved
    if not isinstance(exc, Exception):
        return
    if span.is_recording():
        span.record_exception(exc)
    if not _remember_resolved:
        try:
            from widgettrace.instrumentation import scope

            _remember = getattr(scope, "remember_origin", None)
        except ImportError:
            _remember = None
        _remember_resolved = True
    if _remember is not None:
        _remember(exc, span.get_span_context())


def _internal(where: str, exc: Exception) -> None:
    # Route an error caught on the hot path through the one guard (logged once, test hook).
    with internal_errors(where):
        raise exc
