"""Nothing widgettrace keeps outlives the request: no Task, exception or frame held past it.

FastAPI's own suite checks that a context an application keeps (``context.get_current()`` saved
inside a failed request) does not keep that request alive. widgettrace once stored the asyncio
Task that activated a span in the OTel context; the Task's own context held sentry-sdk Dedupe's
last-seen exception, whose traceback held the frames and the Request: one leak per failed
request. These tests repeat FastAPI's check under our instrumentation.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from opentelemetry import context as context_api
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from receivers.sentry_receiver import SentryReceiver
from test_distro import run_instrumented
from test_sentry_support import sentry_pipeline

from widgettrace.instrumentation import scope


def _failing_app(saved: list[Any], refs: list[weakref.ref[Any]]) -> FastAPI:
    app = FastAPI()

    @app.post("/")
    async def endpoint(request: Request) -> None:
        await request.body()
        saved.append(context_api.get_current())
        refs.append(weakref.ref(request))
        raise ValueError("endpoint failed")

    @app.post("/sync")
    def sync_endpoint(request: Request) -> None:
        saved.append(context_api.get_current())
        refs.append(weakref.ref(request))
        raise ValueError("sync endpoint failed")

    return app


def _assert_nothing_retained(path: str) -> None:
    saved: list[Any] = []
    refs: list[weakref.ref[Any]] = []
    with sentry_pipeline() as pipeline:
        app = _failing_app(saved, refs)
        FastAPIInstrumentor.instrument_app(app, tracer_provider=pipeline.provider)
        try:
            with TestClient(app, raise_server_exceptions=False) as client:
                response = client.post(path, json={"name": "request data"})
                assert response.status_code == 500
        finally:
            FastAPIInstrumentor.uninstrument_app(app)
        pipeline.flush()
        # The error was reported (so Dedupe and our sink did see the exception).
        assert len(pipeline.transport.events()) == 1
    gc.collect()
    assert saved, "the endpoint did not run"
    # The request is gone...
    assert refs[0]() is None, "the failed request is still alive"
    # ...and what the application kept holds no Task or exception of the request.
    for value in dict(saved[0]).values():
        assert not isinstance(value, asyncio.Task | BaseException), value


def test_retained_context_does_not_keep_failed_request_alive() -> None:
    _assert_nothing_retained("/")


def test_retained_context_does_not_keep_failed_sync_request_alive() -> None:
    _assert_nothing_retained("/sync")


def test_span_owner_holds_no_task() -> None:
    """What the span context managers store to tell who activated a span is not the Task."""
    owners: list[object] = []

    async def main() -> None:
        owners.append(scope.span_owner())
        assert scope.span_owner() == owners[0]  # the same task compares equal

    asyncio.run(main())
    gc.collect()
    assert not isinstance(owners[0], asyncio.Task)
    other: list[object] = []
    thread = threading.Thread(target=lambda: other.append(scope.span_owner()))
    thread.start()
    thread.join()
    assert other[0] != scope.span_owner()


# --- an application that also calls sentry_sdk.init() itself --------------------------------

_OWN_SENTRY_APP = r"""
import sys
import sentry_sdk
from fastapi import FastAPI, HTTPException
from fastapi.testclient import TestClient

from sentry_sdk.integrations.fastapi import FastApiIntegration
from sentry_sdk.integrations.starlette import StarletteIntegration

# What an application migrating to widgettrace still does: its own init and sampling, here
# with FastAPI's own test's choice of integrations (no Dedupe to hide a second report).
sentry_sdk.init(
    dsn=sys.argv[1],
    traces_sample_rate=float(sys.argv[2]),
    default_integrations=sys.argv[3] == "default",
    auto_enabling_integrations=False,
    integrations=[StarletteIntegration(), FastApiIntegration()],
)
app = FastAPI()

@app.get("/items/{value}")
def endpoint(value: int) -> int:
    if value == 2:
        raise ValueError("endpoint failed")
    if value == 3:
        raise HTTPException(503, "handled")
    return value

@app.get("/async/{value}")
async def async_endpoint(value: int) -> int:
    if value == 2:
        raise KeyError("async endpoint failed")
    return value

client = TestClient(app, raise_server_exceptions=False)
assert client.get("/items/1").status_code == 200
assert client.get("/items/2").status_code == 500
assert client.get("/items/3").status_code == 503
assert client.get("/async/2").status_code == 500
sentry_sdk.flush()
print("done")
"""


@pytest.mark.parametrize("integrations", ["default", "none"])
@pytest.mark.parametrize("sampling", ["0.0", "1.0"])
def test_own_sentry_init_gets_each_error_once(
    tmp_path: Path, sentry_receiver: SentryReceiver, sampling: str, integrations: str
) -> None:
    script = tmp_path / "own_sentry.py"
    script.write_text(_OWN_SENTRY_APP)
    result = run_instrumented(
        tmp_path,
        {"SENTRY_DSN": sentry_receiver.dsn, "OTEL_SERVICE_NAME": "own-sentry"},
        ["python", str(script), sentry_receiver.dsn, sampling, integrations],
    )
    assert result.returncode == 0, result.stderr
    assert "done" in result.stdout
    sentry_receiver.wait_for(lambda r: len(r.payloads("event")) >= 3, timeout=10)
    time.sleep(1.0)  # a duplicate would arrive within this
    events = sentry_receiver.payloads("event")
    messages = sorted(e["exception"]["values"][-1]["value"] for e in events)
    # The two unhandled errors and the 503 the application's Starlette integration reports
    # (5xx HTTPException), each once.
    assert messages == ["'async endpoint failed'", "endpoint failed", "handled"], messages


def test_long_lived_thread_does_not_keep_the_failed_frame() -> None:
    """A worker thread that lives on after a reported error does not keep the error's frames.

    sentry-sdk's Dedupe integration keeps the last exception in a contextvar of the thread that
    captured it, i.e. for the thread's whole life; widgettrace's own one-report-per-exception
    rule (a mark on the exception) does that job without keeping anything.
    """
    refs: list[weakref.ref[Any]] = []
    failed = threading.Event()
    release = threading.Event()

    class Payload:
        pass

    with sentry_pipeline() as pipeline:
        tracer = pipeline.provider.get_tracer("jobs")

        def job() -> None:
            payload = Payload()
            refs.append(weakref.ref(payload))
            with tracer.start_as_current_span("job"):
                raise ValueError("job failed")

        def worker() -> None:
            with contextlib.suppress(ValueError):
                job()
            failed.set()
            release.wait(10)  # the thread lives on, like a pool's worker

        thread = threading.Thread(target=worker)
        thread.start()
        try:
            assert failed.wait(10)
            pipeline.flush()
            assert len(pipeline.transport.events()) == 1
            gc.collect()
            alive = refs[0]() is not None
        finally:
            release.set()
            thread.join(10)
    assert not alive, "the failed job's frame (and its locals) outlived it"


def test_a_new_exception_is_not_taken_for_an_old_one_at_the_same_address() -> None:
    """Exceptions that refuse our mark are remembered by id: a later exception that happens to
    get the same id (the old one was freed) must still be reported, not silently dropped."""

    class Frozen(Exception):
        def __setattr__(self, name: str, value: object) -> None:
            raise AttributeError("frozen")

    class Normal(Exception):
        pass

    old = Frozen("refuses attributes")
    old_id = id(old)
    assert scope.mark_reported(old)
    del old
    new = Normal("a different error")
    tries = 0
    while id(new) != old_id and tries < 10_000:  # CPython reuses the freed block at once
        new = Normal("a different error")
        tries += 1
    if id(new) != old_id:  # pragma: no cover
        pytest.skip("the allocator did not reuse the address")
    assert not scope.was_reported(new)


def test_an_inactive_client_capturing_first_does_not_hide_the_error() -> None:
    """Another integration capturing into a client that sends nowhere must not take the
    report over (sentry-sdk's MCP integration does this when only patched, never initialised)."""
    from widgettrace.exporters import sentry as wt_sentry

    wt_sentry._add_global_dedupe()
    reports: list[scope.ErrorReport] = []
    saved = scope.get_error_sink()
    scope.set_error_sink(reports.append)
    try:
        import sentry_sdk

        sentry_sdk.init(default_integrations=False, auto_enabling_integrations=False)
        assert sentry_sdk.get_client().transport is None  # sends nowhere
        exc = RuntimeError("handler crashed")
        sentry_sdk.capture_exception(exc)
        assert not scope.was_reported(exc)
        scope.capture_exception(exc)
        assert [r.exception for r in reports] == [exc]
    finally:
        scope.set_error_sink(saved)
