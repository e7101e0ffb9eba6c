"""The Sentry span processor: trace trees become valid Sentry transactions, none lost silently."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)
from test_sentry_support import DSN, assert_valid, make_settings, sentry_pipeline

import widgettrace
from widgettrace.exporters.sentry import WidgetTraceSpanProcessor


def _remote_parent(sampled: bool) -> context_api.Context:
    ctx = SpanContext(
        trace_id=0x0AF7651916CD43DD8448EB211C80319C,
        span_id=0xB7AD6B7169203331,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED if sampled else 0),
    )
    return trace.set_span_in_context(NonRecordingSpan(ctx))


def _by_op(transaction: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {span["op"]: span for span in transaction["spans"]}


def test_trace_tree_becomes_one_transaction_with_ops_and_descriptions() -> None:
    with sentry_pipeline() as p:
        tracer = p.tracer
        with tracer.start_as_current_span(
            "GET /api/widgets/status",
            kind=SpanKind.SERVER,
            attributes={
                "http.request.method": "GET",
                "http.route": "/api/widgets/status",
                "url.path": "/api/widgets/status",
                "http.response.status_code": 200,
                "widget.count": 3,
            },
        ):
            with tracer.start_as_current_span(
                "POST",
                kind=SpanKind.CLIENT,
                attributes={"http.method": "POST", "http.url": "http://hub.local/search?q=x"},
            ):
                pass
            with tracer.start_as_current_span(
                "SELECT widgets",
                kind=SpanKind.CLIENT,
                attributes={"db.system.name": "sqlite", "db.query.text": "SELECT * FROM w"},
            ):
                pass
            with tracer.start_as_current_span(
                "tools/call convert", kind=SpanKind.CLIENT, attributes={"mcp.method.name": "x"}
            ):
                pass
            with tracer.start_as_current_span(
                "tools/call convert", kind=SpanKind.SERVER, attributes={"mcp.method.name": "x"}
            ):
                pass
            for op_name in ("chat", "invoke_agent", "execute_tool"):
                with tracer.start_as_current_span(
                    f"{op_name} x", attributes={"gen_ai.operation.name": op_name}
                ):
                    pass
            with tracer.start_as_current_span(
                "convert widget", attributes={"widget.op": "widget.conversion"}
            ):
                pass
            with tracer.start_as_current_span("plain"):
                pass
        p.flush()
        (tx,) = p.transport.transactions()
        (envelope,) = p.transport.envelopes
    assert_valid([tx])
    # The envelope carries the dynamic sampling context Sentry's server-side sampling reads.
    assert envelope.headers["trace"] == {
        "public_key": "public",
        "sampled": "true",
        "release": "widgets@1.0",
        "environment": "test",
        "trace_id": tx["contexts"]["trace"]["trace_id"],
        "transaction": "GET /api/widgets/status",
    }
    assert envelope.headers["event_id"] == tx["event_id"]
    assert tx["transaction"] == "GET /api/widgets/status"
    assert tx["transaction_info"] == {"source": "route"}
    trace_ctx = tx["contexts"]["trace"]
    assert trace_ctx["op"] == "http.server"
    assert trace_ctx["status"] == "ok"
    # The root's attributes are kept too, as trace context data.
    assert trace_ctx["data"]["widget.count"] == 3
    assert tx["release"] == "widgets@1.0"
    assert tx["environment"] == "test"
    assert tx["tags"]["service.name"] == "widgets-api"
    ops = _by_op(tx)
    assert ops["http.client"]["description"] == "POST hub.local/search"
    assert ops["db"]["description"] == "SELECT * FROM w"
    assert {"mcp.client", "mcp.server", "widget.conversion", "function"} <= set(ops)
    assert {"gen_ai.chat", "gen_ai.invoke_agent", "gen_ai.execute_tool"} <= set(ops)
    assert all(s["parent_span_id"] == trace_ctx["span_id"] for s in tx["spans"])
    assert all(s["trace_id"] == trace_ctx["trace_id"] for s in tx["spans"])
    assert len(tx["spans"]) == 9


def test_status_mapping_and_span_events_kept() -> None:
    with sentry_pipeline() as p:
        with p.tracer.start_as_current_span("root") as root:
            with p.tracer.start_as_current_span(
                "GET",
                kind=SpanKind.CLIENT,
                attributes={
                    "http.request.method": "GET",
                    "url.full": "http://hub.local/missing",
                    "http.response.status_code": 404,
                },
            ):
                pass
            with p.tracer.start_as_current_span("fails") as failing:
                failing.add_event("retrying", {"attempt": 2})
                failing.set_status(Status(StatusCode.ERROR, "nope"))
            root.set_status(Status(StatusCode.OK))
        p.flush()
        (tx,) = p.transport.transactions()
    assert_valid([tx])
    spans = {s["description"]: s for s in tx["spans"]}
    assert spans["GET hub.local/missing"]["status"] == "not_found"
    assert spans["fails"]["status"] == "internal_error"
    assert spans["fails"]["data"]["otel.events"][0]["name"] == "retrying"
    assert spans["fails"]["data"]["otel.events"][0]["attributes"] == {"attempt": 2}
    assert tx["contexts"]["trace"]["status"] == "ok"


def test_upstream_sampling_decision_is_honoured() -> None:
    with sentry_pipeline() as p:
        with p.tracer.start_as_current_span(
            "not sampled upstream", context=_remote_parent(False), kind=SpanKind.SERVER
        ):
            pass
        with p.tracer.start_as_current_span(
            "sampled upstream", context=_remote_parent(True), kind=SpanKind.SERVER
        ):
            pass
        p.flush()
        txs = p.transport.transactions()
    assert [t["transaction"] for t in txs] == ["sampled upstream"]
    assert txs[0]["contexts"]["trace"]["parent_span_id"] == "b7ad6b7169203331"
    assert txs[0]["contexts"]["trace"]["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert_valid(txs)


def test_sampler_off_sends_nothing() -> None:
    with sentry_pipeline(sampler=ParentBased(ALWAYS_OFF)) as p:
        with p.tracer.start_as_current_span("dropped"):
            pass
        p.flush()
        assert p.transport.transactions() == []


def test_child_ending_after_its_root_is_sent_in_the_same_trace() -> None:
    with sentry_pipeline(grace_s=0.01) as p:
        tracer = p.tracer
        root = tracer.start_span("request")
        root_ctx = trace.set_span_in_context(root)
        late = tracer.start_span("background cleanup", context=root_ctx)
        root.end()
        p.flush()  # the root's transaction goes out without the late child
        after = tracer.start_span("started after the root ended", context=root_ctx)
        grandchild = tracer.start_span("grandchild", context=trace.set_span_in_context(late))
        grandchild.end()
        late.end()
        after.end()
        p.flush()
        txs = p.transport.transactions()
    assert_valid(txs)
    names = sorted(t["transaction"] for t in txs)
    assert names == ["background cleanup", "request", "started after the root ended"]
    root_id = format(root.get_span_context().span_id, "016x")
    by_name = {t["transaction"]: t for t in txs}
    for name in ("background cleanup", "started after the root ended"):
        ctx = by_name[name]["contexts"]["trace"]
        assert ctx["parent_span_id"] == root_id
        assert ctx["trace_id"] == by_name["request"]["contexts"]["trace"]["trace_id"]
    # The grandchild stays with its own parent's transaction.
    assert [s["description"] for s in by_name["background cleanup"]["spans"]] == ["grandchild"]


def test_a_child_ending_within_the_grace_joins_its_roots_transaction() -> None:
    with sentry_pipeline(grace_s=5.0) as p:
        tracer = p.tracer
        root = tracer.start_span("request")
        child = tracer.start_span("cleanup", context=trace.set_span_in_context(root))
        root.end()
        time.sleep(0.2)  # drained: the root waits out its grace
        assert p.transport.transactions() == []
        child.end()
        p.flush()
        txs = p.transport.transactions()
        assert p.processor._buffered == 0
    assert_valid(txs)
    (tx,) = txs
    assert tx["transaction"] == "request"
    assert [s["description"] for s in tx["spans"]] == ["cleanup"]


def test_late_spans_of_a_late_span_follow_it_and_keep_their_data() -> None:
    with sentry_pipeline(grace_s=0.01) as p:
        tracer = p.tracer
        root = tracer.start_span("request", kind=SpanKind.SERVER)
        late = tracer.start_span(
            "fetch",
            context=trace.set_span_in_context(root),
            kind=SpanKind.CLIENT,
            attributes={"http.request.method": "GET", "url.full": "http://hub.local/x?token=s3"},
        )
        later = tracer.start_span("parse", context=trace.set_span_in_context(late))
        root.end()
        p.flush()  # the root alone
        late.end()
        p.flush()  # the late child as its own transaction; its child still open
        later.set_attribute("widget.tag.stage", "parse")
        later.end()
        p.flush()  # its parent was sent: due at once, not held for the open-span timeout
        txs = p.transport.transactions()
        # Sent span ids of this trace are remembered (a set now: three sends).
        tid = root.get_span_context().trace_id
        assert isinstance(p.processor._sent[tid], set)
    assert_valid(txs)
    by_name = {t["transaction"]: t for t in txs}
    assert sorted(by_name) == ["fetch", "parse", "request"]
    fetch = by_name["fetch"]["contexts"]["trace"]
    assert fetch["op"] == "http.client"
    assert fetch["description"] == "GET hub.local/x"
    assert fetch["data"]["url.full"] == "http://hub.local/x?token=[Filtered]"
    assert fetch["parent_span_id"] == format(root.get_span_context().span_id, "016x")
    parse = by_name["parse"]
    assert parse["contexts"]["trace"]["parent_span_id"] == format(
        late.get_span_context().span_id, "016x"
    )
    assert parse["tags"]["stage"] == "parse"
    assert parse["tags"]["service.name"] == "widgets-api"


def test_sent_span_ids_are_forgotten_after_the_retention(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from widgettrace.exporters import _transactions as sentry_mod

    monkeypatch.setattr(sentry_mod, "SENT_RETENTION_S", 0.0)
    with sentry_pipeline(grace_s=0.0) as p:
        for i in range(50):
            with p.tracer.start_as_current_span(f"job {i}"):
                pass
        p.flush()
        assert len(p.transport.transactions()) == 50
        # The next expiry scan (at most a second away) forgets them all.
        deadline = time.monotonic() + 5
        while p.processor._sent and time.monotonic() < deadline:
            time.sleep(0.05)
        assert p.processor._sent == {}
        assert p.processor._open == {}


def test_sent_span_ids_are_remembered_for_a_bounded_number_of_traces(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A busy server sends a thousand traces a second: 30 s of their ids was ~10 MB of RSS.
    from widgettrace.exporters import _transactions as sentry_mod

    monkeypatch.setattr(sentry_mod, "SENT_RETENTION_MAX", 10)
    with sentry_pipeline(grace_s=0.0) as p:
        for i in range(50):
            with p.tracer.start_as_current_span(f"job {i}"):
                pass
        p.flush()
        assert len(p.transport.transactions()) == 50
        deadline = time.monotonic() + 5  # the next expiry scan, at most a second away
        while len(p.processor._sent) > 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(p.processor._sent) == 10  # the newest ten, well within the 30 s
        assert len(p.processor._forget) == 10


def test_children_of_a_never_ended_span_are_sent_after_the_timeout() -> None:
    with sentry_pipeline(open_span_timeout_s=0.3) as p:
        tracer = p.tracer
        never = tracer.start_span("never ends")
        ctx = trace.set_span_in_context(never)
        for i in range(3):
            tracer.start_span(f"child {i}", context=ctx).end()
        p.flush()
        assert p.transport.transactions() == []  # waiting for the parent
        assert p.processor._buffered == 3
        assert p.transport.wait_for(lambda t: len(t.transactions()) == 3, timeout=5)
        txs = p.transport.transactions()
        assert p.processor._buffered == 0
    parent_id = format(never.get_span_context().span_id, "016x")
    assert {t["contexts"]["trace"]["parent_span_id"] for t in txs} == {parent_id}
    assert_valid(txs)


def test_buffer_of_ended_spans_is_capped(caplog: pytest.LogCaptureFixture) -> None:
    with sentry_pipeline(buffer_max_spans=20) as p:
        tracer = p.tracer
        parents = [tracer.start_span(f"open {i}") for i in range(10)]
        for parent in parents:
            ctx = trace.set_span_in_context(parent)
            for _ in range(5):
                tracer.start_span("child", context=ctx).end()
        p.flush()
        # Never more than the cap held; the oldest traces went out early, nothing dropped.
        assert p.processor._buffered <= 20
        sent = sum(1 + len(t["spans"]) for t in p.transport.transactions())
        assert sent + p.processor._buffered == 50
        assert p.transport.lost == []
    assert "WIDGETTRACE_BUFFER_MAX_SPANS" in caplog.text


def test_more_spans_than_sentry_accepts_are_counted(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="widgettrace")
    with sentry_pipeline(settings=make_settings(max_spans_per_transaction=5)) as p:
        with p.tracer.start_as_current_span("big"):
            for i in range(8):
                with p.tracer.start_as_current_span(f"step {i}"):
                    pass
        p.flush()
        (tx,) = p.transport.transactions()
        assert len(tx["spans"]) == 5
        assert ("buffer_overflow", "span", 3) in p.transport.lost
    assert "WIDGETTRACE_MAX_SPANS_PER_TRANSACTION" in caplog.text
    assert_valid([tx])


def test_queue_overflow_never_blocks_and_is_counted(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="widgettrace")
    # A long tick: the export thread sleeps while the application ends 30 spans.
    with sentry_pipeline(settings=make_settings(queue_size=10), tick_s=30.0) as p:
        start = time.perf_counter()
        for i in range(30):
            with p.tracer.start_as_current_span(f"span {i}"):
                pass
        assert time.perf_counter() - start < 1.0
        p.flush()
        assert len(p.transport.transactions()) == 10
        assert ("queue_overflow", "span", 20) in p.transport.lost
    assert "WIDGETTRACE_QUEUE_SIZE" in caplog.text


def test_secrets_and_pii_are_scrubbed_by_default() -> None:
    attributes = {
        "http.request.header.authorization": ("Bearer abc.def",),
        "http.request.header.cookie": ("session=1",),
        "http.response.header.set-cookie": ("x=1",),
        "db.password": "hunter2",
        "api_key": "k-123",
        "x.access_token": "t",
        "url.full": "http://hub.local/search?token=s3cr3t&q=widgets",
        "note": "contact bob@example.org with Bearer zzz",
        "user.email": "bob@example.org",
        "client.address": "10.1.2.3",
        "gen_ai.usage.input_tokens": 12,
    }
    with sentry_pipeline() as p:
        with (
            p.tracer.start_as_current_span("root"),
            p.tracer.start_as_current_span("child", attributes=attributes),
        ):
            pass
        p.flush()
        (tx,) = p.transport.transactions()
    data = tx["spans"][0]["data"]
    for key in (
        "http.request.header.authorization",
        "http.request.header.cookie",
        "http.response.header.set-cookie",
        "db.password",
        "api_key",
        "x.access_token",
        "user.email",
        "client.address",
    ):
        assert data[key] == "[Filtered]", key
    assert data["url.full"] == "http://hub.local/search?token=[Filtered]&q=widgets"
    assert "bob@example.org" not in data["note"]
    assert "zzz" not in data["note"]
    assert data["gen_ai.usage.input_tokens"] == 12
    assert "user" not in tx or "email" not in tx["user"]


@pytest.mark.filterwarnings("ignore:The send_default_pii option is deprecated:DeprecationWarning")
def test_pii_is_kept_when_opted_in() -> None:
    settings = make_settings(send_default_pii=True)
    with sentry_pipeline(settings=settings) as p:
        with p.tracer.start_as_current_span(
            "root", attributes={"user.email": "bob@example.org", "user.id": "u1"}
        ):
            pass
        p.flush()
        (tx,) = p.transport.transactions()
    assert tx["contexts"]["trace"]["data"]["user.email"] == "bob@example.org"
    assert tx["user"] == {"email": "bob@example.org", "id": "u1"}


def test_shutdown_drains_open_trees() -> None:
    with sentry_pipeline() as p:
        parent = p.tracer.start_span("never ends")
        p.tracer.start_span("child", context=trace.set_span_in_context(parent)).end()
        p.processor.shutdown()
        assert [t["transaction"] for t in p.transport.transactions()] == ["child"]


def test_spans_from_many_threads_group_by_trace() -> None:
    with sentry_pipeline() as p:
        tracer = p.tracer

        def work(n: int) -> None:
            for _ in range(20):
                with tracer.start_as_current_span(f"root {n}"):
                    for _ in range(3):
                        with tracer.start_as_current_span("child"):
                            pass

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        p.flush()
        txs = p.transport.transactions()
    assert len(txs) == 80
    assert all(len(t["spans"]) == 3 for t in txs)
    assert_valid(txs[:10])


def test_processor_alone_needs_no_dsn_and_no_client() -> None:
    # Without an initialised client nothing is sent and nothing fails.
    processor = WidgetTraceSpanProcessor()
    from opentelemetry.sdk.trace import TracerProvider

    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(processor)
    with provider.get_tracer("t").start_as_current_span("x"):
        pass
    assert processor.force_flush(2000)
    provider.shutdown()


def test_a_forked_child_exports_with_its_own_thread() -> None:
    import os

    with sentry_pipeline() as p:
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child process
            try:
                with p.tracer.start_as_current_span("in child"):
                    pass
                ok = p.processor.force_flush(5000) and any(
                    t["transaction"] == "in child" for t in p.transport.transactions()
                )
                os.write(write_fd, b"1" if ok else b"0")
            finally:
                os._exit(0)
        os.close(write_fd)
        result = os.read(read_fd, 1)
        os.close(read_fd)
        os.waitpid(pid, 0)
    assert result == b"1"


def test_transaction_envelope_is_what_the_sdk_constructors_build() -> None:
    from sentry_sdk.envelope import Envelope, Item, PayloadRef

    from widgettrace.exporters._transaction_json import transaction_envelope

    headers = {"event_id": "ab" * 16, "sent_at": "2026-11-28T00:00:00.000000Z"}
    payload = b'{"type":"transaction","spans":[{"span_id":"1"}]}'
    spans = [b'{"span_id":"1"}']
    fast = transaction_envelope(dict(headers), payload, spans)
    slow = Envelope(
        headers=headers,
        items=[Item(payload=PayloadRef(bytes=payload, json={"spans": spans}), type="transaction")],
    )
    assert fast.serialize() == slow.serialize()
    assert fast.headers == slow.headers
    (a,), (b,) = fast.items, slow.items
    assert a.headers == b.headers
    assert a.data_category == b.data_category == "transaction"
    assert (a.payload.bytes, a.payload.json) == (b.payload.bytes, b.payload.json)
    # The SDK counts a dropped transaction's spans from the payload's json.
    assert fast.items[0].payload.json == {"spans": spans}


@pytest.mark.internal_errors_expected
def test_spans_that_are_not_the_sdks_own_are_exported_or_ignored_never_raised(
    fail_on_internal_errors: list[BaseException],
) -> None:
    from opentelemetry.sdk.trace import Event, ReadableSpan

    ctx = SpanContext(
        trace_id=0x1234, span_id=0x99, is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED)
    )
    plain = ReadableSpan(  # a plain dict of attributes and a tuple of events
        name="imported",
        context=ctx,
        attributes={"widget.op": "widget.import", "widget.id": "w-9"},
        events=(Event("checkpoint", {"step": 1}, timestamp=1_000_000_500),),
        start_time=1_000_000_000,
        end_time=2_000_000_000,
    )

    class NotASpan:  # has a sampled context and nothing else
        context = ctx

    with sentry_pipeline() as p:
        p.processor.on_end(NotASpan())  # type: ignore[arg-type]
        p.processor.on_end(plain)
        p.flush()
        (tx,) = p.transport.transactions()
    assert_valid([tx])
    assert tx["transaction"] == "imported"
    trace_ctx = tx["contexts"]["trace"]
    assert trace_ctx["op"] == "widget.import"
    assert trace_ctx["data"]["widget.id"] == "w-9"
    assert trace_ctx["data"]["otel.events"][0]["name"] == "checkpoint"
    assert (tx["start_timestamp"], tx["timestamp"]) == (1.0, 2.0)
    # The look-alike was reported once by the guard, and nothing reached the application.
    assert [type(e) for e in fail_on_internal_errors] == [AttributeError]


def test_transactions_carry_the_release_the_sdk_found_as_errors_do(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # No release configured; the SDK finds one itself (here a PaaS variable, outside any git
    # checkout). Before, errors carried it and transactions did not: cost by release read "none".
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SOURCE_VERSION", "deploy-4711")
    with sentry_pipeline(settings=make_settings(sentry_dsn=DSN, sentry_release=None)) as p:
        with p.tracer.start_as_current_span("job"):
            try:
                raise ValueError("boom")
            except ValueError as exc:
                widgettrace.capture_exception(exc)
        p.flush()
        txs = p.transport.transactions()
        errors = p.transport.events()
    assert [t["release"] for t in txs] == ["deploy-4711"]
    assert [e["release"] for e in errors] == ["deploy-4711"]
