"""Run the example widget platform end to end and say where its telemetry went.

From the repository root, with the virtual environment's ``bin`` on ``PATH``::

    opentelemetry-instrument python examples/run.py

What it does (about 10-20 s, everything on 127.0.0.1, ports picked by the OS):

1. creates a temporary world: four Git repositories (``git init`` + commits) and a SQLite
   registry, and starts the stand-in model hub (examples/hub.py) on a thread;
2. starts the MCP ranker widget (examples/widget_ranker.py, streamable HTTP under uvicorn) and
   the platform API (examples/service.py, FastAPI under uvicorn) as child processes; both are
   instrumented because ``opentelemetry-instrument`` put its ``sitecustomize`` on ``PYTHONPATH``.
   The platform spawns the MCP linter widget (examples/widget_linter.py) over stdio itself.
   Some platform functions are traced by configuration only (``WIDGETTRACE_TRACE_FUNCTIONS``)
   and LLM costs come from examples/prices.json (``WIDGETTRACE_PRICES``), unless you set them;
3. drives the platform over HTTP: status (until ready), discover, convert five widgets, three
   cascade iterations, status;
4. stops every child by PID (SIGTERM, wait) and prints where the telemetry went and a summary
   of this run read back from the local log: errors by type, transactions, slowest endpoint.

The three failures are expected (they are the demo): a repository scan that times out
(``ReadTimeout``), a widget config that is not JSON (``JSONDecodeError``) and a registry UNIQUE
violation (``IntegrityError``). The exit code is 0 when the run went as designed, 1 otherwise.
Telemetry settings are the usual environment variables (``SENTRY_DSN``, ``SENTRY_SPOTLIGHT``,
``OTEL_TRACES_EXPORTER=otlp``, ``WIDGETTRACE_LOG_PATH``, ...); the children inherit them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from opentelemetry import trace

from _serving import Child, listening_socket
from demo_data import WIDGET_CONFIGS, create_repositories
from hub import ModelHub
from widgettrace import session as telemetry_session
from widgettrace import span
from widgettrace._records import _timestamp
from widgettrace.exporters.destinations import describe, local_log_path

EXAMPLES = Path(__file__).resolve().parent
CASCADE = "widget-onboarding"
ITERATIONS = 3
TENANT = "tenant-0042"

#: Parts of the platform traced by configuration only (no tracing code in those functions).
TRACE_FUNCTIONS = ", ".join(
    [
        "conversion:validate_config=conversion",
        "conversion:run_inference=conversion",
        "discovery:read_manifest",
        "registry:WidgetRegistry.count=registry",
        "registry:WidgetRegistry.list_widgets=registry",
    ]
)
#: What a run must answer (anything else means the demo itself broke).
EXPECTED_CONVERT = {
    "w-sentiment": 200,
    "w-summarizer": 200,
    "w-lang-detect": 200,
    "w-chart-describer": 500,  # invalid JSON
    "w-sentiment-fork": 500,  # UNIQUE(name, version)
}


@dataclass
class RunReport:
    """What the driver saw, and whether it matched the design."""

    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def step(self, text: str) -> None:
        """Record and print one line of progress."""
        self.lines.append(text)
        print(f"  {text}", flush=True)

    def note(self, text: str) -> None:
        """Record a line for the end of the run (problems go to stderr, notes to stdout)."""
        (self.problems if self.problems else self.notes).append(text)

    def expect(self, what: str, got: int, want: int) -> None:
        """Note a response status that differs from the design."""
        if got != want:
            self.problems.append(f"{what}: HTTP {got}, expected {want}")


def child_env(hub_url: str, world: Path, ranker_url: str) -> dict[str, str]:
    """Environment for the children: ours plus the platform's settings."""
    env = dict(os.environ)
    env.update(
        WIDGET_HUB_URL=hub_url,
        WIDGET_REPOS_DIR=str(world / "repos"),
        WIDGET_REGISTRY_PATH=str(world / "registry.db"),
        WIDGET_RANKER_URL=f"{ranker_url}/mcp",
    )
    env.setdefault("WIDGETTRACE_TRACE_FUNCTIONS", TRACE_FUNCTIONS)
    env.setdefault("WIDGETTRACE_PRICES", str(EXAMPLES / "prices.json"))
    env.setdefault("OTEL_SERVICE_NAME", "widget-platform")
    # The browser's envelopes through the Sentry tunnel are telemetry, not traffic to trace.
    env.setdefault("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS", "/tunnel$")
    return env


def wait_ready(session: requests.Session, child: Child, timeout: float = 30.0) -> None:
    """Wait until ``child`` answers HTTP (its socket already accepts: requests queue up)."""
    deadline = time.monotonic() + timeout
    while True:
        if child.process.poll() is not None:
            raise RuntimeError(f"{child.name} exited early:\n{child.log_tail()}")
        try:
            session.get(f"{child.url}/api/widgets/status", timeout=timeout).raise_for_status()
            return
        except requests.RequestException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def drive(session: requests.Session, api: str, report: RunReport) -> None:
    """Exercise every endpoint; each step is one trace, rooted here."""
    with span("run.py discover"):
        response = session.post(f"{api}/api/widgets/discover", json={"query": "text"}, timeout=30)
    report.expect("discover", response.status_code, 200)
    body = response.json() if response.ok else {}
    failed = ", ".join(
        f"{repo} ({why.split(':')[0]})" for repo, why in body.get("failed", {}).items()
    )
    report.step(
        f"discover            {response.status_code}  {body.get('found', 0)} widgets found;"
        f" failed: {failed or 'none'}"
    )

    statuses = []
    for widget_id, raw in WIDGET_CONFIGS:
        with span(f"run.py convert {widget_id}"):
            response = session.post(
                f"{api}/api/widgets/convert", json={"id": widget_id, "config": raw}, timeout=30
            )
        report.expect(f"convert {widget_id}", response.status_code, EXPECTED_CONVERT[widget_id])
        statuses.append(f"{widget_id}={response.status_code}")
    report.step(f"convert x{len(WIDGET_CONFIGS)}          {' '.join(statuses)}")

    for number in range(1, ITERATIONS + 1):
        with span(f"run.py cascade iteration {number}"):
            response = session.post(
                f"{api}/api/cascade/iterations",
                json={"cascade": CASCADE, "iteration": number},
                timeout=60,
            )
        report.expect(f"cascade iteration {number}", response.status_code, 200)
        it = response.json() if response.ok else {}
        report.step(
            f"cascade iteration {number} {response.status_code}  query={it.get('query')!r}"
            f" approved={len(it.get('approved', []))} rejected={len(it.get('rejected', []))}"
            f" llm_calls={it.get('llm_calls')} cost=${it.get('cost_usd', 0):.4f}"
            f" (+{it.get('unpriced_calls')} unpriced)"
        )

    with span("run.py status"):
        response = session.get(f"{api}/api/widgets/status", timeout=30)
    report.expect("status", response.status_code, 200)
    report.step(f"status              {response.status_code}  {response.json()}")


# --- where the telemetry went -------------------------------------------------------------------


def destinations() -> list[str]:
    """Where this run's telemetry was sent, as widgettrace set it up (validated settings)."""
    return describe()


def flush_own_telemetry() -> None:
    """Send this process's finished spans now (the children flushed when they exited)."""
    flush = getattr(trace.get_tracer_provider(), "force_flush", None)
    if callable(flush):
        flush()


def _records(path: Path, since: float) -> Iterator[dict[str, Any]]:
    for candidate in (path, path.with_name(path.name + ".1")):
        try:
            lines = candidate.read_bytes().splitlines()
        except OSError:
            continue
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            # Epoch seconds (events, spans) or RFC 3339 (session lines), read as `tail` reads them.
            if isinstance(record, dict) and (_timestamp(record.get("timestamp")) or 0.0) >= since:
                yield record


def _plain_summary(path: Path, since: float) -> tuple[list[str], str]:
    """Errors by type, transactions by name, slowest endpoint; and a GenAI/MCP line."""
    errors: Counter[str] = Counter()
    durations: dict[str, list[float]] = {}
    endpoints: set[str] = set()
    llm_calls = mcp_spans = 0
    cost = 0.0
    for record in _records(path, since):
        if record.get("type") == "transaction":
            name = str(record.get("transaction"))
            ms = (float(record["timestamp"]) - float(record["start_timestamp"])) * 1000
            durations.setdefault(name, []).append(ms)
            if record.get("contexts", {}).get("trace", {}).get("op") == "http.server":
                endpoints.add(name)
            for child in record.get("spans", []):
                data = child.get("data") or {}
                llm_calls += data.get("gen_ai.operation.name") == "chat"
                mcp_spans += "mcp.method.name" in data
                cost += float(data.get("gen_ai.cost.total_tokens") or 0)
        else:
            values = (record.get("exception") or {}).get("values") or [{}]
            errors[str(values[-1].get("type", "message"))] += 1
    lines = [
        f"{sum(errors.values())} error events, "
        f"{sum(len(v) for v in durations.values())} transactions"
    ]
    lines += ["errors by type:"] + [f"  {n:>3}  {t}" for t, n in errors.most_common()]
    lines.append("transactions:")
    for name, values in sorted(durations.items(), key=lambda kv: -len(kv[1])):
        lines.append(f"  {len(values):>3}  max {max(values):>8.1f} ms  {name}")
    pool = {n: v for n, v in durations.items() if n in endpoints} or durations
    if pool:
        slowest = max(pool, key=lambda n: max(pool[n]))
        lines.append(f"slowest endpoint: {slowest} ({max(pool[slowest]):.1f} ms)")
    return lines, f"LLM calls: {llm_calls} (priced cost ${cost:.4f}); MCP spans: {mcp_spans}"


def summary(path: Path, since: float) -> list[str]:
    """The run's summary: ``widgettrace summary``'s text when available, plus GenAI/MCP counts."""
    plain, genai = _plain_summary(path, since)
    try:
        from widgettrace.cli import summarize
    except ImportError:  # OpenTelemetry without widgettrace: read the JSON lines ourselves
        return [*plain, genai]
    return [*summarize(path, since=since).splitlines(), genai]


def wait_for_log(path: Path, settle: float = 0.3, timeout: float = 5.0) -> None:
    """Give background writers a moment: wait until the log stops growing."""
    deadline = time.monotonic() + timeout
    last = -1
    while time.monotonic() < deadline:
        size = path.stat().st_size if path.exists() else 0
        if size == last and size > 0:
            return
        last = size
        time.sleep(settle)


# --- main -----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run the demo; 0 when everything answered as designed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--workdir",
        type=Path,
        help="keep the run's repositories, registry and child-process logs here "
        "(default: a temporary directory, removed after a successful run)",
    )
    args = parser.parse_args(argv)
    started = time.time()
    report = RunReport()
    if args.workdir is not None:
        world = args.workdir.resolve()
        if world.exists() and any(world.iterdir()):
            parser.error(f"--workdir {world} is not empty")
        world.mkdir(parents=True, exist_ok=True)
    else:
        world = Path(tempfile.mkdtemp(prefix="widgettrace-example-"))
    print("widgettrace example platform")
    try:
        create_repositories(world / "repos")
        children: list[Child] = []
        with ModelHub() as hub, requests.Session() as session:
            session.headers["X-Tenant"] = TENANT
            # uvicorn closes a connection after an unhandled error; a pooled one would then
            # fail the next POST, so each request gets its own connection.
            session.headers["Connection"] = "close"
            try:
                ranker_sock, api_sock = listening_socket(), listening_socket()
                ranker_port = ranker_sock.getsockname()[1]
                env = child_env(hub.url, world, f"http://127.0.0.1:{ranker_port}")
                ranker_env = {**env, "OTEL_SERVICE_NAME": "widget-ranker"}
                children.append(
                    Child.start(
                        "widget-ranker",
                        [sys.executable, str(EXAMPLES / "widget_ranker.py")],
                        ranker_sock,
                        ranker_env,
                        world,
                    )
                )
                api = Child.start(
                    "widget-platform",
                    [sys.executable, str(EXAMPLES / "service.py")],
                    api_sock,
                    env,
                    world,
                )
                children.append(api)
                print(f"  model hub           {hub.url}  (stand-in, in-process thread)")
                print(
                    f"  ranker widget       {children[0].url}/mcp  (MCP streamable HTTP,"
                    f" pid {children[0].process.pid})"
                )
                print(f"  platform API        {api.url}  (FastAPI/uvicorn, pid {api.process.pid})")
                print("  linter widget       MCP stdio, spawned by the platform")
                with span("run.py wait for platform"):
                    wait_ready(session, api)
                # This script is the platform's QA agent: its run is one release-health session
                # of the tenant it acts for (`widgettrace journeys --sessions` replays it).
                with telemetry_session(user=TENANT, name="QA agent run"):
                    drive(session, api.url, report)
            except Exception as exc:  # the demo itself broke: say why, keep the child logs
                report.problems.append(f"{type(exc).__name__}: {exc}")
                for child in children:
                    report.problems.append(f"--- {child.name} output:\n{child.log_tail()}")
            finally:
                for child in reversed(children):
                    code = child.stop()
                    if code not in (0, -15):
                        report.problems.append(
                            f"{child.name} exited with {code}:\n{child.log_tail()}"
                        )
    finally:
        if report.problems or args.workdir is not None:
            report.note(f"kept {world} (child output in its *.log files)")
        else:
            shutil.rmtree(world, ignore_errors=True)
    flush_own_telemetry()

    print("telemetry went to:")
    targets = destinations()
    for where in targets:
        print(f"  {where}")
    log = local_log_path()
    recorded = not targets[0].startswith("nowhere")
    if recorded and log is not None and log.exists():
        wait_for_log(log)
        print(f"this run, read back from the local log ({time.time() - started:.1f} s run):")
        for line in summary(log, since=started):
            print(f"  {line}")
    for note in report.notes:
        print(note)
    if report.problems:
        print("the run did not go as designed:", file=sys.stderr)
        for problem in report.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
