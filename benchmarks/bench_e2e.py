"""End to end: the example-style FastAPI service under uvicorn, with each peer and with ours.

What it measures, per configuration and endpoint (a light ``async`` one and one that calls out
with ``requests`` to a local stub hub): requests per second and its ratio to the bare app, p50 and
p99 latency, server CPU per request (``utime + stime`` of the server process from
``/proc/<pid>/stat``, background threads included, divided by requests served), RSS at the end,
and transactions delivered to a local sink against requests served (silent loss is a defect).

Configurations (peers from ``.venv-bench``, which has no widgettrace; ours from ``.venv``):

- ``bare``: plain uvicorn, nothing instrumented;
- ``otel``: upstream ``opentelemetry-instrument``, ``OTEL_TRACES_EXPORTER=none``;
- ``otel-sentry``: the same plus sentry-sdk's ``SentrySpanProcessor`` (``instrumenter="otel"``);
- ``sentry``: Sentry's native tracing, ``traces_sample_rate=1.0``, DSN = local sink;
- ``logfire``: Logfire, FastAPI + requests instrumented, ``send_to_logfire=False``;
- ``ddtrace``: ``ddtrace-run``, agent URL = local sink (``/v0.4/traces`` counted);
- ``widgettrace``: ``opentelemetry-instrument`` with our distro, ``SENTRY_DSN`` = local sink,
  local log off (export to Sentry only, like the Sentry peers);
- ``widgettrace-stream``: the same with ``WIDGETTRACE_SENTRY_SPANS=stream``: every span as a span
  v2 item, batched per trace (segments counted as delivered);
- ``widgettrace-log`` (full runs only): the same with the default local log on as well;
- ``widgettrace-otlp`` (full runs only): ``WIDGETTRACE_SENTRY_MODE=otlp``, spans batched over OTLP
  to Sentry's OTLP endpoint on the sink (SERVER spans counted as delivered);
- ``widgettrace-noexport`` (full runs only): our distro and instrumentation with
  ``WIDGETTRACE_SENTRY_MODE=off`` and no log: what instrumenting costs before any export.

Each round starts every configuration's server once (order rotated per round), warms both
endpoints, runs ``wrk`` (1 thread, a few connections, from a separate process) on each endpoint
(order alternated per round), reads CPU and RSS, stops the server gracefully (so SDKs flush at exit)
and reads the sink. Medians and min-max over rounds.

CPUs: with two or more, the server (every thread it starts) is pinned to one CPU and this driver,
``wrk``, the sink and the stub to another, as ``bench_spans.py`` and ``bench_fastapi_sentry.py``
do. A Python server runs one worker per core in production; unpinned here, the scheduler put an
exporter's background threads on the second core, next to wrk and the sink, where every GIL
hand-off with the request thread crossed cores, and the request thread itself took more CPU per
request than with the exporter off, for work it never did (in the runs quoted in
docs/performance.md, streaming's export cost 135 us per request over export off unpinned and
79 us pinned). ``--spread`` turns pinning off.

Run (after ``scripts/setup-bench.sh``)::

    .venv/bin/python benchmarks/bench_e2e.py [--quick] [--configs bare,otel,...] [--rounds N]
        [--duration S] [--connections C] [--spread]

Writes ``benchmarks/results/e2e.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _harness import (
    command_line,
    format_rows,
    machine_info,
    pin_cpus,
    ratio_rows,
    run_wrk,
    stats_of,
    write_result,
)

__all__ = ["CONFIGS", "Config", "main"]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
E2E = HERE / "e2e"
OURS_VENV = ROOT / ".venv"
PEERS_VENV = ROOT / ".venv-bench"
ENDPOINTS = {"light": "/api/widgets/status", "callout": "/api/widgets/search?q=widget"}
_OTEL_QUIET = {
    "OTEL_SERVICE_NAME": "bench",
    "OTEL_METRICS_EXPORTER": "none",
    "OTEL_LOGS_EXPORTER": "none",
}


@dataclass(frozen=True)
class Config:
    """How to start the server for one configuration."""

    venv: Path
    launcher: str | None  # console script in the venv that wraps the python command
    env: dict[str, str] = field(default_factory=dict)
    sink: str | None = None  # "sentry" | "stream" | "dd" | "otlp": the counter of its requests
    full_only: bool = False


def _configs() -> dict[str, Config]:
    sentry_env = {"SENTRY_DSN": "{dsn}"}
    return {
        "bare": Config(PEERS_VENV, None, {"BENCH_MODE": "bare"}),
        "otel": Config(
            PEERS_VENV,
            "opentelemetry-instrument",
            {"BENCH_MODE": "otel", "OTEL_TRACES_EXPORTER": "none", **_OTEL_QUIET},
        ),
        "otel-sentry": Config(
            PEERS_VENV,
            "opentelemetry-instrument",
            {
                "BENCH_MODE": "otel-sentry",
                "OTEL_TRACES_EXPORTER": "none",
                **_OTEL_QUIET,
                **sentry_env,
            },
            sink="sentry",
        ),
        "sentry": Config(PEERS_VENV, None, {"BENCH_MODE": "sentry", **sentry_env}, sink="sentry"),
        "logfire": Config(
            PEERS_VENV, None, {"BENCH_MODE": "logfire", "LOGFIRE_SEND_TO_LOGFIRE": "false"}
        ),
        "ddtrace": Config(
            PEERS_VENV,
            "ddtrace-run",
            {
                "BENCH_MODE": "ddtrace",
                "DD_TRACE_AGENT_URL": "{sink_url}",
                "DD_TRACE_API_VERSION": "v0.4",
                "DD_SERVICE": "bench",
                "DD_REMOTE_CONFIGURATION_ENABLED": "false",
                "DD_INSTRUMENTATION_TELEMETRY_ENABLED": "false",
                "DD_TRACE_STATS_COMPUTATION_ENABLED": "false",
                "DD_TRACE_HEALTH_METRICS_ENABLED": "false",
                "DD_RUNTIME_METRICS_ENABLED": "false",
                "DD_DATA_STREAMS_ENABLED": "false",
            },
            sink="dd",
        ),
        "widgettrace": Config(
            OURS_VENV,
            "opentelemetry-instrument",
            {
                "BENCH_MODE": "widgettrace",
                **_OTEL_QUIET,
                **sentry_env,
                "WIDGETTRACE_LOG_PATH": "off",
            },
            sink="sentry",
        ),
        "widgettrace-stream": Config(
            OURS_VENV,
            "opentelemetry-instrument",
            {
                "BENCH_MODE": "widgettrace",
                **_OTEL_QUIET,
                **sentry_env,
                "WIDGETTRACE_SENTRY_SPANS": "stream",
                "WIDGETTRACE_LOG_PATH": "off",
            },
            sink="stream",
        ),
        "widgettrace-otlp": Config(
            OURS_VENV,
            "opentelemetry-instrument",
            {
                "BENCH_MODE": "widgettrace",
                **_OTEL_QUIET,
                **sentry_env,
                "WIDGETTRACE_SENTRY_MODE": "otlp",
                "WIDGETTRACE_LOG_PATH": "off",
            },
            sink="otlp",
            full_only=True,
        ),
        "widgettrace-noexport": Config(
            OURS_VENV,
            "opentelemetry-instrument",
            {
                "BENCH_MODE": "widgettrace",
                **_OTEL_QUIET,
                "WIDGETTRACE_SENTRY_MODE": "off",
                "WIDGETTRACE_LOG_PATH": "off",
            },
            full_only=True,
        ),
        "widgettrace-log": Config(
            OURS_VENV,
            "opentelemetry-instrument",
            {
                "BENCH_MODE": "widgettrace",
                **_OTEL_QUIET,
                **sentry_env,
                "WIDGETTRACE_LOG_PATH": "{tmp}/sentry.log",
            },
            sink="sentry",
            full_only=True,
        ),
    }


CONFIGS = _configs()
_SCRUB_PREFIXES = ("OTEL_", "SENTRY_", "DD_", "LOGFIRE_", "WIDGETTRACE_", "BENCH_")


class _Proc:
    """A helper process (stub or sink) that prints ``PORT <n>`` when ready."""

    def __init__(self, script: Path, log: Path) -> None:
        self.log = log.open("wb")
        self.popen = subprocess.Popen(
            [sys.executable, "-I", str(script)],
            stdout=subprocess.PIPE,
            stderr=self.log,
            start_new_session=True,
        )
        assert self.popen.stdout is not None
        line = self.popen.stdout.readline().decode()
        if not line.startswith("PORT "):
            self.stop()
            raise RuntimeError(f"{script.name} did not start (see {log})")
        self.port = int(line.split()[1])

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        self.log.close()


def _http(url: str, data: bytes | None = None, timeout: float = 5.0) -> bytes:
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        body: bytes = resp.read()
        return body


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    # fields[0] is state (field 3); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class _Run:
    """What one server lifetime measured."""

    round_index: int = 0
    per_endpoint: dict[str, dict[str, float]] = field(default_factory=dict)
    rss_mb: float = float("nan")
    served: int | None = None
    delivered: int | None = None
    delivered_at_load_end: int | None = None
    sink_cpu_s: float | None = None
    logged: int | None = None
    discarded: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _server_env(cfg: Config, subs: dict[str, str], tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUB_PREFIXES)}
    env.pop("PYTHONPATH", None)
    env["PATH"] = f"{cfg.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(cfg.venv)
    env["BENCH_SERVED_FILE"] = str(tmp / "served")
    env["BENCH_STUB_URL"] = subs["stub_url"]
    for key, value in cfg.env.items():
        env[key] = value.format(**subs, tmp=tmp)
    return env


def _delivered(sink: str, stats: dict[str, Any]) -> int:
    """Transactions (Sentry), segments of streamed spans (Sentry span v2), traces (Datadog) or
    SERVER spans (OTLP) the sink received."""
    key = {
        "sentry": "transactions",
        "stream": "span_segments",
        "dd": "dd_traces",
        "otlp": "otlp_server_spans",
    }[sink]
    return int(stats[key])


def _count_logged(path: Path) -> int:
    """Transactions in widgettrace's local log (rotated files included)."""
    total = 0
    for file in path.parent.glob(path.name + "*"):
        with file.open("rb") as fh:
            total += sum(1 for line in fh if line.startswith(b'{"type":"transaction"'))
    return total


def _free_port() -> int:
    # Not uvicorn's --fd: a socket made with socket.fromfd() reports proto 0, so asyncio skips
    # TCP_NODELAY on accepted connections and every response waits ~40 ms for a delayed ACK.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            _http(url, timeout=2)
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("server not ready in time")


def _sink_settled(sink_url: str, timeout: float = 10.0) -> dict[str, Any]:
    """Sink counters once they stop changing (late flushes land)."""
    last: dict[str, Any] = json.loads(_http(f"{sink_url}/_stats"))
    stable_since = time.monotonic()
    deadline = stable_since + timeout
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now: dict[str, Any] = json.loads(_http(f"{sink_url}/_stats"))
        if now != last:
            last, stable_since = now, time.monotonic()
        elif time.monotonic() - stable_since >= 1.0:
            break
    return last


def _one_server(
    name: str,
    cfg: Config,
    endpoints: Sequence[str],
    subs: dict[str, str],
    duration: float,
    warmup: float,
    connections: int,
    workdir: Path,
    round_index: int,
    server_cpu: int | None = None,
) -> _Run:
    run = _Run(round_index=round_index)
    sink_url = subs["sink_url"]
    sink_cpu0 = _cpu_seconds(int(subs["sink_pid"]))
    _http(f"{sink_url}/_reset", data=b"")
    tmp = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=workdir))
    port = _free_port()
    python = str(cfg.venv / "bin" / "python")
    cmd = [
        python,
        "-m",
        "uvicorn",
        "app:app",
        "--app-dir",
        str(E2E),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    cmd += ["--loop", "asyncio", "--http", "h11", "--no-access-log", "--log-level", "warning"]
    if cfg.launcher:
        cmd = [str(cfg.venv / "bin" / cfg.launcher), *cmd]
    log_path = tmp / "server.log"
    load_cpus = os.sched_getaffinity(0)
    if server_cpu is not None:
        # Inherited at fork: the server and every thread it starts stay on that CPU.
        os.sched_setaffinity(0, {server_cpu})
    try:
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                cmd,
                cwd=tmp,
                env=_server_env(cfg, subs, tmp),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
    finally:
        if server_cpu is not None:
            os.sched_setaffinity(0, load_cpus)  # back to the load generator's CPU
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base + ENDPOINTS["light"], proc)
        for ep in endpoints:
            run_wrk(base + ENDPOINTS[ep], warmup, connections)
        for ep in endpoints:
            cpu0 = _cpu_seconds(proc.pid)
            res = run_wrk(base + ENDPOINTS[ep], duration, connections)
            cpu1 = _cpu_seconds(proc.pid)
            n = max(int(res["requests"]), 1)
            errors = sum(int(v) for v in res["errors"].values())
            run.per_endpoint[ep] = {
                "rps": res["requests"] / (res["duration_us"] / 1e6),
                "p50_ms": res["p50_us"] / 1000,
                "p99_ms": res["p99_us"] / 1000,
                "cpu_us_per_req": (cpu1 - cpu0) / n * 1e6,
                "wrk_cpu_pct": 100 * res["cpu_s"] / (res["duration_us"] / 1e6),
                "errors": errors,
            }
            if errors:
                run.warnings.append(f"{name}/{ep}: {errors} wrk errors {res['errors']}")
        run.rss_mb = _rss_mb(proc.pid)
        if cfg.sink is not None:
            # What had arrived when the load stopped: an exporter that keeps up has sent nearly
            # everything by now; a backlog flushed only at exit would be lost by a crash or deploy.
            now = json.loads(_http(f"{sink_url}/_stats"))
            run.delivered_at_load_end = _delivered(cfg.sink, now)
    except RuntimeError as exc:
        tail = log_path.read_text(errors="replace")[-1500:]
        raise RuntimeError(f"{exc}; server log ends:\n{tail}") from exc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                run.warnings.append(f"{name}: server did not stop on SIGINT; killed")
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    served_file = tmp / "served"
    if served_file.exists():
        run.served = int(served_file.read_text() or 0)
    if cfg.sink is not None:
        stats = _sink_settled(sink_url)
        run.delivered = _delivered(cfg.sink, stats)
        run.discarded = {k: int(v) for k, v in stats["discarded"].items()}
        run.sink_cpu_s = _cpu_seconds(int(subs["sink_pid"])) - sink_cpu0
        if stats["undecodable"]:
            run.warnings.append(f"{name}: {stats['undecodable']} undecodable envelopes")
    local_log = cfg.env.get("WIDGETTRACE_LOG_PATH", "off")
    if local_log != "off":
        run.logged = _count_logged(Path(local_log.format(**subs, tmp=tmp)))
    log_text = log_path.read_text(errors="replace")
    for marker in (
        "BENCH-WARNING",
        "Failed to auto initialize",
        "Traceback (most recent call last)",
    ):
        if marker in log_text:
            run.warnings.append(f"{name}: server log has {marker!r} (see {log_path})")
    return run


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    p.add_argument("--quick", action="store_true", help="1 round, 2 s runs (smoke test)")
    p.add_argument("--configs", help="comma-separated subset of: " + ", ".join(CONFIGS))
    p.add_argument("--endpoints", default="light,callout")
    p.add_argument("--rounds", type=int)
    p.add_argument("--duration", type=float, help="seconds of load per endpoint and server")
    p.add_argument("--warmup", type=float)
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--result-name", default="e2e", help="writes results/<name>.json")
    p.add_argument("--keep", action="store_true", help="keep server logs and local logs")
    p.add_argument(
        "--spread",
        action="store_true",
        help="do not pin the server to one CPU and wrk, the sink and the stub to the other",
    )
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=BASE:KEY=VALUE[;KEY=VALUE]",
        help="an extra config for ablations: BASE's environment plus these settings, e.g. "
        "'nosess=widgettrace:WIDGETTRACE_SESSIONS=off' (repeatable; add NAME to --configs)",
    )
    return p.parse_args(argv)


def _paired(runs: dict[str, list[_Run]], name: str, ep: str, key: str) -> list[float]:
    """Per round, ``key`` of ``name`` over bare's in the same round."""
    bare = {x.round_index: x.per_endpoint[ep][key] for x in runs["bare"] if ep in x.per_endpoint}
    return [
        x.per_endpoint[ep][key] / bare[x.round_index]
        for x in runs[name]
        if ep in x.per_endpoint and bare.get(x.round_index)
    ]


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    for spec in args.variant:
        name, _, rest = spec.partition("=")
        base, _, settings = rest.partition(":")
        if base not in CONFIGS or not name:
            print(f"bad --variant {spec!r}: want NAME=BASE:KEY=VALUE;...", file=sys.stderr)
            return 2
        extra = dict(kv.split("=", 1) for kv in settings.split(";") if "=" in kv)
        cfg = CONFIGS[base]
        CONFIGS[name] = Config(cfg.venv, cfg.launcher, {**cfg.env, **extra}, cfg.sink)
    rounds = args.rounds or (1 if args.quick else 3)
    duration = args.duration or (2.0 if args.quick else 5.0)
    warmup = args.warmup or (1.0 if args.quick else 2.0)
    if args.configs:
        names = [c.strip() for c in args.configs.split(",") if c.strip()]
        unknown = [n for n in names if n not in CONFIGS]
        if unknown:
            print(f"unknown configs: {unknown}", file=sys.stderr)
            return 2
    else:
        names = [n for n, c in CONFIGS.items() if not (c.full_only and args.quick)]
    if "bare" not in names:
        names.insert(0, "bare")  # every ratio is to bare, measured in the same run
    endpoints = [e.strip() for e in args.endpoints.split(",") if e.strip()]
    if shutil.which("wrk") is None:
        print("bench_e2e: wrk not found; run scripts/setup-bench.sh", file=sys.stderr)
        return 2
    missing = sorted({str(CONFIGS[n].venv) for n in names if not CONFIGS[n].venv.exists()})
    if missing:
        print(f"bench_e2e: missing {missing}; run scripts/setup-bench.sh", file=sys.stderr)
        return 2

    pins = None if args.spread else pin_cpus()
    usable = len(os.sched_getaffinity(0))  # before this driver pins itself to one of them
    if pins is not None:
        # The server alone on one CPU, with all its threads (an export thread then competes
        # with the requests for that core, as in a one-worker-per-core deployment, and never
        # trades the GIL with them across cores); this driver, wrk, the sink and the stub
        # (started below, inheriting it) on the other.
        os.sched_setaffinity(0, {pins[1]})
    workdir = Path(tempfile.mkdtemp(prefix="widgettrace-e2e-"))
    stub = _Proc(E2E / "stub.py", workdir / "stub.log")
    sink = _Proc(E2E / "sink.py", workdir / "sink.log")
    subs = {
        "stub_url": f"http://127.0.0.1:{stub.port}/",
        "sink_url": f"http://127.0.0.1:{sink.port}",
        "dsn": f"http://public@127.0.0.1:{sink.port}/1",
        "sink_pid": str(sink.popen.pid),
    }
    load_before = os.getloadavg()
    runs: dict[str, list[_Run]] = {n: [] for n in names}
    warnings: list[str] = []
    try:
        for r in range(rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            eps = endpoints if r % 2 == 0 else endpoints[::-1]
            for name in order:
                t0 = time.monotonic()
                try:
                    run = _one_server(
                        name,
                        CONFIGS[name],
                        eps,
                        subs,
                        duration,
                        warmup,
                        args.connections,
                        workdir,
                        r,
                        None if pins is None else pins[0],
                    )
                except (RuntimeError, OSError, subprocess.CalledProcessError) as exc:
                    warnings.append(f"round {r + 1} {name}: failed: {exc}")
                    print(f"  round {r + 1} {name}: FAILED {exc}", flush=True)
                    continue
                runs[name].append(run)
                warnings.extend(run.warnings)
                summary = " ".join(
                    f"{ep}={m['rps']:.0f}/s" for ep, m in sorted(run.per_endpoint.items())
                )
                lost = (
                    ""
                    if run.delivered is None
                    else f" delivered {run.delivered}/{run.served} served"
                )
                print(
                    f"  round {r + 1} {name}: {summary}{lost} ({time.monotonic() - t0:.0f} s)",
                    flush=True,
                )
    finally:
        stub.stop()
        sink.stop()
        if args.keep or warnings:
            print(f"server logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    load_after = os.getloadavg()

    rows: list[dict[str, Any]] = []
    for ep in endpoints:
        stats = {}
        extra: dict[str, dict[str, Any]] = {}
        for name in names:
            samples = [run.per_endpoint[ep] for run in runs[name] if ep in run.per_endpoint]
            if not samples:
                continue
            stats[f"{ep}/{name}"] = stats_of([s["rps"] for s in samples])
            done = runs[name]
            served = [x.served for x in done if x.served is not None]
            delivered = [x.delivered for x in done if x.delivered is not None]
            at_end = [x.delivered_at_load_end for x in done if x.delivered_at_load_end is not None]
            sink_cpu = [x.sink_cpu_s for x in done if x.sink_cpu_s is not None]
            logged = [x.logged for x in done if x.logged is not None]
            discarded: dict[str, int] = {}
            for x in done:
                for k, v in x.discarded.items():
                    discarded[k] = discarded.get(k, 0) + v
            paired = _paired(runs, name, ep, "rps")
            cpu_paired = _paired(runs, name, ep, "cpu_us_per_req")
            extra[f"{ep}/{name}"] = {
                # Median of per-round ratios to bare: steadier than the ratio of medians when
                # the machine's load drifts between rounds.
                "paired_ratio": _median(paired),
                "p50_ms": _median([s["p50_ms"] for s in samples]),
                "p99_ms": _median([s["p99_ms"] for s in samples]),
                "cpu_us_per_req": _median([s["cpu_us_per_req"] for s in samples]),
                # Server CPU per request over bare's in the same round, median and each round.
                "cpu_ratio": _median(cpu_paired),
                "cpu_ratio_rounds": [round(r, 3) for r in cpu_paired],
                "rps_rounds": [round(s["rps"]) for s in samples],
                "wrk_cpu_pct": _median([s["wrk_cpu_pct"] for s in samples]),
                "rss_mb": _median([x.rss_mb for x in done]),
                "errors": sum(int(s["errors"]) for s in samples),
                # Per server lifetime, both endpoints together (the same numbers on both rows).
                "served": sum(served) if served else None,
                "delivered": sum(delivered) if delivered else None,
                "delivered_at_load_end": sum(at_end) if at_end else None,
                "sink_cpu_s": _median(sink_cpu),
                "logged": sum(logged) if logged else None,
                "discarded": discarded or None,
            }
        if f"{ep}/bare" not in stats:
            warnings.append(f"{ep}: no bare measurement, no ratios")
            continue
        rows += ratio_rows(stats, unit="req/s", baseline=f"{ep}/bare", extra=extra)

    notes = (
        f"{rounds} round(s) x {len(names)} configs x {len(endpoints)} endpoints, "
        f"{duration:g} s of wrk -t1 -c{args.connections} per endpoint after {warmup:g} s warm-up; "
        f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} "
        f"on {os.cpu_count()} cores; "
        + (
            "unpinned (--spread)."
            if pins is None
            else f"server pinned to CPU {pins[0]}, wrk, sink and stub to CPU {pins[1]}."
        )
    )
    if warnings:
        notes += " Warnings: " + "; ".join(warnings)
    machine = machine_info()
    machine["cores_usable"] = usable
    machine["pinned"] = None if pins is None else {"server": pins[0], "load": pins[1]}
    machine["peers_venv"] = _peer_versions()
    path = write_result(args.result_name, rows, command_line(), notes=notes, machine=machine)
    print(format_rows(rows))
    for row in rows:
        cpu_ratio = row["cpu_ratio"] if row["cpu_ratio"] is not None else float("nan")
        print(
            f"  {row['case']}: p50 {row['p50_ms']:.2f} ms, p99 {row['p99_ms']:.2f} ms, "
            f"cpu {row['cpu_us_per_req']:.0f} us/req ({cpu_ratio:.2f}x bare; rounds "
            f"{row['cpu_ratio_rounds']}), rss {row['rss_mb']:.0f} MB, "
            f"delivered {row['delivered']} / served {row['served']} "
            f"({row['delivered_at_load_end']} when the load stopped), "
            f"discarded {row['discarded']}"
        )
    print(notes)
    print(f"wrote {path}")
    return 0


def _peer_versions() -> dict[str, str]:
    """Versions of the peers in .venv-bench (the harness's machine info covers .venv)."""
    python = PEERS_VENV / "bin" / "python"
    if not python.exists():
        return {}
    code = (
        "import json\nfrom importlib import metadata as m\nout = {}\n"
        "for n in ('logfire', 'ddtrace', 'sentry-sdk', 'opentelemetry-sdk', "
        "'opentelemetry-instrumentation-fastapi', 'fastapi', 'uvicorn'):\n"
        "    try: out[n] = m.version(n)\n    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(out))"
    )
    try:
        out = subprocess.run(
            [str(python), "-I", "-c", code], capture_output=True, text=True, check=True
        )
        versions: dict[str, str] = json.loads(out.stdout)
        return versions
    except (subprocess.CalledProcessError, ValueError):
        return {}


if __name__ == "__main__":
    sys.exit(main())
