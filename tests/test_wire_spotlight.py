"""Streamed spans, log items and sessions reach a real Spotlight (no DSN), item by item valid."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest
import sentry_sdk
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind
from receivers.span_v2 import assert_valid
from receivers.spotlight import SpotlightEnvelope, SpotlightServer, items_of
from test_sentry_support import make_settings

import widgettrace
from widgettrace.exporters import _sentry_errors
from widgettrace.exporters.sentry import configure_sentry
from widgettrace.instrumentation import scope

RESOURCE = Resource.create({"service.name": "widgets-api", "service.version": "2.1.0"})


@pytest.mark.parametrize("spans", ["stream", "transactions"])
def test_spotlight_gets_spans_logs_and_sessions(spotlight: SpotlightServer, spans: str) -> None:
    spotlight.clear()
    settings = replace(make_settings(sentry_spotlight=spotlight.url), sentry_spans=spans)
    processor = configure_sentry(settings, RESOURCE)
    assert processor is not None
    provider = TracerProvider(resource=RESOURCE, shutdown_on_exit=False)
    provider.add_span_processor(processor)
    for companion in processor.companions:  # type: ignore[attr-defined]
        provider.add_span_processor(companion)
    tracer = provider.get_tracer("spotlight")
    try:
        with (
            widgettrace.session(user="u-1", name="Block 5 QA agent"),
            tracer.start_as_current_span(
                "GET /w", kind=SpanKind.SERVER, attributes={"http.route": "/w"}
            ),
            tracer.start_as_current_span("convert"),
        ):
            logging.getLogger("widgets").warning("slow conversion")
        provider.force_flush()
        sentry_sdk.flush(timeout=5)
        kind = "span" if spans == "stream" else "transaction"

        def complete(envelopes: list[SpotlightEnvelope]) -> bool:
            return all(items_of(envelopes, k) for k in (kind, "log", "session", "sessions"))

        envelopes = spotlight.wait_for(complete, timeout=20)
    finally:
        provider.shutdown()
        _sentry_errors.uninstall()
        scope.set_error_sink(None)
        scope.clear()
        sentry_sdk.get_client().close(timeout=2)
        sentry_sdk.init(default_integrations=False, auto_enabling_integrations=False)
    if spans == "stream":
        streamed = [s for p in items_of(envelopes, "span") for s in p["items"]]
        assert {s["name"] for s in streamed} == {"GET /w", "convert"}
        for span in streamed:
            assert_valid("span", span)
    else:
        (txn,) = items_of(envelopes, "transaction")
        assert txn["transaction"] == "GET /w" and len(txn["spans"]) == 1
    (log,) = [entry for p in items_of(envelopes, "log") for entry in p["items"]]
    assert log["body"] == "slow conversion"
    assert_valid("log", log)
    assert_valid("session", items_of(envelopes, "session")[0])
    assert_valid("sessions", items_of(envelopes, "sessions")[0])
