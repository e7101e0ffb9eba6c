"""Span streaming: what we send is what sentry-sdk's own stream mode sends, checked item by item."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import sentry_sdk
import sentry_sdk.traces
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Link, SpanContext, SpanKind, TraceFlags
from receivers.sentry_receiver import SentryReceiver
from receivers.span_v2 import assert_valid, check_span, known_category
from test_sentry_support import DSN, CapturingTransport, make_settings

from widgettrace.exporters import _sentry_errors
from widgettrace.exporters._stream import SPAN_CONTENT_TYPE, StreamSpanProcessor
from widgettrace.exporters._wire import wants_stream
from widgettrace.exporters.sentry import WidgetTraceSpanProcessor, configure_sentry
from widgettrace.instrumentation import scope
from widgettrace.instrumentation._config import Settings

RESOURCE = Resource.create({"service.name": "widgets-api", "service.version": "2.1.0"})

#: The same attributes given to both SDKs: one of each type the wire knows.
USER_ATTRS: dict[str, Any] = {
    "widget.id": "w-42",
    "widget.count": 3,
    "widget.score": 0.75,
    "widget.ready": True,
    "widget.tags": ["a", "b"],
    "widget.sizes": [1, 2, 3],
    "widget.ratio": float("inf"),
}


@contextmanager
def streaming(
    settings: Settings, transport: Any = None
) -> Iterator[tuple[TracerProvider, StreamSpanProcessor]]:
    processor = configure_sentry(settings, RESOURCE, transport=transport)
    assert isinstance(processor, StreamSpanProcessor)
    provider = TracerProvider(resource=RESOURCE, shutdown_on_exit=False)
    provider.add_span_processor(processor)
    for companion in processor.companions:  # type: ignore[attr-defined]
        provider.add_span_processor(companion)
    try:
        yield provider, processor
    finally:
        provider.shutdown()
        _sentry_errors.uninstall()
        scope.set_error_sink(None)
        scope.clear()
        sentry_sdk.get_client().close(timeout=2)
        sentry_sdk.init(default_integrations=False, auto_enabling_integrations=False)


def _span_items(transport: CapturingTransport) -> list[tuple[Any, Any, dict[str, Any]]]:
    """(envelope headers, item headers, payload) of every span item captured."""
    out = []
    for envelope in transport.envelopes:
        for item in envelope.items:
            if item.type == "span":
                out.append((envelope.headers, item.headers, json.loads(item.get_bytes())))
    return out


def _sdk_spans() -> list[tuple[Any, Any, dict[str, Any]]]:
    """Three spans through sentry-sdk's own stream mode (trace_lifecycle="stream")."""
    transport = CapturingTransport(DSN)
    sentry_sdk.init(
        dsn=DSN,
        transport=transport,
        trace_lifecycle="stream",
        traces_sample_rate=1.0,
        release="widgets@1.0",
        environment="test",
        default_integrations=False,
        auto_enabling_integrations=False,
    )
    try:
        # A fresh head of trace in a fresh scope: what earlier tests left in the SDK's
        # propagation context must not shape its sampling context.
        with sentry_sdk.isolation_scope():
            sentry_sdk.traces.new_trace()
            _sdk_tree()
        sentry_sdk.flush(timeout=5)
        return _span_items(transport)
    finally:
        sentry_sdk.get_client().close(timeout=2)
        sentry_sdk.init(default_integrations=False, auto_enabling_integrations=False)


def _sdk_tree() -> None:
    with sentry_sdk.traces.start_span(name="GET /widgets/{id}", attributes=USER_ATTRS):
        with sentry_sdk.traces.start_span(name="convert", attributes=USER_ATTRS):
            pass
        with (
            pytest.raises(ValueError, match=r"boom|conversion failed"),
            sentry_sdk.traces.start_span(name="fails", attributes=USER_ATTRS),
        ):
            raise ValueError("boom")


def _our_spans() -> list[tuple[Any, Any, dict[str, Any]]]:
    transport = CapturingTransport(DSN)
    settings = make_settings(sentry_dsn=DSN, sentry_spans="stream", sessions="off")
    with streaming(settings, transport) as (provider, processor):
        tracer = provider.get_tracer("compare")
        with tracer.start_as_current_span(
            "GET /widgets/{id}", kind=SpanKind.SERVER, attributes=USER_ATTRS
        ):
            with tracer.start_as_current_span("convert", attributes=USER_ATTRS):
                pass
            with (
                pytest.raises(ValueError, match=r"boom|conversion failed"),
                tracer.start_as_current_span("fails", attributes=USER_ATTRS),
            ):
                raise ValueError("boom")
        assert processor.force_flush(5000)
        return _span_items(transport)


def _by_name(items: list[tuple[Any, Any, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    spans = [span for _, _, payload in items for span in payload["items"]]
    return {span["name"]: span for span in spans}


def test_the_same_spans_as_the_sdks_own_stream_mode_field_by_field() -> None:
    sdk_items = _sdk_spans()
    our_items = _our_spans()
    assert sdk_items and our_items

    # Envelope and item framing.
    for items in (sdk_items, our_items):
        for env_headers, item_headers, payload in items:
            assert item_headers["type"] == "span"
            assert item_headers["content_type"] == SPAN_CONTENT_TYPE
            assert item_headers["item_count"] == len(payload["items"])
            assert payload["version"] == 2
            assert set(payload) == {"version", "items"}
            trace = env_headers["trace"]
            assert {trace["trace_id"]} == {s["trace_id"] for s in payload["items"]}
            assert trace["public_key"] == "public"
            assert trace["release"] == "widgets@1.0"
            assert trace["environment"] == "test"
            assert trace["sampled"] == "true"
    sdk, ours = _by_name(sdk_items), _by_name(our_items)
    assert set(sdk) == set(ours) == {"GET /widgets/{id}", "convert", "fails"}

    for name in sdk:
        theirs, mine = sdk[name], ours[name]
        # Same fields, same JSON types.
        assert set(mine) == set(theirs), name
        for key in theirs:
            assert type(mine[key]) is type(theirs[key]), (name, key)
        assert mine["is_segment"] == theirs["is_segment"] == (name == "GET /widgets/{id}")
        assert mine["status"] == theirs["status"] == ("error" if name == "fails" else "ok")
        assert mine["end_timestamp"] >= mine["start_timestamp"]
        # User attributes typed exactly as the SDK types them.
        for key in USER_ATTRS:
            assert mine["attributes"][key] == theirs["attributes"][key], (name, key)
        # The Sentry attributes both send agree in type; ours cover the ones Sentry reads.
        shared = set(mine["attributes"]) & set(theirs["attributes"])
        for key in shared:
            assert mine["attributes"][key]["type"] == theirs["attributes"][key]["type"], key
        needed = {
            "sentry.segment.id",
            "sentry.segment.name",
            "sentry.release",
            "sentry.environment",
            "sentry.sdk.name",
            "sentry.sdk.version",
            "sentry.origin",
        }
        if theirs["is_segment"]:
            needed |= {"sentry.platform", "sentry.segment.name.source"}
        assert needed <= shared, needed - shared

    # The tree: the same relations, ids of our own spans.
    for spans in (sdk, ours):
        root = spans["GET /widgets/{id}"]
        assert "parent_span_id" not in root
        for child in ("convert", "fails"):
            assert spans[child]["parent_span_id"] == root["span_id"]
            assert spans[child]["trace_id"] == root["trace_id"]
        for span in spans.values():
            assert span["attributes"]["sentry.segment.id"]["value"] == root["span_id"]
            assert span["attributes"]["sentry.segment.name"]["value"] == "GET /widgets/{id}"
    for spans in (sdk.values(), ours.values()):
        for span in spans:
            assert check_span(span) == []


def test_links_and_remote_parents_follow_relays_span_schema() -> None:
    transport = CapturingTransport(DSN)
    settings = make_settings(sentry_dsn=DSN, sentry_spans="stream", sessions="off")
    remote = SpanContext(0x1234, 0x5678, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    other = SpanContext(0xABC, 0xDEF, is_remote=False, trace_flags=TraceFlags(0))
    from opentelemetry import trace as trace_api

    with streaming(settings, transport) as (provider, processor):
        tracer = provider.get_tracer("links")
        parent_ctx = trace_api.set_span_in_context(trace_api.NonRecordingSpan(remote))
        with tracer.start_as_current_span(
            "consume",
            context=parent_ctx,
            kind=SpanKind.CONSUMER,
            links=[Link(other, {"sentry.link.type": "previous_trace", "password": "x"})],
        ):
            pass
        assert processor.force_flush(5000)
    (span,) = [s for _, _, p in _span_items(transport) for s in p["items"]]
    assert_valid("span", span)
    assert span["is_segment"] is True  # a remote parent: a segment of this service
    assert span["parent_span_id"] == f"{0x5678:016x}"
    assert span["trace_id"] == f"{0x1234:032x}"
    assert span["links"] == [
        {
            "trace_id": f"{0xABC:032x}",
            "span_id": f"{0xDEF:016x}",
            "sampled": False,
            "attributes": {
                "sentry.link.type": {"value": "previous_trace", "type": "string"},
                "password": {"value": "[Filtered]", "type": "string"},
            },
        }
    ]


def test_secrets_are_scrubbed_in_span_attributes() -> None:
    transport = CapturingTransport(DSN)
    settings = make_settings(sentry_dsn=DSN, sentry_spans="stream", sessions="off")
    with streaming(settings, transport) as (provider, processor):
        with provider.get_tracer("s").start_as_current_span(
            "call",
            attributes={
                "http.request.header.authorization": "Bearer abc",
                "url.full": "http://x/?token=secret",
                "user.email": "ann@example.com",
            },
        ):
            pass
        assert processor.force_flush(5000)
    (span,) = [s for _, _, p in _span_items(transport) for s in p["items"]]
    values = json.dumps([typed["value"] for typed in span["attributes"].values()])
    for secret in ("Bearer abc", "=secret", "ann@example.com"):
        assert secret not in values
    assert span["attributes"]["http.request.header.authorization"]["value"] == "[Filtered]"


def test_span_names_are_scrubbed_as_transactions_mode_scrubs_them() -> None:
    transport = CapturingTransport(DSN)
    settings = make_settings(sentry_dsn=DSN, sentry_spans="stream", sessions="off")
    with streaming(settings, transport) as (provider, processor):
        tracer = provider.get_tracer("s")
        with (
            tracer.start_as_current_span("login password=hunter2"),
            tracer.start_as_current_span("call with Bearer abcdef123"),
        ):
            pass
        assert processor.force_flush(5000)
    spans = [s for _, _, p in _span_items(transport) for s in p["items"]]
    assert len(spans) == 2
    text = json.dumps(spans)
    assert "hunter2" not in text and "abcdef123" not in text
    root = next(s for s in spans if s["is_segment"])
    assert root["name"] == "login password=[Filtered]"
    assert root["attributes"]["sentry.segment.name"]["value"] == root["name"]


def test_a_slow_delivery_queue_makes_the_export_thread_wait_not_drop(
    sentry_receiver: SentryReceiver,
) -> None:
    """Back-pressure: with room for two envelopes in the HTTP delivery queue, a burst of 200
    traces still arrives whole: the export thread waits for the senders, nothing is dropped."""
    from sentry_sdk.client import _get_options

    from widgettrace.exporters._delivery import DeliveryHttpTransport

    transport = DeliveryHttpTransport(_get_options(dsn=sentry_receiver.dsn, transport_queue_size=2))
    settings = make_settings(sentry_dsn=sentry_receiver.dsn, sentry_spans="stream", sessions="off")
    with streaming(settings, transport) as (provider, processor):
        tracer = provider.get_tracer("burst")
        for i in range(200):
            with tracer.start_as_current_span(f"job {i}"), tracer.start_as_current_span("step"):
                pass
        assert processor.force_flush(30_000)
        sentry_receiver.wait_for(
            lambda r: sum(len(p["items"]) for p in r.payloads("span")) >= 400, timeout=30
        )
        assert transport.dropped == 0
    spans = [s for p in sentry_receiver.payloads("span") for s in p["items"]]
    assert len(spans) == 400
    assert len({s["span_id"] for s in spans}) == 400


def test_spans_go_over_http_to_the_receiver_in_batches_and_errors_too(
    sentry_receiver: SentryReceiver,
) -> None:
    settings = make_settings(sentry_dsn=sentry_receiver.dsn, sentry_spans="stream")
    with streaming(settings) as (provider, processor):
        tracer = provider.get_tracer("http")
        for i in range(50):
            with tracer.start_as_current_span(f"job {i}"), tracer.start_as_current_span("step"):
                pass
        with (
            pytest.raises(ValueError, match=r"boom|conversion failed"),
            tracer.start_as_current_span("broken"),
        ):
            raise ValueError("conversion failed")
        assert processor.force_flush(5000)
        sentry_receiver.wait_for(lambda r: len(r.events()) >= 1, timeout=10)
    spans = [s for p in sentry_receiver.payloads("span") for s in p["items"]]
    assert len(spans) == 50 * 2 + 1
    for span in spans:
        assert_valid("span", span)
    # One envelope per trace (its sampling context), never one per span.
    assert len(sentry_receiver.items("span")) == 51
    assert sentry_receiver.events()[0]["exception"]["values"][0]["type"] == "ValueError"
    assert sentry_receiver.normalization_errors() == []
    assert sentry_receiver.payloads("transaction") == []


def test_a_full_queue_is_counted_as_lost_spans_in_client_reports() -> None:
    transport = CapturingTransport(DSN)
    settings = make_settings(sentry_dsn=DSN, sentry_spans="stream", sessions="off", queue_size=100)
    with streaming(settings, transport) as (provider, processor):
        tracer = provider.get_tracer("burst")
        processor._wake.set = lambda: None  # type: ignore[method-assign]  # no early drain
        with tracer.start_as_current_span("root"):
            for _ in range(400):
                tracer.start_span("child").end()
        assert processor.force_flush(5000)
    lost = sum(q for reason, cat, q in transport.lost if reason == "queue_overflow")
    sent = sum(len(p["items"]) for _, _, p in _span_items(transport))
    assert lost > 0 and sent + lost == 401
    assert known_category("span")


@pytest.mark.parametrize(
    ("setting", "dsn", "spotlight", "stream"),
    [
        ("auto", "https://k@o1.ingest.sentry.io/1", False, True),
        ("auto", "https://k@o1.ingest.us.sentry.io/1", False, True),
        ("auto", "https://k@sentry.example.com/1", False, False),
        ("auto", "http://k@127.0.0.1:8000/1", False, False),
        ("auto", None, False, False),
        ("auto", "https://k@o1.ingest.sentry.io/1", "http://127.0.0.1:8969/stream", False),
        ("stream", "https://k@sentry.example.com/1", False, True),
        ("transactions", "https://k@o1.ingest.sentry.io/1", False, False),
    ],
)
def test_which_mode_each_receiver_gets(
    setting: str, dsn: str | None, spotlight: Any, stream: bool
) -> None:
    assert wants_stream(setting, dsn, spotlight) is stream


def test_transactions_stay_available_and_are_the_default_for_our_receiver() -> None:
    transport = CapturingTransport(DSN)
    processor = configure_sentry(make_settings(sentry_dsn=DSN), RESOURCE, transport=transport)
    try:
        assert isinstance(processor, WidgetTraceSpanProcessor)
    finally:
        assert processor is not None
        processor.shutdown()
        _sentry_errors.uninstall()
        scope.set_error_sink(None)
        sentry_sdk.get_client().close(timeout=2)
        sentry_sdk.init(default_integrations=False, auto_enabling_integrations=False)


def test_local_log_keeps_one_line_per_span_and_tail_shows_them(tmp_path: Path) -> None:
    from widgettrace.cli import main

    log = tmp_path / "sentry.log"
    settings = replace(make_settings(), log_path=str(log), sentry_spans="stream", sessions="off")
    with streaming(settings) as (provider, processor):
        tracer = provider.get_tracer("local")
        with (
            tracer.start_as_current_span("GET /local", kind=SpanKind.SERVER),
            tracer.start_as_current_span("inner"),
        ):
            pass
        assert processor.force_flush(5000)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(log.read_text().splitlines()) < 2:
        time.sleep(0.05)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    spans = [line for line in lines if line.get("type") == "span"]
    assert {s["name"] for s in spans} == {"GET /local", "inner"}
    for span in spans:
        span.pop("type")
        assert_valid("span", span)
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main(["tail", "--color", "never", str(log)])
    text = out.getvalue()
    assert "SPAN" in text and "GET /local" in text and "inner" in text


def test_the_fast_envelope_equals_the_sdks_constructors() -> None:
    from sentry_sdk.envelope import Envelope, Item, PayloadRef

    from widgettrace.exporters._stream import span_envelope

    spans = [b'{"a":1}', b'{"b":2}']
    dsc = {"trace_id": "0" * 32, "public_key": "k"}
    fast = span_envelope("2026-01-01T00:00:00.000000Z", dsc, spans)
    slow = Envelope(
        headers={"sent_at": "2026-01-01T00:00:00.000000Z", "trace": dsc},
        items=[
            Item(
                payload=PayloadRef(bytes=b'{"version":2,"items":[{"a":1},{"b":2}]}'),
                type="span",
                content_type=SPAN_CONTENT_TYPE,
                headers={"item_count": 2},
            )
        ],
    )
    assert fast.serialize() == slow.serialize()
    assert fast.items[0].data_category == "span"


def test_attribute_scrubbing_matches_the_scrubbers_own_result() -> None:
    from widgettrace.exporters._sentry_convert import Scrubber
    from widgettrace.exporters._stream import typed

    attrs = {
        "http.request.header.authorization": "Bearer abc",
        "url.full": "http://u:p@x/?token=secret&q=1",
        "client.address": "10.0.0.1",
        "user.email": "a@b.c",
        "user_agent.original": "Mozilla/5.0 (X11) contact me@example.com",
        "message": "Token abcdef please",
        "widget.tags": ("ann@example.com", "ok"),
        "widget.ratio": float("nan"),
        "widget.count": 3,
        "widget.ok": True,
        "plain": "nothing here",
    }
    processor = StreamSpanProcessor(send_default_pii=False)
    try:
        ours = processor._encoder.typed_attributes(attrs, tuple(attrs))
    finally:
        processor.shutdown()
        # The encoded fragments, remembered per (key, value, type), twice (the second from the
        # memo), and with values of equal hash but another type under the same key.
        spliced = [processor._encoder.attributes_json(attrs) for _ in range(2)]
        kinds = [processor._encoder.attributes_json({"widget.count": v}) for v in (1, True, 1.0, 1)]
    expected = {k: typed(v) for k, v in Scrubber(False).data(attrs).items()}
    assert ours == expected
    for fragment in spliced:
        decoded = json.loads(b"{" + fragment + b"}")
        decoded["widget.ratio"]["value"] = expected["widget.ratio"]["value"]  # nan != nan
        assert decoded == expected
    assert [json.loads(b"{" + k + b"}")["widget.count"]["type"] for k in kinds] == [
        "integer",
        "boolean",
        "double",
        "integer",
    ]
    text = json.dumps(ours)
    assert "=secret" not in text and "@example.com" not in text and "Bearer abc" not in text
