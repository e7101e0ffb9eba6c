"""Python logging records as Sentry log items, with the OTel trace and span ids."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import sentry_sdk
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from receivers.sentry_receiver import SentryReceiver
from receivers.span_v2 import assert_valid, known_category
from test_sentry_support import DSN, CapturingTransport, make_settings

from widgettrace.exporters import _sentry_errors
from widgettrace.exporters.sentry import configure_sentry
from widgettrace.instrumentation import scope
from widgettrace.instrumentation._config import Settings

RESOURCE = Resource.create({"service.name": "widgets-api", "service.version": "2.1.0"})
log = logging.getLogger("widgets.converter")


@contextmanager
def pipeline(settings: Settings, transport: Any = None) -> Iterator[TracerProvider]:
    processor = configure_sentry(settings, RESOURCE, transport=transport)
    assert processor is not None
    provider = TracerProvider(resource=RESOURCE, shutdown_on_exit=False)
    provider.add_span_processor(processor)
    try:
        yield provider
    finally:
        provider.shutdown()
        _sentry_errors.uninstall()
        scope.set_error_sink(None)
        scope.clear()
        sentry_sdk.get_client().close(timeout=2)
        sentry_sdk.init(default_integrations=False, auto_enabling_integrations=False)


def _logs(transport: CapturingTransport) -> list[dict[str, Any]]:
    return [
        entry
        for envelope in transport.envelopes
        for item in envelope.items
        if item.type == "log"
        for entry in json.loads(item.get_bytes())["items"]
    ]


def test_warnings_become_log_items_with_the_current_span() -> None:
    transport = CapturingTransport(DSN)
    with pipeline(make_settings(sentry_dsn=DSN), transport) as provider:
        tracer = provider.get_tracer("logs")
        with tracer.start_as_current_span("convert") as span:
            ctx = span.get_span_context()
            log.warning("widget %s failed for %s", "w-1", "ann@example.com")
            log.info("not at the default level")
        log.error("outside any span")
        sentry_sdk.flush(timeout=5)
    inside, outside = sorted(_logs(transport), key=lambda entry: entry["level"] != "warn")
    assert inside["trace_id"] == format(ctx.trace_id, "032x")
    assert inside["span_id"] == format(ctx.span_id, "016x")
    assert inside["level"] == "warn" and outside["level"] == "error"
    assert inside["attributes"]["logger.name"] == {
        "value": "widgets.converter",
        "type": "string",
    }
    assert inside["attributes"]["sentry.release"]["value"] == "widgets@1.0"
    # Scrubbed like every other payload; the otel* record attributes are not duplicated.
    assert "ann@example.com" not in json.dumps(inside)
    assert not any(key.startswith("otel") for key in inside["attributes"])
    assert "span_id" not in outside
    for entry in (inside, outside):
        assert_valid("log", entry)
    assert known_category("log_item")


def test_the_level_setting_decides_and_off_sends_none() -> None:
    transport = CapturingTransport(DSN)
    # The app's own logger levels still decide which records exist at all.
    log.setLevel(logging.INFO)
    try:
        with pipeline(make_settings(sentry_dsn=DSN, sentry_logs_level="INFO"), transport):
            log.info("now sent")
            log.debug("below the setting")
            sentry_sdk.flush(timeout=5)
    finally:
        log.setLevel(logging.NOTSET)
    assert [entry["body"] for entry in _logs(transport)] == ["now sent"]
    transport = CapturingTransport(DSN)
    with pipeline(make_settings(sentry_dsn=DSN, sentry_logs_level="OFF"), transport):
        log.error("not sent")
        sentry_sdk.flush(timeout=5)
    assert _logs(transport) == []


def test_the_users_own_log_lines_carry_trace_and_span_ids() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(otelTraceID)s %(otelSpanID)s %(message)s"))
    log.addHandler(handler)
    try:
        with (
            pipeline(make_settings(sentry_dsn=DSN), CapturingTransport(DSN)) as provider,
            provider.get_tracer("own").start_as_current_span("step") as span,
        ):
            ctx = span.get_span_context()
            log.warning("converted")
    finally:
        log.removeHandler(handler)
    assert stream.getvalue().strip() == (f"{ctx.trace_id:032x} {ctx.span_id:016x} converted")


def test_a_full_log_buffer_is_counted_as_lost() -> None:
    transport = CapturingTransport(DSN)
    with pipeline(make_settings(sentry_dsn=DSN), transport):
        batcher = sentry_sdk.get_client().log_batcher
        assert batcher is not None
        batcher._ensure_thread()
        batcher._flush_event.set = lambda: None  # type: ignore[method-assign]  # no early flush
        for i in range(batcher.MAX_BEFORE_DROP + 50):
            log.warning("burst %d", i)
        sentry_sdk.flush(timeout=5)
    overflow = ("queue_overflow", "log_item")
    lost = sum(q for reason, cat, q in transport.lost if (reason, cat) == overflow)
    assert lost == 50
    assert len(_logs(transport)) == batcher.MAX_BEFORE_DROP


def test_log_items_reach_the_receiver_and_the_local_log(
    sentry_receiver: SentryReceiver, tmp_path: Path
) -> None:
    from widgettrace.cli import main

    path = tmp_path / "sentry.log"
    settings = replace(make_settings(sentry_dsn=sentry_receiver.dsn), log_path=str(path))
    with pipeline(settings):
        log.warning("disk almost full")
        sentry_sdk.flush(timeout=5)
        sentry_receiver.wait_for(lambda r: r.payloads("log"), timeout=10)
    (entry,) = sentry_receiver.payloads("log")[0]["items"]
    assert_valid("log", entry)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and "disk almost full" not in path.read_text():
        time.sleep(0.05)
    (line,) = [json.loads(x) for x in path.read_text().splitlines() if '"type":"log"' in x]
    assert line["body"] == "disk almost full"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main(["tail", "--color", "never", str(path)])
    assert "LOG WARN  disk almost full  logger=widgets.converter" in out.getvalue()
