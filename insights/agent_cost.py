"""LLM cost by agent block, cascade iteration, model or release (``widgettrace mcp``'s ``cost``).

Owned by the ``agents`` side. Reads the per-span LLM columns of the ``spans`` table (``model``,
``cost_usd``, ``input_tokens``, ``output_tokens``, ``iteration``) and the per-transaction
``llm_cost``/``llm_tokens``:

* ``model``: the LLM call spans (``gen_ai.chat`` and other non-agent ``gen_ai.*`` ops with a
  model), their ``gen_ai.cost.total_tokens``;
* ``block``: the agent-block spans (``gen_ai.invoke_agent``), by ``gen_ai.agent.name``, with the
  cost the block rolled up (``widget.cost.usd``);
* ``iteration``: the cascade iteration spans (``widget.iteration``), by iteration number;
* ``release``: the transactions' LLM cost, by release.

Highest cost first. Calls without a known price count as calls, not as cost.
"""

from __future__ import annotations

from typing import Any, Literal

from widgettrace.insights._query import Window
from widgettrace.insights._store import Store

__all__ = ["GROUPS", "cost"]

GROUPS = ("block", "iteration", "model", "release")
Group = Literal["block", "iteration", "model", "release"]

_ROLL_UPS = ("gen_ai.invoke_agent", "widget.iteration")
_SPAN_GROUPS = {
    "model": (
        "s.model",
        f"s.model IS NOT NULL AND s.op LIKE 'gen_ai.%' AND s.op NOT IN {_ROLL_UPS}",
    ),
    "block": ("s.agent", "s.op = 'gen_ai.invoke_agent' AND s.agent IS NOT NULL"),
    "iteration": ("CAST(s.iteration AS VARCHAR)", "s.op = 'widget.iteration'"),
}


def cost(
    store: Store, window: Window | None = None, *, group_by: Group = "model"
) -> list[dict[str, Any]]:
    """Cost rows ``{key, cost_usd, tokens, input_tokens, output_tokens, ...}`` by ``group_by``."""
    window = window or Window()
    cond, params = window.where("t")
    if group_by == "release":
        return store.rows(
            f"""
            SELECT coalesce(t.release, '(none)') AS key, sum(t.llm_cost) AS cost_usd,
                sum(t.llm_tokens) AS tokens, NULL::BIGINT AS input_tokens,
                NULL::BIGINT AS output_tokens,
                count(*) FILTER (WHERE t.llm_tokens > 0) AS transactions
            FROM transactions t WHERE {cond} GROUP BY ALL
            HAVING sum(t.llm_tokens) > 0 OR sum(t.llm_cost) > 0
            ORDER BY cost_usd DESC NULLS LAST, key
            """,
            params,
        )
    key, where = _SPAN_GROUPS[group_by]
    return store.rows(
        f"""
        SELECT {key} AS key, coalesce(sum(s.cost_usd), 0) AS cost_usd,
            coalesce(sum(s.input_tokens), 0) + coalesce(sum(s.output_tokens), 0) AS tokens,
            sum(s.input_tokens) AS input_tokens, sum(s.output_tokens) AS output_tokens,
            count(*) AS calls, count(*) FILTER (WHERE s.cost_usd IS NULL) AS unpriced
        FROM spans s JOIN transactions t ON t.event_id = s.event_id
        WHERE {where} AND {cond} GROUP BY ALL ORDER BY cost_usd DESC, key
        """,
        params,
    )
