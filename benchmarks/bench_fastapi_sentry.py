"""FastAPI requests per second under uvicorn: bare, sentry-sdk's span processor, and ours.

Run from the repository root::

    .venv/bin/python benchmarks/bench_fastapi_sentry.py [--quick]

Each case is its own uvicorn process on 127.0.0.1 serving a light endpoint
(``GET /api/widgets/status`` returning a small JSON object):

* ``bare``: FastAPI alone (the baseline);
* ``otel_batch``: ``FastAPIInstrumentor(exclude_spans=["send", "receive"])`` with the SDK's
  ``BatchSpanProcessor`` and an exporter that drops: OpenTelemetry's own cost, for reference;
* ``sentry_sdk``: ``FastAPIInstrumentor`` + sentry-sdk 2.x's ``SentrySpanProcessor``
  (``instrumenter="otel"``), the upstream instrumentation's defaults;
* ``widgettrace``: ``FastAPIInstrumentor(exclude_spans=["send", "receive"])`` (widgettrace's
  default, ``WIDGETTRACE_ASGI_MESSAGE_SPANS=false``) + our processor via ``configure_sentry``
  (error hook included);
* ``widgettrace_all_spans``: ours with the per-message ASGI spans kept, for comparison.

Both Sentry cases send through the HTTP transport they use for real, with only the network
replaced (``_send_request`` drops the gzipped body): sentry-sdk's ``HttpTransport`` for
``sentry_sdk``, widgettrace's default (the same class, handed envelopes in batches) for ours.
Everything before the socket (worker thread, rate-limit checks, envelope serialisation, gzip)
is paid as in production. A separate load
process drives one server at a time: ``wrk -t1 -c8`` when installed (``scripts/setup-bench.sh``;
written in C, so it leaves the second core to the server), else a Python asyncio client (raw
keep-alive HTTP/1.1 on 8 connections). Cases run interleaved in rounds (A B C D A B C D ...); the
median requests/s per case is compared with ``bare``. The server's own CPU time per request (all
of its threads, from ``/proc``) is reported too: on a shared 2-core machine it moves less than
throughput does.

CPUs: with two or more, each server is pinned to one CPU (with all its threads: the background
export threads compete with the requests, so their whole CPU cost shows in throughput) and the
load generator to another. Unpinned (``--spread``), the scheduler moved servers, their threads
and wrk across the two cores at will and the same case varied by a third from run to run.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Literal

sys.path.insert(0, str(Path(__file__).resolve().parent))

PATH = "/api/widgets/status"
CASES = ("bare", "otel_batch", "sentry_sdk", "widgettrace", "widgettrace_all_spans")
DSN = "http://public@127.0.0.1:9/1"


# --- server side -----------------------------------------------------------------------------


def _no_network(cls: Any) -> Any:
    """``cls`` (an SDK HTTP transport class) with the request itself replaced by a drop."""

    class NoNetwork(cls):  # type: ignore[misc,valid-type]
        def _send_request(self, body: bytes, headers: Any, *args: Any, **kwargs: Any) -> None:
            pass

    return NoNetwork


def build_app(case: str) -> Any:
    from fastapi import FastAPI

    app = FastAPI()

    @app.get(PATH)
    async def status() -> dict[str, str]:
        return {"status": "ok", "service": "widgets"}

    if case == "bare":
        return app

    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    resource = Resource.create({"service.name": "bench"})
    provider = TracerProvider(resource=resource)
    exclude: list[Literal["receive", "send"]] | None = ["send", "receive"]
    if case == "otel_batch":
        from bench_spans import _DropExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider.add_span_processor(BatchSpanProcessor(_DropExporter()))
    elif case == "sentry_sdk":
        import sentry_sdk
        from sentry_sdk.integrations.opentelemetry import SentrySpanProcessor
        from sentry_sdk.transport import HttpTransport

        sentry_sdk.init(
            dsn=DSN,
            transport=_no_network(HttpTransport),
            instrumenter="otel",
            traces_sample_rate=1.0,
            default_integrations=False,
            auto_enabling_integrations=False,
        )
        provider.add_span_processor(SentrySpanProcessor())
        exclude = None
    elif case.startswith("widgettrace"):
        from widgettrace.exporters._delivery import DeliveryHttpTransport as BatchingHttpTransport
        from widgettrace.exporters.sentry import configure_sentry, sentry_init_options
        from widgettrace.instrumentation._config import Settings

        settings = Settings(sentry_dsn=DSN, log_path=None)
        # What configure_sentry picks by default with a DSN, minus the network.
        from sentry_sdk.consts import DEFAULT_OPTIONS

        options = {**DEFAULT_OPTIONS, **sentry_init_options(settings, resource)}
        options["transport"] = None
        transport = _no_network(BatchingHttpTransport)(options)
        processor = configure_sentry(settings, resource, transport=transport)
        assert processor is not None
        provider.add_span_processor(processor)
        if case == "widgettrace_all_spans":
            exclude = None
    FastAPIInstrumentor.instrument_app(app, tracer_provider=provider, exclude_spans=exclude)
    return app


def serve(case: str, cpu: int | None = None) -> None:
    import uvicorn

    if cpu is not None:
        os.sched_setaffinity(0, {cpu})  # every thread it starts inherits the one core

    # proto=IPPROTO_TCP: asyncio only sets TCP_NODELAY on accepted sockets whose proto says TCP;
    # without it every keep-alive response waits ~40 ms for the client's delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    print(sock.getsockname()[1], flush=True)
    config = uvicorn.Config(build_app(case), log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


# --- load side -------------------------------------------------------------------------------


async def _connection(port: int, deadline: float, counts: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    done = 0
    try:
        while time.perf_counter() < deadline:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(head[:40])
            await reader.readexactly(length)
            done += 1
    finally:
        counts.append(done)
        writer.close()


async def _load(port: int, seconds: float, connections: int) -> dict[str, float]:
    counts: list[int] = []
    start = time.perf_counter()
    deadline = start + seconds
    await asyncio.gather(*(_connection(port, deadline, counts) for _ in range(connections)))
    return {"requests": sum(counts), "seconds": time.perf_counter() - start}


def load(port: int, seconds: float, connections: int) -> None:
    print(json.dumps(asyncio.run(_load(port, seconds, connections))), flush=True)


def _wrk(port: int, seconds: float, connections: int) -> dict[str, float]:
    from _harness import run_wrk

    doc = run_wrk(f"http://127.0.0.1:{port}{PATH}", seconds, connections)
    if any(doc["errors"].values()):
        raise RuntimeError(f"wrk errors: {doc['errors']}")
    return {"requests": doc["requests"], "seconds": doc["duration_us"] / 1e6}


def _wait_accepting(port: int, timeout: float = 60.0) -> None:
    """Until uvicorn listens on ``port`` (the socket is bound before start-up, listening after)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of every thread of ``pid`` (Linux ``/proc``)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- driver ----------------------------------------------------------------------------------


def main() -> None:
    from _harness import (
        bench_args,
        command_line,
        format_rows,
        pin_cpus,
        ratio_rows,
        stats_of,
        write_result,
    )

    args = bench_args(
        __doc__ or "",
        flags=[("--spread", "do not pin the servers and the load generator to separate CPUs")],
    )
    rounds, seconds = (3, 1.0) if args.quick else (11, 3.0)
    pins = None if args.spread else pin_cpus()
    use_wrk = shutil.which("wrk") is not None
    connections = 8
    me = str(Path(__file__).resolve())
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    servers: dict[str, subprocess.Popen[str]] = {}
    ports: dict[str, int] = {}
    try:
        for case in CASES:
            command = [sys.executable, me, "--serve", case]
            if pins is not None:
                command.append(str(pins[1]))
            proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
            servers[case] = proc
            assert proc.stdout is not None
            ports[case] = int(proc.stdout.readline())
        for case in CASES:
            _wait_accepting(ports[case])
        if pins is not None:
            os.sched_setaffinity(0, {pins[0]})  # the load generator inherits this core
        samples: dict[str, list[float]] = {case: [] for case in CASES}
        cpu: dict[str, list[float]] = {case: [] for case in CASES}
        for round_no in range(rounds + 1):  # round 0 warms up
            for case in CASES:
                cpu_before = _cpu_seconds(servers[case].pid)
                if use_wrk:
                    result = _wrk(ports[case], seconds, connections)
                else:
                    out = subprocess.run(
                        [
                            sys.executable,
                            me,
                            "--load",
                            str(ports[case]),
                            str(seconds),
                            str(connections),
                        ],
                        capture_output=True,
                        text=True,
                        check=True,
                        env=env,
                    )
                    result = json.loads(out.stdout)
                cpu_used = _cpu_seconds(servers[case].pid) - cpu_before
                if round_no:
                    samples[case].append(result["requests"] / result["seconds"])
                    cpu[case].append(cpu_used / max(1, result["requests"]))
    finally:
        for proc in servers.values():
            proc.terminate()
        for proc in servers.values():
            proc.wait(timeout=10)
    stats = {case: stats_of(values) for case, values in samples.items()}
    rows = ratio_rows(stats, unit="req/s", baseline="bare")
    cpu_stats = {f"{case}/server_cpu": stats_of(values) for case, values in cpu.items()}
    rows += ratio_rows(cpu_stats, unit="us/request", baseline="bare/server_cpu", scale=1e6)
    for row in rows:
        row["load"] = "wrk -t1 -c8" if use_wrk else "python asyncio, 8 connections"
        row["cpus"] = (
            f"server pinned to CPU {pins[1]}, load to CPU {pins[0]}" if pins else "not pinned"
        )
    print(format_rows(rows))
    print(f"wrote {write_result('fastapi_sentry', rows, command_line())}")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--serve":
        serve(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else None)
    elif len(sys.argv) > 4 and sys.argv[1] == "--load":
        load(int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]))
    else:
        main()
