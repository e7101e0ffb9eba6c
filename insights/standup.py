"""The daily standup section: what broke, what got fixed, what to do first.

:func:`standup` compares a period (default: the last 24 h) with the one before it and returns:

* ``critical_errors``: fatal or unhandled error events; ``high_priority``: issues that are new,
  regressed, or spiking (at least twice the previous period's events, and 5 or more);
* ``discovery_success_rate`` (from ``widget.discovery`` spans' ``widget.outcome``), average and
  p95 response time (server transactions, else all), LLM cost and tokens;
* error highlights: ``fixed`` (seen in the previous period, none now), ``new`` (first seen in
  this period), ``monitoring`` (previously unstable, now at most half as frequent);
* per-block status (each service and agent block) with its trend against the previous period;
* user impact (users and sessions with errors out of those active);
* recommendations ranked by impact (users, sessions, frequency, recency, new or regressed);
* what Sentry's daily summary gives, to beat it: today's errors against the 14-day daily
  average, top 3 issues, top 3 slow transactions, regressed or escalated issues, new issues per
  release; plus test findings and audit events when the ``findings`` feature logs them.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from widgettrace.insights import issues as issues_view
from widgettrace.insights import performance
from widgettrace.insights._query import Window
from widgettrace.insights._store import Store

__all__ = ["standup"]

_DAY = 24 * 3600.0
_SPIKE_FACTOR = 2.0
_SPIKE_MIN = 5


def _period_figures(store: Store, window: Window) -> dict[str, Any]:
    cond, params = window.where()
    row = store.rows(
        f"""
        SELECT count(*) AS transactions,
            avg(duration_ms) FILTER (WHERE op = 'http.server') AS server_avg,
            quantile_cont(duration_ms, 0.95) FILTER (WHERE op = 'http.server') AS server_p95,
            avg(duration_ms) AS all_avg, quantile_cont(duration_ms, 0.95) AS all_p95,
            coalesce(sum(llm_cost), 0) AS llm_cost, coalesce(sum(llm_tokens), 0) AS llm_tokens,
            coalesce(sum(discovery_ok), 0) AS discovery_ok,
            coalesce(sum(discovery_failed), 0) AS discovery_failed
        FROM transactions WHERE {cond}
        """,
        params,
    )[0]
    err = store.rows(
        f"""
        SELECT count(*) AS errors,
            count(*) FILTER (WHERE level IN ('fatal', 'critical') OR handled = false)
                AS critical,
            count(DISTINCT user_id) AS users,
            count(DISTINCT coalesce(session_id, user_id)) AS sessions
        FROM errors WHERE {cond}
        """,
        params,
    )[0]
    active = store.scalar(
        f"SELECT count(DISTINCT user_id) FROM (SELECT user_id, ts, service, release, "
        f"environment, trace_id FROM transactions UNION ALL SELECT user_id, ts, service, "
        f"release, environment, trace_id FROM errors) WHERE {cond}",
        params,
    )
    use_server = row["server_avg"] is not None
    attempts = row["discovery_ok"] + row["discovery_failed"]
    return {
        "errors": err["errors"],
        "critical_errors": err["critical"],
        "transactions": row["transactions"],
        "error_rate": err["errors"] / row["transactions"] if row["transactions"] else None,
        "response_avg_ms": row["server_avg"] if use_server else row["all_avg"],
        "response_p95_ms": row["server_p95"] if use_server else row["all_p95"],
        "response_scope": "http.server transactions" if use_server else "all transactions",
        "llm_cost": float(row["llm_cost"]),
        "llm_tokens": int(row["llm_tokens"]),
        "discovery_attempts": int(attempts),
        "discovery_success_rate": row["discovery_ok"] / attempts if attempts else None,
        "users_active": int(active or 0),
        "users_with_errors": err["users"],
        "sessions_with_errors": err["sessions"],
    }


def _blocks(store: Store, window: Window, previous: Window) -> list[dict[str, Any]]:
    def per_block(w: Window) -> dict[str, dict[str, Any]]:
        cond, params = w.where()
        tcond, tparams = w.where("t")
        rows = store.rows(
            f"""
            WITH t AS (SELECT service AS block, count(*) AS n FROM transactions
                       WHERE {cond} GROUP BY ALL),
            e AS (SELECT service AS block, count(*) AS n FROM errors WHERE {cond} GROUP BY ALL),
            -- The agent blocks' spans first (few): the join then probes only with those.
            s AS MATERIALIZED (SELECT event_id, agent, outcome FROM agent_spans
                  WHERE op = 'gen_ai.invoke_agent'),
            a AS (SELECT s.agent AS block, count(*) AS n,
                    count(*) FILTER (WHERE s.outcome = 'failure') AS failed
                  FROM s JOIN transactions t ON t.event_id = s.event_id
                  WHERE {tcond}
                  GROUP BY ALL)
            SELECT coalesce(t.block, e.block) AS block, 'service' AS kind,
                coalesce(t.n, 0) AS runs, coalesce(e.n, 0) AS errors
            FROM t FULL OUTER JOIN e ON t.block = e.block
            UNION ALL SELECT block, 'agent block', n, failed FROM a
            """,
            [*params, *params, *tparams],
        )
        return {f"{r['kind']}:{r['block']}": r for r in rows if r["block"] is not None}

    now, before = per_block(window), per_block(previous)
    out = []
    for key, row in sorted(now.items()):
        rate = row["errors"] / row["runs"] if row["runs"] else (1.0 if row["errors"] else 0.0)
        old = before.get(key)
        old_rate = None
        if old is not None:
            old_rate = old["errors"] / old["runs"] if old["runs"] else (
                1.0 if old["errors"] else 0.0
            )
        if old_rate is None:
            trend = "new"
        elif rate > old_rate * 1.1 and rate - old_rate > 0.001:
            trend = "worse"
        elif rate < old_rate * 0.9:
            trend = "better"
        else:
            trend = "same"
        status = "healthy" if rate == 0 else "degraded" if rate < 0.05 else "failing"
        out.append({**row, "error_rate": rate, "previous_error_rate": old_rate,
                    "trend": trend, "status": status})
    return out


def _recommendations(issues: list[dict[str, Any]], now: float) -> list[dict[str, Any]]:
    recs = []
    for issue in issues:
        age_h = max(0.0, (now - issue["last_seen"]) / 3600)
        score = (
            issue["users"] * 10
            + issue["sessions"] * 5
            + issue["count"]
            + max(0.0, 24 - age_h)
            + (50 if issue["status"] in {"new", "regressed"} else 0)
            + (30 if issue.get("spiking") else 0)
            + (40 if issue["level"] == "fatal" else 0)
        )
        why = [f"{issue['count']} events", f"{issue['users']} users"]
        if issue["status"] in {"new", "regressed"}:
            why.append(issue["status"] + (f" in {issue['last_release']}" if issue.get(
                "last_release") else ""))
        if issue.get("spiking"):
            why.append("spiking")
        recs.append({
            "group_key": issue["group_key"],
            "action": f"Fix {issue['title']}",
            "why": ", ".join(why),
            "score": round(score, 1),
        })
    recs.sort(key=lambda r: -r["score"])
    return recs


def standup(
    store: Store,
    *,
    since: float | None = None,
    until: float | None = None,
    service: str | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """The standup data (JSON-ready); render with :mod:`widgettrace.insights.render`."""
    now = time.time() if now is None else now
    until = now if until is None else until
    since = until - _DAY if since is None else since
    window = Window(since=since, until=until, service=service)
    previous = window.previous()
    figures = _period_figures(store, window)
    before = _period_figures(store, previous)

    in_window = {i["group_key"]: i for i in issues_view.list_issues(store, window, now=now)}
    in_previous = {i["group_key"]: i for i in issues_view.list_issues(store, previous, now=now)}
    for key, issue in in_window.items():
        old = in_previous.get(key, {}).get("count", 0)
        issue["previous_count"] = old
        issue["spiking"] = issue["count"] >= _SPIKE_MIN and issue["count"] >= _SPIKE_FACTOR * max(
            old, 1
        ) and old > 0
    new = [i for i in in_window.values() if i["first_seen"] >= since]
    regressed = [i for i in in_window.values() if i["status"] == "regressed"]
    spiking = [i for i in in_window.values() if i["spiking"]]
    high = {i["group_key"] for i in new + regressed + spiking}
    fixed = [i for k, i in in_previous.items() if k not in in_window]
    monitoring = [
        i for k, i in in_window.items()
        if k in in_previous and i["count"] * 2 <= in_previous[k]["count"]
    ]

    total_cond, total_params = Window(service=service, until=until).where()
    # Sentry's daily summary: today's errors against the average day of the 14 before.
    cond, params = replace(window, since=since - 14 * _DAY, until=since).where()
    errors_14d = store.scalar(f"SELECT count(*) FROM errors WHERE {cond}", params) or 0
    first_ts = store.scalar("SELECT min(ts) FROM errors") or since
    days = max(1.0, min(14.0, (since - first_ts) / _DAY)) if first_ts < since else None
    endpoint_rows = performance.endpoints(store, window)
    slow = endpoint_rows[:3]
    per_release: dict[str, int] = {}
    for i in new:
        per_release[i["first_release"] or "(no release)"] = per_release.get(
            i["first_release"] or "(no release)", 0) + 1

    return {
        "period": {"since": since, "until": until, "service": service},
        "figures": figures,
        "previous": before,
        "high_priority": len(high),
        "highlights": {
            "new": _brief(new),
            "fixed": _brief(fixed),
            "monitoring": _brief(monitoring),
            "regressed": _brief(regressed),
            "spiking": _brief(spiking),
        },
        "blocks": _blocks(store, window, previous),
        "user_impact": {
            "users_with_errors": figures["users_with_errors"],
            "users_active": figures["users_active"],
            "sessions_with_errors": figures["sessions_with_errors"],
        },
        "recommendations": _recommendations(list(in_window.values()), now)[:5],
        "daily_summary": {
            "errors_today": figures["errors"],
            "errors_14d_daily_avg": (errors_14d / days) if days else None,
            "top_issues": _brief(sorted(in_window.values(), key=lambda i: -i["count"])[:3]),
            "slow_transactions": [
                {"name": s["name"], "p95_ms": s["p95_ms"], "count": s["count"]} for s in slow
            ],
            "regressed_or_escalated": _brief(regressed + [
                i for i in spiking if i not in regressed]),
            "new_issues_per_release": per_release,
        },
        "breakdown": performance.breakdown(store, window, top=2, endpoint_rows=endpoint_rows),
        "issues_total": int(store.scalar(
            f"SELECT count(DISTINCT group_key) FROM errors WHERE {total_cond}", total_params
        ) or 0),
        "findings": _findings(store, window),
    }


def _brief(issues: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "group_key": i["group_key"],
            "title": i["title"],
            "count": i["count"],
            "users": i["users"],
            "status": i["status"],
            "last_release": i.get("last_release"),
        }
        for i in issues
    ]


def _findings(store: Store, window: Window) -> dict[str, int]:
    """Audit/security events and tool/test findings (the ``findings`` feature's loggers)."""
    cond, params = window.where()
    rows = store.rows(
        f"""
        SELECT CASE
            WHEN logger = 'widgettrace.audit' THEN 'audit ' || coalesce(category, 'audit')
            WHEN logger LIKE 'widgettrace.findings.%' THEN 'findings ' || split_part(logger, '.', 3)
            ELSE 'test ' || category END AS kind, count(*) AS n
        FROM errors WHERE {cond} AND (logger = 'widgettrace.audit'
            OR logger LIKE 'widgettrace.findings.%' OR category IN ('failed', 'error'))
        GROUP BY ALL ORDER BY kind
        """,
        params,
    )
    return {r["kind"]: r["n"] for r in rows}
