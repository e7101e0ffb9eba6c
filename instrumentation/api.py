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

from collections.abc import Callable, Mapping
from typing import Any, TypeVar, overload

from opentelemetry.trace import Span, SpanKind
from opentelemetry.util.types import AttributeValue

from widgettrace.instrumentation import semconv as sc
from widgettrace.instrumentation._rollup import _FrameKind, record_llm_usage
from widgettrace.instrumentation._span_scope import SpanScope
from widgettrace.instrumentation._spans import Attrs as _Attrs
from widgettrace.instrumentation._spans import set_tracer_provider
from widgettrace.instrumentation._wrappers import count_found, wrap_callable

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

# This module is the user-facing one; the parts live beside it: the tracer and error records
# in _spans, SpanScope in _span_scope, decorating in _wrappers, roll-ups in _rollup.

_F = TypeVar("_F", bound=Callable[..., Any])

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


def _attrs(fixed: _Attrs, *optional: tuple[str, AttributeValue | None]) -> _Attrs:
    """``fixed`` plus each optional ``(key, value)`` whose value was given."""
    for key, value in optional:
        if value is not None:
            fixed[key] = value
    return fixed


def _typed(
    name: str,
    build: Callable[..., _Attrs],
    args: tuple[Any, ...],
    *,
    roll_up: _FrameKind | None = None,
    model: str | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    on_result: Callable[[Span, object], None] | None = None,
) -> SpanScope:
    """A typed helper's span: attributes built only when it records, ``widget.outcome`` set."""
    return SpanScope(name, kind, None, build, args, True, roll_up, model, on_result=on_result)


def _discovery_attrs(
    source: str, query: str | None, repositories: int | None, found: int | None
) -> _Attrs:
    return _attrs(
        {sc.WIDGET_OP: sc.WIDGET_OP_DISCOVERY, sc.WIDGET_DISCOVERY_SOURCE: source},
        (sc.WIDGET_DISCOVERY_QUERY, query),
        (sc.WIDGET_DISCOVERY_REPOSITORIES_SCANNED, repositories),
        (sc.WIDGET_DISCOVERY_WIDGETS_FOUND, found),
    )


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
    return _typed(
        name or f"discover {source}",
        _discovery_attrs,
        (source, query, repositories_scanned, widgets_found),
        on_result=count_found,
    )


def _conversion_attrs(widget_id: str | None, widget_type: str | None, stage: str | None) -> _Attrs:
    return _attrs(
        {sc.WIDGET_OP: sc.WIDGET_OP_CONVERSION},
        (sc.WIDGET_ID, widget_id),
        (sc.WIDGET_TYPE, widget_type),
        (sc.WIDGET_CONVERSION_STAGE, stage),
    )


def conversion_span(
    widget_id: str | None = None,
    *,
    widget_type: str | None = None,
    stage: str | None = None,
    name: str | None = None,
) -> SpanScope:
    """Converting one widget (or one stage of it: parse, validate, infer, write)."""
    return _typed(
        name or (f"convert {stage}" if stage else "convert"),
        _conversion_attrs,
        (widget_id, widget_type, stage),
    )


def _registry_attrs(
    operation: str, registry: str | None, widget_id: str | None, widget_type: str | None
) -> _Attrs:
    return _attrs(
        {sc.WIDGET_OP: sc.WIDGET_OP_REGISTRY, sc.WIDGET_REGISTRY_OPERATION: operation},
        (sc.WIDGET_REGISTRY_NAME, registry),
        (sc.WIDGET_ID, widget_id),
        (sc.WIDGET_TYPE, widget_type),
    )


def registry_span(
    operation: str,
    *,
    registry: str | None = None,
    widget_id: str | None = None,
    widget_type: str | None = None,
    name: str | None = None,
) -> SpanScope:
    """A widget registry operation (``read``, ``write``, ``delete``, ``list``, ...)."""
    return _typed(
        name or f"registry {operation}",
        _registry_attrs,
        (operation, registry, widget_id, widget_type),
    )


def _iteration_attrs(number: int, cascade: str | None) -> _Attrs:
    return _attrs(
        {sc.WIDGET_OP: sc.WIDGET_OP_ITERATION, sc.WIDGET_ITERATION_NUMBER: number},
        (sc.WIDGET_CASCADE_NAME, cascade),
    )


def iteration_span(
    number: int, *, cascade: str | None = None, name: str | None = None
) -> SpanScope:
    """One cascade-orchestrator iteration; rolls up the usage and cost of its LLM calls."""
    return _typed(
        name or f"iteration {number}", _iteration_attrs, (number, cascade), roll_up="iteration"
    )


def _agent_attrs(
    block: str,
    agent_id: str | None,
    conversation_id: str | None,
    provider: str | None,
    model: str | None,
) -> _Attrs:
    return _attrs(
        {
            sc.WIDGET_OP: sc.WIDGET_OP_INVOKE_AGENT,
            sc.GEN_AI_OPERATION_NAME: "invoke_agent",
            sc.GEN_AI_AGENT_NAME: block,
        },
        (sc.GEN_AI_AGENT_ID, agent_id),
        (sc.GEN_AI_CONVERSATION_ID, conversation_id),
        (sc.GEN_AI_PROVIDER_NAME, provider),
        (sc.GEN_AI_REQUEST_MODEL, model),
    )


def agent_block_span(
    block: str,
    *,
    agent_id: str | None = None,
    conversation_id: str | None = None,
    provider: str | None = None,
    model: str | None = None,
) -> SpanScope:
    """One agent block of the cascade: ``invoke_agent {block}``, with usage/cost roll-ups."""
    return _typed(
        f"invoke_agent {block}",
        _agent_attrs,
        (block, agent_id, conversation_id, provider, model),
        roll_up="agent",
    )


def _llm_attrs(
    operation: str, model: str, provider: str | None, conversation_id: str | None
) -> _Attrs:
    return _attrs(
        {
            sc.WIDGET_OP: f"gen_ai.{operation}",
            sc.GEN_AI_OPERATION_NAME: operation,
            sc.GEN_AI_REQUEST_MODEL: model,
        },
        (sc.GEN_AI_PROVIDER_NAME, provider),
        (sc.GEN_AI_CONVERSATION_ID, conversation_id),
    )


def llm_call_span(
    model: str,
    *,
    provider: str | None = None,
    operation: str = "chat",
    conversation_id: str | None = None,
) -> SpanScope:
    """One LLM call: ``chat {model}`` (kind CLIENT). Call :func:`record_llm_usage` inside it."""
    return _typed(
        f"{operation} {model}",
        _llm_attrs,
        (operation, model, provider, conversation_id),
        roll_up="llm",
        model=model,
        kind=SpanKind.CLIENT,
    )


def _tool_attrs(tool: str, call_id: str | None, tool_type: str | None) -> _Attrs:
    return _attrs(
        {
            sc.WIDGET_OP: sc.WIDGET_OP_EXECUTE_TOOL,
            sc.GEN_AI_OPERATION_NAME: "execute_tool",
            sc.GEN_AI_TOOL_NAME: tool,
        },
        (sc.GEN_AI_TOOL_CALL_ID, call_id),
        (sc.GEN_AI_TOOL_TYPE, tool_type),
    )


def tool_span(tool: str, *, call_id: str | None = None, tool_type: str | None = None) -> SpanScope:
    """One tool execution by an agent: ``execute_tool {tool}``."""
    return _typed(f"execute_tool {tool}", _tool_attrs, (tool, call_id, tool_type))
