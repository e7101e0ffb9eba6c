"""Search the events of the local log (for ``widgettrace mcp``'s ``search_events``; ``agents``).

:func:`search_events` matches a case-insensitive substring against error titles, exception
values, culprits and transaction names, transaction names and log bodies, narrowed by kind, time
window, release, service and level, newest first, one page (``limit``/``offset``) at a time, with
the total count so a caller can page on.
"""

from __future__ import annotations

from typing import Any

from widgettrace.insights._query import Window
from widgettrace.insights._store import Store

__all__ = ["KINDS", "search_events"]

KINDS = ("error", "transaction", "log")


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def search_events(
    store: Store,
    query: str | None = None,
    window: Window | None = None,
    *,
    kinds: tuple[str, ...] = KINDS,
    level: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> dict[str, Any]:
    """``{"total": N, "events": [...]}``: one page of matching events, newest first."""
    window = window or Window()
    cond, params = window.where()
    like = _like(query) if query else None
    parts: list[str] = []
    args: list[Any] = []
    if "error" in kinds:
        extra = ""
        extra_args: list[Any] = []
        if like:
            extra += (
                " AND (title ILIKE ? ESCAPE '\\' OR exc_value ILIKE ? ESCAPE '\\'"
                " OR culprit ILIKE ? ESCAPE '\\' OR transaction ILIKE ? ESCAPE '\\')"
            )
            extra_args += [like] * 4
        if level:
            extra += " AND level = ?"
            extra_args.append(level)
        parts.append(
            "SELECT 'error' AS kind, event_id, ts, title AS summary, level, release, service, "
            "trace_id, group_key, NULL::DOUBLE AS duration_ms, transaction "
            f"FROM errors WHERE {cond}{extra}"
        )
        args += params + extra_args
    if "transaction" in kinds and not level:
        extra = " AND name ILIKE ? ESCAPE '\\'" if like else ""
        parts.append(
            "SELECT 'transaction' AS kind, event_id, ts, name AS summary, status AS level, "
            "release, service, trace_id, NULL AS group_key, duration_ms, name AS transaction "
            f"FROM transactions WHERE {cond}{extra}"
        )
        args += params + ([like] if like else [])
    if "log" in kinds:
        log_window = Window(
            since=window.since, until=window.until, release=window.release
        )  # logs have no environment and no user: narrow by what they carry
        lcond, lparams = log_window.where()
        extra = " AND body ILIKE ? ESCAPE '\\'" if like else ""
        if window.service:
            extra += " AND service = ?"
        if level:
            extra += " AND level = ?"
        parts.append(
            "SELECT 'log' AS kind, NULL AS event_id, ts, body AS summary, level, release, "
            "service, trace_id, NULL AS group_key, NULL::DOUBLE AS duration_ms, "
            f"NULL AS transaction FROM logs WHERE {lcond}{extra}"
        )
        args += lparams + ([like] if like else [])
        args += [window.service] if window.service else []
        args += [level] if level else []
    if not parts:
        return {"total": 0, "events": []}
    union = " UNION ALL ".join(parts)
    total = int(store.scalar(f"SELECT count(*) FROM ({union})", args) or 0)
    events = store.rows(
        f"SELECT * FROM ({union}) ORDER BY ts DESC NULLS LAST LIMIT ? OFFSET ?",
        [*args, limit, offset],
    )
    return {"total": total, "events": events}
