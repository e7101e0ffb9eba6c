"""``SpanScope``: a span to be started, as a context manager (sync and async) or a decorator.

What :func:`widgettrace.instrumentation.api.span` and every typed helper return. Kept flat on
the ``with`` path because a hot loop pays it per span; decorating delegates to
:mod:`widgettrace.instrumentation._wrappers`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Literal, TypeVar, cast

from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Tracer
from opentelemetry.trace.propagation import _SPAN_KEY  # what set_span_in_context uses
from opentelemetry.util.types import AttributeValue

from widgettrace.instrumentation import semconv as sc
from widgettrace.instrumentation._rollup import (
    _FRAME_KEY,
    _Frame,
    _FrameKind,
    _new_frame,
    _rollup_lock,
)
from widgettrace.instrumentation._spans import Attrs as _Attrs
from widgettrace.instrumentation._spans import (
    _get_current,
    _internal,
    _state,
    _tracer,
    forward_error,
    record_error,
)
from widgettrace.instrumentation._wrappers import wrap_callable
from widgettrace.instrumentation.scope import SPAN_OWNER_KEY as _SPAN_OWNER_KEY
from widgettrace.instrumentation.scope import exception_escaped as _exception_escaped
from widgettrace.instrumentation.scope import span_owner as _span_owner

__all__ = ["SpanScope"]

_F = TypeVar("_F", bound=Callable[..., Any])
_Context = context_api.Context


_Builder = Callable[..., _Attrs]
_OK_EXIT = (GeneratorExit,)


class SpanScope:
    """A span to be started: ``with``/``async with`` it, or decorate a function with it.

    Created by :func:`span` and the typed helpers; one instance is used by one ``with`` at a
    time (a decorated function creates a fresh one per call).
    """

    __slots__ = (
        "_args",
        "_attributes",
        "_build",
        "_frame",
        "_frame_kind",
        "_kind",
        "_model",
        "_name",
        "_on_result",
        "_outcome",
        "_span",
        "_token",
        "_tracer_obj",
    )

    def __init__(
        self,
        name: str | None,
        kind: SpanKind,
        attributes: Mapping[str, AttributeValue] | None,
        build: _Builder | None,
        args: tuple[Any, ...],
        outcome: bool,
        frame_kind: _FrameKind | None = None,
        model: str | None = None,
        tracer: Tracer | None = None,
        *,
        on_result: Callable[[Span, object], None] | None = None,
    ) -> None:
        self._tracer_obj = tracer
        # Called with the span and a decorated function's result (discovery counts what the
        # function found); context-manager use never calls it.
        self._on_result = on_result
        self._name = name
        self._kind = kind
        self._attributes = attributes
        self._build = build
        self._args = args
        self._outcome = outcome
        self._frame_kind = frame_kind
        self._model = model
        self._span: Span | None = None
        self._token: object = None
        self._frame: _Frame | None = None

    def _copy(self, name: str) -> SpanScope:
        return SpanScope(
            name,
            self._kind,
            self._attributes,
            self._build,
            self._args,
            self._outcome,
            self._frame_kind,
            self._model,
            self._tracer_obj,
            on_result=self._on_result,
        )

    # The context-manager protocol: kept flat (no helper calls on the common path) because
    # this is what a hot loop pays per span.
    def __enter__(self) -> Span:
        tracer = self._tracer_obj
        if tracer is None:
            tracer = _tracer() if _state.unresolved else _state.tracer
        ctx = _get_current()
        span = tracer.start_span(
            self._name or "span", ctx, self._kind, cast("Any", self._attributes)
        )
        self._span = span
        # One Context copy for everything this span puts in it (set_value copies each time).
        values = dict(ctx)
        values[_SPAN_KEY] = span
        # Who activated the span, so an exception leaving it can tell whether it will still
        # reach the parent (same thread/task) or ends here (see scope.exception_escaped).
        values[_SPAN_OWNER_KEY] = _span_owner()
        if span.is_recording():
            try:
                if self._build is not None:
                    span.set_attributes(self._build(*self._args))
                if self._frame_kind is not None:
                    frame = _new_frame(
                        self._frame_kind, span, trace.get_current_span(ctx), self._model, ctx
                    )
                    self._frame = frame
                    values[_FRAME_KEY] = frame
            except Exception as exc:
                _internal("api.span_start", exc)
        elif self._frame_kind == "llm":
            # Unsampled: no roll-ups, but record_llm_usage still needs the model to return the
            # call's cost (applications use it for budgets). LLM calls are never a hot loop.
            values[_FRAME_KEY] = _Frame("llm", span, None, self._model)
        new_ctx = _Context(values)
        self._token = context_api.attach(new_ctx)
        return span

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        span = self._span
        if span is None:  # pragma: no cover - __exit__ without __enter__
            return False
        if span.is_recording():
            try:
                self._finish(span, exc)
            except Exception as error:
                _internal("api.span_end", error)
        elif exc is not None:
            try:
                forward_error(span, exc)
            except Exception as error:
                _internal("api.span_end", error)
        context_api.detach(self._token)  # type: ignore[arg-type]
        if exc is not None:
            try:
                _exception_escaped(exc, span)
            except Exception as error:
                _internal("api.span_escape", error)
        span.end()
        return False

    def _finish(self, span: Span, exc: BaseException | None) -> None:
        failed = exc is not None and not isinstance(exc, _OK_EXIT)
        if failed:
            record_error(span, cast("BaseException", exc))
        if self._outcome:
            attrs = getattr(span, "attributes", None)
            if attrs is None or sc.WIDGET_OUTCOME not in attrs:
                span.set_attribute(
                    sc.WIDGET_OUTCOME,
                    sc.WIDGET_OUTCOME_FAILURE if failed else sc.WIDGET_OUTCOME_SUCCESS,
                )
        frame = self._frame
        if frame is not None and frame.kind != "llm":
            with _rollup_lock:
                attrs_out = frame.attributes(False)
            if attrs_out:
                span.set_attributes(attrs_out)

    async def __aenter__(self) -> Span:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Literal[False]:
        return self.__exit__(exc_type, exc, tb)

    # --- decorator -------------------------------------------------------------------------

    def __call__(self, func: _F) -> _F:
        """Trace every call of ``func`` (sync, coroutine, generator or async generator)."""
        return cast("_F", wrap_callable(func, self))
