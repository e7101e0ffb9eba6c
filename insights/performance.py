"""Performance per transaction name (endpoint, MCP method, cascade iteration) and where time goes.

:func:`endpoints`: count, avg, p50, p95, p99 (ms), error rate (transactions whose status is not
``ok``, as Sentry's failure rate) and throughput per minute over the window.

:func:`breakdown`: for the slowest names, the share of their total time spent in each span op and
description by *self* time (a span's duration less its direct children's), so nested spans are
not counted twice: ``POST /api/widgets/convert: 47% widget.conversion run_inference, 23% db``.
"""

from __future__ import annotations

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
        SELECT name, any_value(op) AS op, count(*) AS count,
            avg(duration_ms) AS avg_ms,
            quantile_cont(duration_ms, 0.5) AS p50_ms,
            quantile_cont(duration_ms, 0.95) AS p95_ms,
            quantile_cont(duration_ms, 0.99) AS p99_ms,
            count(*) FILTER (WHERE status NOT IN ('ok', 'cancelled', 'unknown')) / count(*)
                AS error_rate,
            count(*) / any_value(span.minutes) AS per_minute
        FROM t, span GROUP BY name ORDER BY p95_ms DESC, name
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
) -> list[dict[str, Any]]:
    """Self-time shares per span op/description for ``names`` (default: the ``top`` slowest
    server transactions by p95)."""
    window = window or Window()
    if names is None:
        # The slowest endpoints the service serves (server transactions) when there are any;
        # a client-side wrapper's time is mostly waiting for them.
        rows = endpoints(store, window)
        served = [r for r in rows if (r["op"] or "").endswith(".server")]
        names = [row["name"] for row in (served or rows)[:top]]
    out: list[dict[str, Any]] = []
    if window.service or window.release or window.environment or window.extra:
        cond, params = window.where("t")
        source = f"spans s JOIN transactions t ON t.event_id = s.event_id WHERE {cond} AND"
    else:
        # Only a time range: the spans table answers alone (no join over every span).
        cond, params = window.where("s")
        source = f"spans s WHERE {cond} AND"
    for name in names:
        rows = store.rows(
            f"""
            SELECT s.op, regexp_replace(s.description, '{_HOST}', '<host>', 'g') AS description,
                sum(s.self_ms) AS self_ms FROM {source} s.txn_name = ?
            GROUP BY ALL ORDER BY self_ms DESC
            """,
            [*params, name],
        )
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
