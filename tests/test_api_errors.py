"""Exceptions leaving widgettrace's own spans reach the error sink exactly once."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from widgettrace.instrumentation import api, scope


@pytest.fixture
def sink() -> Iterator[list[scope.ErrorReport]]:
    reports: list[scope.ErrorReport] = []
    scope.set_error_sink(reports.append)
    try:
        yield reports
    finally:
        scope.set_error_sink(None)


@pytest.fixture(params=["sampled", "unsampled"])
def exporter(request: pytest.FixtureRequest) -> Iterator[InMemorySpanExporter]:
    provider = TracerProvider(sampler=None if request.param == "sampled" else ALWAYS_OFF)
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    api.set_tracer_provider(provider)
    try:
        yield memory
    finally:
        api.set_tracer_provider(None)


def test_escaping_the_outermost_api_span_is_reported_once(
    exporter: InMemorySpanExporter, sink: list[scope.ErrorReport]
) -> None:
    error = ValueError("bad widget")
    with pytest.raises(ValueError, match="bad widget"):  # noqa: PT012, SIM117 - the nesting is the point
        with api.span("outer"):
            with api.conversion_span("w-1", stage="parse") as inner:
                inner_id = inner.get_span_context().span_id
                raise error
    assert len(sink) == 1
    (report,) = sink
    assert report.exception is error
    assert report.handled is False
    assert report.span_id == inner_id  # linked to where it was raised


def test_handled_between_api_spans_is_not_reported(
    exporter: InMemorySpanExporter, sink: list[scope.ErrorReport]
) -> None:
    with api.span("outer"):
        try:
            with api.span("inner"):
                raise KeyError("retry me")
        except KeyError:
            pass
    assert sink == []


def test_escaping_an_api_span_in_a_thread_is_reported(
    exporter: InMemorySpanExporter, sink: list[scope.ErrorReport]
) -> None:
    from opentelemetry import context

    def work(ctx: context.Context) -> None:
        token = context.attach(ctx)
        try:
            with api.span("scan in thread"):
                raise TimeoutError("repo scan timed out")
        except TimeoutError:
            pass  # the thread's own code swallows it after the span: still escaped the span
        finally:
            context.detach(token)

    with api.span("request"):
        thread = threading.Thread(target=work, args=(context.get_current(),))
        thread.start()
        thread.join()
    assert [type(r.exception) for r in sink] == [TimeoutError]
