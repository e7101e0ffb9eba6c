"""The vendor-neutral scope API: OTel attributes and events, forwarded errors, no sentry_sdk."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from widgettrace.instrumentation import scope


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider
    provider.shutdown()


@pytest.fixture
def reports() -> Iterator[list[scope.ErrorReport]]:
    collected: list[scope.ErrorReport] = []
    scope.set_error_sink(collected.append)
    yield collected
    scope.set_error_sink(None)
    scope.clear()


def test_scope_module_does_not_import_sentry_sdk() -> None:
    source = Path(scope.__file__).read_text()
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        (node.module or "").split(".")[0]
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.ImportFrom)
    }
    assert "sentry_sdk" not in imported


def test_values_become_semconv_attributes_and_events(
    provider: TracerProvider, exporter: InMemorySpanExporter, reports: list[scope.ErrorReport]
) -> None:
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("request"):
        scope.set_user(id=42, email="a@example.org", username="ann", roles=["admin"])
        scope.set_tag("widget.kind", "converter")
        scope.set_context("job", {"id": 7, "queue": "hi", "odd": object()})
        scope.add_breadcrumb("parsed", category="convert", level="debug", data={"files": 3})
        scope.capture_message("slow", level="warning")
    (span,) = exporter.get_finished_spans()
    attrs = dict(span.attributes or {})
    assert attrs["user.id"] == "42"
    assert attrs["user.email"] == "a@example.org"
    assert attrs["user.name"] == "ann"
    assert attrs["user.roles"] == ("admin",)
    assert attrs["widget.tag.widget.kind"] == "converter"
    assert attrs["widget.context.job.id"] == 7
    assert isinstance(attrs["widget.context.job.odd"], str)
    names = [e.name for e in span.events]
    assert names == ["breadcrumb", "message"]
    crumb = span.events[0].attributes or {}
    assert crumb["breadcrumb.message"] == "parsed"
    assert crumb["breadcrumb.data.files"] == 3
    (report,) = reports
    assert report.message == "slow"
    assert report.level == "warning"
    assert report.trace_id == span.context.trace_id
    assert report.scope.user["id"] == "42"
    assert report.scope.tags == {"widget.kind": "converter"}


def test_capture_exception_forwards_once_and_records_on_the_span(
    provider: TracerProvider, exporter: InMemorySpanExporter, reports: list[scope.ErrorReport]
) -> None:
    tracer = provider.get_tracer("t")
    exc = ValueError("bad")
    with tracer.start_as_current_span("tool"):
        scope.capture_exception(exc)
        scope.capture_exception(exc)
    (span,) = exporter.get_finished_spans()
    assert [e.name for e in span.events] == ["exception", "exception"]
    assert len(reports) == 1
    assert reports[0].exception is exc
    assert reports[0].handled is True
    assert reports[0].span_id == span.context.span_id
    assert scope.was_reported(exc)


def test_capture_exception_without_argument_uses_the_current_one(
    reports: list[scope.ErrorReport],
) -> None:
    try:
        raise KeyError("k")
    except KeyError:
        scope.capture_exception()
    scope.capture_exception()  # nothing being handled: nothing to report
    assert len(reports) == 1
    assert isinstance(reports[0].exception, KeyError)
    assert reports[0].trace_id == 0


def test_unsampled_trace_keeps_scope_for_errors(reports: list[scope.ErrorReport]) -> None:
    provider = TracerProvider(sampler=ALWAYS_OFF, shutdown_on_exit=False)
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("request") as span:
        assert not span.is_recording()
        scope.set_user(id="u1")
        scope.add_breadcrumb("step")
        scope.capture_exception(RuntimeError("x"))
    (report,) = reports
    assert report.trace_id == span.get_span_context().trace_id
    assert report.scope.user == {"id": "u1"}
    assert [c["message"] for c in report.scope.breadcrumbs] == ["step"]


def test_outside_spans_values_are_process_wide(
    provider: TracerProvider, reports: list[scope.ErrorReport]
) -> None:
    scope.set_tag("region", "eu")
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("a"):
        scope.set_tag("only", "a")
        scope.capture_message("in a")
    with tracer.start_as_current_span("b"):
        scope.capture_message("in b")
    assert reports[0].scope.tags == {"region": "eu", "only": "a"}
    assert reports[1].scope.tags == {"region": "eu"}


def test_breadcrumbs_are_bounded() -> None:
    try:
        for i in range(scope.MAX_BREADCRUMBS + 50):
            scope.add_breadcrumb(f"crumb {i}")
        data = scope.scope_for_trace(0)
        assert len(data.breadcrumbs) == scope.MAX_BREADCRUMBS
        assert data.breadcrumbs[-1]["message"] == f"crumb {scope.MAX_BREADCRUMBS + 49}"
    finally:
        scope.clear()


@pytest.mark.internal_errors_expected
def test_a_failing_sink_never_reaches_the_caller(
    fail_on_internal_errors: list[BaseException],
) -> None:
    def broken(report: scope.ErrorReport) -> None:
        raise RuntimeError("sink bug")

    scope.set_error_sink(broken)
    try:
        scope.capture_message("hello")  # must not raise
    finally:
        scope.set_error_sink(None)
    assert len(fail_on_internal_errors) == 1


def test_exception_escaped_reports_once_at_the_outermost_custom_span(
    provider: TracerProvider, reports: list[scope.ErrorReport]
) -> None:
    """What a span context manager that attaches its own context (widgettrace's API) calls."""
    from opentelemetry import context as context_api
    from opentelemetry import trace

    tracer = provider.get_tracer("t")

    class custom_span:
        def __init__(self, name: str) -> None:
            self.span = tracer.start_span(name)

        def __enter__(self) -> trace.Span:
            ctx = trace.set_span_in_context(self.span)
            ctx = context_api.set_value(scope.SPAN_OWNER_KEY, scope.span_owner(), ctx)
            self.token = context_api.attach(ctx)
            return self.span

        def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
            context_api.detach(self.token)
            if exc is not None:
                scope.exception_escaped(exc, self.span)
            self.span.end()

    with (
        pytest.raises(ValueError, match="deep"),
        custom_span("outer"),
        custom_span("inner") as inner,
    ):
        raise ValueError("deep")
    with custom_span("handled"):
        try:
            with custom_span("inner"):
                raise ValueError("caught by the app")
        except ValueError:
            pass
    (report,) = reports
    assert report.transaction == "outer"
    assert report.span_id == inner.get_span_context().span_id
    assert report.handled is False
