"""Zero-code tracing of your own functions, chosen by an environment variable.

``WIDGETTRACE_TRACE_FUNCTIONS`` lists what to trace; ``opentelemetry-instrument`` (entry point
``widgettrace_functions``) applies it before your code runs, and
``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=widgettrace_functions`` turns it off.

Syntax: comma-separated entries (spaces, newlines and ``;`` also separate), each::

    module:target[=kind]

``target`` is a qualified name inside ``module``:

===========================  ===============================================================
``shop.scan:search_hub``     one function
``shop.conv:Converter.run``  one method (instance, ``@staticmethod`` or ``@classmethod``;
                             also one inherited from a base class, traced for this class only)
``shop.conv:Converter.*``    every public method defined in the class body
``shop.scan:*``              every public function defined in the module (not imported ones)
``shop.scan:fetch_*``        a glob (``*``, ``?``, ``[abc]``) in the last part of the name
===========================  ===============================================================

Names starting with ``_`` match only when named or when the pattern itself starts with ``_``.
``kind`` (default ``function``) chooses the span's name and attributes:

==============  ===================================  ==========================================
kind            span name                            attributes (besides code.function.name)
==============  ===================================  ==========================================
function        ``Class.method`` / ``function``      widget.op=function
discovery       same                                 widget.op=widget.discovery; widgets_found =
                                                     len(result) when the result is sized
conversion      same                                 widget.op=widget.conversion
registry        same                                 widget.op=widget.registry,
                                                     widget.registry.operation=function name
iteration       same                                 widget.op=widget.iteration (roll-ups)
agent           ``invoke_agent {function}``          gen_ai.operation.name=invoke_agent,
                                                     gen_ai.agent.name (roll-ups)
tool            ``execute_tool {function}``          gen_ai.operation.name=execute_tool,
                                                     gen_ai.tool.name
==============  ===================================  ==========================================

Example::

    WIDGETTRACE_TRACE_FUNCTIONS="shop.scan:search_*=discovery, shop.conv:Converter.*=conversion,
        shop.cascade:run_block=agent, shop.util:*"

Behaviour:

- Modules already imported are patched at once; the others when they are imported (wrapt
  post-import hooks), so the order of instrumentation and imports does not matter.
- Stale references: a module that did ``from shop.scan import search_hub`` before
  instrumentation holds the original function. After patching the modules already imported,
  ONE pass over ``sys.modules`` (about 15 ms with 900 modules loaded) replaces module-level
  globals that are the very same function object (identity, not name); uninstrumenting puts
  them back. Bounded to module globals: references kept in class bodies, closures, containers or
  default arguments are left alone (rewriting those is not safe). A module imported later needs
  no pass: its hook patches it before any other module can import names from it (a circular
  import in progress is the exception). Methods need none either: the class is patched in place.
- Functions, methods, static and class methods, coroutines, generators and async generators.
  A generator's span covers its whole iteration (first ``next()`` to exhaustion, close or error),
  is parented on the context where iteration starts and is current only while the generator's
  own code runs, so it never leaks into the consumer between items. Wrappers keep the kind of
  callable (a generator function stays one), so introspecting frameworks see no difference.
- An exception is recorded on the span (status ERROR, ``error.type``, event) and re-raised
  unchanged. ``suppress_instrumentation()`` skips the span.
- ``WIDGETTRACE_TRACE_MIN_DURATION_MS`` (default 0: keep all): only calls at least this slow
  get a span, created when the call returns with its real start time. Below the threshold a call
  costs two clock reads (well under a microsecond). A call that raises is always kept. The
  price: with a threshold, the function's span is not current while it runs, so spans it starts
  itself attach to the caller's span; and agent/iteration roll-ups need threshold 0.
- A bad entry (syntax, no such module, no such function, nothing matched, not a function) logs
  one warning naming the entry and is skipped; it never fails an import. A missing module is
  detected at startup for top-level names, and for ``a.b.c`` when ``a.b`` is imported.
- ``uninstrument()`` restores every patched attribute and stale reference; hooks registered
  for modules not yet imported do nothing afterwards.

Programmatic use (tests, or without ``opentelemetry-instrument``)::

    FunctionsInstrumentor().instrument(
        tracer_provider=provider, trace_functions="shop.scan:*", min_duration_ms=0
    )
"""

from __future__ import annotations

import fnmatch
import functools
import importlib.machinery
import importlib.util
import inspect
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Final, Literal

import wrapt
from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.utils import (  # type: ignore[attr-defined]
    _SUPPRESS_INSTRUMENTATION_KEY,
    _SUPPRESS_INSTRUMENTATION_KEY_PLAIN,
)
from opentelemetry.trace import SpanKind, Tracer
from opentelemetry.util.types import AttributeValue

from widgettrace.instrumentation import semconv as sc
from widgettrace.instrumentation._guard import internal_errors, logger
from widgettrace.instrumentation._rollup import _FrameKind
from widgettrace.instrumentation._span_scope import SpanScope
from widgettrace.instrumentation._spans import (
    __version__,
    fast_context_getter,
    forward_error,
    record_error,
)
from widgettrace.instrumentation._wrappers import (
    SpanTracker,
    Tracker,
    async_generator_wrapper,
    count_found,
    generator_wrapper,
)

__all__ = ["KINDS", "FunctionsInstrumentor", "TraceEntry", "parse_trace_functions"]

_instruments: tuple[str, ...] = ()

Kind = Literal["function", "discovery", "conversion", "registry", "iteration", "agent", "tool"]
KINDS: Final[tuple[str, ...]] = (
    "function",
    "discovery",
    "conversion",
    "registry",
    "iteration",
    "agent",
    "tool",
)
_VAR: Final = "WIDGETTRACE_TRACE_FUNCTIONS"
_ENTRY_RE: Final = re.compile(
    r"^(?P<module>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)"
    r":(?P<target>[\w*?\[\]!]+(?:\.[\w*?\[\]!]+)*)"
    r"(?:=(?P<kind>\w+))?$"
)
_Attrs = dict[str, AttributeValue]


@dataclass(frozen=True)
class TraceEntry:
    """One parsed entry of ``WIDGETTRACE_TRACE_FUNCTIONS``."""

    module: str
    target: str
    kind: str
    raw: str

    @property
    def is_pattern(self) -> bool:
        return any(ch in self.target for ch in "*?[")


def _bad(raw: str, why: str) -> None:
    logger.warning("widgettrace: %s entry %r ignored: %s", _VAR, raw, why)


def parse_trace_functions(spec: str | None) -> list[TraceEntry]:
    """Parse the spec; each bad entry logs one warning and is left out."""
    entries: list[TraceEntry] = []
    seen: set[tuple[str, str]] = set()
    for raw in re.split(r"[,;\s]+", spec or ""):
        if not raw:
            continue
        match = _ENTRY_RE.match(raw)
        if match is None:
            _bad(
                raw,
                "expected module:function, module:Class.method, module:Class.* or "
                "module:* with an optional =kind",
            )
            continue
        if match["module"] == "__main__":
            _bad(
                raw,
                "the script run as __main__ has not run yet when instrumentation starts; "
                "move the function into a module and name that module",
            )
            continue
        kind = (match["kind"] or "function").lower()
        if kind not in KINDS:
            _bad(raw, f"unknown kind {kind!r} (choose one of: {', '.join(KINDS)})")
            continue
        target = match["target"]
        if any(ch in part for part in target.split(".")[:-1] for ch in "*?[]!"):
            _bad(raw, "wildcards are allowed only in the last part of the name")
            continue
        key = (match["module"], target)
        if key in seen:
            continue
        seen.add(key)
        entries.append(TraceEntry(match["module"], target, kind, raw))
    return entries


def _settings() -> tuple[str | None, float]:
    """The two settings this instrumentor reads (one place to switch the source)."""
    try:
        from widgettrace.instrumentation._config import get_settings

        settings = get_settings()
        return settings.trace_functions, settings.trace_min_duration_ms
    except ImportError:  # pragma: no cover - the config module ships with the package
        raw = os.environ.get("WIDGETTRACE_TRACE_MIN_DURATION_MS", "0")
        try:
            return os.environ.get(_VAR), max(float(raw), 0.0)
        except ValueError:
            return os.environ.get(_VAR), 0.0


# --- what a target looks like -----------------------------------------------------------------


def _underlying(value: object) -> Callable[..., Any] | None:
    """The plain function behind a function, staticmethod or classmethod (None otherwise)."""
    if isinstance(value, (staticmethod, classmethod)):
        value = value.__func__
    if inspect.isfunction(value):
        return value
    return None


@dataclass
class _Patch:
    parent: Any
    attr: str
    original: Any
    owned: bool  # the attribute was in parent.__dict__ (else inherited: delete on restore)
    wrapper: Any


@dataclass
class _Stale:
    namespace: dict[str, Any]
    name: str
    original: Any
    wrapper: Any


def _static(attrs: _Attrs) -> _Attrs:
    return attrs


class _Target:
    """Everything a wrapper needs, computed once per patched function."""

    __slots__ = ("attrs", "discovery", "kind", "min_ns", "name", "outcome", "scope", "tracer")

    def __init__(
        self, module: str, qualname: str, func_name: str, kind: str, tracer: Tracer, min_ns: int
    ) -> None:
        attrs: _Attrs = {sc.CODE_FUNCTION_NAME: f"{module}.{qualname}"}
        name = qualname
        frame: _FrameKind | None = None
        if kind == "function":
            attrs[sc.WIDGET_OP] = sc.WIDGET_OP_FUNCTION
        elif kind == "discovery":
            attrs[sc.WIDGET_OP] = sc.WIDGET_OP_DISCOVERY
        elif kind == "conversion":
            attrs[sc.WIDGET_OP] = sc.WIDGET_OP_CONVERSION
        elif kind == "registry":
            attrs[sc.WIDGET_OP] = sc.WIDGET_OP_REGISTRY
            attrs[sc.WIDGET_REGISTRY_OPERATION] = func_name
        elif kind == "iteration":
            attrs[sc.WIDGET_OP] = sc.WIDGET_OP_ITERATION
            frame = "iteration"
        elif kind == "agent":
            name = f"invoke_agent {func_name}"
            attrs[sc.WIDGET_OP] = sc.WIDGET_OP_INVOKE_AGENT
            attrs[sc.GEN_AI_OPERATION_NAME] = "invoke_agent"
            attrs[sc.GEN_AI_AGENT_NAME] = func_name
            frame = "agent"
        elif kind == "tool":
            name = f"execute_tool {func_name}"
            attrs[sc.WIDGET_OP] = sc.WIDGET_OP_EXECUTE_TOOL
            attrs[sc.GEN_AI_OPERATION_NAME] = "execute_tool"
            attrs[sc.GEN_AI_TOOL_NAME] = func_name
        self.name = name
        self.kind = kind
        self.attrs = attrs
        self.tracer = tracer
        self.min_ns = min_ns
        self.discovery = kind == "discovery"
        self.outcome = kind != "function"
        self.scope = SpanScope(
            name, SpanKind.INTERNAL, None, _static, (attrs,), self.outcome, frame, None, tracer
        )

    def emit(self, parent: context_api.Context, t0: int, exc: BaseException | None) -> None:
        """Create the span of a call that already ended (the min-duration path)."""
        with internal_errors("functions.emit"):
            elapsed = time.perf_counter_ns() - t0
            end = time.time_ns()
            span = self.tracer.start_span(self.name, parent, start_time=end - elapsed)
            if span.is_recording():
                span.set_attributes(self.attrs)
                failed = False
                if exc is not None and not isinstance(exc, GeneratorExit):
                    failed = True
                    record_error(span, exc)
                if self.outcome:
                    span.set_attribute(
                        sc.WIDGET_OUTCOME,
                        sc.WIDGET_OUTCOME_FAILURE if failed else sc.WIDGET_OUTCOME_SUCCESS,
                    )
            elif exc is not None:
                forward_error(span, exc)
            span.end(end)


class _TimedTracker:
    """A generator traced with a min-duration: timed, its span created at the end if slow."""

    __slots__ = ("parent", "t", "t0")

    def __init__(self, t: _Target, parent: context_api.Context) -> None:
        self.t = t
        self.parent = parent
        self.t0 = 0

    def start(self) -> None:
        self.t0 = time.perf_counter_ns()

    def stop(self, exc: BaseException | None) -> None:
        failed = exc is not None and not isinstance(exc, GeneratorExit)
        if failed or time.perf_counter_ns() - self.t0 >= self.t.min_ns:
            self.t.emit(self.parent, self.t0, exc)


def _make_wrapper(func: Callable[..., Any], t: _Target) -> Callable[..., Any]:
    """A closure tracing calls of ``func``: sync or coroutine, with or without min-duration;
    generators and async generators through a tracker (a span, or a timer with min-duration).

    A plain closure, not a wrapt FunctionWrapper: measured here, wrapt's call path (C proxy
    calling a Python wrapper with ``(wrapped, instance, args, kwargs)``) added ~0.75 us a call,
    more than the whole budget below the min-duration threshold. A closure is a function, so
    it binds as a method like the original; static and class methods are re-wrapped by _apply.
    """
    get_current = fast_context_getter()
    k1, k2 = _SUPPRESS_INSTRUMENTATION_KEY, _SUPPRESS_INSTRUMENTATION_KEY_PLAIN
    clock = time.perf_counter_ns
    min_ns = t.min_ns
    discovery = t.discovery
    scope, name = t.scope, t.name

    def new_tracker() -> Tracker | None:
        ctx = get_current()
        if ctx.get(k1) or ctx.get(k2):
            return None
        if min_ns:
            return _TimedTracker(t, ctx)
        return SpanTracker(scope._copy(name), ctx)

    wrapped: Callable[..., Any]
    if inspect.isasyncgenfunction(func):
        wrapped = async_generator_wrapper(func, new_tracker)
        return wrapped

    if inspect.isgeneratorfunction(func):
        wrapped = generator_wrapper(func, new_tracker)
        return wrapped

    if inspect.iscoroutinefunction(func):
        if min_ns:

            @functools.wraps(func)
            async def coro_timed(*args: Any, **kwargs: Any) -> Any:
                ctx = get_current()
                if ctx.get(k1) or ctx.get(k2):
                    return await func(*args, **kwargs)
                t0 = clock()
                try:
                    result = await func(*args, **kwargs)
                except BaseException as exc:
                    t.emit(ctx, t0, exc)
                    raise
                if clock() - t0 >= min_ns:
                    t.emit(ctx, t0, None)
                return result

            return coro_timed

        @functools.wraps(func)
        async def coro(*args: Any, **kwargs: Any) -> Any:
            ctx = get_current()
            if ctx.get(k1) or ctx.get(k2):
                return await func(*args, **kwargs)
            with scope._copy(name) as span:
                result = await func(*args, **kwargs)
                if discovery:
                    count_found(span, result)
                return result

        return coro

    if min_ns:

        @functools.wraps(func)
        def sync_timed(*args: Any, **kwargs: Any) -> Any:
            ctx = get_current()
            if ctx.get(k1) or ctx.get(k2):
                return func(*args, **kwargs)
            t0 = clock()
            try:
                result = func(*args, **kwargs)
            except BaseException as exc:
                t.emit(ctx, t0, exc)
                raise
            if clock() - t0 >= min_ns:
                t.emit(ctx, t0, None)
            return result

        return sync_timed

    @functools.wraps(func)
    def sync(*args: Any, **kwargs: Any) -> Any:
        ctx = get_current()
        if ctx.get(k1) or ctx.get(k2):
            return func(*args, **kwargs)
        with scope._copy(name) as span:
            result = func(*args, **kwargs)
            if discovery:
                count_found(span, result)
            return result

    return sync


# --- the instrumentor ------------------------------------------------------------------------


def _module_exists(name: str) -> bool | None:
    """Whether a top-level module can be imported (without importing it); None if unknown."""
    try:
        if importlib.util.find_spec(name) is not None:
            return True
    except (ImportError, ValueError):
        return None
    # At `opentelemetry-instrument` startup the script's directory is not on sys.path yet.
    extra = [os.path.dirname(os.path.abspath(sys.argv[0]))] if sys.argv and sys.argv[0] else []
    extra.append(os.getcwd())
    return importlib.machinery.PathFinder.find_spec(name, [*extra, *sys.path]) is not None


class FunctionsInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Traces the functions named by ``WIDGETTRACE_TRACE_FUNCTIONS`` (see module docstring).

    ``instrument()`` keyword arguments: ``tracer_provider``, ``trace_functions`` (overrides the
    setting), ``min_duration_ms`` (overrides ``WIDGETTRACE_TRACE_MIN_DURATION_MS``).
    """

    def __init__(self) -> None:
        # BaseInstrumentor is a singleton: __init__ runs on every construction.
        if not hasattr(self, "_lock"):
            self._lock = threading.RLock()
            self._generation = 0
            self._patches: list[_Patch] = []
            self._stale: list[_Stale] = []
            self._tracer: Tracer | None = None
            self._min_ns = 0
            # Functions replaced while instrument() runs (modules already imported): their
            # stale references are fixed in one pass over sys.modules at the end. A module
            # imported later is patched by its post-import hook before anyone can import
            # names from it, so no pass is needed then (except inside circular imports).
            self._batch: dict[int, tuple[Any, Any]] | None = None

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _instrument(self, **kwargs: Any) -> None:
        spec, min_ms = _settings()
        spec = kwargs.get("trace_functions", spec)
        min_ms = float(kwargs.get("min_duration_ms", min_ms) or 0.0)
        entries = parse_trace_functions(spec)
        with self._lock:
            self._generation += 1
            generation = self._generation
            self._tracer = trace.get_tracer(__name__, __version__, kwargs.get("tracer_provider"))
            self._min_ns = int(max(min_ms, 0.0) * 1_000_000)
        by_module: dict[str, list[TraceEntry]] = {}
        for entry in entries:
            by_module.setdefault(entry.module, []).append(entry)
        self._batch = {}
        try:
            self._register_hooks(by_module, generation)
            batch = self._batch
        finally:
            self._batch = None
        if batch:
            with internal_errors("functions.stale_references"):
                self._fix_stale_references(batch)

    def _register_hooks(self, by_module: dict[str, list[TraceEntry]], generation: int) -> None:
        for module_name, module_entries in by_module.items():
            if module_name not in sys.modules:
                self._check_module_exists(module_name, module_entries, generation)

            def hook(
                module: ModuleType,
                module_entries: list[TraceEntry] = module_entries,
                generation: int = generation,
            ) -> None:
                # Runs inside the user's import: it must never raise (a raising hook fails the
                # import), and it must do nothing once uninstrumented.
                with internal_errors("functions.post_import_hook"):
                    if generation == self._generation:
                        self._apply(module, module_entries, generation)

            wrapt.register_post_import_hook(hook, module_name)

    def _check_module_exists(self, name: str, entries: list[TraceEntry], generation: int) -> None:
        raws = ", ".join(entry.raw for entry in entries)
        parent, _, _ = name.rpartition(".")
        if not parent:
            if _module_exists(name) is False:
                _bad(raws, f"no module named {name!r}")
            return

        def check(_parent: ModuleType) -> None:
            with internal_errors("functions.module_check"):
                if generation != self._generation or name in sys.modules:
                    return
                try:
                    found = importlib.util.find_spec(name) is not None
                except (ImportError, ValueError):
                    found = False
                if not found:
                    _bad(raws, f"no module named {name!r}")

        if parent not in sys.modules:
            self._check_module_exists(parent, entries, generation)
        wrapt.register_post_import_hook(check, parent)

    def _apply(self, module: ModuleType, entries: list[TraceEntry], generation: int) -> None:
        tracer = self._tracer
        if tracer is None:
            return
        replaced: dict[int, tuple[Any, Any]] = {}
        # Exact names first, so an explicit entry's kind wins over a wildcard's.
        for entry in sorted(entries, key=lambda e: e.is_pattern):
            for parent, attr, value, qualname in self._resolve(module, entry):
                func = _underlying(value)
                if func is None:
                    hint = f" (use {entry.module}:{qualname}.*)" if isinstance(value, type) else ""
                    _bad(entry.raw, f"{module.__name__}.{qualname} is not a function{hint}")
                    continue
                if _is_traced(value):
                    continue
                with self._lock:
                    if generation != self._generation:
                        return
                    if any(p.parent is parent and p.attr == attr for p in self._patches):
                        continue
                    target = _Target(
                        module.__name__, qualname, func.__name__, entry.kind, tracer, self._min_ns
                    )
                    wrapper = _wrap_value(value, func, target)
                    owned = isinstance(parent, ModuleType) or attr in vars(parent)
                    setattr(parent, attr, wrapper)
                    self._patches.append(_Patch(parent, attr, value, owned, wrapper))
                    if isinstance(parent, ModuleType):
                        replaced[id(value)] = (value, wrapper)
        batch = self._batch
        if replaced and batch is not None:
            batch.update(replaced)

    def _resolve(
        self, module: ModuleType, entry: TraceEntry
    ) -> Iterable[tuple[Any, str, Any, str]]:
        """(parent, attribute, raw value, qualname) for each match; logs when nothing matches."""
        *path, last = entry.target.split(".")
        parent: Any = module
        for part in path:
            parent = (
                vars(parent).get(part) if isinstance(parent, ModuleType) else _lookup(parent, part)
            )
            if not isinstance(parent, type):
                _bad(entry.raw, f"no class {part!r} in {module.__name__}")
                return []
        prefix = ".".join(path)
        qual = f"{prefix}." if prefix else ""
        if not entry.is_pattern:
            value = (
                vars(parent).get(last) if isinstance(parent, ModuleType) else _lookup(parent, last)
            )
            if value is None:
                _bad(entry.raw, f"no attribute {qual + last!r} in module {module.__name__!r}")
                return []
            return [(parent, last, value, qual + last)]
        private = last.startswith("_")
        found = []
        for attr, value in list(vars(parent).items()):
            if attr.startswith("_") and not private:
                continue
            if not fnmatch.fnmatchcase(attr, last):
                continue
            func = _underlying(value)
            if func is None:
                continue
            if isinstance(parent, ModuleType) and func.__module__ != module.__name__:
                continue  # imported from elsewhere: trace it where it is defined
            found.append((parent, attr, value, qual + attr))
        if not found:
            _bad(entry.raw, f"{entry.target!r} matched no function in {module.__name__!r}")
        return found

    def _fix_stale_references(self, replaced: dict[int, tuple[Any, Any]]) -> None:
        """Point ``from module import f`` copies in modules' globals at the wrapper.

        One pass over ``sys.modules`` (about 15 ms for 900 modules here), matching by identity,
        so only the very function objects replaced are touched.
        """
        for other in list(sys.modules.values()):
            if not isinstance(other, ModuleType):
                continue
            namespace = getattr(other, "__dict__", None)
            if type(namespace) is not dict:
                continue
            for name, value in list(namespace.items()):
                pair = replaced.get(id(value))
                if pair is not None and pair[0] is value:
                    namespace[name] = pair[1]
                    with self._lock:
                        self._stale.append(_Stale(namespace, name, value, pair[1]))

    def _uninstrument(self, **kwargs: Any) -> None:
        with self._lock:
            self._generation += 1  # pending post-import hooks become no-ops
            patches, self._patches = self._patches, []
            stale, self._stale = self._stale, []
        for ref in reversed(stale):
            if ref.namespace.get(ref.name) is ref.wrapper:
                ref.namespace[ref.name] = ref.original
        for patch in reversed(patches):
            current = vars(patch.parent).get(patch.attr)
            if current is not patch.wrapper:
                continue  # replaced by someone else since: leave their value alone
            if patch.owned:
                setattr(patch.parent, patch.attr, patch.original)
            else:
                delattr(patch.parent, patch.attr)


_MARK: Final = "__widgettrace_traced__"


def _wrap_value(value: Any, func: Callable[..., Any], target: _Target) -> Any:
    """The traced replacement for ``value``, keeping it a function, staticmethod or classmethod."""
    wrapper = _make_wrapper(func, target)
    setattr(wrapper, _MARK, True)
    if isinstance(value, staticmethod):
        return staticmethod(wrapper)
    if isinstance(value, classmethod):
        return classmethod(wrapper)
    return wrapper


def _is_traced(value: Any) -> bool:
    func = value.__func__ if isinstance(value, (staticmethod, classmethod)) else value
    return bool(getattr(func, _MARK, False))


def _lookup(cls: Any, name: str) -> Any:
    """A class attribute without binding it (the raw staticmethod/classmethod), MRO order."""
    for klass in getattr(cls, "__mro__", (cls,)):
        namespace = vars(klass)
        if name in namespace:
            return namespace[name]
    return None
