"""Context across a thread pool: what the example does instead of a helper of its own.

``ThreadPoolExecutor`` does not carry ``contextvars`` into its workers. The example submits
``contextvars.copy_context().run`` (standard library, one line). Checked here with widgettrace's
spans: a worker's span is a child of the caller's, and an error in the worker is linked to the
worker's span. ``opentelemetry-instrumentation-threading`` would do the same by patching the
executor, but its newest release (0.66b1) pins ``opentelemetry-instrumentation==0.66b1``, below
the 0.66b2 widgettrace requires, so it cannot be installed beside us.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from widgettrace import discovery_span, span
from widgettrace.instrumentation import api


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exp = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exp))
    api.set_tracer_provider(provider)
    yield exp
    api.set_tracer_provider(None)


def _scan(name: str) -> str:
    with discovery_span("git", query=name):
        return name


def test_copied_context_makes_worker_spans_children(exporter: InMemorySpanExporter) -> None:
    with span("request") as request, ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(contextvars.copy_context().run, _scan, n) for n in "abc"]
        assert [f.result() for f in futures] == ["a", "b", "c"]
    scans = [s for s in exporter.get_finished_spans() if s.name == "discover git"]
    assert len(scans) == 3
    for scan in scans:
        assert scan.parent is not None
        assert scan.parent.span_id == request.get_span_context().span_id
        assert scan.context.trace_id == request.get_span_context().trace_id


def test_without_the_copy_the_worker_starts_a_new_trace(exporter: InMemorySpanExporter) -> None:
    """The control: the plain submit loses the caller's context (why the copy is needed)."""
    with span("request"), ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(_scan, "a").result()
    (scan,) = [s for s in exporter.get_finished_spans() if s.name == "discover git"]
    assert scan.parent is None
