"""Nothing widgettrace keeps outlives the request: no Task, exception or frame held past it.

FastAPI's own suite checks that a context an application keeps (``context.get_current()`` saved
inside a failed request) does not keep that request alive. widgettrace once stored the asyncio
Task that activated a span in the OTel context; the Task's own context held sentry-sdk Dedupe's
last-seen exception, whose traceback held the frames and the Request: one leak per failed
request. These tests repeat FastAPI's check under our instrumentation.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref
from typing import Any

from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from opentelemetry import context as context_api
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
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
