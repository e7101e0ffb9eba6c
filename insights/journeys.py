"""Journeys: what one user (or session) did, in order, with errors marked where they happened.

:func:`journeys`, per user: first/last seen, duration, and the ordered actions: transactions,
typed widget spans (``widget.*`` and agent blocks) and breadcrumbs, with each error in place.
:func:`session_journeys`, per release-health session (``widgettrace.session(user=, name=)``, or
a cascade block with ``WIDGETTRACE_SESSIONS=blocks``): the same, for the session's user from its
start to its end, titled with the session's name and status ("Session for Block 5 QA agent, 23
min"). A session without a user has no journey: nothing ties other events to it.

An action that repeats the one before it after a failure is marked as a retry; for each error
the last N actions before it are listed, as in "1. started widget discovery, 2. scanned 5 Git
repos, 3. ERROR timeout in repo 4, 4. retry, 5. conversion started".
"""

from __future__ import annotations

from typing import Any

from widgettrace.insights._query import Window
from widgettrace.insights._store import Store

__all__ = ["journeys", "session_journeys"]

_TYPED_OPS = ("widget.%", "gen_ai.invoke_agent")


def journeys(
    store: Store,
    window: Window | None = None,
    *,
    user: str | None = None,
    last_n: int = 5,
    max_actions: int = 200,
    limit: int = 20,
) -> list[dict[str, Any]]:
    """Journeys of the users active in ``window`` (most errors first), or of ``user`` only."""
    window = window or Window()
    cond, params = window.where()
    user_cond = "user_id = ?" if user else "user_id IS NOT NULL"
    user_params = [user] if user else []
    users = store.rows(
        f"""
        SELECT user_id, min(t0) AS first_seen, max(t1) AS last_seen,
            count(*) FILTER (WHERE kind = 'error') AS errors
        FROM (SELECT user_id, ts AS t0, ts AS t1, 'error' AS kind FROM errors WHERE {cond}
              UNION ALL SELECT user_id, start, ts, 'transaction' FROM transactions WHERE {cond})
        WHERE {user_cond} GROUP BY user_id ORDER BY errors DESC, last_seen DESC LIMIT ?
        """,
        [*params, *params, *user_params, limit],
    )
    return [_journey(store, u, window, last_n, max_actions) for u in users]


def session_journeys(
    store: Store,
    window: Window | None = None,
    *,
    session: str | None = None,
    last_n: int = 5,
    max_actions: int = 200,
    limit: int = 20,
) -> list[dict[str, Any]]:
    """Journeys of the sessions (with a user) that overlap ``window``, latest first, or of
    the session whose id is ``session``."""
    window = window or Window()
    conds, params = ["did IS NOT NULL"], []
    if session:
        conds.append("sid = ?")
        params.append(session)
    # A session's updates are rows (the last one holds its end and final status).
    having, hparams = ["true"], []
    if window.since is not None:
        having.append("max(ts) >= ?")
        hparams.append(window.since)
    if window.until is not None:
        having.append("min(started) < ?")
        hparams.append(window.until)
    for column, value in (("release", window.release), ("environment", window.environment)):
        if value:
            conds.append(f"{column} = ?")
            params.append(value)
    sessions = store.rows(
        f"""
        SELECT sid, any_value(name) AS name, any_value(did) AS did,
            min(started) AS started, max(ts) AS ended, arg_max(status, ts) AS status
        FROM sessions WHERE {" AND ".join(conds)} GROUP BY sid
        HAVING {" AND ".join(having)} ORDER BY ended DESC, sid LIMIT ?
        """,
        [*params, *hparams, limit],
    )
    out = []
    for s in sessions:
        started, ended = float(s["started"] or s["ended"]), float(s["ended"])
        found = _journey(
            store,
            {"user_id": s["did"], "first_seen": started, "last_seen": ended},
            Window(since=started, until=ended + 0.001),
            last_n,
            max_actions,
        )
        out.append({**found, "session": s["sid"], "name": s["name"], "status": s["status"]})
    return out


def _journey(
    store: Store, user: dict[str, Any], window: Window, last_n: int, max_actions: int
) -> dict[str, Any]:
    uid = user["user_id"]
    cond, params = window.where("t")
    ecount, eparams = window.where("e")
    ops = " OR ".join("s.op LIKE ?" for _ in _TYPED_OPS)
    actions = store.rows(
        f"""
        SELECT * FROM (
            SELECT t.start AS ts, 'transaction' AS kind, t.name AS text, t.status <> 'ok' AS failed
            FROM transactions t WHERE t.user_id = ? AND {cond}
            UNION ALL
            SELECT s.start, 'span', coalesce(s.description, s.op), s.outcome = 'failure'
            FROM spans s JOIN transactions t ON s.event_id = t.event_id
            WHERE t.user_id = ? AND {cond} AND s.parent_span_id IS NOT NULL AND ({ops})
            UNION ALL
            SELECT DISTINCT b.ts, 'breadcrumb', coalesce(b.category || ': ', '') || b.message,
                b.level IN ('error', 'fatal')
            FROM breadcrumbs b WHERE b.user_id = ? AND b.message IS NOT NULL
                AND b.ts BETWEEN ? AND ?
            UNION ALL
            SELECT e.ts, 'error', e.title || coalesce(': ' || e.exc_value, ''), true
            FROM errors e WHERE e.user_id = ? AND {ecount}
        ) ORDER BY ts, kind DESC LIMIT ?
        """,
        [
            uid, *params, uid, *params, *_TYPED_OPS, uid,
            user["first_seen"] - 1, user["last_seen"] + 1, uid, *eparams, max_actions,
        ],
    )
    previous: dict[str, Any] | None = None
    errors: list[dict[str, Any]] = []
    for i, action in enumerate(actions):
        action["retry"] = bool(
            previous is not None
            and action["kind"] in {"transaction", "span"}
            and any(
                a["text"] == action["text"] for a in actions[max(0, i - 3) : i]
            )
            and any(a["failed"] for a in actions[max(0, i - 3) : i])
        )
        if action["kind"] == "error":
            errors.append({**action, "before": actions[max(0, i - last_n) : i]})
        previous = action
    return {
        "user": uid,
        "first_seen": user["first_seen"],
        "last_seen": user["last_seen"],
        "duration_s": user["last_seen"] - user["first_seen"],
        "errors": len(errors),
        "actions": actions,
        "error_contexts": errors,
    }
