"""Exit delivers what is queued, errors first, within WIDGETTRACE_SHUTDOWN_TIMEOUT_S: normal exit,
SIGINT, SIGTERM, under uvicorn and gunicorn; the process's own signal behaviour is kept.

Real processes under ``opentelemetry-instrument``, a real receiver in this process counting
arrivals, and a slow receiver so that a backlog is certainly left at exit.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from receivers.sentry_receiver import SentryReceiver

BIN = Path(sys.executable).parent

BACKLOG_SCRIPT = r"""
import os, signal, sys, time
from opentelemetry import trace

tracer = trace.get_tracer("backlog")
for i in range(int(sys.argv[2])):
    with tracer.start_as_current_span(f"job {i}"):
        pass
for i in range(int(sys.argv[3])):
    try:
        with tracer.start_as_current_span("failing job"):
            raise ValueError(f"error {i}")
    except ValueError:
        pass
time.sleep(0.3)  # the export thread has turned the spans into transactions
print("queued", flush=True)
how = sys.argv[1]
if how == "sigterm":
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(30)
elif how == "sigint":
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(30)
elif how == "own-handler":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(7))
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(30)
"""

APP = r"""
from fastapi import FastAPI

app = FastAPI()


@app.get("/ok")
def ok() -> dict[str, bool]:
    return {"ok": True}


@app.get("/fail")
def fail() -> dict[str, bool]:
    raise ValueError("endpoint failed")
"""


def _env(tmp_path: Path, dsn: str, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OTEL_", "SENTRY_", "WIDGETTRACE_"))
    }
    env.pop("PYTHONPATH", None)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(
        {
            "SENTRY_DSN": dsn,
            "WIDGETTRACE_LOG_PATH": str(tmp_path / "sentry.log"),
            "OTEL_SERVICE_NAME": "shutdown-test",
        }
    )
    env.update(extra)
    return env


@pytest.fixture
def receiver() -> Iterator[SentryReceiver]:
    with SentryReceiver(normalize=False, keep_payloads=False) as server:
        yield server


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("how", "code"), [("normal", 0), ("sigint", -signal.SIGINT), ("sigterm", -signal.SIGTERM)]
)
def test_a_backlog_at_exit_delivers_every_error_first(
    receiver: SentryReceiver, tmp_path: Path, how: str, code: int
) -> None:
    # Before: 20,100 transactions + 100 errors delivered 0 errors (they waited behind the
    # transactions); under SIGTERM nothing ran at exit at all.
    receiver.set_fault("slow", delay=0.05)
    script = tmp_path / "backlog.py"
    script.write_text(BACKLOG_SCRIPT)
    cmd = [str(BIN / "opentelemetry-instrument"), sys.executable, str(script), how, "5000", "100"]
    proc = subprocess.Popen(
        cmd, env=_env(tmp_path, receiver.dsn), cwd=tmp_path, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "queued"
    started = time.monotonic()
    returncode = proc.wait(timeout=30)
    took = time.monotonic() - started
    assert returncode == code
    assert took < 2.0 + 2.5  # WIDGETTRACE_SHUTDOWN_TIMEOUT_S (2 s) plus start-up slack
    receiver.set_fault(None)
    counts = receiver.counts()
    # SIGINT's KeyboardInterrupt escapes the script: a crash, reported as one more error.
    assert counts.get("event", 0) == 100 + (how == "sigint"), counts
    # The rest of the backlog could not all go in 2 s at 50 ms a request; what did not is in
    # the local log's closing client report.
    lines = (tmp_path / "sentry.log").read_text().splitlines()
    assert sum('"type":"transaction"' in line for line in lines) == 5000 + 100
    assert any('"type": "client_report"' in line for line in lines)


def test_an_app_that_handles_sigterm_keeps_its_handler_and_still_flushes(
    receiver: SentryReceiver, tmp_path: Path
) -> None:
    script = tmp_path / "backlog.py"
    script.write_text(BACKLOG_SCRIPT)
    cmd = [str(BIN / "opentelemetry-instrument"), sys.executable, str(script), "own-handler"]
    result = subprocess.run(
        [*cmd, "50", "5"], env=_env(tmp_path, receiver.dsn), cwd=tmp_path, timeout=30, check=False
    )
    assert result.returncode == 7  # the app's own handler ran (sys.exit(7)); atexit flushed
    counts = receiver.counts()
    assert counts.get("event", 0) == 5
    assert counts.get("transaction", 0) == 55


def _serve_and_stop(cmd: list[str], tmp_path: Path, env: dict[str, str], port: int) -> int:
    (tmp_path / "app.py").write_text(APP)
    # A file, not a pipe: twenty tracebacks would fill a pipe nobody reads and block the server.
    errors = (tmp_path / "stderr.txt").open("wb")
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=errors)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/ok", timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None, (tmp_path / "stderr.txt").read_text()
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.2)
        for _ in range(20):
            httpx.get(f"http://127.0.0.1:{port}/ok", timeout=5)
            httpx.get(f"http://127.0.0.1:{port}/fail", timeout=5)
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        errors.close()


def test_uvicorn_stopped_by_sigterm_delivers_what_is_queued(
    receiver: SentryReceiver, tmp_path: Path
) -> None:
    # uvicorn re-raises SIGTERM after its graceful shutdown: atexit never runs there.
    receiver.set_fault("slow", delay=0.2)
    port = _free_port()
    cmd = [
        str(BIN / "opentelemetry-instrument"),
        str(BIN / "uvicorn"),
        "app:app",
        "--port",
        str(port),
        "--no-access-log",
    ]
    code = _serve_and_stop(cmd, tmp_path, _env(tmp_path, receiver.dsn), port)
    assert code == -signal.SIGTERM  # uvicorn's own behaviour, unchanged
    counts = receiver.counts()
    assert counts.get("event", 0) == 20, counts
    assert counts.get("transaction", 0) == 41, counts  # 40 requests and the readiness probe


def test_gunicorn_uvicorn_workers_stopped_by_sigterm_deliver_what_is_queued(
    receiver: SentryReceiver, tmp_path: Path
) -> None:
    receiver.set_fault("slow", delay=0.2)
    port = _free_port()
    cmd = [
        str(BIN / "opentelemetry-instrument"),
        str(BIN / "gunicorn"),
        "app:app",
        "-w",
        "2",
        "-k",
        "uvicorn.workers.UvicornWorker",
        "-b",
        f"127.0.0.1:{port}",
    ]
    code = _serve_and_stop(cmd, tmp_path, _env(tmp_path, receiver.dsn), port)
    assert code == 0  # gunicorn's arbiter exits 0 after stopping its workers
    counts = receiver.counts()
    assert counts.get("event", 0) == 20, counts
    assert counts.get("transaction", 0) == 41, counts
