"""The HTML report: one self-contained file (inline CSS and SVG, no script, no network).

``widgettrace report --html FILE`` writes it. Plots, drawn here as SVG so nothing is fetched:

* errors per minute (bucketed so the axis holds at most ~120 bars), releases marked where they
  were deployed;
* p95 latency over time for the busiest endpoints, one line each;
* issues by event count;
* release health: errors per 100 transactions per release.

Each data point is an SVG element with class ``pt`` and a ``<title>`` (hover shows the value),
so a browser test can count them. Below the plots: the standup, issues, releases and
performance tables.
"""

from __future__ import annotations

import html
import math
from datetime import datetime, timezone
from typing import Any

from widgettrace.insights import issues as issues_view
from widgettrace.insights import performance, releases, standup
from widgettrace.insights._store import Store
from widgettrace.insights.render import render

__all__ = ["report_html"]

_W, _H, _PAD = 760, 220, 40
_COLORS = ("#3b6ea5", "#d1495b", "#edae49", "#00798c", "#66a182", "#8d6a9f")


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _clock(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%m-%d %H:%M")


def _num(v: float) -> str:
    return f"{v:.0f}" if v >= 10 else f"{v:.2g}"


def _frame(title: str, body: str, y_max: float, y_label: str) -> str:
    ticks = "".join(
        f'<text x="{_PAD - 4}" y="{_H - _PAD - (_H - 2 * _PAD) * f:.1f}" '
        f'text-anchor="end" class="tick">{_num(y_max * f)}</text>'
        for f in (0, 0.5, 1)
    )
    return (
        f'<figure><figcaption>{_e(title)}</figcaption>'
        f'<svg viewBox="0 0 {_W} {_H}" width="{_W}" height="{_H}" role="img" '
        f'aria-label="{_e(title)}">'
        f'<line x1="{_PAD}" y1="{_H - _PAD}" x2="{_W - 10}" y2="{_H - _PAD}" class="axis"/>'
        f'<line x1="{_PAD}" y1="10" x2="{_PAD}" y2="{_H - _PAD}" class="axis"/>'
        f'{ticks}<text x="8" y="14" class="tick">{_e(y_label)}</text>{body}</svg></figure>'
    )


def _errors_per_minute(store: Store) -> str:
    span = store.rows("SELECT min(ts) AS lo, max(ts) AS hi FROM errors")[0]
    if span["lo"] is None:
        return "<p>No errors.</p>"
    rels = releases.list_releases(store)
    deployed = [r["deployed_at"] for r in rels if r["deployed_at"] is not None]
    # The axis also covers deploys just before or after the errors, so every marker shows.
    lo = min([span["lo"], *deployed])
    hi = max([span["hi"], span["lo"] + 60, *deployed])
    bucket = max(60.0, math.ceil((hi - lo) / 120 / 60) * 60)
    rows = store.rows(
        "SELECT floor((ts - ?) / ?) AS b, count(*) AS n FROM errors GROUP BY b ORDER BY b",
        [lo, bucket],
    )
    n_buckets = int((hi - lo) // bucket) + 1
    y_max = max(r["n"] for r in rows) / (bucket / 60)
    width = (_W - _PAD - 10) / n_buckets

    def x(ts: float) -> float:
        return float(_PAD + (ts - lo) / (bucket * n_buckets) * (_W - _PAD - 10))

    bars = []
    for r in rows:
        per_min = r["n"] / (bucket / 60)
        h = (_H - 2 * _PAD) * per_min / y_max
        bars.append(
            f'<rect class="pt bar" x="{_PAD + r["b"] * width:.1f}" y="{_H - _PAD - h:.1f}" '
            f'width="{max(width - 1, 1):.1f}" height="{h:.1f}">'
            f'<title>{_clock(lo + r["b"] * bucket)}: {per_min:.2f} errors/min</title></rect>'
        )
    marks = []
    for rel in rels:
        if rel["deployed_at"] is None:
            continue
        px = x(rel["deployed_at"])
        marks.append(
            f'<line class="release" x1="{px:.1f}" y1="10" x2="{px:.1f}" y2="{_H - _PAD}"/>'
            f'<text class="tick" x="{px + 2:.1f}" y="22">{_e(rel["release"])}</text>'
        )
    axis = (
        f'<text class="tick" x="{_PAD}" y="{_H - _PAD + 14}">{_clock(lo)}</text>'
        f'<text class="tick" x="{_W - 10}" y="{_H - _PAD + 14}" text-anchor="end">'
        f"{_clock(hi)}</text>"
    )
    return _frame(
        f"Errors per minute ({bucket / 60:.0f}-minute buckets; lines: releases)",
        "".join(bars) + "".join(marks) + axis, y_max, "errors/min",
    )


def _latency(store: Store) -> str:
    top = [r["name"] for r in store.rows(
        "SELECT name, count(*) AS n FROM transactions GROUP BY name ORDER BY n DESC LIMIT 5")]
    if not top:
        return "<p>No transactions.</p>"
    span = store.rows("SELECT min(ts) AS lo, max(ts) AS hi FROM transactions")[0]
    lo, hi = span["lo"], max(span["hi"], span["lo"] + 60)
    bucket = max(60.0, math.ceil((hi - lo) / 60 / 60) * 60)
    rows = store.rows(
        f"SELECT name, floor((ts - ?) / ?) AS b, quantile_cont(duration_ms, 0.95) AS p95 "
        f"FROM transactions WHERE name IN ({', '.join('?' for _ in top)}) GROUP BY ALL "
        "ORDER BY name, b",
        [lo, bucket, *top],
    )
    y_max = max(r["p95"] for r in rows) or 1.0
    n_buckets = int((hi - lo) // bucket) + 1
    step = (_W - _PAD - 10) / max(n_buckets, 1)
    lines, legend = [], []
    for i, name in enumerate(top):
        color = _COLORS[i % len(_COLORS)]
        pts = [r for r in rows if r["name"] == name]
        coords = [
            (_PAD + (r["b"] + 0.5) * step, _H - _PAD - (_H - 2 * _PAD) * r["p95"] / y_max)
            for r in pts
        ]
        if len(coords) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
            lines.append(f'<polyline fill="none" stroke="{color}" points="{path}"/>')
        lines += [
            f'<circle class="pt" cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{color}">'
            f'<title>{_e(name)} {_clock(lo + r["b"] * bucket)}: p95 {r["p95"]:.0f} ms</title>'
            "</circle>"
            for (x, y), r in zip(coords, pts, strict=True)
        ]
        legend.append(f'<span style="color:{color}">&#9632; {_e(name)}</span>')
    return _frame("p95 latency over time, busiest endpoints", "".join(lines), y_max, "ms") + (
        f'<p class="legend">{" ".join(legend)}</p>'
    )


def _bars(title: str, items: list[tuple[str, float, str]], unit: str) -> str:
    if not items:
        return f"<p>{_e(title)}: nothing yet.</p>"
    row_h = 18
    height = row_h * len(items) + 10
    v_max = max(v for _, v, _ in items) or 1.0
    label_w = 300
    body = []
    for i, (label, value, hint) in enumerate(items):
        w = (_W - label_w - 60) * value / v_max
        y = 5 + i * row_h
        body.append(
            f'<text class="tick" x="{label_w - 6}" y="{y + 12}" text-anchor="end">'
            f"{_e(label[:48])}</text>"
            f'<rect class="pt bar" x="{label_w}" y="{y}" width="{max(w, 1):.1f}" height="14">'
            f"<title>{_e(label)}: {_e(hint)}</title></rect>"
            f'<text class="tick" x="{label_w + w + 4:.1f}" y="{y + 12}">{value:.3g}{unit}</text>'
        )
    return (
        f"<figure><figcaption>{_e(title)}</figcaption>"
        f'<svg viewBox="0 0 {_W} {height}" width="{_W}" height="{height}" role="img" '
        f'aria-label="{_e(title)}">{"".join(body)}</svg></figure>'
    )


_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:820px;color:#222}
h1{font-size:1.5em} h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ddd}
figure{margin:1em 0} figcaption{font-weight:600;margin-bottom:.3em}
svg{background:#fafafa;border:1px solid #eee} .axis{stroke:#999} .tick{font-size:10px;fill:#555}
.bar{fill:#3b6ea5} .release{stroke:#d1495b;stroke-dasharray:4 3}
pre{background:#f6f6f6;padding:1em;overflow-x:auto;font-size:12px} .legend span{margin-right:1em}
"""


def report_html(store: Store, *, title: str = "widgettrace report") -> str:
    """The whole report as one HTML document."""
    found = issues_view.list_issues(store)
    rels = releases.list_releases(store)
    perf = {"endpoints": performance.endpoints(store),
            "breakdown": performance.breakdown(store)}
    summary = standup.standup(store)
    plots = [
        _errors_per_minute(store),
        _latency(store),
        _bars("Issues by events", [(i["title"], i["count"], f"{i['count']} events, "
                                    f"{i['users']} users, {i['status']}") for i in found[:15]],
              ""),
        _bars("Release health: errors per 100 transactions",
              [(r["release"], (r["error_rate"] or 0) * 100, r["health"]) for r in rels
               if r["error_rate"] is not None], ""),
    ]
    sections = [
        ("Standup (last 24 h)", render("standup", summary, "text")),
        ("Issues", render("issues", found, "text")),
        ("Releases", render("releases", rels, "text")),
        ("Performance", render("performance", perf, "text")),
    ]
    text = "".join(f"<h2>{_e(h)}</h2><pre>{_e(body)}</pre>" for h, body in sections)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{_e(title)}</h1><p>{_e(store.log)}: {store.total_lines} lines "
        f"({store.corrupt_lines} corrupt)</p>"
        f'{"".join(plots)}{text}</body></html>\n'
    )
