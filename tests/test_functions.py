"""Zero-code function tracing (WIDGETTRACE_TRACE_FUNCTIONS): every callable kind, import order,
stale references, min-duration, errors, suppression, sampling, uninstrument and bad entries."""

from __future__ import annotations

import asyncio
import importlib
import logging
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import StatusCode

from widgettrace.instrumentation import semconv as sc
from widgettrace.instrumentation.functions import (
    FunctionsInstrumentor,
    parse_trace_functions,
)

SOURCE = """
import asyncio

COUNT = 3

def plain(x):
    return x + 1

def _private(x):
    return x

def failing():
    raise KeyError("missing widget")

def slow(seconds):
    import time
    time.sleep(seconds)
    return "done"

def found(n):
    return list(range(n))

class Base:
    def inherited(self):
        return "base"

class Converter(Base):
    def method(self, x):
        return x * 2

    @staticmethod
    def static(x):
        return x - 1

    @classmethod
    def klass(cls, x):
        return (cls.__name__, x)

    def _hidden(self):
        return "hidden"

async def coroutine(x):
    await asyncio.sleep(0)
    return x

def generator(n):
    for i in range(n):
        yield i
    return "finished"

def failing_generator():
    yield 1
    raise RuntimeError("broken stream")

async def async_generator(n):
    for i in range(n):
        await asyncio.sleep(0)
        yield i
"""


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    tp = TracerProvider()
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    return tp


@pytest.fixture
def instrumentor() -> Iterator[FunctionsInstrumentor]:
    inst = FunctionsInstrumentor()
    if inst.is_instrumented_by_opentelemetry:
        inst.uninstrument()
    yield inst
    if inst.is_instrumented_by_opentelemetry:
        inst.uninstrument()


@pytest.fixture
def make_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., str]]:
    """Write a uniquely named module (or package module) to disk; returns its dotted name."""
    monkeypatch.syspath_prepend(str(tmp_path))
    created: list[str] = []

    def make(source: str = SOURCE, *, package: str | None = None) -> str:
        name = f"wt_fn_{uuid.uuid4().hex[:10]}"
        folder = tmp_path
        if package is not None:
            folder = tmp_path / package
            folder.mkdir(exist_ok=True)
            (folder / "__init__.py").write_text("")
            name = f"{package}.{name}"
            created.append(package)
        (folder / f"{name.rsplit('.', 1)[-1]}.py").write_text(textwrap.dedent(source))
        created.append(name)
        importlib.invalidate_caches()
        return name

    yield make
    for name in created:
        sys.modules.pop(name, None)


def _spans(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return list(exporter.get_finished_spans())


def _by_name(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    return {s.name: s for s in _spans(exporter)}


def _instrument(
    inst: FunctionsInstrumentor, provider: TracerProvider, spec: str, min_ms: float = 0
) -> None:
    inst.instrument(tracer_provider=provider, trace_functions=spec, min_duration_ms=min_ms)


# --- spec syntax ----------------------------------------------------------------------------


def test_parse_entries_kinds_and_separators() -> None:
    entries = parse_trace_functions("a.b:f, a.b:C.*=conversion;a.b:*\n pkg:scan_*=DISCOVERY a.b:f")
    assert [(e.module, e.target, e.kind) for e in entries] == [
        ("a.b", "f", "function"),
        ("a.b", "C.*", "conversion"),
        ("a.b", "*", "function"),
        ("pkg", "scan_*", "discovery"),
    ]
    assert [e.is_pattern for e in entries] == [False, True, True, True]


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ("nocolon", "expected module:function"),
        ("a.b:f=weird", "unknown kind 'weird'"),
        ("a.b:C*.m", "wildcards are allowed only in the last part"),
        ("a b", "expected module:function"),
        ("__main__:main", "move the function into a module"),
    ],
)
def test_bad_syntax_logs_one_line(
    entry: str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="widgettrace"):
        entries = parse_trace_functions(f"ok.mod:f,{entry.split(maxsplit=1)[0]}")
    assert [e.target for e in entries] == ["f"]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1, lines
    assert "WIDGETTRACE_TRACE_FUNCTIONS" in lines[0]
    assert reason in lines[0]


# --- import order and stale references ----------------------------------------------------


def test_module_imported_after_instrumenting(
    instrumentor: FunctionsInstrumentor,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    make_module: Callable[..., str],
) -> None:
    name = make_module()
    assert name not in sys.modules
    _instrument(instrumentor, provider, f"{name}:plain")
    module = importlib.import_module(name)
    assert module.plain(1) == 2
    [span] = _spans(exporter)
    assert span.name == "plain"
    assert dict(span.attributes or {}) == {
        sc.CODE_FUNCTION_NAME: f"{name}.plain",
        sc.WIDGET_OP: sc.WIDGET_OP_FUNCTION,
    }
    assert module.plain.__name__ == "plain"
    assert module.plain.__wrapped__(1) == 2


def test_module_in_package_imported_after_instrumenting(
    instrumentor: FunctionsInstrumentor,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    make_module: Callable[..., str],
) -> None:
    pkg = f"wt_pkg_{uuid.uuid4().hex[:8]}"
    name = make_module(package=pkg)
    _instrument(instrumentor, provider, f"{name}:Converter.method")
    module = importlib.import_module(name)
    assert module.Converter().method(4) == 8
    assert [s.name for s in _spans(exporter)] == ["Converter.method"]


def test_module_imported_before_and_stale_reference_fixed_then_restored(
    instrumentor: FunctionsInstrumentor,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    make_module: Callable[..., str],
) -> None:
    name = make_module()
    module = importlib.import_module(name)
    original = module.plain
    user = ModuleType("wt_user_module")
    exec(f"from {name} import plain\nkeep = [plain]\n", user.__dict__)
    sys.modules[user.__name__] = user
    try:
        _instrument(instrumentor, provider, f"{name}:plain")
        assert module.plain is not original
        # the `from x import plain` copy now points at the traced function ...
        assert user.plain is module.plain
        # ... but a reference inside a container is left alone (not safe to rewrite)
        assert user.keep[0] is original
        assert user.plain(1) == 2
        assert len(_spans(exporter)) == 1
        instrumentor.uninstrument()
        assert module.plain is original
        assert user.plain is original
    finally:
        sys.modules.pop(user.__name__, None)


# --- every callable kind --------------------------------------------------------------------


def test_every_callable_kind(
    instrumentor: FunctionsInstrumentor,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    make_module: Callable[..., str],
) -> None:
    name = make_module()
    module = importlib.import_module(name)
    _instrument(instrumentor, provider, f"{name}:*, {name}:Converter.*, {name}:Converter.inherited")
    conv = module.Converter()
    assert conv.method(2) == 4
    assert module.Converter.static(3) == 2
    assert conv.static(3) == 2
    assert module.Converter.klass(1) == ("Converter", 1)
    assert conv.klass(1) == ("Converter", 1)
    assert conv.inherited() == "base"
    assert module.Base().inherited() == "base"  # traced for Converter only
    assert conv._hidden() == "hidden"  # private: not matched by *
    assert module._private(1) == 1
    assert asyncio.run(module.coroutine(5)) == 5
    names = [s.name for s in _spans(exporter)]
    assert names == [
        "Converter.method",
        "Converter.static",
        "Converter.static",
        "Converter.klass",
        "Converter.klass",
        "Converter.inherited",
        "coroutine",
    ]
    # introspection sees the same kinds of callables as before
    import inspect

    assert inspect.iscoroutinefunction(module.coroutine)
    assert inspect.isgeneratorfunction(module.generator)
    assert inspect.isasyncgenfunction(module.async_generator)
    assert isinstance(vars(module.Converter)["static"], staticmethod)
    assert isinstance(vars(module.Converter)["klass"], classmethod)


def test_generator_span_covers_iteration_without_leaking(
    instrumentor: FunctionsInstrumentor,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    make_module: Callable[..., str],
) -> None:
    name = make_module()
    module = importlib.import_module(name)
    _instrument(instrumentor, provider, f"{name}:generator")
    tracer = provider.get_tracer("test")
    seen_in_consumer = []
    with tracer.start_as_current_span("consumer") as consumer:
        gen = module.generator(3)
        for _ in gen:
            seen_in_consumer.append(trace.get_current_span())
        assert all(s is consumer for s in seen_in_consumer)
    spans = _by_name(exporter)
    gen_span = spans["generator"]
    assert gen_span.parent is not None
    assert gen_span.parent.span_id == consumer.get_span_context().span_id
    consumer_end = spans["consumer"].end_time
    assert gen_span.end_time is not None
    assert consumer_end is not None
    assert gen_span.end_time <= consumer_end
    assert gen_span.status.status_code is StatusCode.UNSET


def test_generator_return_value_close_and_error(
    instrumentor: FunctionsInstrumentor,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    make_module: Callable[..., str],
) -> None:
    name = make_module()
    module = importlib.import_module(name)
    _instrument(instrumentor, provider, f"{name}:generator, {name}:failing_generator")

    def drain() -> Any:
        return (yield from module.generator(2))

    assert list(drain()) == [0, 1]
    gen = module.generator(10)
    assert next(gen) == 0
    gen.close()  # consumer stops early: not an error
    failing = module.failing_generator()
    assert next(failing) == 1
    with pytest.raises(RuntimeError, match="broken stream"):
        next(failing)
    spans = _spans(exporter)
    assert [s.name for s in spans] == ["generator", "generator", "failing_generator"]
    assert spans[1].status.status_code is StatusCode.UNSET
    assert spans[2].status.status_code is StatusCode.ERROR
    assert spans[2].attributes is not None
    assert spans[2].attributes[sc.ERROR_TYPE] == "RuntimeError"


def test_async_generator_span_does_not_leak(
    instrumentor: FunctionsInstrumentor,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    make_module: Callable[..., str],
) -> None:
    name = make_module()
    module = importlib.import_module(name)
    _instrument(instrumentor, provider, f"{name}:async_generator")
    tracer = provider.get_tracer("test")

    async def consume() -> list[int]:
        items = []
        with tracer.start_as_current_span("consumer") as consumer:
            async for item in module.async_generator(3):
                assert trace.get_current_span() is consumer
                items.append(item)
        return items

    assert asyncio.run(consume()) == [0, 1, 2]
    spans = _by_name(exporter)
    assert spans["async_generator"].parent is not None
    assert spans["async_generator"].parent.span_id == spans["consumer"].context.span_id


def test_exception_recorded_and_reraised_unchanged(
    instrumentor: FunctionsInstrumentor,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    make_module: Callable[..., str],
) -> None:
    name = make_module()
    module = importlib.import_module(name)
    _instrument(instrumentor, provider, f"{name}:failing")
    with pytest.raises(KeyError) as info:
        module.failing()
    assert info.value.args == ("missing widget",)
    [span] = _spans(exporter)
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None
    assert span.attributes[sc.ERROR_TYPE] == "KeyError"
    [event] = span.events
    assert event.name == "exception"
    assert event.attributes is not None
    assert event.attributes["exception.type"] == "KeyError"


# --- kinds ----------------------------------------------------------------------------------


def test_kinds_set_widget_and_gen_ai_attributes(
    instrumentor: FunctionsInstrumentor,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    make_module: Callable[..., str],
) -> None:
    name = make_module()
    module = importlib.import_module(name)
    _instrument(
        instrumentor,
        provider,
        f"{name}:found=discovery,{name}:plain=agent,{name}:Converter.method=tool,"
        f"{name}:Converter.static=registry",
    )
    module.found(4)
    module.plain(1)
    module.Converter().method(1)
    module.Converter.static(1)
    spans = _by_name(exporter)
    assert dict(spans["found"].attributes or {}) == {
        sc.CODE_FUNCTION_NAME: f"{name}.found",
        sc.WIDGET_OP: sc.WIDGET_OP_DISCOVERY,
        sc.WIDGET_DISCOVERY_WIDGETS_FOUND: 4,
        sc.WIDGET_OUTCOME: "success",
    }
    assert dict(spans["invoke_agent plain"].attributes or {}) == {
        sc.CODE_FUNCTION_NAME: f"{name}.plain",
        sc.WIDGET_OP: sc.WIDGET_OP_INVOKE_AGENT,
        sc.GEN_AI_OPERATION_NAME: "invoke_agent",
        sc.GEN_AI_AGENT_NAME: "plain",
        sc.WIDGET_OUTCOME: "success",
    }
    assert dict(spans["execute_tool method"].attributes or {}) == {
        sc.CODE_FUNCTION_NAME: f"{name}.Converter.method",
        sc.WIDGET_OP: sc.WIDGET_OP_EXECUTE_TOOL,
        sc.GEN_AI_OPERATION_NAME: "execute_tool",
        sc.GEN_AI_TOOL_NAME: "method",
        sc.WIDGET_OUTCOME: "success",
    }
    assert spans["Converter.static"].attributes is not None
    assert spans["Converter.static"].attributes[sc.WIDGET_REGISTRY_OPERATION] == "static"


def test_explicit_entry_kind_wins_over_wildcard(
    instrumentor: FunctionsInstrumentor,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    make_module: Callable[..., str],
) -> None:
    name = make_module()
    module = importlib.import_module(name)
    _instrument(instrumentor, provider, f"{name}:*, {name}:plain=conversion")
    module.plain(1)
    [span] = _spans(exporter)
    assert span.attributes is not None
    assert span.attributes[sc.WIDGET_OP] == sc.WIDGET_OP_CONVERSION


# --- min duration ---------------------------------------------------------------------------


def test_min_duration_keeps_only_slow_calls_with_real_start(
    instrumentor: FunctionsInstrumentor,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    make_module: Callable[..., str],
) -> None:
    name = make_module()
    module = importlib.import_module(name)
    _instrument(instrumentor, provider, f"{name}:slow, {name}:plain, {name}:failing", min_ms=20)
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("caller") as caller:
        for _ in range(50):
            module.plain(1)
        before = time.time_ns()
        assert module.slow(0.03) == "done"
        after = time.time_ns()
        with pytest.raises(KeyError):
            module.failing()  # fast, but failures are always kept
    spans = _by_name(exporter)
    assert set(spans) == {"slow", "failing", "caller"}
    slow = spans["slow"]
    assert slow.start_time is not None
    assert slow.end_time is not None
    assert before <= slow.start_time
    assert slow.end_time <= after
    assert slow.end_time - slow.start_time >= 25_000_000
    assert slow.parent is not None
    assert slow.parent.span_id == caller.get_span_context().span_id
    assert spans["failing"].status.status_code is StatusCode.ERROR


def test_min_duration_generators_and_coroutines(
    instrumentor: FunctionsInstrumentor,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    make_module: Callable[..., str],
) -> None:
    name = make_module()
    module = importlib.import_module(name)
    _instrument(
        instrumentor,
        provider,
        f"{name}:generator, {name}:coroutine, {name}:async_generator",
        min_ms=20,
    )
    assert list(module.generator(3)) == [0, 1, 2]
    assert asyncio.run(module.coroutine(1)) == 1

    async def slow_consumer() -> list[int]:
        out = []
        async for item in module.async_generator(2):
            await asyncio.sleep(0.015)
            out.append(item)
        return out

    assert asyncio.run(slow_consumer()) == [0, 1]
    assert [s.name for s in _spans(exporter)] == ["async_generator"]


# --- suppression, sampling, twice, uninstrument ---------------------------------------------


def test_suppress_instrumentation_skips_spans(
    instrumentor: FunctionsInstrumentor,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    make_module: Callable[..., str],
) -> None:
    name = make_module()
    module = importlib.import_module(name)
    _instrument(instrumentor, provider, f"{name}:*")
    with suppress_instrumentation():
        assert module.plain(1) == 2
        assert list(module.generator(2)) == [0, 1]
        assert asyncio.run(module.coroutine(3)) == 3
    assert _spans(exporter) == []
    module.plain(1)
    assert len(_spans(exporter)) == 1


def test_non_recording_spans(
    instrumentor: FunctionsInstrumentor,
    exporter: InMemorySpanExporter,
    make_module: Callable[..., str],
) -> None:
    provider = TracerProvider(sampler=ALWAYS_OFF)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    name = make_module()
    module = importlib.import_module(name)
    _instrument(instrumentor, provider, f"{name}:*=discovery")
    assert module.found(3) == [0, 1, 2]
    assert list(module.generator(2)) == [0, 1]
    with pytest.raises(KeyError):
        module.failing()
    assert _spans(exporter) == []


def test_instrument_twice_traces_once_and_reinstrument_works(
    instrumentor: FunctionsInstrumentor,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    make_module: Callable[..., str],
) -> None:
    name = make_module()
    module = importlib.import_module(name)
    _instrument(instrumentor, provider, f"{name}:plain")
    _instrument(instrumentor, provider, f"{name}:plain")  # ignored: already instrumented
    assert FunctionsInstrumentor() is instrumentor
    module.plain(1)
    assert len(_spans(exporter)) == 1
    instrumentor.uninstrument()
    module.plain(1)
    assert len(_spans(exporter)) == 1
    _instrument(instrumentor, provider, f"{name}:plain")
    module.plain(1)
    assert len(_spans(exporter)) == 2


def test_uninstrument_restores_everything(
    instrumentor: FunctionsInstrumentor,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    make_module: Callable[..., str],
) -> None:
    name = make_module()
    module = importlib.import_module(name)
    before = dict(vars(module.Converter))
    before_module = {k: v for k, v in vars(module).items() if callable(v)}
    later = make_module()
    _instrument(
        instrumentor,
        provider,
        f"{name}:*, {name}:Converter.*, {name}:Converter.inherited, {later}:plain",
    )
    assert "inherited" in vars(module.Converter)
    instrumentor.uninstrument()
    assert dict(vars(module.Converter)) == before
    assert {k: v for k, v in vars(module).items() if callable(v)} == before_module
    # a hook registered for a module imported only after uninstrument does nothing
    late_module = importlib.import_module(later)
    late_module.plain(1)
    module.plain(1)
    module.Converter().inherited()
    assert _spans(exporter) == []


# --- bad entries ------------------------------------------------------------------------------


def test_bad_entries_log_one_line_each_and_never_fail_imports(
    instrumentor: FunctionsInstrumentor,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    make_module: Callable[..., str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    pkg = f"wt_pkg_{uuid.uuid4().hex[:8]}"
    name = make_module()
    in_pkg = make_module(package=pkg)
    spec = ", ".join(
        [
            f"{name}:plain",
            f"{name}:no_such_function",
            f"{name}:COUNT",
            f"{name}:Converter",
            f"{name}:nothing_*",
            f"{name}:NoClass.method",
            f"wt_missing_{uuid.uuid4().hex[:6]}:f",
            f"{pkg}.wt_missing_child:f",
            f"{in_pkg}:plain",
        ]
    )
    with caplog.at_level(logging.WARNING, logger="widgettrace"):
        _instrument(instrumentor, provider, spec)
        module = importlib.import_module(name)
        importlib.import_module(in_pkg)
    assert module.plain(1) == 2
    lines = [r.getMessage() for r in caplog.records if r.name == "widgettrace"]
    assert len(lines) == 7, lines
    joined = "\n".join(lines)
    for fragment in (
        "no attribute 'no_such_function'",
        f"{name}.COUNT is not a function",
        f"{name}.Converter is not a function (use {name}:Converter.*)",
        "matched no function",
        "no class 'NoClass'",
        "no module named 'wt_missing_",
        f"no module named '{pkg}.wt_missing_child'",
    ):
        assert fragment in joined
    assert all(line.startswith("widgettrace: WIDGETTRACE_TRACE_FUNCTIONS entry ") for line in lines)
    assert len(_spans(exporter)) == 1


def test_settings_are_read_from_environment(
    instrumentor: FunctionsInstrumentor,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    make_module: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from widgettrace.instrumentation._config import reset_settings

    name = make_module()
    monkeypatch.setenv("WIDGETTRACE_TRACE_FUNCTIONS", f"{name}:plain,{name}:slow")
    monkeypatch.setenv("WIDGETTRACE_TRACE_MIN_DURATION_MS", "15")
    reset_settings()
    try:
        instrumentor.instrument(tracer_provider=provider)
        module = importlib.import_module(name)
        module.plain(1)
        module.slow(0.02)
    finally:
        reset_settings()
    assert [s.name for s in _spans(exporter)] == ["slow"]


def test_registered_as_opentelemetry_instrumentor() -> None:
    from importlib.metadata import entry_points

    [ep] = [
        ep
        for ep in entry_points(group="opentelemetry_instrumentor")
        if ep.name == "widgettrace_functions"
    ]
    assert ep.load() is FunctionsInstrumentor


def test_zero_code_under_opentelemetry_instrument_and_disable(tmp_path: Path) -> None:
    """The real startup path: `opentelemetry-instrument python app.py` from another directory."""
    import os
    import subprocess

    app = tmp_path / "app"
    app.mkdir()
    (app / "wt_app_mod.py").write_text("def work(x):\n    return x + 1\n")
    (app / "run_app.py").write_text(
        "import wt_app_mod\n"
        "from wt_app_mod import work\n"
        "print('TRACED', getattr(wt_app_mod.work, '__widgettrace_traced__', False),"
        " work is wt_app_mod.work, work(1))\n"
    )
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "WIDGETTRACE_TRACE_FUNCTIONS": "wt_app_mod:work",
        "WIDGETTRACE_LOG_PATH": "off",
        "WIDGETTRACE_SENTRY_MODE": "off",
    }
    env.pop("SENTRY_DSN", None)
    outputs = []
    for disabled in ("", "widgettrace_functions"):
        env["OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"] = disabled
        proc = subprocess.run(
            [str(bin_dir / "opentelemetry-instrument"), sys.executable, str(app / "run_app.py")],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        assert "WIDGETTRACE_TRACE_FUNCTIONS" not in proc.stderr  # no false "no module" line
        outputs.append(proc.stdout.strip())
    assert outputs == ["TRACED True True 2", "TRACED False True 2"]


@pytest.mark.internal_errors_expected
def test_internal_error_while_patching_never_fails_the_import(
    instrumentor: FunctionsInstrumentor,
    provider: TracerProvider,
    make_module: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
    fail_on_internal_errors: list[BaseException],
) -> None:
    from widgettrace.instrumentation import functions

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("patching bug")

    monkeypatch.setattr(functions, "_wrap_value", broken)
    name = make_module()
    _instrument(instrumentor, provider, f"{name}:plain")
    module = importlib.import_module(name)  # the hook fails inside the import: import still works
    assert module.plain(1) == 2
    assert [str(e) for e in fail_on_internal_errors] == ["patching bug"]
