"""Decorating with a span: functions, coroutines, generators and async generators.

:func:`wrap_callable` is what ``@span`` and ``@discovery_span(...)`` & co. do. Generators get
one span over the whole iteration, current only while the generator's own code runs
(:func:`tracked_generator`, and the async twin in :func:`async_generator_wrapper`, both driven
by one :class:`_Steps`). Also used by the functions instrumentor.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncGenerator, Callable, Generator, Sized
from typing import TYPE_CHECKING, Any, Protocol, cast

from opentelemetry import context as context_api
from opentelemetry.trace import Span

from widgettrace.instrumentation import semconv as sc

if TYPE_CHECKING:
    from widgettrace.instrumentation._span_scope import SpanScope

__all__ = [
    "SpanTracker",
    "Tracker",
    "async_generator_wrapper",
    "count_found",
    "generator_wrapper",
    "tracked_generator",
    "wrap_callable",
]


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


class _Steps:
    """One traced generator's context handling, shared by the sync and the async driver.

    Each step of the generator runs with the tracker's context attached (:meth:`enter`,
    :meth:`leave`); :meth:`end` detaches and tells the tracker how the generator ended. Without
    a tracker every method is a no-op, so the drivers have one code path.
    """

    __slots__ = ("ctx", "token", "tracker")

    def __init__(self, tracker: Tracker | None) -> None:
        self.tracker = tracker
        self.ctx = tracker.start() if tracker is not None else None
        self.token: object = None

    def enter(self) -> None:
        if self.ctx is not None:
            self.token = context_api.attach(self.ctx)

    def leave(self) -> None:
        if self.token is not None:
            context_api.detach(self.token)  # type: ignore[arg-type]
            self.token = None

    def end(self, exc: BaseException | None) -> None:
        self.leave()
        if self.tracker is not None:
            self.tracker.stop(exc)


def tracked_generator(gen: Generator[Any, Any, Any], tracker: Tracker) -> Generator[Any, Any, Any]:
    """Delegate to ``gen`` like ``yield from``, with ``tracker``'s context current inside it."""
    steps = _Steps(tracker)
    value: Any = None
    to_throw: BaseException | None = None
    while True:
        steps.enter()
        try:
            item = gen.throw(to_throw) if to_throw is not None else gen.send(value)
        except StopIteration as stop:
            steps.end(None)
            return stop.value
        except BaseException as exc:
            steps.end(exc)
            raise
        steps.leave()
        to_throw = None
        try:
            value = yield item
        except GeneratorExit as exit_exc:
            steps.enter()
            try:
                gen.close()
            except BaseException as close_exc:
                steps.end(close_exc)
                raise
            steps.end(exit_exc)
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
    """An async generator function tracing each iteration of ``func`` (see generator_wrapper).

    The same driver as :func:`tracked_generator` with ``await`` (Python has no ``yield from``
    for async generators).
    """

    @functools.wraps(func)
    async def agen_wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
        tracker = new_tracker()
        agen = func(*args, **kwargs)
        steps = _Steps(tracker)
        value: Any = None
        to_throw: BaseException | None = None
        while True:
            steps.enter()
            try:
                if to_throw is not None:
                    item = await agen.athrow(to_throw)
                else:
                    item = await agen.asend(value)
            except StopAsyncIteration:
                steps.end(None)
                return
            except BaseException as exc:
                steps.end(exc)
                raise
            steps.leave()
            to_throw = None
            try:
                value = yield item
            except GeneratorExit as exit_exc:
                steps.enter()
                try:
                    await agen.aclose()
                except BaseException as close_exc:
                    steps.end(close_exc)
                    raise
                steps.end(exit_exc)
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
    on_result = template._on_result

    def new_tracker() -> Tracker:
        return SpanTracker(template._copy(name), context_api.get_current())

    if inspect.isasyncgenfunction(func):
        return async_generator_wrapper(func, new_tracker)

    if inspect.isgeneratorfunction(func):
        return generator_wrapper(func, new_tracker)

    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            with template._copy(name) as span:
                result = await func(*args, **kwargs)
                if on_result is not None:
                    on_result(span, result)
                return result

        return async_wrapper

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with template._copy(name) as span:
            result = func(*args, **kwargs)
            if on_result is not None:
                on_result(span, result)
            return result

    return wrapper
