"""FastAPI: a route's exception is one Sentry error linked to the OTel server span."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI, HTTPException
from fastapi.testclient import TestClient
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from test_sentry_support import Pipeline, assert_valid, sentry_pipeline

from widgettrace.instrumentation import scope


class ConversionError(Exception):
    pass


def _convert(widget_id: str) -> None:
    raise ConversionError(f"cannot convert {widget_id}")


@pytest.fixture
def app_and_pipeline() -> Iterator[tuple[TestClient, Pipeline]]:
    with sentry_pipeline() as pipeline:
        app = FastAPI()

        @app.get("/api/widgets/status")
        async def status() -> dict[str, str]:
            return {"status": "ok"}

        @app.get("/api/widgets/{widget_id}/convert")
        async def convert(widget_id: str) -> dict[str, str]:
            scope.set_user(id="u-7")
            scope.add_breadcrumb("converting", category="convert")
            _convert(widget_id)
            return {}

        @app.get("/api/widgets/{widget_id}/sync")
        def convert_sync(widget_id: str) -> dict[str, str]:
            _convert(widget_id)
            return {}

        @app.get("/api/widgets/{widget_id}")
        async def get_widget(widget_id: str) -> dict[str, str]:
            raise HTTPException(status_code=404, detail="no such widget")

        FastAPIInstrumentor.instrument_app(
            app, tracer_provider=pipeline.provider, exclude_spans=["send", "receive"]
        )
        try:
            with TestClient(app, raise_server_exceptions=False) as client:
                yield client, pipeline
        finally:
            FastAPIInstrumentor.uninstrument_app(app)


def test_route_exception_is_one_event_linked_to_the_server_span(
    app_and_pipeline: tuple[TestClient, Pipeline],
) -> None:
    client, p = app_and_pipeline
    response = client.get("/api/widgets/w-1/convert")
    assert response.status_code == 500
    p.flush()
    (event,) = p.transport.events()
    (tx,) = p.transport.transactions()
    assert_valid([event, tx])
    server = tx["contexts"]["trace"]
    assert tx["transaction"] == "GET /api/widgets/{widget_id}/convert"
    assert server["op"] == "http.server"
    assert server["status"] == "internal_error"
    assert event["contexts"]["trace"]["trace_id"] == server["trace_id"]
    assert event["contexts"]["trace"]["span_id"] == server["span_id"]
    assert event["transaction"] == "GET /api/widgets/{widget_id}/convert"
    assert event["user"] == {"id": "u-7"}
    assert any(c.get("message") == "converting" for c in event["breadcrumbs"]["values"])
    frames = event["exception"]["values"][-1]["stacktrace"]["frames"]
    assert frames[-1]["function"] == "_convert"
    assert frames[-1]["in_app"] is True
    assert [f["function"] for f in frames if f["in_app"]][-2:] == ["convert", "_convert"]


def test_sync_route_exception_is_reported_once(
    app_and_pipeline: tuple[TestClient, Pipeline],
) -> None:
    client, p = app_and_pipeline
    assert client.get("/api/widgets/w-2/sync").status_code == 500
    p.flush()
    events = p.transport.events()
    assert len(events) == 1
    (tx,) = p.transport.transactions()
    assert events[0]["contexts"]["trace"]["span_id"] == tx["contexts"]["trace"]["span_id"]


def test_http_errors_the_app_handles_are_not_reported(
    app_and_pipeline: tuple[TestClient, Pipeline],
) -> None:
    client, p = app_and_pipeline
    assert client.get("/api/widgets/missing").status_code == 404
    assert client.get("/api/widgets/status").status_code == 200
    p.flush()
    assert p.transport.events() == []
    txs = {t["transaction"]: t for t in p.transport.transactions()}
    assert txs["GET /api/widgets/{widget_id}"]["contexts"]["trace"]["status"] == "not_found"
    assert txs["GET /api/widgets/status"]["contexts"]["trace"]["status"] == "ok"
    assert_valid(list(txs.values()))
