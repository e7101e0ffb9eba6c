"""Security and audit events: the API, the automatic events of a FastAPI app, the chained file.

In process: the real Sentry SDK configured by widgettrace (``sentry_pipeline``) with a capturing
transport, a real FastAPI app. End to end: the example platform's service (401, 403, 422 and an
audited admin action) sending to our Sentry-protocol receiver, events checked by sentry-relay,
and ``widgettrace audit verify`` run as a real command on the file it wrote.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from fastapi import FastAPI, HTTPException
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from pydantic import BaseModel
from receivers.platform import running_platform
from receivers.relay import normalize
from receivers.sentry_receiver import SentryReceiver
from test_sentry_support import sentry_pipeline

from widgettrace import audit_event
from widgettrace.exporters.audit_log import AuditLog, verify
from widgettrace.instrumentation._config import reset_settings
from widgettrace.instrumentation.audit import instrument_app

BIN = Path(sys.executable).parent


@pytest.fixture
def audit_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    path = tmp_path / "audit.log"
    monkeypatch.setenv("WIDGETTRACE_AUDIT_PATH", str(path))
    reset_settings()
    yield path
    monkeypatch.delenv("WIDGETTRACE_AUDIT_PATH")
    reset_settings()


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _verify_cli(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "widgettrace"), "audit", "verify", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_audit_event_to_sentry_and_file_even_when_unsampled(
    audit_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="widgettrace.audit")
    with sentry_pipeline(sampler=ALWAYS_OFF) as pipeline:
        with pipeline.tracer.start_as_current_span("request") as span:
            assert not span.is_recording()  # the trace is sampled away...
            audit_event(
                "widget.delete",
                "denied",
                actor="tenant-7",
                resource="w-1",
                reason="not the owner",
                category="security",
                api_key="sk-live-123",
                widgets=3,
            )
        audit_event("registry.compact", "success", actor="admin-1", resource="registry")
        assert pipeline.transport.wait_for(lambda t: len(t.events()) == 2)
        denied, done = pipeline.transport.events()  # ...the audit events are not
    assert denied["level"] == "warning"
    assert denied["message"] == "security: widget.delete denied (not the owner)"
    assert denied["fingerprint"] == ["audit", "security", "widget.delete", "denied"]
    assert denied["tags"]["category"] == "security"
    assert denied["tags"]["audit.actor"] == "tenant-7"
    assert denied["tags"]["audit.resource"] == "w-1"
    assert denied["contexts"]["audit"]["attributes"] == {
        "api_key": "[Filtered]",
        "widgets": 3,
    }
    assert denied["contexts"]["trace"]["trace_id"] == format(
        span.get_span_context().trace_id, "032x"
    )
    assert done["level"] == "info" and done["tags"]["category"] == "audit"
    for event in (denied, done):
        assert normalize(event)[1] == []
    lines = _lines(audit_path)
    assert [(x["seq"], x["action"], x["outcome"]) for x in lines] == [
        (1, "widget.delete", "denied"),
        (2, "registry.compact", "success"),
    ]
    assert lines[0]["attributes"]["api_key"] == "[Filtered]"
    # The Sentry events carry the trail's anchor (seq + hash).
    assert denied["contexts"]["audit"]["hash"] == lines[0]["hash"]
    assert done["contexts"]["audit"]["seq"] == 2
    # A log record too (Sentry logs, once on), kept out of the app's own handlers.
    records = [
        (r.levelname, r.getMessage()) for r in caplog.records if r.name == "widgettrace.audit"
    ]
    assert records == [
        ("WARNING", "security: widget.delete denied (not the owner)"),
        ("INFO", "audit: registry.compact success"),
    ]
    assert logging.getLogger("widgettrace.audit").propagate is False


def test_chain_detects_edited_removed_and_reordered_lines(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    log = AuditLog(path)
    for n in range(5):
        log.append({"action": f"a{n}", "outcome": "success", "actor": "u"})
    assert verify(path).ok
    ok = _verify_cli(path)
    assert ok.returncode == 0, ok.stdout
    assert "5 line(s), chain intact; head seq 5" in ok.stdout
    original = path.read_text().splitlines(keepends=True)

    path.write_text("".join(original).replace('"actor":"u"', '"actor":"mallory"', 1))
    edited = _verify_cli(path)
    assert edited.returncode == 1
    assert "line 1: hash mismatch (the line was edited)" in edited.stdout

    path.write_text("".join(original[:2] + original[3:]))
    removed = _verify_cli(path)
    assert removed.returncode == 1
    assert "line 3: seq 4, expected 3" in removed.stdout
    assert "line 3: prev does not match" in removed.stdout

    path.write_text("".join([original[1], original[0], *original[2:]]))
    assert not verify(path).ok

    # Appending after damage keeps chaining (the damage stays visible).
    path.write_text("".join(original))
    AuditLog(path).append({"action": "a5", "outcome": "success"})
    assert verify(path).ok and verify(path).lines == 6


def test_chain_survives_concurrent_processes(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    code = (
        "import sys; from widgettrace.exporters.audit_log import AuditLog\n"
        "log = AuditLog(sys.argv[1])\n"
        "for n in range(50): log.append({'action': sys.argv[2], 'outcome': 'success'})\n"
    )
    writers = [subprocess.Popen([sys.executable, "-c", code, str(path), f"p{n}"]) for n in range(4)]
    assert [w.wait(timeout=60) for w in writers] == [0, 0, 0, 0]
    result = verify(path)
    assert result.ok, result.problems
    assert result.lines == 200


class _Body(BaseModel):
    name: str


def _fastapi_app() -> FastAPI:
    app = FastAPI()
    instrument_app(app)

    @app.get("/private")
    async def private() -> dict[str, str]:
        raise HTTPException(401, "login first")

    @app.get("/admin")
    async def admin() -> dict[str, str]:
        raise HTTPException(403, "admins only")

    @app.post("/widgets")
    async def create(body: _Body) -> dict[str, str]:
        return {"name": body.name}

    @app.get("/files")
    async def files() -> dict[str, str]:
        raise PermissionError("registry is read-only")

    @app.get("/ok")
    async def ok() -> dict[str, str]:
        return {"ok": "yes"}

    return app


def test_fastapi_denials_validation_and_permission_errors(audit_path: Path) -> None:
    with sentry_pipeline() as pipeline:
        client = TestClient(_fastapi_app(), raise_server_exceptions=False)
        assert client.get("/private").status_code == 401
        assert client.get("/admin").status_code == 403
        assert client.post("/widgets", json={"nope": 1}).status_code == 422
        assert client.get("/files").status_code == 500
        assert client.get("/ok").status_code == 200
        assert client.post("/widgets", json={"name": "w"}).status_code == 200
        assert pipeline.transport.wait_for(lambda t: len(t.events()) >= 4)
        time.sleep(0.2)
        events = [e for e in pipeline.transport.events() if e.get("logger") == "widgettrace.audit"]
    seen = [
        (e["tags"]["audit.action"], e["tags"]["audit.outcome"], e["contexts"]["audit"]["reason"])
        for e in events
    ]
    assert seen == [
        ("GET /private", "denied", "401 Unauthorized"),
        ("GET /admin", "denied", "403 Forbidden"),
        ("POST /widgets", "failure", seen[2][2]),
        ("GET /files", "failure", "PermissionError: registry is read-only"),
    ]
    assert seen[2][2].startswith("RequestValidationError")
    assert {e["tags"]["category"] for e in events} == {"security"}
    assert len(_lines(audit_path)) == 4 and verify(audit_path).ok


def test_example_service_audit_trail(tmp_path: Path, sentry_receiver: SentryReceiver) -> None:
    log, trail = tmp_path / "sentry.log", tmp_path / "audit.log"
    with running_platform(
        tmp_path,
        SENTRY_DSN=sentry_receiver.dsn,
        WIDGETTRACE_LOG_PATH=str(log),
        WIDGETTRACE_AUDIT_PATH=str(trail),
        WIDGET_ADMIN_TOKEN="s3cret",
    ) as api:
        base: str = api.url  # type: ignore[attr-defined]
        url = f"{base}/api/admin/registry/compact"
        headers = {"X-Tenant": "tenant-9"}
        assert requests.post(url, headers=headers, timeout=10).status_code == 401
        wrong = {**headers, "Authorization": "Bearer guess"}
        assert requests.post(url, headers=wrong, timeout=10).status_code == 403
        right = {**headers, "Authorization": "Bearer s3cret"}
        assert requests.post(url, headers=right, timeout=10).status_code == 200
        bad = requests.post(f"{base}/api/widgets/discover", json={"query": ""}, timeout=10)
        assert bad.status_code == 422
        sentry_receiver.wait_for(
            lambda r: sum(e.get("logger") == "widgettrace.audit" for e in r.events()) >= 4,
            timeout=15,
        )
    events = [e for e in sentry_receiver.events() if e.get("logger") == "widgettrace.audit"]
    summary = sorted((e["tags"]["category"], e["message"]) for e in events)
    assert summary == [
        ("audit", "audit: registry.compact success"),
        ("security", "security: POST /api/admin/registry/compact denied (401 Unauthorized)"),
        ("security", "security: POST /api/admin/registry/compact denied (403 Forbidden)"),
        ("security", summary[3][1]),
    ]
    assert summary[3][1].startswith("security: POST /api/widgets/discover failure (Request")
    done = next(e for e in events if e["tags"]["category"] == "audit")
    assert done["tags"]["audit.actor"] == "tenant-9"  # from the request's set_user
    assert sentry_receiver.normalization_errors() == []
    local = [json.loads(line) for line in log.read_text().splitlines()]
    assert sum(r.get("logger") == "widgettrace.audit" for r in local) == 4
    assert [x["seq"] for x in _lines(trail)] == [1, 2, 3, 4]
    checked = _verify_cli(trail)
    assert checked.returncode == 0, checked.stdout
