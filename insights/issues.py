"""Issues: error events grouped the way Sentry groups them (see ``_grouping``), with their story.

Per issue: title, culprit, level, count, users, sessions (the release-health sessions open for
the error's user when it happened, once the app sends sessions; until then users), first/last
seen, first/last release, the releases it appeared in, and a status:

* ``new``: first seen in the latest release that had traffic (without releases: in the last 24 h);
* ``regressed``: seen in the latest release after a release (with traffic) where it was absent;
* ``resolved``: absent from the latest release that had traffic;
* ``ongoing``: otherwise.

:func:`list_issues` returns them most frequent first; :func:`issue_detail` adds the latest event's
frames and trace. Counts are for the window; first/last seen and status are over the whole log.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from widgettrace.insights._query import Window, release_order
from widgettrace.insights._store import Store

__all__ = ["issue_detail", "list_issues"]

_LEVELS = {"fatal": 5, "critical": 5, "error": 4, "warning": 3, "info": 2, "debug": 1}
_NEW_WITHOUT_RELEASES_S = 24 * 3600
_T = TypeVar("_T")


def _status(
    releases_seen: list[str], traffic: list[str], first_seen: float, now: float
) -> str:
    if not traffic:
        return "new" if now - first_seen < _NEW_WITHOUT_RELEASES_S else "ongoing"
    latest = traffic[-1]
    seen = set(releases_seen)
    if latest not in seen:
        return "resolved"
    first_index = min((traffic.index(r) for r in seen if r in traffic), default=len(traffic) - 1)
    if first_index == len(traffic) - 1:
        return "new"
    gap = any(r not in seen for r in traffic[first_index + 1 : -1])
    return "regressed" if gap else "ongoing"


_TOTALS = """
    SELECT group_key, arg_max(title, ts) AS title, arg_max(culprit, ts) AS culprit,
        arg_max(exc_type, ts) AS type, arg_max(exc_value, ts) AS value,
        list(DISTINCT level) AS levels, bool_or(handled = false) AS unhandled,
        min(ts) AS first_seen, max(ts) AS last_seen,
        arg_min(release, ts) AS first_release, arg_max(release, ts) AS last_release,
        list(DISTINCT release) FILTER (WHERE release IS NOT NULL) AS releases,
        count(*) AS total, arg_max(event_id, ts) AS latest_event,
        arg_max(trace_id, ts) AS latest_trace
    FROM errors GROUP BY group_key
"""


def _cached(store: Store, key: str, compute: Callable[[], _T]) -> _T:
    """``compute()`` once per ingestion (:attr:`Store.cache` is emptied by new lines)."""
    if key not in store.cache:
        store.cache[key] = compute()
    value: _T = store.cache[key]
    return value


def list_issues(
    store: Store,
    window: Window | None = None,
    *,
    status: str | None = None,
    level: str | None = None,
    limit: int | None = None,
    now: float | None = None,
) -> list[dict[str, Any]]:
    """The issues with events in ``window``, most events first (see the module docstring)."""
    window = window or Window()
    cond, params = window.where()
    has_sessions, session_lines = _cached(store, "issue_sessions", lambda: (
        bool(store.scalar("SELECT count(*) > 0 FROM errors WHERE session_id IS NOT NULL")),
        bool(store.scalar("SELECT count(*) > 0 FROM sessions WHERE did IS NOT NULL")),
    ))
    # Release-health sessions (session lines): an error belongs to the sessions of its user
    # that were open when it happened.
    session_counts: dict[str, int] = {}
    if session_lines:
        ecount, eparams = window.where("e")
        session_counts = dict(store.con.execute(
            f"""
            SELECT e.group_key, count(DISTINCT s.sid) FROM errors e JOIN (
                SELECT sid, any_value(did) AS did, min(started) AS started, max(ts) AS ended
                FROM sessions GROUP BY sid) s
              ON s.did = e.user_id AND e.ts BETWEEN s.started - 1 AND s.ended + 1
            WHERE {ecount} GROUP BY e.group_key
            """,
            eparams,
        ).fetchall())
    window_rows = store.rows(
        f"""
        SELECT group_key, count(*) AS count, count(DISTINCT user_id) AS users,
            count(DISTINCT coalesce(session_id, user_id)) AS sessions,
            min(ts) AS window_first, max(ts) AS window_last
        FROM errors WHERE {cond} GROUP BY group_key
        """,
        params,
    )
    # What an issue is over the whole log (title, first/last seen, releases...): the same for
    # every window, so computed once per ingestion.
    totals = _cached(
        store, "issue_totals", lambda: {r["group_key"]: r for r in store.rows(_TOTALS)}
    )
    rows = [
        {**w, **{k: v for k, v in totals[w["group_key"]].items() if k != "group_key"}}
        for w in window_rows
        if w["group_key"] in totals
    ]
    rows.sort(key=lambda r: (-r["count"], -(r["last_seen"] or 0.0)))
    traffic = [r["release"] for r in release_order(store)]
    now = time.time() if now is None else now
    out: list[dict[str, Any]] = []
    for row in rows:
        levels = [lv for lv in row.pop("levels") or [] if lv]
        row["level"] = max(levels, key=lambda lv: _LEVELS.get(lv, 0)) if levels else "error"
        seen = sorted(row["releases"] or [], key=lambda r: traffic.index(r) if r in traffic else -1)
        row["releases"] = seen
        row["status"] = _status(seen, traffic, row["first_seen"], now)
        if session_counts:
            row["sessions"] = int(session_counts.get(row["group_key"], 0))
        elif not has_sessions:
            row["sessions"] = row["users"]
        if status and row["status"] != status:
            continue
        if level and row["level"] != level:
            continue
        out.append(row)
    return out[:limit] if limit is not None else out


def issue_detail(store: Store, group_key: str) -> dict[str, Any] | None:
    """One issue with its latest event's id, trace and message, or ``None``."""
    matches = [i for i in list_issues(store) if i["group_key"] == group_key]
    if not matches:
        return None
    issue = matches[0]
    issue["events"] = store.rows(
        "SELECT event_id, ts, release, user_id, trace_id, exc_value AS message FROM errors "
        "WHERE group_key = ? ORDER BY ts DESC LIMIT 20",
        [group_key],
    )
    return issue
