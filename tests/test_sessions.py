"""Release-health sessions: request aggregates for servers, explicit and per-block sessions."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import sentry_sdk
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind, Status, StatusCode
from receivers.sentry_receiver import SentryReceiver
from receivers.span_v2 import assert_valid, known_category
from test_sentry_support import DSN, CapturingTransport, make_settings

import widgettrace
from widgettrace.exporters import _sentry_errors
from widgettrace.exporters.sentry import configure_sentry
from widgettrace.instrumentation import scope
from widgettrace.instrumentation._config import Settings

RESOURCE = Resource.create({"service.name": "agents", "service.version": "3.0.0"})


@contextmanager
def pipeline(settings: Settings, transport: Any = None) -> Iterator[TracerProvider]:
    processor = configure_sentry(settings, RESOURCE, transport=transport)
    assert processor is not None
    provider = TracerProvider(resource=RESOURCE, shutdown_on_exit=False)
    provider.add_span_processor(processor)
    for companion in processor.companions:  # type: ignore[attr-defined]
        provider.add_span_processor(companion)
    try:
        yield provider
    finally:
        provider.shutdown()
        _sentry_errors.uninstall()
        scope.set_error_sink(None)
        scope.clear()
        sentry_sdk.get_client().close(timeout=2)
        sentry_sdk.init(default_integrations=False, auto_enabling_integrations=False)


def _items(transport: CapturingTransport, kind: str) -> list[dict[str, Any]]:
    return [
        json.loads(item.get_bytes())
        for envelope in transport.envelopes
        for item in envelope.items
        if item.type == kind
    ]


def _request(tracer: Any, status: int | None = 200, raise_: bool = False) -> None:
    attrs = {"http.request.method": "GET", "http.route": "/w"}
    if status is not None:
        attrs["http.response.status_code"] = status
    try:
        with tracer.start_as_current_span("GET /w", kind=SpanKind.SERVER, attributes=attrs):
            if raise_:
                raise RuntimeError("handler crashed")
    except RuntimeError:
        pass


def test_server_requests_become_per_minute_aggregates() -> None:
    transport = CapturingTransport(DSN)
    with pipeline(make_settings(sentry_dsn=DSN), transport) as provider:
        tracer = provider.get_tracer("server")
        for _ in range(3):
            _request(tracer)
        _request(tracer, status=503)
        _request(tracer, status=None, raise_=True)
        # A child SERVER span with a local parent is not a request of its own.
        with tracer.start_as_current_span("outer"):
            tracer.start_span("inner", kind=SpanKind.SERVER).end()
        provider.force_flush()
        (aggregate,) = _items(transport, "sessions")
    assert_valid("sessions", aggregate)
    assert aggregate["attrs"] == {"release": "widgets@1.0", "environment": "test"}
    totals = {
        key: sum(b.get(key, 0) for b in aggregate["aggregates"])
        for key in ("exited", "errored", "crashed")
    }
    assert totals == {"exited": 3, "errored": 1, "crashed": 1}
    assert known_category("session")


def test_explicit_sessions_end_exited_errored_crashed_or_abnormal() -> None:
    transport = CapturingTransport(DSN)
    with pipeline(make_settings(sentry_dsn=DSN), transport) as provider:
        tracer = provider.get_tracer("agent")
        with widgettrace.session(user="u-1", name="Block 5 QA agent"):
            pass
        with widgettrace.session(user="u-2", name="retrying agent"):
            try:
                with tracer.start_as_current_span("step"):
                    raise ValueError("one bad step")
            except ValueError:
                pass
        with pytest.raises(RuntimeError), widgettrace.session(user={"id": "u-3"}):
            raise RuntimeError("agent died")
        with pytest.raises(KeyboardInterrupt), widgettrace.session(user="u-4"):
            raise KeyboardInterrupt
        provider.force_flush()
        sessions = _items(transport, "session")
    by_user = {s["did"]: s for s in sessions}
    assert {u: s["status"] for u, s in by_user.items()} == {
        "u-1": "exited",
        "u-2": "errored",
        "u-3": "crashed",
        "u-4": "abnormal",
    }
    assert by_user["u-2"]["errors"] == 1
    for update in sessions:
        assert_valid("session", update)
        assert update["attrs"] == {"release": "widgets@1.0", "environment": "test"}
        assert update["duration"] >= 0
        # The name is ours, not Sentry's: it never leaves the process.
        assert "name" not in update


def test_without_a_release_no_session_is_sent_and_one_line_says_why(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Nowhere for the SDK to find one either: not a git checkout, no CI/PaaS variables.
    monkeypatch.chdir(tmp_path)
    for var in (
        "SENTRY_RELEASE",
        "HEROKU_BUILD_COMMIT",
        "HEROKU_SLUG_COMMIT",
        "SOURCE_VERSION",
        "CODEBUILD_RESOLVED_SOURCE_VERSION",
        "CIRCLE_SHA1",
        "GAE_DEPLOYMENT_ID",
        "K_REVISION",
    ):
        monkeypatch.delenv(var, raising=False)
    transport = CapturingTransport(DSN)
    settings = make_settings(sentry_dsn=DSN, sentry_release=None)
    resource_less = Resource.create({"service.name": "agents"})
    processor = configure_sentry(settings, resource_less, transport=transport)
    assert processor is not None
    try:
        with caplog.at_level(logging.INFO, logger="widgettrace"):
            with widgettrace.session(user="u"):
                pass
            with widgettrace.session(user="v"):
                pass
        sentry_sdk.flush(timeout=2)
    finally:
        processor.shutdown()
        _sentry_errors.uninstall()
        scope.set_error_sink(None)
        sentry_sdk.get_client().close(timeout=2)
        sentry_sdk.init(default_integrations=False, auto_enabling_integrations=False)
    assert _items(transport, "session") == []
    assert sum("need a release" in r.getMessage() for r in caplog.records) == 1


def test_sessions_off_sends_none() -> None:
    transport = CapturingTransport(DSN)
    with pipeline(make_settings(sentry_dsn=DSN, sessions="off"), transport) as provider:
        _request(provider.get_tracer("s"))
        with widgettrace.session(user="u") as sess:
            assert sess is None
        provider.force_flush()
    assert _items(transport, "session") == _items(transport, "sessions") == []


def test_blocks_mode_wraps_each_cascade_block_in_a_session() -> None:
    from widgettrace.instrumentation import api

    transport = CapturingTransport(DSN)
    with pipeline(make_settings(sentry_dsn=DSN, sessions="blocks"), transport) as provider:
        api.set_tracer_provider(provider)
        try:
            with widgettrace.agent_block_span("planner", model="gpt-4o"):
                pass
            with (
                widgettrace.agent_block_span("coder"),
                widgettrace.llm_call_span("gpt-4o") as llm,
            ):
                llm.set_status(Status(StatusCode.ERROR))
            with pytest.raises(RuntimeError), widgettrace.agent_block_span("reviewer"):
                raise RuntimeError("block failed")
            # Not a block: no session of its own.
            with widgettrace.span("helper"):
                pass
        finally:
            api.set_tracer_provider(None)
        provider.force_flush()
        sessions = _items(transport, "session")
    assert sorted(s["status"] for s in sessions) == ["crashed", "errored", "exited"]
    for update in sessions:
        assert_valid("session", update)


def test_local_log_keeps_sessions_with_their_name_and_tail_shows_them(tmp_path: Path) -> None:
    import contextlib
    import io

    from widgettrace.cli import main

    log = tmp_path / "sentry.log"
    with pipeline(replace(make_settings(), log_path=str(log))) as provider:
        with widgettrace.session(user="u-1", name="Block 5 QA agent"):
            pass
        _request(provider.get_tracer("s"), status=500)
        provider.force_flush()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and "sessions" not in log.read_text():
            time.sleep(0.05)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    (single,) = [line for line in lines if line.get("type") == "session"]
    assert single["name"] == "Block 5 QA agent" and single["status"] == "exited"
    (aggregate,) = [line for line in lines if line.get("type") == "sessions"]
    assert aggregate["aggregates"][0]["errored"] == 1
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main(["tail", "--color", "never", str(log)])
    assert "SESSION  Block 5 QA agent  exited" in out.getvalue()
    assert "errored=1" in out.getvalue()


def test_sessions_reach_the_receiver_over_http(sentry_receiver: SentryReceiver) -> None:
    with pipeline(make_settings(sentry_dsn=sentry_receiver.dsn)) as provider:
        with widgettrace.session(user="u-1", name="job"):
            pass
        _request(provider.get_tracer("s"))
        provider.force_flush()
        sentry_receiver.wait_for(
            lambda r: r.payloads("session") and r.payloads("sessions"), timeout=10
        )
    assert_valid("session", sentry_receiver.payloads("session")[0])
    assert_valid("sessions", sentry_receiver.payloads("sessions")[0])
