"""``WIDGETTRACE_SENTRY_MODE=otlp``: spans over OTLP/HTTP to the DSN's endpoint, errors as events.

The app (``tests/peers/otlp_app.py``) runs under ``opentelemetry-instrument`` in its own process;
a real HTTP server on 127.0.0.1 stands in for a Sentry that ingests OTLP: it decodes the OTLP
protobuf bodies (opentelemetry-proto) and the Sentry envelopes, and also plays the downstream
service whose request headers show what the app propagates.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from peers.harness import (
    CapturedRequest,
    CaptureServer,
    PeerProcess,
    clean_env,
    envelope_items,
    wait_for,
)
from receivers.relay import normalize

from widgettrace.exporters.otlp import OTLP_TRACES_PATH, otlp_integration, otlp_traces_target

pytestmark = pytest.mark.timeout(120)

KIND_NAMES = {1: "INTERNAL", 2: "SERVER", 3: "CLIENT"}


@dataclass
class OtlpSpan:
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: str
    attributes: dict[str, Any]
    resource: dict[str, Any]


def _any_value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


def otlp_spans(requests_: list[CapturedRequest]) -> list[OtlpSpan]:
    spans = []
    for request in requests_:
        if OTLP_TRACES_PATH not in request.path:
            continue
        message = ExportTraceServiceRequest.FromString(request.body)
        for resource_spans in message.resource_spans:
            resource = {a.key: _any_value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    spans.append(
                        OtlpSpan(
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            name=span.name,
                            kind=KIND_NAMES.get(span.kind, str(span.kind)),
                            attributes={a.key: _any_value(a.value) for a in span.attributes},
                            resource=resource,
                        )
                    )
    return spans


def error_events(receiver: CaptureServer) -> list[dict[str, Any]]:
    return [p for t, p in envelope_items(receiver.snapshot()) if t == "event"]


@pytest.fixture(scope="module")
def run(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[CaptureServer, Path, dict[str, Any]]]:
    log_path = tmp_path_factory.mktemp("otlp") / "sentry.log"
    with CaptureServer() as receiver:
        env = clean_env(
            WIDGETTRACE_SENTRY_MODE="otlp",
            SENTRY_DSN=receiver.dsn,
            SENTRY_RELEASE="widgets@1.2.3",
            OTEL_SERVICE_NAME="otlp-app",
            WIDGETTRACE_LOG_PATH=str(log_path),
            OTEL_PYTHON_DISABLED_INSTRUMENTATIONS="widgettrace_functions,mcp",
            OTEL_TRACES_EXPORTER="none",
            OTEL_METRICS_EXPORTER="none",
            OTEL_LOGS_EXPORTER="none",
        )
        app = PeerProcess("otlp_app.py", [], env, instrument=True)
        try:
            assert requests.get(app.url + "/ok", timeout=30).status_code == 200
            assert requests.get(app.url + "/boom", timeout=30).status_code == 500
            assert requests.get(app.url + "/handled", timeout=30).status_code == 200
            call = requests.get(
                app.url + "/call", params={"url": receiver.url + "/downstream"}, timeout=30
            )
            assert call.status_code == 200
            flushed = requests.get(app.url + "/flush", timeout=30).json()
            assert wait_for(lambda: len(error_events(receiver)) >= 2, timeout=15)
            assert wait_for(lambda: len(otlp_spans(receiver.snapshot())) >= 7, timeout=15)
        finally:
            stderr = app.stop()
        flushed["stderr"] = stderr
        yield receiver, log_path, flushed


def test_otlp_endpoint_from_dsn() -> None:
    url, headers = otlp_traces_target("https://abc@o1.ingest.example.com/42")
    assert url == "https://o1.ingest.example.com/api/42/integration/otlp/v1/traces/"
    assert headers["X-Sentry-Auth"].startswith("Sentry sentry_key=abc,")
    integration = otlp_integration()
    assert integration.setup_otlp_traces_exporter is False
    assert integration.setup_propagator is False
    assert integration.capture_exceptions is False


def test_spans_arrive_as_otlp_protobuf(run: tuple[CaptureServer, Path, dict[str, Any]]) -> None:
    receiver, _, _ = run
    posts = [r for r in receiver.snapshot() if OTLP_TRACES_PATH in r.path]
    assert posts
    for post in posts:
        assert post.method == "POST"
        assert post.path == f"/api/1/{OTLP_TRACES_PATH}/"
        assert post.header_values("Content-Type") == ["application/x-protobuf"]
        (auth,) = post.header_values("X-Sentry-Auth")
        assert "sentry_key=public" in auth
    spans = otlp_spans(receiver.snapshot())
    names = {(s.name, s.kind) for s in spans}
    for expected in [
        ("GET /ok", "SERVER"),
        ("work", "INTERNAL"),
        ("GET /boom", "SERVER"),
        ("convert", "INTERNAL"),
        ("GET /handled", "SERVER"),
        ("GET /call", "SERVER"),
        ("GET", "CLIENT"),
    ]:
        assert expected in names, (expected, sorted(names))
    assert {s.resource.get("service.name") for s in spans} == {"otlp-app"}
    by_id = {s.span_id: s for s in spans}
    (work,) = [s for s in spans if s.name == "work"]
    assert by_id[work.parent_span_id].name == "GET /ok"
    # The exporter's own requests are not traced (no span for the OTLP endpoint or envelopes):
    # the one CLIENT span is the app's call to /downstream.
    (client,) = [s for s in spans if s.kind == "CLIENT"]
    url = client.attributes.get("url.full") or client.attributes.get("http.url")
    assert str(url).endswith("/downstream"), client.attributes


def test_errors_are_envelopes_exactly_once_linked_to_their_span(
    run: tuple[CaptureServer, Path, dict[str, Any]],
) -> None:
    receiver, log_path, _ = run
    events = error_events(receiver)
    types = sorted(e["exception"]["values"][-1]["type"] for e in events)
    assert types == ["KeyError", "ValueError"], types
    for event in events:
        assert normalize(event)[1] == []  # valid by Sentry's own rules (sentry-relay)
    # No Sentry-side transactions: spans only travel as OTLP.
    assert not [t for t, _ in envelope_items(receiver.snapshot()) if t == "transaction"]
    spans = otlp_spans(receiver.snapshot())
    (boom,) = [e for e in events if e["exception"]["values"][-1]["type"] == "ValueError"]
    (convert,) = [s for s in spans if s.name == "convert"]
    assert boom["contexts"]["trace"]["trace_id"] == convert.trace_id
    assert boom["contexts"]["trace"]["span_id"] == convert.span_id
    assert boom["exception"]["values"][-1]["mechanism"]["handled"] is False
    assert boom["release"] == "widgets@1.2.3"
    frames = boom["exception"]["values"][-1]["stacktrace"]["frames"]
    assert frames[-1]["function"] == "boom"
    (handled,) = [e for e in events if e["exception"]["values"][-1]["type"] == "KeyError"]
    (handled_server,) = [s for s in spans if s.name == "GET /handled"]
    assert handled["contexts"]["trace"]["span_id"] == handled_server.span_id
    assert handled["exception"]["values"][-1]["mechanism"]["handled"] is True
    # The local log tee got the same two events.
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    assert sorted(line["exception"]["values"][-1]["type"] for line in lines) == types


def test_our_composite_propagator_is_kept(run: tuple[CaptureServer, Path, dict[str, Any]]) -> None:
    receiver, _, flushed = run
    assert flushed["textmap"] == "MergingCompositePropagator", flushed
    assert flushed["textmap_members"] == [
        "TraceContextTextMapPropagator",
        "W3CBaggagePropagator",
        "SentryPropagator",
    ]
    (downstream,) = [r for r in receiver.snapshot() if r.path == "/downstream"]
    (traceparent,) = downstream.header_values("traceparent")
    (sentry_trace,) = downstream.header_values("sentry-trace")
    (baggage,) = downstream.header_values("baggage")
    spans = otlp_spans(receiver.snapshot())
    (client,) = [s for s in spans if s.kind == "CLIENT" and s.name == "GET"]
    assert traceparent.startswith(f"00-{client.trace_id}-{client.span_id}-")
    assert sentry_trace == f"{client.trace_id}-{client.span_id}-1"
    assert f"sentry-trace_id={client.trace_id}" in baggage
    assert "sentry-public_key=public" in baggage
    assert "sentry-release=widgets%401.2.3" in baggage
    assert "Failed to auto initialize" not in flushed["stderr"]
    for problem in ("internal error", "Overriding of current TracerProvider", "setting up"):
        assert problem not in flushed["stderr"], flushed["stderr"]


class _Settings:
    """The attributes configure_otlp_mode reads, for the fallback paths."""

    sentry_dsn: str | None = "http://public@127.0.0.1:9/1"
    sentry_mode = "otlp"


def test_without_dsn_falls_back_to_processor_mode(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from widgettrace.exporters import otlp, sentry

    calls: list[object] = []
    marker = object()

    def fake_configure_sentry(settings: object, resource: object) -> object:
        calls.append(settings)
        return marker

    monkeypatch.setattr(sentry, "configure_sentry", fake_configure_sentry)
    settings = _Settings()
    settings.sentry_dsn = None
    assert otlp.configure_otlp_mode(settings, None) == [marker]
    assert calls == [settings]
    assert "needs SENTRY_DSN" in caplog.text


def test_without_otlp_exporter_falls_back_to_processor_mode(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import sys

    from widgettrace.exporters import otlp, sentry

    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.http.trace_exporter", None)
    monkeypatch.setattr(sentry, "configure_sentry", lambda s, r: None)
    assert otlp.configure_otlp_mode(_Settings(), None) == []
    assert "opentelemetry-exporter-otlp-proto-http" in caplog.text
