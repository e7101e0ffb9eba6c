"""FastAPI requests per second under uvicorn: bare, sentry-sdk's span processor, and ours.

Run from the repository root::

    .venv/bin/python benchmarks/bench_fastapi_sentry.py [--quick]

Each case is its own uvicorn process on 127.0.0.1 serving a light endpoint
(``GET /api/widgets/status`` returning a small JSON object):

* ``bare``: FastAPI alone (the baseline);
* ``sentry_sdk``: ``FastAPIInstrumentor`` + sentry-sdk 2.x's ``SentrySpanProcessor``
  (``instrumenter="otel"``), the upstream instrumentation's defaults;
* ``widgettrace``: ``FastAPIInstrumentor(exclude_spans=["send", "receive"])`` (widgettrace's
  default, ``WIDGETTRACE_ASGI_MESSAGE_SPANS=false``) + our processor via ``configure_sentry``
  (error hook included);
* ``widgettrace_all_spans``: ours with the per-message ASGI spans kept, for comparison.

Both Sentry cases hand envelopes to the same transport, which serialises each one on a background
worker (what the SDK's HTTP transport does before the network) and drops it. A separate load
process (asyncio, raw keep-alive HTTP/1.1 on several connections) drives one server at a time;
cases run interleaved in rounds (A B C D A B C D ...), and the median requests/s per case is
compared with ``bare``.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Literal

sys.path.insert(0, str(Path(__file__).resolve().parent))

PATH = "/api/widgets/status"
CASES = ("bare", "sentry_sdk", "widgettrace", "widgettrace_all_spans")
DSN = "http://public@127.0.0.1:9/1"


# --- server side -----------------------------------------------------------------------------


def _drop_transport() -> Any:
    from sentry_sdk.transport import Transport
    from sentry_sdk.worker import BackgroundWorker

    class SerializingDropTransport(Transport):
        def __init__(self) -> None:
            super().__init__({"dsn": DSN})
            self._worker = BackgroundWorker(queue_size=10000)

        def capture_envelope(self, envelope: Any) -> None:
            self._worker.submit(envelope.serialize)

        def flush(self, timeout: float, callback: Any = None) -> None:
            self._worker.flush(timeout, callback)

    return SerializingDropTransport()


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
    if case == "sentry_sdk":
        import sentry_sdk
        from sentry_sdk.integrations.opentelemetry import SentrySpanProcessor

        sentry_sdk.init(
            dsn=DSN,
            transport=_drop_transport(),
            instrumenter="otel",
            traces_sample_rate=1.0,
            default_integrations=False,
            auto_enabling_integrations=False,
        )
        provider.add_span_processor(SentrySpanProcessor())
        exclude = None
    else:
        from widgettrace.exporters.sentry import configure_sentry
        from widgettrace.instrumentation._config import Settings

        settings = Settings(sentry_dsn=DSN, log_path=None)
        processor = configure_sentry(settings, resource, transport=_drop_transport())
        assert processor is not None
        provider.add_span_processor(processor)
        if case == "widgettrace_all_spans":
            exclude = None
    FastAPIInstrumentor.instrument_app(app, tracer_provider=provider, exclude_spans=exclude)
    return app


def serve(case: str) -> None:
    import uvicorn

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


# --- driver ----------------------------------------------------------------------------------


def main() -> None:
    from _harness import bench_args, command_line, format_rows, ratio_rows, stats_of, write_result

    args = bench_args(__doc__ or "")
    rounds, seconds = (3, 1.0) if args.quick else (7, 3.0)
    connections = 8
    me = str(Path(__file__).resolve())
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    servers: dict[str, subprocess.Popen[str]] = {}
    ports: dict[str, int] = {}
    try:
        for case in CASES:
            proc = subprocess.Popen(
                [sys.executable, me, "--serve", case], stdout=subprocess.PIPE, text=True, env=env
            )
            servers[case] = proc
            assert proc.stdout is not None
            ports[case] = int(proc.stdout.readline())
        time.sleep(1.0)  # let uvicorn start accepting
        samples: dict[str, list[float]] = {case: [] for case in CASES}
        for round_no in range(rounds + 1):  # round 0 warms up
            for case in CASES:
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
                if round_no:
                    samples[case].append(result["requests"] / result["seconds"])
    finally:
        for proc in servers.values():
            proc.terminate()
        for proc in servers.values():
            proc.wait(timeout=10)
    stats = {case: stats_of(values) for case, values in samples.items()}
    rows = ratio_rows(stats, unit="req/s", baseline="bare")
    print(format_rows(rows))
    print(f"wrote {write_result('fastapi_sentry', rows, command_line())}")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--serve":
        serve(sys.argv[2])
    elif len(sys.argv) > 4 and sys.argv[1] == "--load":
        load(int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]))
    else:
        main()
