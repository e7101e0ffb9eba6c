"""The hot-path tracing API: spans for your own code, typed helpers for widget and agent work.

Everything here is built on the OpenTelemetry API only; spans go to whatever TracerProvider is
configured (the global one by default, see :func:`set_tracer_provider`). Each helper is both a
context manager (``with`` / ``async with``) yielding the OpenTelemetry ``Span`` and a decorator
for functions, coroutines, generators and async generators::

    from widgettrace import span, discovery_span, agent_block_span, llm_call_span, record_llm_usage

    @span                                   # span named after the function's qualname
    def parse(blob): ...

    with discovery_span("huggingface", query="text-classification") as s:
        found = hub.search(...)
        s.set_attribute(semconv.WIDGET_DISCOVERY_WIDGETS_FOUND, len(found))

    with iteration_span(3):
        with agent_block_span("planner", model="gpt-4o", provider="openai"):
            with llm_call_span("gpt-4o", provider="openai"):
                reply = client.chat(...)
                record_llm_usage(input_tokens=812, output_tokens=95)
            with tool_span("search_hub"):
                ...

Helpers and what they set (names in :mod:`widgettrace.instrumentation.semconv`):

=====================  ==========================  ============================================
helper                 span name                   attributes
=====================  ==========================  ============================================
span                   given / function qualname   your ``attributes``, ``widget.op`` if ``op``
discovery_span         ``discover {source}``       widget.op=widget.discovery, widget.discovery.*
conversion_span        ``convert [{stage}]``       widget.op=widget.conversion, widget.id/type,
                                                   widget.conversion.stage
registry_span          ``registry {operation}``    widget.op=widget.registry, widget.registry.*
iteration_span         ``iteration {number}``      widget.op=widget.iteration,
                                                   widget.iteration.number, roll-ups
agent_block_span       ``invoke_agent {block}``    gen_ai.operation.name=invoke_agent,
                                                   gen_ai.agent.name, roll-ups
llm_call_span          ``chat {model}``            gen_ai.operation.name=chat, gen_ai.request.model,
                                                   gen_ai.provider.name (kind CLIENT)
tool_span              ``execute_tool {tool}``     gen_ai.operation.name=execute_tool,
                                                   gen_ai.tool.name
=====================  ==========================  ============================================

Every typed helper sets ``widget.outcome`` to ``success`` or ``failure`` on exit (unless your
code set it first, e.g. to ``partial``). An exception leaving any span is recorded on it (status
ERROR, ``error.type``, exception event; the span is remembered as the exception's origin for
the Sentry exporter) and re-raised unchanged. ``GeneratorExit`` (a consumer stopping early) is
not an error.

Token usage and cost: call :func:`record_llm_usage` inside ``llm_call_span``. It sets
``gen_ai.usage.*`` and, when the model is in the price table (``WIDGETTRACE_PRICES``, see
:mod:`widgettrace.instrumentation.pricing`), ``gen_ai.cost.input_tokens`` /
``output_tokens`` / ``total_tokens`` in USD; a model missing from the table gets no cost
attribute. The same call adds the usage to a context-local accumulator, written on exit as
``widget.cost.usd``, ``widget.usage.*`` and ``widget.llm.calls`` on every enclosing agent block
and iteration span, and as ``widget.trace.*`` on the span under which the outermost
orchestrator span started (your request or job span; the outermost helper span itself at a
trace's root). Iterations that run under the same parent share that trace roll-up. Roll-ups
stay out of ``gen_ai.cost.*`` and ``gen_ai.usage.*``: Sentry reads those per span (Relay's
conventions), so an aggregate over a trace's spans would count a call twice.

Cost: attributes are built only when the span is recording; an unsampled span costs a span
start, a context attach/detach and an end. Manual spans are not affected by
``suppress_instrumentation`` (like the OpenTelemetry API's own spans).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import threading
import weakref
from collections.abc import (
    AsyncGenerator,
    Callable,
    Generator,
    Mapping,
    Sized,
)
from types import TracebackType
from typing import Any, Final, Literal, Protocol, TypeVar, cast, overload

from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer, TracerProvider
from opentelemetry.trace.propagation import _SPAN_KEY  # what set_span_in_context uses
from opentelemetry.util.types import AttributeValue

from widgettrace.instrumentation import semconv as sc
from widgettrace.instrumentation._guard import internal_errors
from widgettrace.instrumentation.pricing import get_price_table
from widgettrace.instrumentation.scope import SPAN_OWNER_KEY as _SPAN_OWNER_KEY
from widgettrace.instrumentation.scope import exception_escaped as _exception_escaped
from widgettrace.instrumentation.scope import span_owner as _span_owner

_Context = context_api.Context

__all__ = [
    "SpanScope",
    "agent_block_span",
    "conversion_span",
    "discovery_span",
    "iteration_span",
    "llm_call_span",
    "record_llm_usage",
    "registry_span",
    "set_tracer_provider",
    "span",
    "tool_span",
]

try:
    from importlib.metadata import version as _dist_version

    __version__ = _dist_version("widgettrace")
except Exception:  # pragma: no cover - running from a source tree without metadata
    __version__ = "0.0.0"

_F = TypeVar("_F", bound=Callable[..., Any])
_Attrs = dict[str, AttributeValue]

# --- tracer ---------------------------------------------------------------------------------


class _TracerState:
    __slots__ = ("provider", "tracer", "unresolved")

    def __init__(self) -> None:
        self.provider: TracerProvider | None = None
        self.tracer: Tracer = trace.get_tracer(__name__, __version__)
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
    _state.tracer = trace.get_tracer(__name__, __version__, provider)
    _state.unresolved = isinstance(_state.tracer, trace.ProxyTracer)


def _tracer() -> Tracer:
    if _state.unresolved:
        proxy = _state.tracer
        real: Tracer | None = getattr(proxy, "_real_tracer", None)
        if real is None and trace._TRACER_PROVIDER is not None:  # set once, at startup
            real = trace.get_tracer(__name__, __version__)
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


# --- roll-up frames ------------------------------------------------------------------------

_FRAME_KEY: Final = context_api.create_key("widgettrace.api.frame")
_FrameKind = Literal["trace", "iteration", "agent", "llm"]
_ACCUMULATING: Final = frozenset({"trace", "iteration", "agent"})
_rollup_lock = threading.Lock()


class _Frame:
    """One level of the orchestrator's usage/cost accumulator, stored in the OTel context.

    Kept in the OTel context (not a separate ContextVar) so it follows the span into threads
    and tasks wherever context propagation carries the span.
    """

    __slots__ = (
        "calls",
        "cost",
        "input",
        "kind",
        "last",
        "model",
        "output",
        "parent",
        "priced",
        "span",
        "unpriced",
    )

    def __init__(
        self, kind: _FrameKind, span: Span, parent: _Frame | None, model: str | None = None
    ) -> None:
        self.kind = kind
        self.span = span
        self.parent = parent
        self.model = model
        self.cost = 0.0
        self.priced = 0
        self.unpriced = 0
        self.input = 0
        self.output = 0
        self.calls = 0
        # For an llm frame: what it last added to its ancestors (record_llm_usage may be
        # called again on the same call, e.g. while streaming; the delta is applied).
        self.last: tuple[float | None, int, int] | None = None

    def add(self, cost: float | None, input_tokens: int, output_tokens: int, calls: int) -> None:
        if cost is None:
            self.unpriced += calls
        else:
            self.cost += cost
            self.priced += calls
        self.input += input_tokens
        self.output += output_tokens
        self.calls += calls

    def attributes(self, trace_level: bool) -> _Attrs:
        attrs: _Attrs = {}
        if self.calls == 0:
            return attrs
        if trace_level:
            names = (
                sc.WIDGET_TRACE_COST_USD,
                sc.WIDGET_TRACE_COST_UNPRICED_CALLS,
                sc.WIDGET_TRACE_USAGE_INPUT_TOKENS,
                sc.WIDGET_TRACE_USAGE_OUTPUT_TOKENS,
                sc.WIDGET_TRACE_LLM_CALLS,
            )
        else:
            names = (
                sc.WIDGET_COST_USD,
                sc.WIDGET_COST_UNPRICED_CALLS,
                sc.WIDGET_USAGE_INPUT_TOKENS,
                sc.WIDGET_USAGE_OUTPUT_TOKENS,
                sc.WIDGET_LLM_CALLS,
            )
        # No priced call: no cost attribute at all (unknown is not zero).
        if self.priced:
            attrs[names[0]] = round(self.cost, 12)
        if self.unpriced:
            attrs[names[1]] = self.unpriced
        attrs[names[2]] = self.input
        attrs[names[3]] = self.output
        attrs[names[4]] = self.calls
        return attrs


# Trace roll-ups keyed by the span they are written on, so sibling iterations under one request
# span share one total. Weak keys: an entry lives as long as its span object.
_anchors: weakref.WeakKeyDictionary[Span, _Frame] = weakref.WeakKeyDictionary()


def _new_frame(
    kind: _FrameKind, span: Span, parent_span: Span, model: str | None, ctx: context_api.Context
) -> _Frame:
    parent = cast("_Frame | None", context_api.get_value(_FRAME_KEY, ctx))
    if parent is None:
        anchor = parent_span if parent_span.is_recording() else span
        with _rollup_lock:
            parent = _anchors.get(anchor)
            if parent is None:
                parent = _Frame("trace", anchor, None)
                # A span type without weakref support gets no sharing (TypeError).
                with contextlib.suppress(TypeError):
                    _anchors[anchor] = parent
    return _Frame(kind, span, parent, model)


# --- the scope: context manager + decorator --------------------------------------------------

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
    ) -> None:
        self._tracer_obj = tracer
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


def count_found(span: Span, result: object) -> None:
    """Discovery functions usually return what they found: count it unless the code did."""
    if isinstance(result, Sized) and span.is_recording():
        attrs = getattr(span, "attributes", None)
        if attrs is None or sc.WIDGET_DISCOVERY_WIDGETS_FOUND not in attrs:
            span.set_attribute(sc.WIDGET_DISCOVERY_WIDGETS_FOUND, len(result))


class Tracker(Protocol):
    """Follows one generator's iteration: ``start`` once, then ``stop`` once with its end."""

    def start(self) -> context_api.Context | None:
        """Begin; return the context to make current while the generator runs (or None)."""

    def stop(self, exc: BaseException | None) -> None:
        """End: exhausted (None), closed (GeneratorExit) or failed (the exception)."""


class SpanTracker:
    """A generator's span: started at the first ``next()``, current only inside the generator."""

    __slots__ = ("ctx", "parent", "scope")

    def __init__(self, scope: SpanScope, parent: context_api.Context) -> None:
        self.scope = scope
        self.parent = parent
        self.ctx: context_api.Context | None = None

    def start(self) -> context_api.Context:
        token = context_api.attach(self.parent)
        try:
            self.scope.__enter__()
            self.ctx = context_api.get_current()
            context_api.detach(self.scope._token)  # type: ignore[arg-type]
        finally:
            context_api.detach(token)
        return self.ctx

    def stop(self, exc: BaseException | None) -> None:
        # Re-enter the span's context: __exit__ detaches a token of its own, as after __enter__.
        self.scope._token = context_api.attach(cast("context_api.Context", self.ctx))
        self.scope.__exit__(type(exc) if exc is not None else None, exc, None)


def tracked_generator(gen: Generator[Any, Any, Any], tracker: Tracker) -> Generator[Any, Any, Any]:
    """Delegate to ``gen`` like ``yield from``, with ``tracker``'s context current inside it."""
    ctx = tracker.start()
    attach, detach = context_api.attach, context_api.detach
    value: Any = None
    to_throw: BaseException | None = None
    while True:
        token = attach(ctx) if ctx is not None else None
        try:
            item = gen.throw(to_throw) if to_throw is not None else gen.send(value)
        except StopIteration as stop:
            if token is not None:
                detach(token)
            tracker.stop(None)
            return stop.value
        except BaseException as exc:
            if token is not None:
                detach(token)
            tracker.stop(exc)
            raise
        if token is not None:
            detach(token)
        to_throw = None
        try:
            value = yield item
        except GeneratorExit as exit_exc:
            token = attach(ctx) if ctx is not None else None
            try:
                gen.close()
            except BaseException as close_exc:
                if token is not None:
                    detach(token)
                tracker.stop(close_exc)
                raise
            if token is not None:
                detach(token)
            tracker.stop(exit_exc)
            raise
        except BaseException as exc:
            to_throw = exc


def generator_wrapper(
    func: Callable[..., Generator[Any, Any, Any]], new_tracker: Callable[[], Tracker | None]
) -> Callable[..., Generator[Any, Any, Any]]:
    """A generator function (so introspection still says so) tracing each iteration of ``func``.

    ``new_tracker`` runs at the first ``next()``; None means "do not trace this one".
    """

    @functools.wraps(func)
    def gen_wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        tracker = new_tracker()
        if tracker is None:
            return (yield from func(*args, **kwargs))
        return (yield from tracked_generator(func(*args, **kwargs), tracker))

    return gen_wrapper


def async_generator_wrapper(
    func: Callable[..., AsyncGenerator[Any, Any]], new_tracker: Callable[[], Tracker | None]
) -> Callable[..., AsyncGenerator[Any, Any]]:
    """An async generator function tracing each iteration of ``func`` (see generator_wrapper)."""

    @functools.wraps(func)
    async def agen_wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
        tracker = new_tracker()
        agen = func(*args, **kwargs)
        ctx = tracker.start() if tracker is not None else None
        attach, detach = context_api.attach, context_api.detach
        value: Any = None
        to_throw: BaseException | None = None
        while True:
            token = attach(ctx) if ctx is not None else None
            try:
                if to_throw is not None:
                    item = await agen.athrow(to_throw)
                else:
                    item = await agen.asend(value)
            except StopAsyncIteration:
                if token is not None:
                    detach(token)
                if tracker is not None:
                    tracker.stop(None)
                return
            except BaseException as exc:
                if token is not None:
                    detach(token)
                if tracker is not None:
                    tracker.stop(exc)
                raise
            if token is not None:
                detach(token)
            to_throw = None
            try:
                value = yield item
            except GeneratorExit as exit_exc:
                token = attach(ctx) if ctx is not None else None
                try:
                    await agen.aclose()
                except BaseException as close_exc:
                    if token is not None:
                        detach(token)
                    if tracker is not None:
                        tracker.stop(close_exc)
                    raise
                if token is not None:
                    detach(token)
                if tracker is not None:
                    tracker.stop(exit_exc)
                raise
            except BaseException as exc:
                to_throw = exc

    return agen_wrapper


def wrap_callable(func: Callable[..., Any], template: SpanScope) -> Callable[..., Any]:
    """A wrapper running each call of ``func`` inside a fresh copy of ``template``.

    Generators and async generators get one span covering the whole iteration: it starts at the
    first ``next()`` (parented on the context current there) and is made current only while the
    generator's own code runs, so it never leaks into the consumer between items. The wrapper
    keeps the kind of ``func`` (a generator function stays one), so frameworks that introspect
    it (FastAPI dependencies with ``yield``) see the same thing.
    """
    if isinstance(func, (staticmethod, classmethod)):
        # `@span` above `@staticmethod`/`@classmethod`: trace the function, keep the descriptor.
        return type(func)(wrap_callable(func.__func__, template))
    name = template._name or getattr(func, "__qualname__", None) or repr(func)
    discovery = template._build is _discovery_attrs

    def new_tracker() -> Tracker:
        return SpanTracker(template._copy(name), context_api.get_current())

    if inspect.isasyncgenfunction(func):
        return async_generator_wrapper(func, new_tracker)

    if inspect.isgeneratorfunction(func):
        return generator_wrapper(func, new_tracker)

    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            scope = template._copy(name)
            with scope as span:
                result = await func(*args, **kwargs)
                if discovery:
                    count_found(span, result)
                return result

        return async_wrapper

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        scope = template._copy(name)
        with scope as span:
            result = func(*args, **kwargs)
            if discovery:
                count_found(span, result)
            return result

    return wrapper


# --- span() ---------------------------------------------------------------------------------


def _op_attrs(op: str) -> _Attrs:
    return {sc.WIDGET_OP: op}


@overload
def span(name: _F, /) -> _F: ...


@overload
def span(
    name: str | None = None,
    /,
    *,
    attributes: Mapping[str, AttributeValue] | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    op: str | None = None,
) -> SpanScope: ...


def span(
    name: str | Callable[..., Any] | None = None,
    /,
    *,
    attributes: Mapping[str, AttributeValue] | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    op: str | None = None,
) -> Any:
    """A span: ``with span("name") as s:``, ``@span``, ``@span("name", attributes=...)``.

    ``attributes`` are given to the sampler and set at start; ``op`` sets ``widget.op`` (the
    Sentry span op) when the span records. As a bare decorator the span is named after the
    function's ``__qualname__``.
    """
    if callable(name) or isinstance(name, (staticmethod, classmethod)):
        return wrap_callable(name, SpanScope(None, kind, attributes, None, (), False))
    build = _op_attrs if op is not None else None
    return SpanScope(name, kind, attributes, build, (op,) if op is not None else (), False)


# --- typed helpers --------------------------------------------------------------------------


def _discovery_attrs(
    source: str, query: str | None, repositories: int | None, found: int | None
) -> _Attrs:
    attrs: _Attrs = {sc.WIDGET_OP: sc.WIDGET_OP_DISCOVERY, sc.WIDGET_DISCOVERY_SOURCE: source}
    if query is not None:
        attrs[sc.WIDGET_DISCOVERY_QUERY] = query
    if repositories is not None:
        attrs[sc.WIDGET_DISCOVERY_REPOSITORIES_SCANNED] = repositories
    if found is not None:
        attrs[sc.WIDGET_DISCOVERY_WIDGETS_FOUND] = found
    return attrs


def discovery_span(
    source: str,
    *,
    query: str | None = None,
    repositories_scanned: int | None = None,
    widgets_found: int | None = None,
    name: str | None = None,
) -> SpanScope:
    """A widget discovery step (searching a model hub or Git host) named ``discover {source}``.

    Set counts known only at the end on the yielded span
    (``semconv.WIDGET_DISCOVERY_WIDGETS_FOUND``, ``..._REPOSITORIES_SCANNED``); as a decorator,
    a function returning a sized collection gets ``widgets_found = len(result)`` automatically.
    """
    return SpanScope(
        name or f"discover {source}",
        SpanKind.INTERNAL,
        None,
        _discovery_attrs,
        (source, query, repositories_scanned, widgets_found),
        True,
    )


def _conversion_attrs(widget_id: str | None, widget_type: str | None, stage: str | None) -> _Attrs:
    attrs: _Attrs = {sc.WIDGET_OP: sc.WIDGET_OP_CONVERSION}
    if widget_id is not None:
        attrs[sc.WIDGET_ID] = widget_id
    if widget_type is not None:
        attrs[sc.WIDGET_TYPE] = widget_type
    if stage is not None:
        attrs[sc.WIDGET_CONVERSION_STAGE] = stage
    return attrs


def conversion_span(
    widget_id: str | None = None,
    *,
    widget_type: str | None = None,
    stage: str | None = None,
    name: str | None = None,
) -> SpanScope:
    """Converting one widget (or one stage of it: parse, validate, infer, write)."""
    return SpanScope(
        name or (f"convert {stage}" if stage else "convert"),
        SpanKind.INTERNAL,
        None,
        _conversion_attrs,
        (widget_id, widget_type, stage),
        True,
    )


def _registry_attrs(
    operation: str, registry: str | None, widget_id: str | None, widget_type: str | None
) -> _Attrs:
    attrs: _Attrs = {sc.WIDGET_OP: sc.WIDGET_OP_REGISTRY, sc.WIDGET_REGISTRY_OPERATION: operation}
    if registry is not None:
        attrs[sc.WIDGET_REGISTRY_NAME] = registry
    if widget_id is not None:
        attrs[sc.WIDGET_ID] = widget_id
    if widget_type is not None:
        attrs[sc.WIDGET_TYPE] = widget_type
    return attrs


def registry_span(
    operation: str,
    *,
    registry: str | None = None,
    widget_id: str | None = None,
    widget_type: str | None = None,
    name: str | None = None,
) -> SpanScope:
    """A widget registry operation (``read``, ``write``, ``delete``, ``list``, ...)."""
    return SpanScope(
        name or f"registry {operation}",
        SpanKind.INTERNAL,
        None,
        _registry_attrs,
        (operation, registry, widget_id, widget_type),
        True,
    )


def _iteration_attrs(number: int, cascade: str | None) -> _Attrs:
    attrs: _Attrs = {sc.WIDGET_OP: sc.WIDGET_OP_ITERATION, sc.WIDGET_ITERATION_NUMBER: number}
    if cascade is not None:
        attrs[sc.WIDGET_CASCADE_NAME] = cascade
    return attrs


def iteration_span(
    number: int, *, cascade: str | None = None, name: str | None = None
) -> SpanScope:
    """One cascade-orchestrator iteration; rolls up the usage and cost of its LLM calls."""
    return SpanScope(
        name or f"iteration {number}",
        SpanKind.INTERNAL,
        None,
        _iteration_attrs,
        (number, cascade),
        True,
        "iteration",
    )


def _agent_attrs(
    block: str,
    agent_id: str | None,
    conversation_id: str | None,
    provider: str | None,
    model: str | None,
) -> _Attrs:
    attrs: _Attrs = {
        sc.WIDGET_OP: sc.WIDGET_OP_INVOKE_AGENT,
        sc.GEN_AI_OPERATION_NAME: "invoke_agent",
        sc.GEN_AI_AGENT_NAME: block,
    }
    if agent_id is not None:
        attrs[sc.GEN_AI_AGENT_ID] = agent_id
    if conversation_id is not None:
        attrs[sc.GEN_AI_CONVERSATION_ID] = conversation_id
    if provider is not None:
        attrs[sc.GEN_AI_PROVIDER_NAME] = provider
    if model is not None:
        attrs[sc.GEN_AI_REQUEST_MODEL] = model
    return attrs


def agent_block_span(
    block: str,
    *,
    agent_id: str | None = None,
    conversation_id: str | None = None,
    provider: str | None = None,
    model: str | None = None,
) -> SpanScope:
    """One agent block of the cascade: ``invoke_agent {block}``, with usage/cost roll-ups."""
    return SpanScope(
        f"invoke_agent {block}",
        SpanKind.INTERNAL,
        None,
        _agent_attrs,
        (block, agent_id, conversation_id, provider, model),
        True,
        "agent",
    )


def _llm_attrs(
    operation: str, model: str, provider: str | None, conversation_id: str | None
) -> _Attrs:
    attrs: _Attrs = {
        sc.WIDGET_OP: f"gen_ai.{operation}",
        sc.GEN_AI_OPERATION_NAME: operation,
        sc.GEN_AI_REQUEST_MODEL: model,
    }
    if provider is not None:
        attrs[sc.GEN_AI_PROVIDER_NAME] = provider
    if conversation_id is not None:
        attrs[sc.GEN_AI_CONVERSATION_ID] = conversation_id
    return attrs


def llm_call_span(
    model: str,
    *,
    provider: str | None = None,
    operation: str = "chat",
    conversation_id: str | None = None,
) -> SpanScope:
    """One LLM call: ``chat {model}`` (kind CLIENT). Call :func:`record_llm_usage` inside it."""
    return SpanScope(
        f"{operation} {model}",
        SpanKind.CLIENT,
        None,
        _llm_attrs,
        (operation, model, provider, conversation_id),
        True,
        "llm",
        model,
    )


def _tool_attrs(tool: str, call_id: str | None, tool_type: str | None) -> _Attrs:
    attrs: _Attrs = {
        sc.WIDGET_OP: sc.WIDGET_OP_EXECUTE_TOOL,
        sc.GEN_AI_OPERATION_NAME: "execute_tool",
        sc.GEN_AI_TOOL_NAME: tool,
    }
    if call_id is not None:
        attrs[sc.GEN_AI_TOOL_CALL_ID] = call_id
    if tool_type is not None:
        attrs[sc.GEN_AI_TOOL_TYPE] = tool_type
    return attrs


def tool_span(tool: str, *, call_id: str | None = None, tool_type: str | None = None) -> SpanScope:
    """One tool execution by an agent: ``execute_tool {tool}``."""
    return SpanScope(
        f"execute_tool {tool}",
        SpanKind.INTERNAL,
        None,
        _tool_attrs,
        (tool, call_id, tool_type),
        True,
    )


def record_llm_usage(
    input_tokens: int | None = None,
    output_tokens: int | None = None,
    *,
    cache_read_input_tokens: int | None = None,
    cache_creation_input_tokens: int | None = None,
    reasoning_output_tokens: int | None = None,
    model: str | None = None,
    response_model: str | None = None,
    finish_reasons: list[str] | None = None,
    span: Span | None = None,
) -> float | None:
    """Record one LLM call's token usage (and cost) on the current ``llm_call_span``.

    ``model`` defaults to the enclosing ``llm_call_span``'s model; the price lookup uses
    ``response_model`` when given (the model that actually answered). Sets ``gen_ai.usage.*``,
    ``gen_ai.response.model``, ``gen_ai.cost.*`` (only for a model in the price table) and adds
    the call to the enclosing block, iteration and trace roll-ups. Calling it again for the same
    call replaces the earlier numbers. Returns the call's total cost in USD (also when the span
    is not sampled, so it can feed a budget), or None when the model is not in the price table.
    """
    try:
        frame = context_api.get_value(_FRAME_KEY)
        llm: _Frame | None = None
        if isinstance(frame, _Frame) and frame.kind == "llm":
            llm = frame
        if span is None:
            span = llm.span if llm is not None else trace.get_current_span()
        elif llm is not None and llm.span is not span:
            llm = None
        priced_model = response_model or model or (llm.model if llm is not None else None)
        cost = None
        if priced_model is not None:
            cost = get_price_table().cost(
                priced_model,
                input_tokens=input_tokens or 0,
                output_tokens=output_tokens or 0,
                cache_read_input_tokens=cache_read_input_tokens or 0,
                cache_creation_input_tokens=cache_creation_input_tokens or 0,
                reasoning_output_tokens=reasoning_output_tokens or 0,
            )
        total = cost.total if cost is not None else None
        if not span.is_recording():
            return total
        attrs: _Attrs = {}
        if input_tokens is not None:
            attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] = input_tokens
        if output_tokens is not None:
            attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] = output_tokens
        if cache_read_input_tokens is not None:
            attrs[sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] = cache_read_input_tokens
        if cache_creation_input_tokens is not None:
            attrs[sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS] = cache_creation_input_tokens
        if reasoning_output_tokens is not None:
            attrs[sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] = reasoning_output_tokens
        if response_model is not None:
            attrs[sc.GEN_AI_RESPONSE_MODEL] = response_model
        if finish_reasons is not None:
            attrs[sc.GEN_AI_RESPONSE_FINISH_REASONS] = list(finish_reasons)
        if cost is not None and total is not None:
            # Rounded to 1e-12 USD: float noise (0.0072629999999999995) helps no reader.
            attrs[sc.GEN_AI_COST_INPUT_TOKENS] = round(cost.input, 12)
            attrs[sc.GEN_AI_COST_OUTPUT_TOKENS] = round(cost.output, 12)
            attrs[sc.GEN_AI_COST_TOTAL_TOKENS] = round(total, 12)
        span.set_attributes(attrs)
        _roll_up(llm, span, total, input_tokens or 0, output_tokens or 0)
        return total
    except Exception as exc:
        _internal("api.record_llm_usage", exc)
        return None


def _roll_up(
    llm: _Frame | None, span: Span, cost: float | None, input_tokens: int, output_tokens: int
) -> None:
    if llm is not None:
        start = llm.parent
    else:
        # Usage recorded outside an llm_call_span: count it in the enclosing roll-ups.
        found = context_api.get_value(_FRAME_KEY)
        start = found if isinstance(found, _Frame) else None
    if start is None:
        return
    with _rollup_lock:
        calls = 1
        if llm is not None and llm.last is not None:
            # A repeated record for the same call: take back what the first one added.
            old_cost, old_in, old_out = llm.last
            frame: _Frame | None = start
            while frame is not None:
                if frame.kind in _ACCUMULATING:
                    frame.calls -= 1
                    frame.input -= old_in
                    frame.output -= old_out
                    if old_cost is None:
                        frame.unpriced -= 1
                    else:
                        frame.cost -= old_cost
                        frame.priced -= 1
                frame = frame.parent
        if llm is not None:
            llm.last = (cost, input_tokens, output_tokens)
        frame = start
        root: _Frame | None = None
        while frame is not None:
            if frame.kind in _ACCUMULATING:
                frame.add(cost, input_tokens, output_tokens, calls)
            if frame.parent is None:
                root = frame
            frame = frame.parent
        trace_attrs = root.attributes(True) if root is not None and root.kind == "trace" else None
    # The trace roll-up's span (often a request span we do not own) gets the running total now;
    # later calls overwrite it, and it stops changing when that span ends.
    if root is not None and trace_attrs and root.span.is_recording():
        root.span.set_attributes(trace_attrs)
