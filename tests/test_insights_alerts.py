"""Alerts: a real HTTP webhook receiver on 127.0.0.1 gets Slack-compatible JSON.

``widgettrace watch`` runs as its own process on a log; the test appends error lines the way
the local log does and times the webhook's receipt. The background mode runs a real app
configured with ``WIDGETTRACE_ALERT_WEBHOOK``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from gen_log import error_event, transaction, write_lines

from widgettrace.insights.alerts import Alert, Rules, Watcher, WebhookSender

T0 = time.time() - 7200


class Receiver:
    def __init__(self) -> None:
        self.received: list[tuple[float, dict[str, Any]]] = []
        self.cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with receiver.cond:
                    receiver.received.append((time.time(), body))
                    receiver.cond.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, n: int, timeout: float) -> list[tuple[float, dict[str, Any]]]:
        with self.cond:
            self.cond.wait_for(lambda: len(self.received) >= n, timeout)
            return list(self.received)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("SENTRY_", "OTEL_", "WIDGETTRACE_"))}


def test_first_seen_error_alerts_within_5_s_and_only_once(
    tmp_path: Path, receiver: Receiver
) -> None:
    log = tmp_path / "sentry.log"
    write_lines(log, [error_event(T0, "Known", "m", "known")])  # the baseline: no alert
    watch = subprocess.Popen(
        [sys.executable, "-m", "widgettrace", "watch", str(log), "--webhook", receiver.url,
         "--interval", "0.2"],
        env=_env(), stderr=subprocess.PIPE, text=True,
    )
    try:
        assert watch.stderr is not None
        assert "watching" in watch.stderr.readline()
        time.sleep(0.5)
        write_lines(log, [error_event(time.time(), "Known", "m", "known")])
        written = time.time()
        write_lines(log, [error_event(time.time(), "HubDown", "discovery", "scan",
                                      value="hub 3 down")])
        ((at, body),) = receiver.wait(1, timeout=5)
        assert at - written <= 5.0
        assert body["text"] == "[widgettrace] New issue: HubDown in scan (discovery)"
        assert body["blocks"][0]["text"]["type"] == "mrkdwn"
        assert "hub 3 down" in body["blocks"][0]["text"]["text"]
        # The same issue again within the window: no second alert (no storms).
        write_lines(log, [error_event(time.time(), "HubDown", "discovery", "scan")] * 5)
        time.sleep(1.5)
        assert len(receiver.received) == 1
    finally:
        watch.terminate()
        watch.wait(10)


def test_rules_regression_spike_error_rate_and_latency(tmp_path: Path) -> None:
    log = tmp_path / "sentry.log"
    now = time.time()
    write_lines(log, [
        transaction(now - 5000, "GET /", 5.0, release="r1"),
        error_event(now - 5000, "Old", "m", "old", release="r1"),
        transaction(now - 4000, "GET /", 5.0, release="r2"),  # r2 without Old: resolved
        error_event(now - 3000, "Noisy", "m", "noisy", release="r2"),
    ])
    watcher = Watcher(log, Rules(spike_factor=3.0, spike_min=5, error_rate_per_min=10,
                                 p95_ms=500.0))
    try:
        write_lines(log, [error_event(now, "Old", "m", "old", release="r3")])
        write_lines(log, [error_event(now - i, "Noisy", "m", "noisy", release="r3")
                          for i in range(12)])
        write_lines(log, [transaction(now - 1, "POST /slow", 900.0, release="r3")])
        alerts = watcher.poll(now=now)
        rules = sorted((a.rule, a.title) for a in alerts)
        assert rules == [
            ("error_rate", "13 errors in the last minute"),
            ("latency", "POST /slow p95 900 ms"),
            ("regression", "Old in old (m)"),
            ("spike", "Noisy in noisy (m)"),
        ]
        write_lines(log, [error_event(now, "Noisy", "m", "noisy", release="r3")] * 20)
        assert watcher.poll(now=now + 1) == []  # one alert per rule and issue per window
    finally:
        watcher.close()


def test_a_down_webhook_never_blocks_the_caller() -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/"
    sender = WebhookSender(url, max_queue=3, retries=2, backoff_s=0.05, timeout_s=0.5)
    started = time.monotonic()
    results = [sender.send(Alert("first_seen", str(i), "t", "x")) for i in range(50)]
    assert time.monotonic() - started < 1.0  # queued or dropped, never waited on
    assert results.count(False) == sender.dropped >= 40
    sender.close(timeout=10)
    assert sender.sent == 0 and sender.failed >= 1


APP = """
import sys, time
from opentelemetry import trace
import widgettrace
widgettrace.configure()
tracer = trace.get_tracer("app")
time.sleep(1.0)
try:
    with tracer.start_as_current_span("job"):
        raise RuntimeError("background alert")
except RuntimeError:
    pass
import sentry_sdk
sentry_sdk.flush(5)
print(time.time(), flush=True)
time.sleep(float(sys.argv[1]))
"""


def test_background_mode_from_the_setting(tmp_path: Path, receiver: Receiver) -> None:
    log = tmp_path / "sentry.log"
    env = _env() | {"WIDGETTRACE_LOG_PATH": str(log), "WIDGETTRACE_ALERT_WEBHOOK": receiver.url,
                    "OTEL_SERVICE_NAME": "bg-app"}
    app = subprocess.Popen([sys.executable, "-c", APP, "8"], env=env, stdout=subprocess.PIPE,
                           text=True)
    try:
        assert app.stdout is not None
        flushed = float(app.stdout.readline())
        ((at, body),) = receiver.wait(1, timeout=7)
        assert body["text"].startswith("[widgettrace] New issue: RuntimeError")
        assert at - flushed <= 5.0
    finally:
        app.wait(20)
    assert app.returncode == 0
