"""``widgettrace mcp`` tool latency on a big log: what an agent waits for, per call.

Generates (once, cached) a local log of N events with ``benchmarks/gen_log.py`` (default 1M:
90% transactions of ~10 spans, the rest errors), starts the real server
(``widgettrace mcp --log LOG --http PORT --trace-log off``, its own process), waits for the
ingestion to finish (the server ingests before it listens; the ingestion time is reported), then
calls tools through the SDK's client over streamable HTTP, interleaved, one sample per call, wall
time on the client (the whole JSON-RPC round trip):

* ``tools/list`` (the baseline: a protocol round trip with no insights work; the 2026 protocol
  has no ``ping``);
* ``list_issues`` (default filters, first page) and ``standup`` (JSON and Markdown), the two the
  issue sets a target for (p50 <= 200 ms); ``get_issue``, ``get_trace``, ``search_events``,
  ``performance``, ``cost`` for the picture.

Each tool is measured twice: ``cold`` (each sample asks with a slightly different argument, e.g.
``limit``, so the server's answer cache cannot serve it: the call recomputes from DuckDB) and
``warm`` (the same question again while the log has not changed). The ratio column is against
``tools/list``.

Usage::

    .venv/bin/python benchmarks/bench_mcp_server.py            # 1M events, ~5 min first time
    .venv/bin/python benchmarks/bench_mcp_server.py --quick    # 20k events
    WIDGETTRACE_BENCH_LOG=/path/sentry.log ...                 # reuse a log (must exist)
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
from mcp import Client

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import bench_args, command_line, format_rows, machine_info, write_result
from gen_log import generate

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _log(events: int) -> Path:
    given = os.environ.get("WIDGETTRACE_BENCH_LOG")
    if given:
        return Path(given)
    path = Path(tempfile.gettempdir()) / f"widgettrace-bench-mcp-{events}" / "sentry.log"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        generate(path, events, seed=1)
        print(f"generated {events} events in {time.perf_counter() - start:.1f} s: {path}")
    return path


def _start(log: Path) -> tuple[subprocess.Popen[bytes], str, float]:
    port = _free_port()
    start = time.perf_counter()
    proc = subprocess.Popen(
        [str(BIN / "widgettrace"), "mcp", "--log", str(log), "--http", str(port),
         "--trace-log", "off"],
        stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    line = proc.stderr.readline().decode()  # printed once ingestion is done
    if "/mcp" not in line:
        proc.kill()
        raise SystemExit(f"server did not start: {line}{proc.stderr.read().decode()[-2000:]}")
    ingest = time.perf_counter() - start
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    return proc, f"http://127.0.0.1:{port}/mcp", ingest


Call = Callable[[Client, int], Awaitable[Any]]


def _tool(name: str, args: dict[str, Any], vary: str | None = None) -> Call:
    """A call of ``name``; ``vary`` names the argument a cold sample changes (``limit``: 20 +
    sample number; ``since``: 24 h + sample number ms), so no cached answer can serve it."""

    async def call(client: Client, sample: int) -> Any:
        given = dict(args)
        if vary in ("limit", "journey_steps") and sample:
            given[vary] = 20 + sample % 80
        elif vary == "max_spans" and sample:
            given[vary] = 300 + sample
        elif vary == "since" and sample:
            given["since"] = f"{86400 + sample / 1000:.3f}s"
        result = await client.call_tool(name, given)
        if result.is_error:
            raise RuntimeError(f"{name}: {result.content}")
        return result.structured_content

    return call


async def _measure(url: str, rounds: int) -> tuple[dict[str, list[float]], dict[str, Any]]:
    samples: dict[str, list[float]] = {}
    info: dict[str, Any] = {}
    async with Client(url) as client:
        issues = (await client.call_tool("list_issues", {"limit": 5})).structured_content
        assert issues is not None
        issue_id = issues["issues"][0]["issue_id"]
        found = await client.call_tool("search_events", {"kind": "transaction", "limit": 1})
        assert found.structured_content is not None
        trace_id = found.structured_content["events"][0]["trace_id"]
        info["issues_total"] = issues["total"]

        async def list_tools(c: Client, sample: int) -> Any:
            return await c.session.list_tools()  # the session's call: never a cached answer

        cases: dict[str, Call] = {
            "tools/list": list_tools,
            "list_issues": _tool("list_issues", {}, "limit"),
            "standup": _tool("standup", {"format": "both"}, "since"),
            "get_issue": _tool("get_issue", {"issue_id": issue_id}, "journey_steps"),
            "get_trace": _tool("get_trace", {"trace_id": trace_id}, "max_spans"),
            "search_events": _tool("search_events", {"query": "timeout"}, "limit"),
            "performance": _tool("performance", {}, "limit"),
            "cost": _tool("cost", {"group_by": "release"}, "limit"),
        }
        for _ in range(2):  # warm-up: imports, DuckDB's first plans
            for call in cases.values():
                await call(client, 0)
        sample = 0
        for _ in range(rounds):
            for name, call in cases.items():
                for mode in ("cold", "warm") if name != "tools/list" else ("",):
                    sample += 1
                    start = time.perf_counter()
                    await call(client, sample if mode == "cold" else 0)
                    key = f"{name} {mode}".strip()
                    samples.setdefault(key, []).append(time.perf_counter() - start)
    return samples, info


def main() -> None:
    args = bench_args(__doc__.splitlines()[0] if __doc__ else "", flags=())
    events = 20_000 if args.quick else 1_000_000
    rounds = 5 if args.quick else 15
    log = _log(events)
    proc, url, ingest = _start(log)
    try:
        samples, info = anyio.run(_measure, url, rounds)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    base = statistics.median(samples["tools/list"])
    rows = []
    for name, values in samples.items():
        ms = [v * 1000 for v in values]
        rows.append(
            {
                "case": name,
                "median": statistics.median(ms),
                "min": min(ms),
                "max": max(ms),
                "p95": sorted(ms)[max(0, round(0.95 * len(ms)) - 1)],
                "unit": "ms per call",
                "ratio": statistics.median(values) / base,
                "rounds": len(ms),
            }
        )
    notes = (
        f"{events} events ({log.stat().st_size / 1e9:.2f} GB), server ingestion (start to "
        f"listening) {ingest:.1f} s; {info['issues_total']} issues"
    )
    path = write_result(
        "mcp_server", rows, command_line(), notes=notes, machine=machine_info(["mcp", "duckdb"])
    )
    print(format_rows(rows))
    print(notes)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
