"""Shared measurement helpers for every ``benchmarks/bench_<name>.py`` script.

A bench script is runnable alone, from the repository root::

    .venv/bin/python benchmarks/bench_spans.py [--quick]

Python puts ``benchmarks/`` first on ``sys.path`` for such a script, so it imports this module as
``from _harness import interleaved, write_result, ratio_rows``.

Measuring
---------
``interleaved(cases, rounds, number, warmup=1, clock="cpu")`` runs every case ``number`` times per
sample, in A B C A B C ... order, ``rounds`` times, so drift in the machine (other processes, CPU
frequency, a warming cache) hits every case alike instead of biasing whichever ran last. Each sample
is *seconds per call*: process CPU time (``time.process_time``: every thread of this process, so a
batch processor's export thread is charged to the case that fed it) or wall time
(``time.perf_counter``). ``finish`` callables (for example ``provider.force_flush``) run inside the
timed region after the ``number`` calls, so background work a case queued is paid by that case.
(Process CPU time counts every thread: a background thread that another case left busy is charged
to whichever case is running, so give every case with background work a ``finish``.)

Reporting
---------
``ratio_rows(stats, unit=..., baseline=..., scale=1e6)`` turns the result into contract rows
(median, min, max in ``unit``, ratio of medians to the baseline case) and
``write_result(name, rows, command)`` writes ``benchmarks/results/<name>.json``::

    {"name": ..., "machine": {...}, "date": ..., "command": ..., "rows": [
        {"case": ..., "unit": "us/span", "median": x, "min": x, "max": x,
         "baseline": "<case>", "ratio": x}, ...]}

``machine`` records the CPU model, core counts, load average, Python, platform and the versions of
the packages that matter, so a number is never read without its context. ``benchmarks/run.py`` runs
every script and merges these files into ``results/latest.json`` and ``results/latest.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "RESULTS_DIR",
    "Stats",
    "bench_args",
    "command_line",
    "format_rows",
    "interleaved",
    "machine_info",
    "ratio_rows",
    "run_wrk",
    "stats_of",
    "write_result",
]

RESULTS_DIR = Path(
    os.environ.get("WIDGETTRACE_BENCH_RESULTS", Path(__file__).resolve().parent / "results")
)

Clock = Literal["cpu", "wall"]

# Distributions whose versions explain a number; missing ones are reported as absent, not an error.
_PACKAGES = (
    "widgettrace",
    "opentelemetry-api",
    "opentelemetry-sdk",
    "opentelemetry-instrumentation",
    "opentelemetry-instrumentation-fastapi",
    "opentelemetry-instrumentation-requests",
    "sentry-sdk",
    "mcp",
    "fastapi",
    "starlette",
    "uvicorn",
    "requests",
    "logfire",
    "ddtrace",
)


@dataclass(frozen=True)
class Stats:
    """Samples of one case, in seconds per call (or whatever unit the samples were given in)."""

    median: float
    min: float
    max: float
    samples: list[float] = field(default_factory=list)

    def scaled(self, factor: float) -> Stats:
        """The same statistics multiplied by ``factor`` (e.g. 1e6 for microseconds)."""
        return Stats(
            self.median * factor,
            self.min * factor,
            self.max * factor,
            [s * factor for s in self.samples],
        )


def stats_of(samples: Iterable[float]) -> Stats:
    """Median, min and max of ``samples`` (at least one)."""
    values = list(samples)
    if not values:
        raise ValueError("stats_of needs at least one sample")
    return Stats(statistics.median(values), min(values), max(values), values)


def _timer(clock: Clock) -> Callable[[], float]:
    if clock == "cpu":
        return time.process_time
    if clock == "wall":
        return time.perf_counter
    raise ValueError(f"clock must be 'cpu' or 'wall', not {clock!r}")


def interleaved(
    cases: Mapping[str, Callable[[], object]],
    rounds: int,
    number: int,
    warmup: int = 1,
    clock: Clock = "cpu",
    finish: Mapping[str, Callable[[], object]] | None = None,
) -> dict[str, Stats]:
    """Run ``cases`` interleaved and return per-case ``Stats`` in seconds per call.

    ``warmup`` untimed rounds (each case ``number`` calls, same order) come first. Then, for each
    of ``rounds`` rounds, each case in turn is called ``number`` times and timed as one sample.
    ``finish[case]``, when given, is called once after the ``number`` calls, inside the timing.
    A full ``gc.collect()`` runs before every sample (outside the timing) so garbage one case
    left behind is not collected on another case's clock.
    """
    if rounds < 1 or number < 1:
        raise ValueError("rounds and number must be >= 1")
    timer = _timer(clock)
    finishers = dict(finish or {})
    names = list(cases)
    samples: dict[str, list[float]] = {name: [] for name in names}

    def one(name: str) -> float:
        fn = cases[name]
        done = finishers.get(name)
        gc.collect()
        start = timer()
        for _ in range(number):
            fn()
        if done is not None:
            done()
        return (timer() - start) / number

    for _ in range(warmup):
        for name in names:
            one(name)
    for _ in range(rounds):
        for name in names:
            samples[name].append(one(name))
    return {name: stats_of(values) for name, values in samples.items()}


def ratio_rows(
    stats: Mapping[str, Stats],
    *,
    unit: str,
    baseline: str,
    scale: float = 1.0,
    extra: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Contract rows from ``stats``: values times ``scale`` in ``unit``, ratio of medians to
    ``baseline`` (for throughput units, a ratio < 1 means slower; for cost units, > 1 is slower).
    ``extra[case]`` is merged into that case's row (free-form context such as ``p99_ms``)."""
    base = stats[baseline].median
    rows: list[dict[str, Any]] = []
    for case, st in stats.items():
        row: dict[str, Any] = {
            "case": case,
            "unit": unit,
            "median": st.median * scale,
            "min": st.min * scale,
            "max": st.max * scale,
            "baseline": baseline,
            "ratio": (st.median / base) if base else None,
            "n": len(st.samples),
        }
        if extra and case in extra:
            row.update(extra[case])
        rows.append(row)
    return rows


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _versions(packages: Sequence[str]) -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in packages:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def machine_info(extra_packages: Sequence[str] = ()) -> dict[str, Any]:
    """What the numbers were measured on (CPU, cores usable, load, Python, package versions)."""
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 0
    try:
        load: list[float] | None = list(os.getloadavg())
    except OSError:
        load = None
    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": usable,
        "loadavg": load,
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "executable": sys.executable,
        "packages": {
            k: v for k, v in _versions([*_PACKAGES, *extra_packages]).items() if v is not None
        },
    }


def command_line() -> str:
    """The command that ran this script, relative to the repository root when possible."""
    exe = sys.executable
    root = Path(__file__).resolve().parent.parent
    with contextlib.suppress(ValueError):
        exe = str(Path(os.path.abspath(exe)).relative_to(root))
    return shlex.join([exe, *sys.argv])


def write_result(
    name: str,
    rows: list[dict[str, Any]],
    command: str,
    *,
    notes: str | None = None,
    machine: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``benchmarks/results/<name>.json`` (atomically) and return its path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {
        "name": name,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": dict(machine) if machine is not None else machine_info(),
        "command": command,
        "rows": rows,
    }
    if notes:
        doc["notes"] = notes
    path = RESULTS_DIR / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        if abs(value) >= 1:
            return f"{value:.2f}"
        return f"{value:.3g}"
    return "-" if value is None else str(value)


def format_rows(rows: Sequence[Mapping[str, Any]]) -> str:
    """A plain-text table of contract rows for the terminal."""
    header = ("case", "median", "min-max", "unit", "ratio")
    lines = [header]
    for r in rows:
        lines.append(
            (
                str(r.get("case")),
                _fmt(r.get("median")),
                f"{_fmt(r.get('min'))}-{_fmt(r.get('max'))}",
                str(r.get("unit")),
                _fmt(r.get("ratio")),
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in lines
    )


def bench_args(
    description: str,
    argv: Sequence[str] | None = None,
    flags: Sequence[tuple[str, str]] = (),
) -> argparse.Namespace:
    """The common command line of a bench script: ``--quick`` (smoke-test sizes), plus the
    script's own on/off ``flags`` as (``--name``, help)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--quick", action="store_true", help="small sizes for a smoke test (numbers are rough)"
    )
    for flag, help_text in flags:
        parser.add_argument(flag, action="store_true", help=help_text)
    return parser.parse_args(argv)


def pin_cpus() -> tuple[int, int] | None:
    """Two CPUs to keep a server and its load generator apart, or None (fewer than two, or no
    ``sched_setaffinity``). On a shared 2-core VM, letting the scheduler mix them moved the same
    case by a third from run to run; pinned, each side keeps its core's caches."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    return (cpus[0], cpus[-1]) if len(cpus) >= 2 else None


def run_wrk(url: str, duration: float, connections: int) -> dict[str, Any]:
    """``wrk -t1 -c<connections>`` on ``url`` for ``duration`` s: what ``e2e/report.lua`` prints
    (requests, duration_us, errors, latency percentiles) plus wrk's own CPU seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{max(1, round(duration))}s",
            "--timeout",
            "5s",
            "-s",
            str(Path(__file__).resolve().parent / "e2e" / "report.lua"),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for line in out.splitlines():
        if line.startswith("WRKJSON "):
            result: dict[str, Any] = json.loads(line[len("WRKJSON ") :])
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            # wrk's own CPU: shows the load generator is not what limits throughput.
            result["cpu_s"] = (after.ru_utime - before.ru_utime) + (
                after.ru_stime - before.ru_stime
            )
            return result
    raise RuntimeError(f"wrk printed no result:\n{out}")
