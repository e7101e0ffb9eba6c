"""Releases and deploys: what each release changed, against the one before it.

Per release (oldest first): deployed at (the ``widgettrace deploy`` marker, else its first event),
events, transactions, errors, error rate (errors per transaction; per session too when the app
sends release-health sessions), new issues (first seen in it), fixed issues (present in the
previous release, absent here), regressed issues (present here, absent in the previous release,
seen in an earlier one), LLM cost and tokens, and a health verdict against the previous release
with the percentage change of the error rate.

:func:`record_deploy` appends a deploy marker line to the local log (what ``widgettrace deploy``
does; :mod:`widgettrace.insights.sentry_api` also tells Sentry when configured).
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from widgettrace.exporters._logfile import LogFileWriter
from widgettrace.insights._query import release_order
from widgettrace.insights._store import Store

__all__ = ["list_releases", "record_deploy", "release_block"]

#: Error-rate changes smaller than this (relative) are "stable".
_STABLE = 0.05


def record_deploy(
    log: str | os.PathLike[str],
    release: str,
    environment: str = "production",
    *,
    timestamp: float | None = None,
) -> dict[str, Any]:
    """Append ``{"type": "deploy", ...}`` to the local log (rotating like the app does)."""
    from widgettrace.instrumentation._config import get_settings

    settings = get_settings()
    record = {
        "type": "deploy",
        "release": release,
        "environment": environment,
        "timestamp": time.time() if timestamp is None else timestamp,
    }
    writer = LogFileWriter(
        Path(log), max_bytes=settings.log_max_bytes, backups=settings.log_backups
    )
    try:
        writer.write_line(json.dumps(record, separators=(",", ":")).encode())
    finally:
        writer.close()
    return record


def list_releases(store: Store) -> list[dict[str, Any]]:
    """Every release with traffic or a deploy marker, oldest first (see the module docstring)."""
    order = release_order(store)
    stats = {
        r["release"]: r
        for r in store.rows(
            """
            WITH t AS (
                SELECT release, count(*) AS transactions, sum(llm_cost) AS llm_cost,
                    sum(llm_tokens) AS llm_tokens, count(DISTINCT user_id) AS users
                FROM transactions GROUP BY release
            ), e AS (
                SELECT release, count(*) AS errors, list(DISTINCT group_key) AS issues,
                    count(DISTINCT user_id) AS error_users
                FROM errors GROUP BY release
            ), s AS (
                -- Explicit sessions one by one, a server's request sessions as counts.
                SELECT release, sum(sessions) AS sessions,
                    sum(errored_sessions) AS errored_sessions
                FROM (
                    SELECT release, count(DISTINCT sid) AS sessions,
                        count(DISTINCT sid) FILTER (WHERE errors > 0 OR status IN
                            ('crashed', 'errored', 'abnormal')) AS errored_sessions
                    FROM sessions GROUP BY release
                    UNION ALL
                    SELECT release, sum(exited + errored + crashed + abnormal),
                        sum(errored + crashed + abnormal)
                    FROM session_aggregates GROUP BY release
                ) GROUP BY release
            )
            SELECT coalesce(t.release, e.release, s.release) AS release,
                coalesce(transactions, 0) AS transactions, coalesce(errors, 0) AS errors,
                coalesce(llm_cost, 0) AS llm_cost, coalesce(llm_tokens, 0) AS llm_tokens,
                coalesce(issues, []) AS issues, coalesce(users, 0) AS users,
                coalesce(error_users, 0) AS error_users, sessions, errored_sessions
            FROM t FULL OUTER JOIN e ON t.release = e.release
            FULL OUTER JOIN s ON s.release = coalesce(t.release, e.release)
            """
        )
        if r["release"] is not None
    }
    titles = dict(
        store.con.execute(
            "SELECT group_key, arg_max(title, ts) FROM errors GROUP BY ALL"
        ).fetchall()
    )
    out: list[dict[str, Any]] = []
    seen_before: set[str] = set()
    previous: dict[str, Any] | None = None
    for entry in order:
        s = stats.get(entry["release"], {})
        issues = set(s.get("issues") or [])
        transactions = int(s.get("transactions") or 0)
        errors = int(s.get("errors") or 0)
        sessions = s.get("sessions")
        rel: dict[str, Any] = {
            **entry,
            "events": transactions + errors,
            "transactions": transactions,
            "errors": errors,
            "users": int(s.get("users") or 0),
            "error_rate": errors / transactions if transactions else None,
            "sessions": sessions,
            "session_error_rate": (
                (s.get("errored_sessions") or 0) / sessions if sessions else None
            ),
            "llm_cost": float(s.get("llm_cost") or 0.0),
            "llm_tokens": int(s.get("llm_tokens") or 0),
        }
        prev_issues = set(previous["_issues"]) if previous else set()
        rel["new_issues"] = _named(issues - seen_before, titles)
        rel["fixed_issues"] = _named(prev_issues - issues, titles) if previous else []
        rel["regressed_issues"] = _named((issues & seen_before) - prev_issues, titles)
        rel["previous"] = previous["release"] if previous else None
        rel["health"], rel["change_pct"] = _verdict(previous, rel)
        rel["_issues"] = sorted(issues)
        seen_before |= issues
        out.append(rel)
        if transactions or errors:
            previous = rel
    for rel in out:
        rel.pop("_issues")
    return out


def _named(keys: set[str], titles: dict[str, str]) -> list[dict[str, str]]:
    return [
        {"group_key": k, "title": titles.get(k, k)}
        for k in sorted(keys, key=lambda k: titles.get(k, k))
    ]


def _rate(rel: dict[str, Any]) -> float | None:
    rate = rel.get("session_error_rate")
    return rate if rate is not None else rel.get("error_rate")


def _verdict(previous: dict[str, Any] | None, rel: dict[str, Any]) -> tuple[str, float | None]:
    if previous is None:
        return "first release", None
    before, now = _rate(previous), _rate(rel)
    if before is None or now is None:
        return "no traffic to compare", None
    if before == 0:
        return ("stable", 0.0) if now == 0 else ("degrading", None)
    change = (now - before) / before
    if abs(change) < _STABLE:
        return "stable", change * 100
    return ("improving" if change < 0 else "degrading"), change * 100


def _clock(ts: float | None) -> str:
    if ts is None:
        return "?"
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def release_block(rel: dict[str, Any]) -> str:
    """The seed's line: ``R deployed at T: 2 new errors introduced, 1 fixed (...), ...``."""
    parts = [f"{rel['release']} deployed at {_clock(rel['deployed_at'])}"]
    if rel["source"] != "deploy marker":
        parts[0] += " (first event)"
    facts = [f"{len(rel['new_issues'])} new errors introduced"]
    fixed = rel["fixed_issues"]
    if rel["previous"]:
        fixed_text = f"{len(fixed)} fixed"
        if fixed:
            fixed_text += f" (was appearing in {rel['previous']})"
        facts.append(fixed_text)
    if rel["regressed_issues"]:
        facts.append(f"{len(rel['regressed_issues'])} regressed")
    change = rel["change_pct"]
    health = f"overall health {rel['health']}"
    if change is not None and rel["health"] in {"improving", "degrading", "stable"}:
        if abs(change) < 0.5:
            health += ", same error rate"
        else:
            health += f", {abs(change):.0f}% {'fewer' if change < 0 else 'more'} errors"
    facts.append(health)
    rate = rel["error_rate"]
    tail = [f"{rel['events']} events"]
    if rate is not None:
        tail.append(f"{rate * 100:.1f} errors per 100 transactions")
    if rel["sessions"]:
        # Sentry's crash-free figure turned around: sessions that ended errored or crashed.
        tail.append(
            f"{rel['sessions']} sessions, {rel['session_error_rate'] * 100:.1f}% with errors"
        )
    if rel["llm_cost"] or rel["llm_tokens"]:
        tail.append(f"LLM ${rel['llm_cost']:.4f}, {rel['llm_tokens']} tokens")
    return f"{parts[0]}: {', '.join(facts)} ({'; '.join(tail)})"
