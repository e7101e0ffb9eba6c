"""The hot-path API: span() as context manager and decorator for every callable kind, the typed
widget and GenAI helpers' exact names and attributes, errors, outcomes and unsampled spans."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import SpanKind, StatusCode

from widgettrace.instrumentation import _spans as span_plumbing
from widgettrace.instrumentation import api, pricing
from widgettrace.instrumentation import semconv as sc
from widgettrace.instrumentation.api import (
    agent_block_span,
    conversion_span,
    discovery_span,
    iteration_span,
    llm_call_span,
    registry_span,
    span,
    tool_span,
)


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exp = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exp))
    api.set_tracer_provider(provider)
    yield exp
    api.set_tracer_provider(None)


def _spans(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return list(exporter.get_finished_spans())


def _attrs(s: ReadableSpan) -> dict[str, Any]:
    return dict(s.attributes or {})


# --- span() -----------------------------------------------------------------------------------


def test_context_manager_nests_and_sets_current(exporter: InMemorySpanExporter) -> None:
    with span("outer", attributes={"k": "v"}, op="widget.custom") as outer:
        assert trace.get_current_span() is outer
        with span("inner") as inner:
            assert trace.get_current_span() is inner
        assert trace.get_current_span() is outer
    assert trace.get_current_span() is trace.INVALID_SPAN
    inner_s, outer_s = _spans(exporter)
    assert (inner_s.name, outer_s.name) == ("inner", "outer")
    assert inner_s.parent is not None
    assert inner_s.parent.span_id == outer_s.context.span_id
    assert _attrs(outer_s) == {"k": "v", sc.WIDGET_OP: "widget.custom"}
    assert _attrs(inner_s) == {}
    assert outer_s.kind is SpanKind.INTERNAL


def test_async_context_manager(exporter: InMemorySpanExporter) -> None:
    async def main() -> None:
        async with span("async work") as s:
            await asyncio.sleep(0)
            assert trace.get_current_span() is s

    asyncio.run(main())
    assert [s.name for s in _spans(exporter)] == ["async work"]


def test_decorators_for_every_callable_kind(exporter: InMemorySpanExporter) -> None:
    @span
    def bare(x: int) -> int:
        return x + 1

    @span("named", attributes={"a": 1})
    def named(x: int) -> int:
        return x * 2

    @span()
    async def coro(x: int) -> int:
        await asyncio.sleep(0)
        return x

    @span("gen")
    def gen(n: int) -> Iterator[int]:
        yield from range(n)

    @span("agen")
    async def agen(n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i

    async def consume() -> list[int]:
        return [i async for i in agen(2)]

    assert bare(1) == 2
    assert bare.__name__ == "bare"
    assert named(2) == 4
    assert asyncio.run(coro(3)) == 3
    assert inspect.iscoroutinefunction(coro)
    assert inspect.isgeneratorfunction(gen)
    assert inspect.isasyncgenfunction(agen)
    assert list(gen(3)) == [0, 1, 2]
    assert asyncio.run(consume()) == [0, 1]
    names = [s.name for s in _spans(exporter)]
    assert names == [
        "test_decorators_for_every_callable_kind.<locals>.bare",
        "named",
        "test_decorators_for_every_callable_kind.<locals>.coro",
        "gen",
        "agen",
    ]
    assert _attrs(_spans(exporter)[1]) == {"a": 1}


def test_decorating_methods_static_and_class_methods(exporter: InMemorySpanExporter) -> None:
    class Converter:
        @span
        def method(self, x: int) -> int:
            return x + 1

        @span("static")
        @staticmethod
        def static(x: int) -> int:
            return x * 2

        @span("klass")
        @classmethod
        def klass(cls, x: int) -> str:
            return f"{cls.__name__}{x}"

    assert Converter().method(1) == 2
    assert Converter.static(2) == 4
    assert Converter().static(2) == 4
    assert Converter.klass(3) == "Converter3"
    assert isinstance(vars(Converter)["static"], staticmethod)
    names = [s.name for s in _spans(exporter)]
    assert names[1:] == ["static", "static", "klass"]
    assert names[0].endswith("Converter.method")


def test_generator_span_is_current_only_inside_the_generator(
    exporter: InMemorySpanExporter,
) -> None:
    inside: list[str] = []

    @span("producer")
    def producer() -> Iterator[int]:
        for i in range(3):
            inside.append(trace.get_current_span().get_span_context().span_id.__repr__())
            with span(f"item {i}"):
                pass
            yield i

    with span("consumer") as consumer:
        for _ in producer():
            assert trace.get_current_span() is consumer
    spans = {s.name: s for s in _spans(exporter)}
    producer_id = spans["producer"].context.span_id
    assert set(inside) == {repr(producer_id)}
    for i in range(3):
        parent = spans[f"item {i}"].parent
        assert parent is not None
        assert parent.span_id == producer_id
    assert spans["producer"].parent is not None
    assert spans["producer"].parent.span_id == spans["consumer"].context.span_id


def test_exception_recorded_and_reraised_unchanged(exporter: InMemorySpanExporter) -> None:
    error = ValueError("bad widget")
    with pytest.raises(ValueError, match="bad widget") as info, span("failing"):
        raise error
    assert info.value is error
    [s] = _spans(exporter)
    assert s.status.status_code is StatusCode.ERROR
    assert s.status.description == "ValueError: bad widget"
    assert _attrs(s)[sc.ERROR_TYPE] == "ValueError"
    assert [e.name for e in s.events] == ["exception"]


def test_exception_in_decorated_coroutine_and_qualified_error_type(
    exporter: InMemorySpanExporter,
) -> None:
    class WidgetError(Exception):
        pass

    @span("coro")
    async def coro() -> None:
        raise WidgetError("nope")

    with pytest.raises(WidgetError):
        asyncio.run(coro())
    [s] = _spans(exporter)
    assert _attrs(s)[sc.ERROR_TYPE] == (
        f"{__name__}.test_exception_in_decorated_coroutine_and_qualified_error_type"
        ".<locals>.WidgetError"
    )


def test_generator_exit_is_not_an_error(exporter: InMemorySpanExporter) -> None:
    @discovery_span("hub")
    def results() -> Iterator[int]:
        yield from range(10)

    gen = results()
    next(gen)
    gen.close()
    [s] = _spans(exporter)
    assert s.status.status_code is StatusCode.UNSET
    assert _attrs(s)[sc.WIDGET_OUTCOME] == "success"


def test_async_generator_closed_early_ends_its_span(exporter: InMemorySpanExporter) -> None:
    @span("stream")
    async def stream() -> AsyncIterator[int]:
        for i in range(10):
            yield i

    async def take_two() -> list[int]:
        out = []
        agen = stream()
        async for item in agen:
            out.append(item)
            if len(out) == 2:
                break
        await agen.aclose()  # type: ignore[attr-defined]
        return out

    assert asyncio.run(take_two()) == [0, 1]
    [s] = _spans(exporter)
    assert s.name == "stream"
    assert s.status.status_code is StatusCode.UNSET


# --- typed helpers ------------------------------------------------------------------------------


def test_discovery_span_attributes(exporter: InMemorySpanExporter) -> None:
    with discovery_span("huggingface", query="text-classification", repositories_scanned=7) as s:
        s.set_attribute(sc.WIDGET_DISCOVERY_WIDGETS_FOUND, 3)
    [d] = _spans(exporter)
    assert d.name == "discover huggingface"
    assert _attrs(d) == {
        sc.WIDGET_OP: "widget.discovery",
        sc.WIDGET_DISCOVERY_SOURCE: "huggingface",
        sc.WIDGET_DISCOVERY_QUERY: "text-classification",
        sc.WIDGET_DISCOVERY_REPOSITORIES_SCANNED: 7,
        sc.WIDGET_DISCOVERY_WIDGETS_FOUND: 3,
        sc.WIDGET_OUTCOME: "success",
    }


def test_discovery_decorator_counts_sized_results(exporter: InMemorySpanExporter) -> None:
    @discovery_span("github", query="widgets")
    def search() -> list[str]:
        return ["a", "b"]

    @discovery_span("github")
    async def search_async() -> dict[str, int]:
        return {"a": 1}

    search()
    asyncio.run(search_async())
    first, second = _spans(exporter)
    assert _attrs(first)[sc.WIDGET_DISCOVERY_WIDGETS_FOUND] == 2
    assert _attrs(second)[sc.WIDGET_DISCOVERY_WIDGETS_FOUND] == 1


def test_conversion_and_registry_spans(exporter: InMemorySpanExporter) -> None:
    with conversion_span("w-1", widget_type="onnx", stage="validate"):
        pass
    with conversion_span("w-2"):
        pass
    with registry_span("write", registry="main", widget_id="w-1", widget_type="onnx"):
        pass
    conv, conv2, reg = _spans(exporter)
    assert conv.name == "convert validate"
    assert _attrs(conv) == {
        sc.WIDGET_OP: "widget.conversion",
        sc.WIDGET_ID: "w-1",
        sc.WIDGET_TYPE: "onnx",
        sc.WIDGET_CONVERSION_STAGE: "validate",
        sc.WIDGET_OUTCOME: "success",
    }
    assert conv2.name == "convert"
    assert reg.name == "registry write"
    assert _attrs(reg) == {
        sc.WIDGET_OP: "widget.registry",
        sc.WIDGET_REGISTRY_OPERATION: "write",
        sc.WIDGET_REGISTRY_NAME: "main",
        sc.WIDGET_ID: "w-1",
        sc.WIDGET_TYPE: "onnx",
        sc.WIDGET_OUTCOME: "success",
    }


def test_gen_ai_spans_names_kinds_and_attributes(exporter: InMemorySpanExporter) -> None:
    with (
        iteration_span(2, cascade="triage"),
        agent_block_span(
            "planner", agent_id="a-1", conversation_id="conv-9", provider="openai", model="gpt-4o"
        ),
    ):
        with llm_call_span("gpt-4o", provider="openai", conversation_id="conv-9"):
            pass
        with tool_span("search_hub", call_id="call-1", tool_type="function"):
            pass
    llm, tool, block, iteration = _spans(exporter)
    assert iteration.name == "iteration 2"
    assert _attrs(iteration) == {
        sc.WIDGET_OP: "widget.iteration",
        sc.WIDGET_ITERATION_NUMBER: 2,
        sc.WIDGET_CASCADE_NAME: "triage",
        sc.WIDGET_OUTCOME: "success",
    }
    assert block.name == "invoke_agent planner"
    assert _attrs(block) == {
        sc.WIDGET_OP: "gen_ai.invoke_agent",
        sc.GEN_AI_OPERATION_NAME: "invoke_agent",
        sc.GEN_AI_AGENT_NAME: "planner",
        sc.GEN_AI_AGENT_ID: "a-1",
        sc.GEN_AI_CONVERSATION_ID: "conv-9",
        sc.GEN_AI_PROVIDER_NAME: "openai",
        sc.GEN_AI_REQUEST_MODEL: "gpt-4o",
        sc.WIDGET_OUTCOME: "success",
    }
    assert llm.name == "chat gpt-4o"
    assert llm.kind is SpanKind.CLIENT
    assert _attrs(llm) == {
        sc.WIDGET_OP: "gen_ai.chat",
        sc.GEN_AI_OPERATION_NAME: "chat",
        sc.GEN_AI_REQUEST_MODEL: "gpt-4o",
        sc.GEN_AI_PROVIDER_NAME: "openai",
        sc.GEN_AI_CONVERSATION_ID: "conv-9",
        sc.WIDGET_OUTCOME: "success",
    }
    assert tool.name == "execute_tool search_hub"
    assert _attrs(tool) == {
        sc.WIDGET_OP: "gen_ai.execute_tool",
        sc.GEN_AI_OPERATION_NAME: "execute_tool",
        sc.GEN_AI_TOOL_NAME: "search_hub",
        sc.GEN_AI_TOOL_CALL_ID: "call-1",
        sc.GEN_AI_TOOL_TYPE: "function",
        sc.WIDGET_OUTCOME: "success",
    }


def test_outcome_failure_and_user_override(exporter: InMemorySpanExporter) -> None:
    with pytest.raises(RuntimeError), tool_span("flaky"):
        raise RuntimeError("tool down")
    with conversion_span("w-3") as s:
        s.set_attribute(sc.WIDGET_OUTCOME, "partial")
    failed, partial = _spans(exporter)
    assert _attrs(failed)[sc.WIDGET_OUTCOME] == "failure"
    assert _attrs(failed)[sc.ERROR_TYPE] == "RuntimeError"
    assert _attrs(partial)[sc.WIDGET_OUTCOME] == "partial"


# --- sampling, providers, guard -----------------------------------------------------------------


def test_unsampled_spans_build_no_attributes_but_propagate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=ALWAYS_OFF)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    api.set_tracer_provider(provider)
    built: list[str] = []

    def spy(*args: Any) -> dict[str, Any]:
        built.append("called")
        return {}

    monkeypatch.setattr(api, "_discovery_attrs", spy)
    pricing.set_price_table({"priced": pricing.ModelPrice(input=2.0, output=1.0)})
    try:
        with discovery_span("hub") as outer:
            assert not outer.is_recording()
            with span("child") as child:
                assert child.get_span_context().trace_id == outer.get_span_context().trace_id
            assert api.record_llm_usage(input_tokens=5, output_tokens=1, model="x") is None
            # the cost is still returned for budgets, from the enclosing llm_call_span's model
            with llm_call_span("priced"):
                cost = api.record_llm_usage(input_tokens=1_000_000, output_tokens=0)
            assert cost == pytest.approx(2.0)
        with pytest.raises(KeyError), llm_call_span("gpt-4o"):
            raise KeyError("x")
    finally:
        api.set_tracer_provider(None)
        pricing.reset_price_table()
    assert built == []
    assert exporter.get_finished_spans() == ()


def test_global_provider_is_used_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    api.set_tracer_provider(None)
    # What opentelemetry-instrument's configurator does, without touching the real global.
    monkeypatch.setattr(trace, "_TRACER_PROVIDER", provider)
    monkeypatch.setattr(span_plumbing._state, "tracer", trace.ProxyTracer(api.__name__))
    monkeypatch.setattr(span_plumbing._state, "unresolved", True)
    with span("global"):
        pass
    (finished,) = exporter.get_finished_spans()
    assert finished.name == "global"
    # The split kept the instrumentation scope the API's spans always had.
    assert finished.instrumentation_scope is not None
    assert finished.instrumentation_scope.name == api.__name__
    assert not span_plumbing._state.unresolved


@pytest.mark.internal_errors_expected
def test_broken_telemetry_never_breaks_the_user_call(
    exporter: InMemorySpanExporter,
    monkeypatch: pytest.MonkeyPatch,
    fail_on_internal_errors: list[BaseException],
) -> None:
    def broken(*args: Any) -> dict[str, Any]:
        raise RuntimeError("attribute builder bug")

    monkeypatch.setattr(api, "_tool_attrs", broken)
    with tool_span("t"):
        value = 42
    assert value == 42
    assert [s.name for s in _spans(exporter)] == ["execute_tool t"]
    assert [str(e) for e in fail_on_internal_errors] == ["attribute builder bug"]


# --- context across a thread pool ---------------------------------------------------------------
# ThreadPoolExecutor does not carry contextvars into its workers; the example submits
# contextvars.copy_context().run (standard library, one line). opentelemetry-instrumentation-
# threading would patch the executor instead, but its newest release (0.66b1) pins
# opentelemetry-instrumentation==0.66b1, below the 0.66b2 widgettrace requires.


def _scan_in_worker(name: str) -> str:
    with discovery_span("git", query=name):
        return name


def test_copied_context_makes_worker_spans_children(exporter: InMemorySpanExporter) -> None:
    with span("request") as request, ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(contextvars.copy_context().run, _scan_in_worker, n) for n in "abc"]
        assert [f.result() for f in futures] == ["a", "b", "c"]
    scans = [s for s in exporter.get_finished_spans() if s.name == "discover git"]
    assert len(scans) == 3
    for scan in scans:
        assert scan.parent is not None
        assert scan.parent.span_id == request.get_span_context().span_id
        assert scan.context.trace_id == request.get_span_context().trace_id


def test_without_the_copy_the_worker_starts_a_new_trace(exporter: InMemorySpanExporter) -> None:
    """The control: the plain submit loses the caller's context (why the copy is needed)."""
    with span("request"), ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(_scan_in_worker, "a").result()
    (scan,) = [s for s in exporter.get_finished_spans() if s.name == "discover git"]
    assert scan.parent is None
