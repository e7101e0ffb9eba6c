"""Every view as text, Markdown or JSON.

``render(view, data, fmt)`` with ``view`` one of ``issues``, ``releases``, ``performance``,
``journeys``, ``standup`` and ``fmt`` one of ``text``, ``markdown``, ``json``. Text and Markdown
share one layout (Markdown tables and headings; text drops the Markdown markup).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

from widgettrace.insights.performance import breakdown_line
from widgettrace.insights.releases import release_block

__all__ = ["FORMATS", "render"]

FORMATS = ("text", "markdown", "json")


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f} ms" if v >= 10 else f"{v:.1f} ms"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.1f}%"


def _table(headers: Sequence[str], rows: list[Sequence[Any]], md: bool) -> list[str]:
    cells = [[str(c) for c in r] for r in rows]
    if md:
        out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        out += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in cells]
        return out
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    return [line] + ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]


def _h(text: str, md: bool, level: int = 2) -> str:
    return f"{'#' * level} {text}" if md else text.upper() if level <= 2 else text


def _issues(data: list[dict[str, Any]], md: bool) -> list[str]:
    if not data:
        return ["No issues."]
    return _table(
        ["issue", "status", "level", "events", "users", "sessions", "first seen", "last seen",
         "releases", "key"],
        [
            [i["title"], i["status"], i["level"], i["count"], i["users"], i["sessions"],
             _when(i["first_seen"]), _when(i["last_seen"]),
             f"{i['first_release'] or '-'} .. {i['last_release'] or '-'}", i["group_key"]]
            for i in data
        ],
        md,
    )


def _releases(data: list[dict[str, Any]], md: bool) -> list[str]:
    if not data:
        return ["No releases (set SENTRY_RELEASE, or run `widgettrace deploy RELEASE`)."]
    out: list[str] = []
    for rel in data:
        out.append(("- " if md else "") + release_block(rel))
        for label, key in (("new", "new_issues"), ("fixed", "fixed_issues"),
                           ("regressed", "regressed_issues")):
            for issue in rel[key]:
                out.append(f"  - {label}: {issue['title']}")
    return out


def _performance(data: dict[str, Any], md: bool) -> list[str]:
    out = _table(
        ["transaction", "count", "avg", "p50", "p95", "p99", "error rate", "per min"],
        [
            [e["name"], e["count"], _ms(e["avg_ms"]), _ms(e["p50_ms"]), _ms(e["p95_ms"]),
             _ms(e["p99_ms"]), _pct(e["error_rate"]), f"{e['per_minute']:.2f}"]
            for e in data["endpoints"]
        ],
        md,
    )
    if data["breakdown"]:
        out += ["", _h("Where the time goes (self time)", md, 3)]
        out += [("- " if md else "  ") + breakdown_line(b) for b in data["breakdown"]]
    return out


def _journeys(data: list[dict[str, Any]], md: bool) -> list[str]:
    out: list[str] = []
    for j in data:
        seconds = j["duration_s"]
        length = f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.1f} s"
        who = j["user"]
        if "session" in j:
            who = f"Session for {j['name'] or j['session']} ({j['user']}, {j['status']})"
        out.append(_h(f"{who}: {length}, {j['errors']} errors "
                      f"({_when(j['first_seen'])} .. {_when(j['last_seen'])})", md, 3))
        for n, a in enumerate(j["actions"], 1):
            mark = "ERROR " if a["kind"] == "error" else "retry: " if a["retry"] else ""
            out.append(f"{n}. {_when(a['ts'])[11:]} {mark}{a['text'][:160]}")
        out.append("")
    return out or ["No journeys."]


def _figure_line(label: str, now: str, before: str | None) -> str:
    return f"- {label}: {now}" + (f" (previous period: {before})" if before is not None else "")


def _standup(d: dict[str, Any], md: bool) -> list[str]:
    f, p = d["figures"], d["previous"]
    period = d["period"]
    scope = f" for {period['service']}" if period["service"] else ""
    out = [_h(f"Standup{scope}: {_when(period['since'])} .. {_when(period['until'])} UTC", md)]
    out += [
        _figure_line("Critical errors (fatal/unhandled)", str(f["critical_errors"]),
                     str(p["critical_errors"])),
        _figure_line("High-priority issues (new, regressed or spiking)",
                     str(d["high_priority"]), None),
        _figure_line("Errors", f"{f['errors']} ({_pct(f['error_rate'])} of "
                     f"{f['transactions']} transactions)", str(p["errors"])),
        _figure_line("Widget discovery success rate",
                     f"{_pct(f['discovery_success_rate'])} of {f['discovery_attempts']}",
                     _pct(p["discovery_success_rate"])),
        _figure_line(f"Response time ({f['response_scope']})",
                     f"avg {_ms(f['response_avg_ms'])}, p95 {_ms(f['response_p95_ms'])}",
                     f"avg {_ms(p['response_avg_ms'])}, p95 {_ms(p['response_p95_ms'])}"),
        _figure_line("LLM cost", f"${f['llm_cost']:.4f} ({f['llm_tokens']} tokens)",
                     f"${p['llm_cost']:.4f}"),
    ]
    h = d["highlights"]
    out += ["", _h("Error highlights", md, 3)]
    for label, key in (("Fixed", "fixed"), ("New", "new"), ("Regressed", "regressed"),
                       ("Spiking", "spiking"), ("Monitoring", "monitoring")):
        items = h[key]
        text = "; ".join(f"{i['title']} ({i['count']} events)" for i in items[:5]) or "none"
        out.append(f"- {label}: {text}")
    out += ["", _h("Blocks", md, 3)]
    out += _table(
        ["block", "kind", "status", "runs", "errors", "error rate", "trend"],
        [[b["block"], b["kind"], b["status"], b["runs"], b["errors"], _pct(b["error_rate"]),
          b["trend"]] for b in d["blocks"]],
        md,
    )
    u = d["user_impact"]
    out += ["", _h("User impact", md, 3),
            f"- {u['users_with_errors']} of {u['users_active']} active users hit an error "
            f"({u['sessions_with_errors']} sessions)"]
    out += ["", _h("Recommendations (by impact)", md, 3)]
    out += [f"{n}. {r['action']}: {r['why']}" for n, r in enumerate(d["recommendations"], 1)]
    if not d["recommendations"]:
        out.append("- nothing to fix")
    s = d["daily_summary"]
    avg = s["errors_14d_daily_avg"]
    out += ["", _h("Daily summary", md, 3),
            f"- Errors today: {s['errors_today']}"
            + (f" vs a 14-day daily average of {avg:.1f}" if avg is not None else
               " (no history for a 14-day average)"),
            "- Top issues: " + ("; ".join(f"{i['title']} ({i['count']})"
                                          for i in s["top_issues"]) or "none"),
            "- Slowest transactions (p95): " + ("; ".join(
                f"{t['name']} {_ms(t['p95_ms'])}" for t in s["slow_transactions"]) or "none"),
            "- Regressed or escalated: " + ("; ".join(
                i["title"] for i in s["regressed_or_escalated"]) or "none"),
            "- New issues per release: " + (", ".join(
                f"{k}: {v}" for k, v in s["new_issues_per_release"].items()) or "none")]
    if d["breakdown"]:
        out += ["- Where the time goes: " + "; ".join(breakdown_line(b) for b in d["breakdown"])]
    if d["findings"]:
        out += ["- Findings: " + ", ".join(f"{k}: {v}" for k, v in d["findings"].items())]
    return out


_VIEWS: dict[str, Callable[[Any, bool], list[str]]] = {
    "issues": _issues,
    "releases": _releases,
    "performance": _performance,
    "journeys": _journeys,
    "standup": _standup,
}


def render(view: str, data: Any, fmt: str = "text") -> str:
    """``data`` of ``view`` as ``fmt`` (ends with a newline)."""
    if fmt == "json":
        return json.dumps(data, indent=2, default=str) + "\n"
    md = fmt == "markdown"
    return "\n".join(_VIEWS[view](data, md)) + "\n"
