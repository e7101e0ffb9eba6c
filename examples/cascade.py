"""The cascade orchestrator: agent blocks that scout, vet and register widgets, per iteration.

One iteration (one POST /api/cascade/iterations) runs four agent blocks, each making
(simulated, deterministic) LLM calls with realistic token usage and calling tools:

=========  ===================  =============================================================
block      model (provider)     tools
=========  ===================  =============================================================
planner    gpt-4o (openai)      none: plans the iteration
scout      gpt-4o-mini (openai) ``search_hub``: the model hub over HTTP (``requests``, thread)
vetter     claude-sonnet-4-5    ``lint_config`` per candidate over MCP **stdio**, concurrently
           (anthropic)          (asyncio tasks); ``rank_widgets`` over MCP **streamable HTTP**
writer     widgetron-7b-ft      ``record_decision``: registry writes in a thread pool;
           (vllm, self-hosted)  this model is missing from examples/prices.json: no cost
=========  ===================  =============================================================

Spans come from widgettrace's API: ``iteration {n}`` > ``invoke_agent {block}`` >
``chat {model}`` (with ``gen_ai.usage.*`` and, for priced models, ``gen_ai.cost.*``) and
``execute_tool {tool}``. The whole iteration is one trace: the HTTP request, the asyncio tasks,
the worker threads (context handed over explicitly), the outgoing HTTP requests and both MCP
widgets' server spans.

A linter rejection (``isError``, e.g. a removed config field) is a normal outcome for the
cascade: the tool span is marked ``widget.outcome=failure`` / ``error.type=tool_error`` and the
candidate is rejected; the linter's own exception is reported by the linter process.

Usage::

    result = await run_iteration(deps, cascade="onboarding", number=1)
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import requests
from opentelemetry.trace import Status, StatusCode

from registry import WidgetRegistry
from widgets import WidgetLinks, WidgetToolError
from widgettrace import (
    add_breadcrumb,
    agent_block_span,
    iteration_span,
    llm_call_span,
    record_llm_usage,
    set_tag,
    tool_span,
)

__all__ = ["AgentBlock", "CascadeDeps", "SimulatedLLM", "run_iteration"]

#: What each iteration asks the hub for.
_QUERIES = ("text", "classification", "token", "image")


@dataclass(frozen=True)
class AgentBlock:
    """One block of the cascade and the model it runs on."""

    name: str
    model: str
    provider: str
    system_prompt_tokens: int
    max_output_tokens: int


PLANNER = AgentBlock("planner", "gpt-4o", "openai", 1_850, 420)
SCOUT = AgentBlock("scout", "gpt-4o-mini", "openai", 960, 180)
VETTER = AgentBlock("vetter", "claude-sonnet-4-5", "anthropic", 2_400, 640)
WRITER = AgentBlock("writer", "widgetron-7b-ft", "vllm", 700, 220)


@dataclass(frozen=True)
class Reply:
    """A simulated completion and its token usage."""

    text: str
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int


class SimulatedLLM:
    """A deterministic stand-in for an LLM API: token counts follow the prompt, no network."""

    async def chat(self, block: AgentBlock, prompt: str, *, iteration: int) -> Reply:
        """Answer ``prompt``; later iterations reuse the cached system prompt (Anthropic-style)."""
        digest = hashlib.sha256(f"{block.name}|{prompt}".encode()).digest()
        prompt_tokens = block.system_prompt_tokens + len(prompt) // 4
        output_tokens = block.max_output_tokens // 2 + digest[0] % (block.max_output_tokens // 2)
        cached = (
            block.system_prompt_tokens if block.provider == "anthropic" and iteration > 1 else 0
        )
        # Latency grows with the output, as with a real model (kept small for the demo).
        await asyncio.sleep(0.01 + output_tokens / 40_000)
        return Reply(f"{block.name}:{digest.hex()[:12]}", prompt_tokens, output_tokens, cached)


@dataclass
class CascadeDeps:
    """What the orchestrator talks to."""

    hub_url: str
    registry: WidgetRegistry
    links: WidgetLinks
    executor: Executor
    llm: SimulatedLLM


@dataclass
class _Tally:
    cost_usd: float = 0.0
    llm_calls: int = 0
    unpriced_calls: int = 0


async def _chat(
    deps: CascadeDeps,
    block: AgentBlock,
    prompt: str,
    iteration: int,
    tally: _Tally,
    conversation: str,
) -> Reply:
    with llm_call_span(block.model, provider=block.provider, conversation_id=conversation):
        reply = await deps.llm.chat(block, prompt, iteration=iteration)
        cost = record_llm_usage(
            input_tokens=reply.input_tokens,
            output_tokens=reply.output_tokens,
            cache_read_input_tokens=reply.cache_read_tokens or None,
            response_model=block.model,
            finish_reasons=["stop"],
        )
    tally.llm_calls += 1
    if cost is None:
        tally.unpriced_calls += 1
    else:
        tally.cost_usd += cost
    return reply


def _search_hub(hub_url: str, query: str) -> list[dict[str, Any]]:
    response = requests.get(f"{hub_url}/api/models", params={"search": query}, timeout=5)
    response.raise_for_status()
    hits: list[dict[str, Any]] = response.json()
    return hits


def _hub_config(hub_url: str, model_id: str) -> dict[str, Any]:
    response = requests.get(f"{hub_url}/api/models/{model_id}", timeout=5)
    response.raise_for_status()
    config: dict[str, Any] = response.json()["config"]
    return config


async def _lint(deps: CascadeDeps, model_id: str, config: dict[str, Any]) -> tuple[str, bool]:
    with tool_span("lint_config", tool_type="function") as current:
        try:
            verdict = await deps.links.lint(config)
        except WidgetToolError as exc:
            # The widget said no: a result for the cascade, not a platform error.
            current.set_attribute("widget.outcome", "failure")
            current.set_attribute("error.type", "tool_error")
            current.set_status(Status(StatusCode.ERROR, str(exc)))
            add_breadcrumb(
                "widget rejected by linter", category="cascade", data={"widget": model_id}
            )
            return model_id, False
        return model_id, bool(verdict["ok"])


async def run_iteration(deps: CascadeDeps, cascade: str, number: int) -> dict[str, Any]:
    """Run one iteration of the cascade; returns the decisions, token cost and call counts."""
    conversation = f"{cascade}-{number}"
    tally = _Tally()
    set_tag("cascade", cascade)
    query = _QUERIES[(number - 1) % len(_QUERIES)]
    with iteration_span(number, cascade=cascade):
        with agent_block_span(
            PLANNER.name,
            model=PLANNER.model,
            provider=PLANNER.provider,
            conversation_id=conversation,
        ):
            await _chat(
                deps,
                PLANNER,
                f"Plan iteration {number}: look for {query} widgets",
                number,
                tally,
                conversation,
            )

        with agent_block_span(
            SCOUT.name, model=SCOUT.model, provider=SCOUT.provider, conversation_id=conversation
        ):
            await _chat(
                deps, SCOUT, f"Which hub query finds {query} widgets?", number, tally, conversation
            )
            with tool_span("search_hub", tool_type="function"):
                hits = await asyncio.to_thread(_search_hub, deps.hub_url, query)
            candidates = [hit["id"] for hit in hits]

        with agent_block_span(
            VETTER.name, model=VETTER.model, provider=VETTER.provider, conversation_id=conversation
        ):
            await _chat(
                deps,
                VETTER,
                f"Vet these widgets: {', '.join(candidates)}",
                number,
                tally,
                conversation,
            )
            configs = await asyncio.gather(
                *(asyncio.to_thread(_hub_config, deps.hub_url, c) for c in candidates)
            )
            # Lint every candidate (stdio link) and rank them (HTTP link) concurrently.
            lint_tasks = [
                asyncio.create_task(_lint(deps, c, cfg))
                for c, cfg in zip(candidates, configs, strict=True)
            ]

            async def rank() -> list[dict[str, Any]]:
                with tool_span("rank_widgets", tool_type="function"):
                    return await deps.links.rank(candidates)

            ranked, *verdicts = await asyncio.gather(rank(), *lint_tasks)
            approved = {model_id for model_id, ok in verdicts if ok}

        with agent_block_span(
            WRITER.name, model=WRITER.model, provider=WRITER.provider, conversation_id=conversation
        ):
            await _chat(
                deps,
                WRITER,
                f"Summarise decisions for {len(candidates)} widgets",
                number,
                tally,
                conversation,
            )
            with tool_span("record_decision", tool_type="function"):
                # A copy of the caller's context per task: the worker's spans join this trace.
                futures = [
                    deps.executor.submit(
                        contextvars.copy_context().run,
                        deps.registry.record_decision,
                        cascade,
                        number,
                        entry["id"],
                        "approved" if entry["id"] in approved else "rejected",
                    )
                    for entry in ranked
                ]
                for future in futures:
                    future.result()

    return {
        "iteration": number,
        "query": query,
        "approved": [e["id"] for e in ranked if e["id"] in approved],
        "rejected": [e["id"] for e in ranked if e["id"] not in approved],
        "llm_calls": tally.llm_calls,
        "unpriced_calls": tally.unpriced_calls,
        "cost_usd": round(tally.cost_usd, 6),
    }
