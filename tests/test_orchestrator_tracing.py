"""The cascade orchestrator: iteration, agent block, LLM call and tool spans, token usage, cost
per call from the price table, and roll-ups per block, per iteration and per trace."""

from __future__ import annotations

import asyncio
import contextvars
import importlib
import json
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import context as context_api
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from widgettrace.instrumentation import api, pricing
from widgettrace.instrumentation import semconv as sc
from widgettrace.instrumentation.api import (
    agent_block_span,
    iteration_span,
    llm_call_span,
    record_llm_usage,
    tool_span,
)
from widgettrace.instrumentation.functions import FunctionsInstrumentor

PRICES = {
    "gpt-4o": {"input": 2.5, "output": 10.0, "cache_read": 1.25},
    "claude-sonnet": {"input": 3.0, "output": 15.0, "cache_read": 0.3, "cache_write": 3.75},
}


@pytest.fixture
def provider() -> TracerProvider:
    return TracerProvider()


@pytest.fixture
def exporter(provider: TracerProvider) -> Iterator[InMemorySpanExporter]:
    exp = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exp))
    api.set_tracer_provider(provider)
    pricing.set_price_table(pricing.parse_price_table(PRICES))
    yield exp
    api.set_tracer_provider(None)
    pricing.reset_price_table()


def _attrs(s: ReadableSpan) -> dict[str, Any]:
    return dict(s.attributes or {})


def _named(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    return {s.name: s for s in exporter.get_finished_spans()}


def _llm(model: str, inp: int, out: int, **extra: Any) -> float | None:
    with llm_call_span(model, provider="openai"):
        return record_llm_usage(input_tokens=inp, output_tokens=out, **extra)


def test_cascade_spans_tokens_costs_and_rollups(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    tracer = provider.get_tracer("app")
    with tracer.start_as_current_span("POST /cascade"):
        with iteration_span(1):
            with agent_block_span("planner"):
                cost = _llm("gpt-4o", 1000, 200, cache_read_input_tokens=400)
                with tool_span("search_hub"):
                    pass
            with agent_block_span("writer"):
                _llm("claude-sonnet", 2000, 500, cache_creation_input_tokens=1000)
                _llm("local-llama", 300, 30)  # not in the price table
        with iteration_span(2), agent_block_span("reviewer"):
            _llm("local-llama", 100, 10)
    spans = exporter.get_finished_spans()
    names = [s.name for s in spans]
    assert names.count("chat gpt-4o") == 1
    assert names.count("chat local-llama") == 2
    llm_spans = [s for s in spans if s.name.startswith("chat ")]
    gpt = next(s for s in llm_spans if s.name == "chat gpt-4o")
    # (1000 - 400) * 2.5 + 400 * 1.25 = 2000 per 1M input; 200 * 10 = 2000 per 1M output
    assert cost == pytest.approx(0.004)
    gpt_attrs = _attrs(gpt)
    assert gpt_attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] == 1000
    assert gpt_attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == 200
    assert gpt_attrs[sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS] == 400
    assert gpt_attrs[sc.GEN_AI_COST_INPUT_TOKENS] == pytest.approx(0.002)
    assert gpt_attrs[sc.GEN_AI_COST_OUTPUT_TOKENS] == pytest.approx(0.002)
    assert gpt_attrs[sc.GEN_AI_COST_TOTAL_TOKENS] == pytest.approx(0.004)
    assert gpt_attrs[sc.WIDGET_OUTCOME] == "success"
    # a model missing from the table has no cost attribute at all
    for unpriced in (s for s in llm_spans if s.name == "chat local-llama"):
        assert not any(k.startswith("gen_ai.cost.") for k in _attrs(unpriced))
        assert _attrs(unpriced)[sc.GEN_AI_USAGE_INPUT_TOKENS] in (300, 100)

    named = _named(exporter)
    # claude: (2000 - 1000) * 3 + 1000 * 3.75 = 6750e-6; 500 * 15 = 7500e-6
    writer = _attrs(named["invoke_agent writer"])
    assert writer[sc.WIDGET_COST_USD] == pytest.approx(0.01425)
    assert writer[sc.WIDGET_COST_UNPRICED_CALLS] == 1
    assert writer[sc.WIDGET_USAGE_INPUT_TOKENS] == 2300
    assert writer[sc.WIDGET_USAGE_OUTPUT_TOKENS] == 530
    assert writer[sc.WIDGET_LLM_CALLS] == 2
    planner = _attrs(named["invoke_agent planner"])
    assert planner[sc.WIDGET_COST_USD] == pytest.approx(0.004)
    assert sc.WIDGET_COST_UNPRICED_CALLS not in planner
    # roll-ups never use gen_ai.cost.* (Sentry sums those over spans)
    assert not any(k.startswith("gen_ai.cost.") for k in planner)
    it1 = _attrs(named["iteration 1"])
    assert it1[sc.WIDGET_COST_USD] == pytest.approx(0.01825)
    assert it1[sc.WIDGET_LLM_CALLS] == 3
    assert it1[sc.WIDGET_ITERATION_NUMBER] == 1
    it2 = _attrs(named["iteration 2"])
    assert sc.WIDGET_COST_USD not in it2  # only unpriced calls: unknown, not zero
    assert it2[sc.WIDGET_COST_UNPRICED_CALLS] == 1
    reviewer = _attrs(named["invoke_agent reviewer"])
    assert sc.WIDGET_COST_USD not in reviewer
    # both iterations roll up into the request span they ran under
    root = _attrs(named["POST /cascade"])
    assert root[sc.WIDGET_TRACE_COST_USD] == pytest.approx(0.01825)
    assert root[sc.WIDGET_TRACE_COST_UNPRICED_CALLS] == 2
    assert root[sc.WIDGET_TRACE_LLM_CALLS] == 4
    assert root[sc.WIDGET_TRACE_USAGE_INPUT_TOKENS] == 3400
    assert root[sc.WIDGET_TRACE_USAGE_OUTPUT_TOKENS] == 740
    # one trace
    assert len({s.context.trace_id for s in spans}) == 1


def test_failure_marks_block_and_iteration(exporter: InMemorySpanExporter) -> None:
    def run() -> None:
        with iteration_span(1), agent_block_span("planner"):
            with llm_call_span("gpt-4o"):
                record_llm_usage(input_tokens=10, output_tokens=0)
            with tool_span("fetch"):
                raise TimeoutError("hub timed out")

    with pytest.raises(TimeoutError, match="hub timed out"):
        run()
    named = _named(exporter)
    for name in ("execute_tool fetch", "invoke_agent planner", "iteration 1"):
        attrs = _attrs(named[name])
        assert attrs[sc.WIDGET_OUTCOME] == "failure", name
        assert attrs[sc.ERROR_TYPE] == "TimeoutError"
        assert named[name].status.status_code is StatusCode.ERROR
    assert _attrs(named["chat gpt-4o"])[sc.WIDGET_OUTCOME] == "success"
    assert _attrs(named["invoke_agent planner"])[sc.WIDGET_LLM_CALLS] == 1
    # the iteration is the trace root here: it carries the trace roll-up too
    assert _attrs(named["iteration 1"])[sc.WIDGET_TRACE_LLM_CALLS] == 1


def test_rollups_follow_threads_and_asyncio_tasks(exporter: InMemorySpanExporter) -> None:
    def call_in_thread() -> None:
        _llm("gpt-4o", 100, 10)

    async def call_in_task(i: int) -> None:
        await asyncio.sleep(0)
        _llm("gpt-4o", 100 * i, 10)

    async def blocks() -> None:
        await asyncio.gather(*(call_in_task(i) for i in (1, 2, 3)))

    with iteration_span(1), agent_block_span("fan-out"):
        ctx = contextvars.copy_context()
        worker = threading.Thread(target=ctx.run, args=(call_in_thread,))
        worker.start()
        worker.join()
        # a thread pool that propagates the OTel context the standard way
        otel_ctx = context_api.get_current()

        def attach_and_call() -> None:
            token = context_api.attach(otel_ctx)
            try:
                call_in_thread()
            finally:
                context_api.detach(token)

        other = threading.Thread(target=attach_and_call)
        other.start()
        other.join()
        asyncio.run(blocks())
    named = _named(exporter)
    block = _attrs(named["invoke_agent fan-out"])
    assert block[sc.WIDGET_LLM_CALLS] == 5
    assert block[sc.WIDGET_USAGE_INPUT_TOKENS] == 100 + 100 + 100 + 200 + 300
    assert _attrs(named["iteration 1"])[sc.WIDGET_LLM_CALLS] == 5


def test_recording_usage_twice_replaces_the_first(exporter: InMemorySpanExporter) -> None:
    with agent_block_span("streamer"), llm_call_span("gpt-4o"):
        record_llm_usage(input_tokens=100, output_tokens=1)
        record_llm_usage(input_tokens=100, output_tokens=50, response_model="gpt-4o-2024-08-06")
    named = _named(exporter)
    llm = _attrs(named["chat gpt-4o"])
    assert llm[sc.GEN_AI_USAGE_OUTPUT_TOKENS] == 50
    assert llm[sc.GEN_AI_RESPONSE_MODEL] == "gpt-4o-2024-08-06"
    block = _attrs(named["invoke_agent streamer"])
    assert block[sc.WIDGET_LLM_CALLS] == 1
    assert block[sc.WIDGET_USAGE_OUTPUT_TOKENS] == 50
    assert block[sc.WIDGET_COST_USD] == pytest.approx(100 * 2.5e-6 + 50 * 10e-6)


def test_usage_and_reasoning_tokens_and_finish_reasons(exporter: InMemorySpanExporter) -> None:
    with llm_call_span("o-reasoner", operation="chat"):
        assert (
            record_llm_usage(
                input_tokens=10,
                output_tokens=100,
                reasoning_output_tokens=80,
                cache_creation_input_tokens=0,
                finish_reasons=["stop"],
            )
            is None
        )
    [s] = exporter.get_finished_spans()
    assert _attrs(s)[sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS] == 80
    assert _attrs(s)[sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS] == 0
    assert _attrs(s)[sc.GEN_AI_RESPONSE_FINISH_REASONS] == ("stop",)


def test_price_table_from_environment(
    exporter: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from widgettrace.instrumentation._config import reset_settings

    table = tmp_path / "prices.json"
    table.write_text(json.dumps({"models": {"house-model": {"input": 1, "output": 2}}}))
    monkeypatch.setenv("WIDGETTRACE_PRICES", str(table))
    reset_settings()
    pricing.reset_price_table()
    try:
        assert _llm("house-model", 1_000_000, 1_000_000) == pytest.approx(3.0)
        assert _llm("gpt-4o", 10, 10) is None  # not in this table
    finally:
        reset_settings()
    monkeypatch.setenv("WIDGETTRACE_PRICES", '{"inline-model": {"input": 4, "output": 0}}')
    reset_settings()
    pricing.reset_price_table()
    try:
        assert _llm("inline-model", 500_000, 9) == pytest.approx(2.0)
    finally:
        reset_settings()


def test_agent_kind_from_function_tracing_rolls_up(
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    name = f"wt_cascade_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(
        "from widgettrace.instrumentation.api import llm_call_span, record_llm_usage\n"
        "def planner():\n"
        "    with llm_call_span('gpt-4o'):\n"
        "        record_llm_usage(input_tokens=1000, output_tokens=100)\n"
        "    return 'plan'\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    instrumentor = FunctionsInstrumentor()
    instrumentor.instrument(tracer_provider=provider, trace_functions=f"{name}:planner=agent")
    try:
        module = importlib.import_module(name)
        assert module.planner() == "plan"
    finally:
        instrumentor.uninstrument()
        sys.modules.pop(name, None)
    block = _attrs(_named(exporter)["invoke_agent planner"])
    assert block[sc.WIDGET_LLM_CALLS] == 1
    assert block[sc.WIDGET_COST_USD] == pytest.approx(1000 * 2.5e-6 + 100 * 10e-6)
