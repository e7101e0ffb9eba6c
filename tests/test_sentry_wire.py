"""On the wire: HTTP to a Sentry-protocol receiver, the local log, both, Spotlight, and load."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import sentry_sdk
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind
from receivers.sentry_receiver import SentryReceiver
from test_sentry_support import make_settings

from widgettrace.exporters import _sentry_errors, _transactions
from widgettrace.exporters import sentry as sentry_exporter
from widgettrace.exporters.sentry import WidgetTraceSpanProcessor, configure_sentry
from widgettrace.instrumentation import scope
from widgettrace.instrumentation._config import Settings

RESOURCE = Resource.create({"service.name": "widgets-api", "service.version": "2.1.0"})


@contextmanager
def configured(settings: Settings) -> Iterator[tuple[TracerProvider, WidgetTraceSpanProcessor]]:
    processor = configure_sentry(settings, RESOURCE)
    assert isinstance(processor, WidgetTraceSpanProcessor)
    provider = TracerProvider(resource=RESOURCE, shutdown_on_exit=False)
    provider.add_span_processor(processor)
    try:
        yield provider, processor
    finally:
        provider.shutdown()
        _sentry_errors.uninstall()
        scope.set_error_sink(None)
        scope.clear()
        sentry_sdk.get_client().close(timeout=2)
        sentry_sdk.init(default_integrations=False, auto_enabling_integrations=False)


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[SentryReceiver]:
    # The receiver writes its response headers and body in two writes; without TCP_NODELAY
    # Nagle's algorithm and the client's delayed ACK add 40 ms to every request (~21 requests
    # a second instead of ~400 here). Real Sentry does not have this problem.
    from receivers import sentry_receiver

    monkeypatch.setattr(sentry_receiver._Handler, "disable_nagle_algorithm", True, raising=False)
    with SentryReceiver() as server:
        yield server


def _request_with_error(provider: TracerProvider) -> None:
    tracer = provider.get_tracer("wire")
    try:
        with (
            tracer.start_as_current_span(
                "GET /api/widgets/{id}",
                kind=SpanKind.SERVER,
                attributes={"http.request.method": "GET", "http.route": "/api/widgets/{id}"},
            ),
            tracer.start_as_current_span("convert", attributes={"widget.op": "widget.conversion"}),
        ):
            raise ValueError("conversion failed")
    except ValueError:
        pass


def test_with_a_dsn_errors_and_transactions_go_over_http(receiver: SentryReceiver) -> None:
    settings = make_settings(sentry_dsn=receiver.dsn, sentry_release=None)
    with configured(settings) as (provider, processor):
        _request_with_error(provider)
        processor.force_flush()
        receiver.wait_for(lambda r: r.events() and r.transactions(), timeout=10)
    (event,) = receiver.events()
    (tx,) = receiver.transactions()
    assert receiver.normalization_errors() == []
    assert event["release"] == tx["release"] == "2.1.0"  # service.version
    assert event["contexts"]["trace"]["trace_id"] == tx["contexts"]["trace"]["trace_id"]
    assert event["contexts"]["trace"]["span_id"] == tx["spans"][0]["span_id"]
    assert tx["spans"][0]["op"] == "widget.conversion"


def test_dsn_and_local_log_get_the_same_payloads(receiver: SentryReceiver, tmp_path: Path) -> None:
    log = tmp_path / "sentry.log"
    settings = make_settings(sentry_dsn=receiver.dsn, log_path=str(log))
    with configured(settings) as (provider, processor):
        _request_with_error(provider)
        processor.force_flush()
        receiver.wait_for(lambda r: r.events() and r.transactions(), timeout=10)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert sorted(line.get("type", "event") for line in lines) == ["event", "transaction"]
    wire_ids = {p["event_id"] for p in receiver.events() + receiver.transactions()}
    assert {line["event_id"] for line in lines} == wire_ids


def test_without_a_dsn_everything_goes_to_the_local_log(tmp_path: Path) -> None:
    log = tmp_path / "sentry.log"
    settings = make_settings(sentry_dsn=None, log_path=str(log))
    with configured(settings) as (provider, processor):
        _request_with_error(provider)
        processor.force_flush()
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    kinds = sorted(line.get("type", "event") for line in lines)
    assert kinds == ["event", "transaction"]
    from sentry_relay.processing import StoreNormalizer

    for line in lines:
        assert not StoreNormalizer(project_id=1).normalize_event(line).get("errors")


def test_no_dsn_no_log_no_spotlight_means_no_processor() -> None:
    assert configure_sentry(make_settings(sentry_dsn=None, log_path=None), RESOURCE) is None
    assert configure_sentry(replace(make_settings(), sentry_mode="off"), RESOURCE) is None


class _SpotlightHandler(BaseHTTPRequestHandler):
    bodies: list[bytes]

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        self.server.bodies.append(self.rfile.read(length))  # type: ignore[attr-defined]
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_spotlight_gets_a_copy_of_every_envelope(receiver: SentryReceiver) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SpotlightHandler)
    server.bodies = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/stream"
        settings = make_settings(sentry_dsn=receiver.dsn, sentry_spotlight=url)
        with configured(settings) as (provider, processor):
            _request_with_error(provider)
            processor.force_flush()
            receiver.wait_for(lambda r: r.events() and r.transactions(), timeout=10)
        bodies: list[bytes] = server.bodies  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()
    kinds = sorted(json.loads(body.split(b"\n")[1])["type"] for body in bodies)
    assert kinds == ["event", "transaction"]


def test_a_thousand_transactions_a_second_all_arrive(receiver: SentryReceiver) -> None:
    settings = make_settings(sentry_dsn=receiver.dsn)
    total, rate = 2000, 1000.0
    with configured(settings) as (provider, processor):
        tracer = provider.get_tracer("load")
        start = time.perf_counter()
        for i in range(total):
            with (
                tracer.start_as_current_span(
                    "GET /api/widgets/status", kind=SpanKind.SERVER, attributes={"i": i}
                ),
                tracer.start_as_current_span("lookup"),
            ):
                pass
            # Pace to the target rate (no busy loop: sleep off any lead).
            lead = start + (i + 1) / rate - time.perf_counter()
            if lead > 0:
                time.sleep(lead)
        processor.force_flush(60_000)
        receiver.wait_for(lambda r: len(r.transactions()) >= total, timeout=60)
    txs = receiver.transactions()
    assert len(txs) == total
    assert len({t["event_id"] for t in txs}) == total
    assert receiver.discarded() == {}
    assert receiver.normalization_errors() == []


def test_a_receiver_that_cannot_keep_up_gets_drops_counted(
    receiver: SentryReceiver, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("WARNING", logger="widgettrace")
    monkeypatch.setattr(sentry_exporter, "TRANSPORT_QUEUE_SIZE", 5)
    monkeypatch.setattr(_transactions, "BACKPRESSURE_WAIT_S", 0.05)
    settings = make_settings(sentry_dsn=receiver.dsn)
    receiver.set_fault("slow", delay=0.2)
    with configured(settings) as (provider, processor):
        tracer = provider.get_tracer("load")
        for _ in range(60):
            with tracer.start_as_current_span("job"):
                pass
        processor.force_flush(1000)
        receiver.set_fault(None)
        # The SDK sends its client report with a later envelope (or on flush).
        with tracer.start_as_current_span("after"):
            pass
        processor.force_flush(10_000)
        sentry_sdk.flush(timeout=10)
        receiver.wait_for(lambda r: r.discarded(), timeout=15)
    discarded = receiver.discarded()
    delivered = len(receiver.transactions())
    lost = discarded.get(("queue_overflow", "transaction"), 0)
    assert lost > 0
    assert delivered + lost == 61
    assert "dropped since the last such line (queue_overflow: " in caplog.text


def test_a_backlog_left_at_exit_is_logged_not_lost_silently(
    receiver: SentryReceiver, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("WARNING", logger="widgettrace")
    monkeypatch.setattr(sentry_exporter, "SHUTDOWN_FLUSH_S", 0.3)
    receiver.set_fault("slow", delay=1.0)
    settings = make_settings(sentry_dsn=receiver.dsn)
    try:
        with configured(settings) as (provider, _processor):
            tracer = provider.get_tracer("exit")
            for _ in range(20):
                with tracer.start_as_current_span("job"):
                    pass
            # configured() shuts the provider down on exit, with a receiver too slow to drain.
    finally:
        receiver.set_fault(None)
    lines = [r.getMessage() for r in caplog.records if "not delivered" in r.getMessage()]
    assert len(lines) == 1, caplog.text
    assert "they are lost" in lines[0]
