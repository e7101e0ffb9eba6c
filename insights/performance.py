"""Performance per transaction name (endpoint, MCP method, cascade iteration) and where time goes.

:func:`endpoints`: count, avg, p50, p95, p99 (ms), error rate (transactions whose status is not
``ok``, as Sentry's failure rate) and throughput per minute over the window.

:func:`breakdown`: for the slowest names, the share of their total time spent in each span op and
description by *self* time (a span's duration less its direct children's), so nested spans are
not counted twice: ``POST /api/widgets/convert: 47% widget.conversion run_inference, 23% db``.
"""

from __future__ import annotations

import math
from typing import Any

from widgettrace.insights._query import Window
from widgettrace.insights._store import Store

__all__ = ["breakdown", "breakdown_line", "endpoints"]

# Hosts and ports in span descriptions ("GET 127.0.0.1:46265/api") differ per run and process:
# one label for the same call.
_HOST = r"(\d{1,3}\.){3}\d{1,3}(:\d+)?|localhost(:\d+)?"


def endpoints(store: Store, window: Window | None = None) -> list[dict[str, Any]]:
    """Per transaction name in ``window``, slowest p95 first."""
    cond, params = (window or Window()).where()
    return store.rows(
        f"""
        WITH t AS (SELECT * FROM transactions WHERE {cond}),
        span AS (SELECT greatest((max(ts) - min(start)) / 60.0, 1.0) AS minutes FROM t)
        SELECT name, op, count, avg_ms, q[1] AS p50_ms, q[2] AS p95_ms, q[3] AS p99_ms,
            error_rate, per_minute
        FROM (
            SELECT name, any_value(op) AS op, count(*) AS count,
                avg(duration_ms) AS avg_ms,
                -- one sort of each name's durations for the three percentiles
                quantile_cont(duration_ms, [0.5, 0.95, 0.99]) AS q,
                count(*) FILTER (WHERE status NOT IN ('ok', 'cancelled', 'unknown')) / count(*)
                    AS error_rate,
                count(*) / any_value(span.minutes) AS per_minute
            FROM t, span GROUP BY name
        ) ORDER BY p95_ms DESC, name
        """,
        params,
    )


def breakdown(
    store: Store,
    window: Window | None = None,
    *,
    names: list[str] | None = None,
    top: int = 3,
    parts: int = 4,
    endpoint_rows: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Self-time shares per span op/description for ``names`` (default: the ``top`` slowest
    server transactions by p95; ``endpoint_rows``: :func:`endpoints` of the same window, when
    the caller has it already)."""
    window = window or Window()
    if names is None:
        # The slowest endpoints the service serves (server transactions) when there are any;
        # a client-side wrapper's time is mostly waiting for them.
        rows = endpoint_rows if endpoint_rows is not None else endpoints(store, window)
        served = [r for r in rows if (r["op"] or "").endswith(".server")]
        names = [row["name"] for row in (served or rows)[:top]]
    if not names:
        return []
    marks = ", ".join("?" for _ in names)
    if window.service or window.release or window.environment or window.extra:
        cond, params = window.where("t")
        part, part_params = (
            "SELECT s.txn_name, s.op, s.description, sum(s.self_ms) AS self_ms FROM spans s "
            f"JOIN transactions t ON t.event_id = s.event_id WHERE {cond} "
            f"AND s.txn_name IN ({marks}) GROUP BY ALL",
            [*params, *names],
        )
    else:
        part, part_params = _time_range_part(window, names)
    # The host pattern runs on the distinct descriptions only.
    found = store.rows(
        f"""
        SELECT txn_name, op, regexp_replace(description, '{_HOST}', '<host>', 'g')
            AS description, sum(self_ms) AS self_ms
        FROM ({part}) GROUP BY ALL ORDER BY self_ms DESC, op, description
        """,
        part_params,
    )
    out: list[dict[str, Any]] = []
    for name in names:
        rows = [r for r in found if r["txn_name"] == name]
        total = sum(r["self_ms"] or 0.0 for r in rows)
        if total <= 0:
            continue
        shares = [
            {
                "op": r["op"],
                "description": r["description"],
                "self_ms": r["self_ms"],
                "share": (r["self_ms"] or 0.0) / total,
            }
            for r in rows[:parts]
            if (r["self_ms"] or 0.0) / total >= 0.005
        ]
        out.append({"name": name, "total_ms": total, "parts": shares})
    return out


def _time_range_part(window: Window, names: list[str]) -> tuple[str, list[Any]]:
    """The query for the self time per name/op/description of the spans ending in the minutes
    the window touches, from ``span_minutes`` (a window's first and last minutes count whole:
    a breakdown is shares of a period, and the roll-up spares reading every span)."""
    marks = ", ".join("?" for _ in names)
    conds, params = ["true"], []
    if window.since is not None:
        conds.append("minute >= ?")
        params.append(math.floor(window.since / 60) * 60.0)
    if window.until is not None:
        conds.append("minute < ?")
        params.append(window.until)
    return (
        "SELECT txn_name, op, description, sum(self_ms) AS self_ms FROM span_minutes "
        f"WHERE {' AND '.join(conds)} AND txn_name IN ({marks}) GROUP BY ALL",
        [*params, *names],
    )


def breakdown_line(entry: dict[str, Any]) -> str:
    """``"NAME: 47% op description, 23% op description"``."""
    parts = ", ".join(
        f"{p['share'] * 100:.0f}% {_label(p['op'], p['description'])}" for p in entry["parts"]
    )
    return f"{entry['name']}: {parts}"


def _label(op: str | None, description: str | None) -> str:
    op = op or "span"
    if not description or description == op:
        return op
    return f"{op} {description}"
