"""Roll-ups: LLM usage and cost added up per agent block, iteration and trace.

:func:`record_llm_usage` records one call on its ``llm_call_span`` and adds it to the
accumulators (:class:`_Frame`) the enclosing orchestrator spans keep in the OTel context; each
writes its total on exit, and the trace total is written on the span the outermost orchestrator
span started under. See :mod:`widgettrace.instrumentation.api` for the attributes.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from typing import Final, Literal, cast

from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.trace import Span

from widgettrace.instrumentation import semconv as sc
from widgettrace.instrumentation._spans import Attrs as _Attrs
from widgettrace.instrumentation._spans import _internal
from widgettrace.instrumentation.pricing import get_price_table

__all__ = ["record_llm_usage"]

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
