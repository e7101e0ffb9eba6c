"""The frontend tunnel in a real headless Chromium with the real ``@sentry/browser``.

The example platform runs as in examples/run.py (hub, ranker, FastAPI service, all under
``opentelemetry-instrument``, local log only). A page served from another loopback origin loads
the npm ``@sentry/browser`` (bundled by ``scripts/setup-receivers.sh``), initialises it with
the service's ``/api/frontend/config`` (DSN + ``tunnel``) and ``tracePropagationTargets``, calls
the API and throws. Debian's Chromium runs it (playwright-core pointed at /usr/bin/chromium).
Then envelopes that must be refused are posted to the same service.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from receivers.platform import running_platform
from receivers.relay import normalize
from receivers.sentry_receiver import SentryReceiver

BROWSER_DIR = Path(__file__).parent / "receivers" / "browser"
BUNDLE = BROWSER_DIR / "build" / "sentry-browser.js"
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ERROR_TEXT = "widget panel failed to render"

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>widget panel</title>
<script src="/sentry-browser.js"></script></head>
<body><div id="panel">loading</div>
<script>
(async () => {
  const api = new URL(location.href).searchParams.get("api");
  const config = await (await fetch(api + "/api/frontend/config")).json();
  Sentry.init({
    dsn: config.dsn,
    tunnel: api + config.tunnel,
    release: "widget-web@1.0.0",
    environment: "test",
    integrations: [Sentry.browserTracingIntegration()],
    tracesSampleRate: 1.0,
    tracePropagationTargets: [api],
    debug: new URL(location.href).searchParams.has("debug"),
  });
  const response = await fetch(api + "/api/widgets/status", {headers: {"x-tenant": "web-1"}});
  const status = await response.json();
  const active = Sentry.getActiveSpan();
  window.__result = {status, traceId: active ? Sentry.spanToJSON(active).trace_id : null};
  setTimeout(() => { throw new Error("ERROR_TEXT: " + status.status); }, 0);
  setTimeout(async () => { await Sentry.flush(5000); window.__done = true; }, 3000);
})().catch((e) => { window.__result = {failed: String(e)}; window.__done = true; });
</script></body></html>
""".replace("ERROR_TEXT", ERROR_TEXT)


class _PageHandler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path.startswith("/sentry-browser.js"):
            body, kind = BUNDLE.read_bytes(), "text/javascript"
        elif self.path == "/" or self.path.startswith("/?"):
            body, kind = PAGE.encode(), "text/html; charset=utf-8"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def page_server() -> Iterator[str]:
    if not BUNDLE.exists():
        pytest.fail(f"{BUNDLE} is missing: run scripts/setup-receivers.sh")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _PageHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _drive(url: str) -> dict[str, Any]:
    node = os.environ.get("WIDGETTRACE_NODE") or shutil.which("node")
    assert node, "node is needed (scripts/setup-receivers.sh)"
    result = subprocess.run(
        [node, str(BROWSER_DIR / "drive.mjs"), url, "30000"],
        cwd=BROWSER_DIR,
        env={**os.environ, "CHROMIUM": CHROMIUM},
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert lines, result.stdout + result.stderr
    out: dict[str, Any] = json.loads(lines[-1])
    assert out["ok"], out
    return out


def _records(log: Path) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def _envelope(dsn: str, event: dict[str, Any] | None = None) -> bytes:
    event = event or {"event_id": "a" * 32, "message": "from elsewhere", "platform": "javascript"}
    header = json.dumps({"event_id": event.get("event_id"), "dsn": dsn})
    payload = json.dumps(event).encode()
    item = json.dumps({"type": "event", "length": len(payload)})
    return header.encode() + b"\n" + item.encode() + b"\n" + payload + b"\n"


def _wait_for(log: Path, check: Any, timeout: float = 15.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        records = _records(log)
        if check(records) or time.monotonic() > deadline:
            return records
        time.sleep(0.2)


def _browser_error(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    for record in records:
        values = (record.get("exception") or {}).get("values") or []
        if record.get("platform") == "javascript" and any(
            ERROR_TEXT in str(v.get("value")) for v in values
        ):
            return record
    return None


def _browser_spans(receiver: SentryReceiver) -> list[dict[str, Any]]:
    """The browser SDK's spans (v11 streams span v2 items) that the tunnel forwarded."""
    spans: list[dict[str, Any]] = []
    for payload in receiver.payloads("span"):
        spans.extend(payload.get("items") or [])
    return spans


def test_browser_error_in_the_backend_trace_and_refusals(
    tmp_path: Path, page_server: str, sentry_receiver: SentryReceiver
) -> None:
    log = tmp_path / "sentry.log"
    with running_platform(
        tmp_path,
        SENTRY_DSN=sentry_receiver.dsn,
        WIDGETTRACE_LOG_PATH=str(log),
        WIDGET_CORS_ORIGINS=page_server,
    ) as api:
        base: str = api.url  # type: ignore[attr-defined]
        out = _drive(f"{page_server}/?api={base}")
        assert out["result"]["status"]["status"] == "ok", out
        records = _wait_for(log, lambda rs: _browser_error(rs) is not None)
        error = _browser_error(records)
        assert error is not None, (out, [r.get("type") for r in records])
        trace_id = error["contexts"]["trace"]["trace_id"]
        assert trace_id == out["result"]["traceId"]
        sentry_receiver.wait_for(
            lambda r: any(s.get("trace_id") == trace_id for s in _browser_spans(r)), timeout=15
        )

        # --- refusals: the right status, and nothing written or forwarded -----------------------
        config = requests.get(f"{base}/api/frontend/config", timeout=10).json()
        assert config["dsn"] == sentry_receiver.dsn
        tunnel = base + config["tunnel"]
        before, received = log.read_bytes(), len(sentry_receiver.envelopes)
        other = requests.post(
            tunnel, data=_envelope("https://key@o1.ingest.sentry.io/99"), timeout=10
        )
        assert other.status_code == 403, other.text
        big_event = {"event_id": "b" * 32, "message": "x" * (1024 * 1024 + 10)}
        big = requests.post(tunnel, data=_envelope(config["dsn"], big_event), timeout=10)
        assert big.status_code == 413, big.text
        broken_body = b'{"dsn": "' + config["dsn"].encode() + b'"}\n{not json'
        broken = requests.post(tunnel, data=broken_body, timeout=10)
        assert broken.status_code == 400, broken.text
        assert requests.get(tunnel, timeout=10).status_code == 405
        time.sleep(1.0)  # the local log's writer thread and the HTTP queue would have run
        after = [json.loads(line) for line in log.read_bytes()[len(before) :].splitlines()]
        # Only the server's own transaction for the config request, the audit event for the
        # other project's attempt (a 403 is a security denial), or late lines from the page's
        # SDK (a loaded machine); nothing from the refused bodies.
        audited = [r for r in after if r.get("logger") == "widgettrace.audit"]
        assert [r["message"] for r in audited] == ["security: POST /tunnel denied (403 Forbidden)"]
        for record in after:
            assert record.get("event_id") not in {"a" * 32, "b" * 32}, record
            if record.get("transaction") != "GET /api/frontend/config" and record not in audited:
                assert str((record.get("sdk") or {}).get("name")).startswith(
                    "sentry.javascript"
                ), record
        for envelope in sentry_receiver.envelopes[received:]:
            for item in envelope.items:
                audit = item.type == "event" and item.json.get("logger") == "widgettrace.audit"
                assert item.type == "transaction" or audit, item.json

    # The backend transaction the page's fetch called is in the browser's trace, a child of the
    # browser's http.client span (sentry-trace/baggage from tracePropagationTargets).
    records = _records(log)
    backend = [
        r
        for r in records
        if r.get("type") == "transaction" and r["contexts"]["trace"]["trace_id"] == trace_id
    ]
    assert [t["transaction"] for t in backend] == ["GET /api/widgets/status"]
    spans = [s for s in _browser_spans(sentry_receiver) if s.get("trace_id") == trace_id]
    fetches = {
        s["span_id"]
        for s in spans
        if (s.get("attributes") or {}).get("sentry.op", {}).get("value") == "http.client"
    }
    assert backend[0]["contexts"]["trace"]["parent_span_id"] in fetches
    assert error["release"] == "widget-web@1.0.0"
    # The same browser event reached the DSN, valid by relay; nothing from the refused bodies.
    assert error["event_id"] in {e["event_id"] for e in sentry_receiver.events()}
    everything = records + sentry_receiver.events()
    assert not any(r.get("event_id") in {"a" * 32, "b" * 32} for r in everything)
    assert normalize(error)[1] == []
    assert sentry_receiver.normalization_errors() == []
