"""Every exception escaping an instrumented span becomes exactly one linked Sentry error event."""

from __future__ import annotations

import asyncio
import sys
import threading
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased
from opentelemetry.trace import SpanKind
from test_sentry_support import Pipeline, assert_valid, make_settings, sentry_pipeline

from widgettrace.instrumentation import scope


class WidgetError(Exception):
    pass


def _frames(event: dict[str, Any]) -> list[dict[str, Any]]:
    frames: list[dict[str, Any]] = event["exception"]["values"][-1]["stacktrace"]["frames"]
    return frames


def _span_hex(span: trace.Span) -> str:
    return format(span.get_span_context().span_id, "016x")


def _trace_hex(span: trace.Span) -> str:
    return format(span.get_span_context().trace_id, "032x")


def _raise_widget_error(message: str) -> None:
    raise WidgetError(message)


def test_nested_spans_one_event_linked_to_the_innermost_span() -> None:
    with sentry_pipeline() as p:
        tracer = p.tracer
        inner_span: list[trace.Span] = []
        with (  # noqa: PT012 - the spans are the subject
            pytest.raises(WidgetError),
            tracer.start_as_current_span("outer"),
            tracer.start_as_current_span("middle"),
            tracer.start_as_current_span("inner") as inner,
        ):
            inner_span.append(inner)
            _raise_widget_error("boom")
        p.flush()
        (event,) = p.transport.events()
    assert_valid([event])
    (inner,) = inner_span
    trace_ctx = event["contexts"]["trace"]
    assert trace_ctx["trace_id"] == _trace_hex(inner)
    assert trace_ctx["span_id"] == _span_hex(inner)
    assert event["transaction"] == "outer"
    assert event["exception"]["values"][-1]["mechanism"]["handled"] is False
    frames = _frames(event)
    functions = [f["function"] for f in frames]
    # From the outermost instrumented span down to the raise point.
    assert functions[-2:] == [
        "test_nested_spans_one_event_linked_to_the_innermost_span",
        "_raise_widget_error",
    ]
    assert frames[-1]["in_app"] is True
    assert frames[-1]["context_line"].strip() == "raise WidgetError(message)"
    assert frames[0]["in_app"] is False  # opentelemetry's start_as_current_span
    assert event["release"] == "widgets@1.0"
    assert event["environment"] == "test"
    assert event["tags"]["service.name"] == "widgets-api"


def test_exception_handled_by_the_app_is_not_reported() -> None:
    with sentry_pipeline() as p:
        tracer = p.tracer
        with tracer.start_as_current_span("outer"):
            try:
                with tracer.start_as_current_span("inner"):
                    raise WidgetError("handled")
            except WidgetError:
                pass
        try:
            raise WidgetError("no span at all")
        except WidgetError:
            pass
        p.flush()
        assert p.transport.events() == []
        # Recorded on the span where it escaped (OTel's own behaviour), not as an error event.
        (tx,) = p.transport.transactions()
        assert tx["spans"][0]["status"] == "internal_error"


def test_alternating_exceptions_are_each_reported_once() -> None:
    with sentry_pipeline() as p:
        tracer = p.tracer
        a, b = WidgetError("A"), WidgetError("B")
        for exc in (a, b, a, b, a):
            with pytest.raises(WidgetError), tracer.start_as_current_span("job"):
                raise exc
        p.flush()
        events = p.transport.events()
    assert sorted(e["exception"]["values"][-1]["value"] for e in events) == ["A", "B"]


def test_unsampled_trace_still_reports_errors_with_its_trace_id() -> None:
    with sentry_pipeline(sampler=ParentBased(ALWAYS_OFF)) as p:
        tracer = p.tracer
        with pytest.raises(WidgetError), tracer.start_as_current_span("outer") as outer:  # noqa: PT012
            assert not outer.is_recording()
            with tracer.start_as_current_span("inner") as inner:
                raise WidgetError("unsampled")
        p.flush()
        (event,) = p.transport.events()
        assert p.transport.transactions() == []
    assert event["contexts"]["trace"]["trace_id"] == _trace_hex(outer)
    assert event["contexts"]["trace"]["span_id"] == _span_hex(inner)
    assert_valid([event])


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_exception_escaping_a_span_in_a_thread() -> None:
    with sentry_pipeline() as p:
        tracer = p.tracer
        seen: list[trace.Span] = []

        def worker() -> None:
            with tracer.start_as_current_span("thread work") as span:
                seen.append(span)
                raise WidgetError("in thread")

        with tracer.start_as_current_span("request") as request:
            # The thread runs in a copy of this context: its span's parent is "request".
            import contextvars

            ctx = contextvars.copy_context()
            thread = threading.Thread(target=ctx.run, args=(worker,))
            thread.start()
            thread.join()
        p.flush()
        events = p.transport.events()
    # Exactly one: ours, not also the SDK's threading integration.
    assert len(events) == 1
    (event,) = events
    assert event["contexts"]["trace"]["span_id"] == _span_hex(seen[0])
    assert event["contexts"]["trace"]["trace_id"] == _trace_hex(request)
    assert event["transaction"] == "thread work"


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_thread_crash_outside_spans_is_left_to_sentrys_threading_integration() -> None:
    with sentry_pipeline() as p:
        thread = threading.Thread(target=_raise_widget_error, args=("no span",))
        thread.start()
        thread.join()
        p.flush()
        events = p.transport.events()
    assert len(events) == 1
    assert events[0]["exception"]["values"][-1]["mechanism"]["type"] == "threading"


def test_exception_escaping_a_span_in_an_asyncio_task() -> None:
    with sentry_pipeline() as p:
        tracer = p.tracer
        spans: dict[str, trace.Span] = {}

        async def child() -> None:
            with tracer.start_as_current_span("task work") as span:
                spans["task"] = span
                await asyncio.sleep(0)
                raise WidgetError("in task")

        async def main() -> None:
            with tracer.start_as_current_span("request") as request:
                spans["request"] = request
                task = asyncio.create_task(child())
                await asyncio.gather(task, return_exceptions=True)
                # Awaiting the failed task re-raises the same object in this span: not again.
                await task

        with pytest.raises(WidgetError):
            asyncio.run(main())
        p.flush()
        events = p.transport.events()
    assert len(events) == 1
    assert events[0]["contexts"]["trace"]["span_id"] == _span_hex(spans["task"])
    assert events[0]["transaction"] == "task work"


def test_await_in_the_same_task_reports_at_the_outermost_span() -> None:
    with sentry_pipeline() as p:
        tracer = p.tracer

        async def step() -> None:
            with tracer.start_as_current_span("step") as span:
                step_span.append(span)
                await asyncio.sleep(0)
                raise WidgetError("same task")

        async def main() -> None:
            with tracer.start_as_current_span("pipeline"):
                await step()

        step_span: list[trace.Span] = []
        with pytest.raises(WidgetError):
            asyncio.run(main())
        p.flush()
        (event,) = p.transport.events()
    assert event["transaction"] == "pipeline"
    assert event["contexts"]["trace"]["span_id"] == _span_hex(step_span[0])
    functions = [f["function"] for f in _frames(event)]
    assert "main" in functions
    assert "step" in functions


def test_server_span_is_a_boundary_even_with_a_local_parent() -> None:
    with sentry_pipeline() as p:
        tracer = p.tracer
        with tracer.start_as_current_span("client"):
            try:
                with tracer.start_as_current_span("in-process server", kind=SpanKind.SERVER):
                    raise WidgetError("server side")
            except WidgetError:
                pass  # the client turns it into an error response
        p.flush()
        (event,) = p.transport.events()
    assert event["transaction"] == "in-process server"


def test_capture_exception_reports_once_even_if_reraised() -> None:
    with sentry_pipeline() as p:
        tracer = p.tracer
        with pytest.raises(WidgetError), tracer.start_as_current_span("tool") as span:  # noqa: PT012
            try:
                raise WidgetError("tool failed")
            except WidgetError as exc:
                scope.capture_exception(exc)
                raise
        p.flush()
        (event,) = p.transport.events()
        (tx,) = p.transport.transactions()
    assert event["exception"]["values"][-1]["mechanism"]["handled"] is True
    assert event["contexts"]["trace"]["span_id"] == _span_hex(span)
    # Recorded on the span too.
    events = tx["contexts"]["trace"]["data"]["otel.events"]
    assert [e["name"] for e in events].count("exception") >= 1


def test_error_carries_user_tags_context_and_breadcrumbs_scrubbed() -> None:
    with sentry_pipeline() as p:
        tracer = p.tracer
        scope.set_tag("region", "eu")  # process-wide
        with pytest.raises(WidgetError), tracer.start_as_current_span("request"):  # noqa: PT012
            scope.set_user(id="u-42", email="bob@example.org", ip_address="10.0.0.1")
            scope.set_tag("widget.kind", "converter")
            scope.set_context("job", {"id": 7, "password": "x"})
            scope.add_breadcrumb("parsed manifest", category="convert", data={"files": 3})
            raise WidgetError("with scope")
        p.flush()
        (event,) = p.transport.events()
    assert_valid([event])
    assert event["user"] == {"id": "u-42"}  # email and IP need send_default_pii
    assert event["tags"]["region"] == "eu"
    assert event["tags"]["widget.kind"] == "converter"
    assert event["contexts"]["job"]["id"] == 7
    assert event["contexts"]["job"]["password"] == "[Filtered]"
    crumbs = event["breadcrumbs"]["values"]
    assert any(c.get("message") == "parsed manifest" for c in crumbs)


def test_capture_message_is_an_event_linked_to_the_span() -> None:
    with sentry_pipeline() as p:
        with p.tracer.start_as_current_span("request") as span:
            scope.capture_message("registry slow", level="warning")
        p.flush()
        (event,) = p.transport.events()
    assert event["message"] == "registry slow"
    assert event["level"] == "warning"
    assert event["contexts"]["trace"]["span_id"] == _span_hex(span)
    assert_valid([event])


def test_logging_error_is_a_breadcrumb_not_an_event() -> None:
    import logging

    with sentry_pipeline() as p:
        log = logging.getLogger("widgets.test")
        with pytest.raises(WidgetError), p.tracer.start_as_current_span("request"):  # noqa: PT012
            log.error("about to fail")
            raise WidgetError("after a log line")
        p.flush()
        (event,) = p.transport.events()
    assert any(c.get("message") == "about to fail" for c in event["breadcrumbs"]["values"])


def test_excepthook_does_not_duplicate_an_error_reported_at_a_span() -> None:
    with sentry_pipeline() as p:
        try:
            with p.tracer.start_as_current_span("main"):
                raise WidgetError("crash")
        except WidgetError:
            sys.excepthook(*sys.exc_info())  # what the interpreter does for an uncaught error
        p.flush()
        assert len(p.transport.events()) == 1


def test_use_span_is_restored_when_uninstalled() -> None:
    original = trace.use_span
    with sentry_pipeline(settings=make_settings()):
        assert trace.use_span is not original
    assert trace.use_span is original


def test_pipeline_fixture_type() -> None:
    with sentry_pipeline() as p:
        assert isinstance(p, Pipeline)


def test_parent_activated_without_use_span_still_gets_a_full_traceback() -> None:
    """A parent made current by plain context.attach (no owner mark): reported once, with the
    frames above the inner span so the traceback still reaches the caller."""
    from opentelemetry import context as context_api

    with sentry_pipeline() as p:
        tracer = p.tracer

        def discover() -> None:
            parent = tracer.start_span("discovery")
            token = context_api.attach(trace.set_span_in_context(parent))
            try:
                with tracer.start_as_current_span("GET hub", kind=SpanKind.CLIENT):
                    _raise_widget_error("timeout")
            finally:
                context_api.detach(token)
                parent.end()

        with pytest.raises(WidgetError):
            discover()
        p.flush()
        (event,) = p.transport.events()
    functions = [f["function"] for f in _frames(event)]
    assert "discover" in functions
    assert functions[-1] == "_raise_widget_error"
    assert functions.count("_raise_widget_error") == 1
