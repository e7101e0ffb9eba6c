"""Run every benchmark and gather the results into one JSON file and one Markdown table.

One command, from the repository root (after ``scripts/setup-bench.sh`` for the peers)::

    .venv/bin/python benchmarks/run.py [--quick] [--only e2e,scaling,...]

Each ``benchmarks/bench_<name>.py`` runs as its own subprocess, one after the other (they must not
compete for the CPU), with ``--quick`` passed on. Every result file a script wrote during this run
(``benchmarks/results/<name>.json``) is merged into ``results/latest.json``, and rendered as
``results/latest.md``: the machine, the date, the command, then one table per benchmark with each
row's median, min-max, unit and ratio to its baseline (plus any extra columns the benchmark
reported, such as latency percentiles). The Markdown is printed at the end; it is what the README's
Performance section shows.

``--merge`` runs nothing and renders the two files from the result files already there (after
running some scripts alone). ``--quick`` is a smoke test (about 3 minutes; numbers are rough);
the full run takes about 30 minutes and should be taken on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import RESULTS_DIR, command_line, machine_info

__all__ = ["main", "render_markdown"]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# Order: cheapest and most fundamental first, the long end-to-end run last.
_ORDER = ("spans", "fastapi_sentry", "delivery", "reliability", "api", "scaling", "mcp", "e2e")
_STANDARD = ("case", "unit", "median", "min", "max", "baseline", "ratio", "n")
_LABELS = {
    "paired_ratio": "per-round ratio",
    "p50_ms": "p50 ms",
    "p99_ms": "p99 ms",
    "cpu_us_per_req": "CPU us/req",
    "rss_mb": "RSS MB",
    "wrk_cpu_pct": "wrk CPU %",
    "delivered": "delivered",
    "served": "served",
    "delivered_at_load_end": "delivered at load end",
    "discarded": "reported dropped",
    "sink_cpu_s": "sink CPU s",
    "logged": "in local log",
    "rss_growth_mb": "RSS growth MB",
    "log_completeness": "local log complete",
    "client_reports": "client reports",
    "receiver_requests": "requests to Sentry",
}


def _scripts(only: Sequence[str] | None) -> list[Path]:
    found = {p.stem.removeprefix("bench_"): p for p in HERE.glob("bench_*.py")}
    # Known names in _ORDER, any new benchmark next, the end-to-end run always last.
    names = sorted(
        found,
        key=lambda n: (n == "e2e", _ORDER.index(n) if n in _ORDER else len(_ORDER), n),
    )
    if only:
        names = [n for n in names if n in only]
    return [found[n] for n in names]


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if value == 0:
            return "0"
        if abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        if abs(value) >= 1:
            return f"{value:.2f}"
        return f"{value:.3g}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {_fmt(v)}" for k, v in value.items()) or "-"
    return str(value).replace("|", "\\|")


def _table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    extras: list[str] = []
    for row in rows:
        for key in row:
            if key not in _STANDARD and key not in extras:
                extras.append(key)
    header = ["case", "median", "min-max", "unit", "ratio", "baseline"]
    header += [_LABELS.get(k, k) for k in extras]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [
            f"`{r.get('case')}`",
            _fmt(r.get("median")),
            f"{_fmt(r.get('min'))}-{_fmt(r.get('max'))}",
            _fmt(r.get("unit")),
            _fmt(r.get("ratio")),
            f"`{r.get('baseline')}`" if r.get("baseline") else "-",
        ]
        cells += [_fmt(r.get(k)) for k in extras]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def render_markdown(doc: Mapping[str, Any]) -> str:
    """The Markdown report of a ``latest.json`` document."""
    m = doc["machine"]
    load = m.get("loadavg")
    lines = [
        f"Measured {doc['date']} on {m.get('cpu_model')} ({m.get('cores_usable')} of "
        f"{m.get('cores')} cores usable; load average {_fmt(load[0]) if load else '?'} at start), "
        f"Python {m.get('python')}, {m.get('platform')}.",
        "",
        f"Command: `{doc['command']}`"
        + (" (quick: smoke-test sizes, rough numbers)" if doc.get("quick") else ""),
        "",
        "Ratios are medians over interleaved rounds, against the row's baseline measured in the "
        "same run: for req/s higher is better, for a cost (us/...) lower is better.",
    ]
    for bench in doc["benchmarks"]:
        lines += ["", f"### {bench['name']}", ""]
        lines.append(f"`{bench.get('command', '')}` ({bench.get('date', '')})")
        if bench.get("notes"):
            lines += ["", str(bench["notes"])]
        peers = (bench.get("machine") or {}).get("peers_venv")
        if peers:
            lines += ["", "Peers (.venv-bench): " + ", ".join(f"{k} {v}" for k, v in peers.items())]
        lines += ["", *_table(bench.get("rows", []))]
    if doc.get("failed"):
        lines += ["", "Failed: " + ", ".join(f"`{f}`" for f in doc["failed"])]
    pk = m.get("packages") or {}
    if pk:
        lines += ["", "Packages: " + ", ".join(f"{k} {v}" for k, v in pk.items()) + "."]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run every benchmarks/bench_*.py")
    parser.add_argument("--quick", action="store_true", help="smoke-test sizes (~3 minutes)")
    parser.add_argument("--only", help="comma-separated benchmark names (e.g. e2e,scaling)")
    parser.add_argument("--timeout", type=float, default=None, help="per script, seconds")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="run nothing: render latest.json/.md from the results/<name>.json already there "
        "(each table keeps its own date and command)",
    )
    args = parser.parse_args(argv)
    only = [n.strip() for n in args.only.split(",")] if args.only else None
    timeout = args.timeout or (600.0 if args.quick else 1800.0)

    started = time.time()
    machine = machine_info()
    failed: list[str] = []
    fresh: list[dict[str, Any]] = []
    for script in _scripts(only):
        name = script.stem.removeprefix("bench_")
        if args.merge:
            result = RESULTS_DIR / f"{name}.json"
            if result.exists():
                fresh.append(json.loads(result.read_text(encoding="utf-8")))
            else:
                failed.append(name)
            continue
        cmd = [sys.executable, str(script.relative_to(ROOT))]
        if args.quick:
            cmd.append("--quick")
        print(f"=== {name}: {' '.join(cmd)}", flush=True)
        t0 = time.monotonic()
        try:
            rc = subprocess.run(cmd, cwd=ROOT, timeout=timeout, check=False).returncode
        except subprocess.TimeoutExpired:
            rc = -1
            print(f"=== {name}: timed out after {timeout:.0f} s", flush=True)
        print(f"=== {name}: exit {rc} in {time.monotonic() - t0:.0f} s", flush=True)
        result = RESULTS_DIR / f"{name}.json"
        if rc != 0 or not result.exists() or result.stat().st_mtime < started:
            failed.append(name)
            continue
        fresh.append(json.loads(result.read_text(encoding="utf-8")))

    doc: dict[str, Any] = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "command": command_line(),
        "quick": args.quick,
        "benchmarks": fresh,
        "failed": failed,
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "latest.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    markdown = render_markdown(doc)
    (RESULTS_DIR / "latest.md").write_text(markdown, encoding="utf-8")
    print(markdown)
    print(f"wrote {RESULTS_DIR / 'latest.json'} and latest.md in {time.time() - started:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
