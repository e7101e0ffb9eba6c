"""One trace as a span tree (for ``widgettrace mcp``'s ``get_trace``; owned by the ``agents`` side).

:func:`get_trace` reads the ``transactions`` and ``spans`` tables of one ``trace_id`` and nests
them by ``parent_span_id``: a transaction's root span (one service's part of the trace) hangs
under the span of the service that called it (an HTTP or MCP client span), so the tree crosses
processes. Every node carries its op, name, start offset from the trace's start and duration in
ms, status, the errors raised in it (issue key and title) and, for a transaction's root, its
event id, service and release.

Bounded: at most ``max_spans`` nodes are returned (earliest first); ``truncated`` says when
more exist.
"""

from __future__ import annotations

from typing import Any

from widgettrace.insights._store import Store

__all__ = ["get_trace"]


def get_trace(store: Store, trace_id: str, *, max_spans: int = 500) -> dict[str, Any] | None:
    """The span tree of ``trace_id`` (see the module docstring), or ``None`` when unknown."""
    txns = store.rows(
        "SELECT event_id, span_id, name, op, status, start, ts, duration_ms, service, release "
        "FROM transactions WHERE trace_id = ? ORDER BY start",
        [trace_id],
    )
    if not txns:
        return None
    total_spans = int(
        store.scalar("SELECT count(DISTINCT span_id) FROM spans WHERE trace_id = ?", [trace_id])
        or 0
    )
    # The spans table holds each transaction's root span too, with its remote parent: that is
    # what links one service's transaction under the span of the service that called it.
    spans = store.rows(
        "SELECT span_id, any_value(parent_span_id) AS parent_span_id, any_value(op) AS op, "
        "any_value(description) AS description, min(start) AS start, max(duration_ms) "
        "AS duration_ms, max(self_ms) AS self_ms, any_value(status) AS status "
        "FROM spans WHERE trace_id = ? GROUP BY span_id ORDER BY start LIMIT ?",
        [trace_id, max_spans],
    )
    errors = store.rows(
        "SELECT event_id, span_id, group_key, title, exc_type, ts FROM errors "
        "WHERE trace_id = ? ORDER BY ts",
        [trace_id],
    )
    t0 = min(float(t["start"]) for t in txns)

    def node(row: dict[str, Any], name: str) -> dict[str, Any]:
        start = row.get("start")
        duration = row.get("duration_ms")
        return {
            "span_id": row["span_id"],
            "op": row.get("op"),
            "name": name,
            "start_ms": round((float(start) - t0) * 1000.0, 3) if start is not None else None,
            "duration_ms": round(float(duration), 3) if duration is not None else None,
            "status": row.get("status"),
            "errors": [],
            "children": [],
        }

    by_id: dict[str, dict[str, Any]] = {}
    parents: dict[str, str | None] = {}
    for s in spans:
        n = node(s, str(s.get("description") or s.get("op") or ""))
        by_id[str(s["span_id"])] = n
        parents[str(s["span_id"])] = s.get("parent_span_id")
    for t in txns:
        found = by_id.get(str(t["span_id"]))
        if found is None:  # a transaction whose root span row is missing (or past the cap)
            if len(by_id) >= max_spans:
                continue
            found = by_id[str(t["span_id"])] = node(t, str(t["name"]))
            parents[str(t["span_id"])] = None
        found["name"] = str(t["name"])
        found["transaction"] = {
            "event_id": t["event_id"],
            "service": t.get("service"),
            "release": t.get("release"),
        }
    roots: list[dict[str, Any]] = []
    for span_id, n in by_id.items():
        holder = by_id.get(str(parents.get(span_id)))
        (holder["children"] if holder is not None else roots).append(n)
    for e in errors:
        target = by_id.get(str(e.get("span_id")))
        entry = {k: e[k] for k in ("event_id", "group_key", "title", "exc_type")}
        if target is None and roots:
            target = roots[0]
        if target is not None:
            target["errors"].append(entry)
    end = max(float(t["ts"]) for t in txns)
    return {
        "trace_id": trace_id,
        "duration_ms": round((end - t0) * 1000.0, 3),
        "transactions": len(txns),
        "spans": total_spans,
        "errors": len(errors),
        "services": sorted({str(t["service"]) for t in txns if t.get("service")}),
        "truncated": total_spans > len(by_id),
        "roots": sorted(roots, key=lambda n: n["start_ms"] or 0.0),
    }
