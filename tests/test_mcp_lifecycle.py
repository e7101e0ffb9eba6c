"""Instrumentor lifecycle and fail-open behaviour: uninstrument restores mcp (and its built-in
tracing), instrumenting twice changes nothing, suppression and a broken propagator are honoured,
and the application sees exactly the results and errors it sees without instrumentation."""

from __future__ import annotations

from importlib import metadata
from typing import Any

import anyio
import mcp
import mcp.client.client
import mcp.client.stdio
import mcp.server._otel
import mcp.shared._otel
import mcp.shared.jsonrpc_dispatcher as jd
import pytest
import wrapt
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_servers.fixtures import Tracing, builtin_tracer, tracing
from mcp_servers.widgets import build_server
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from widgettrace.instrumentation.mcp import McpInstrumentor
from widgettrace.instrumentation.mcp import propagation as mcp_propagation

__all__ = ["builtin_tracer", "tracing"]

# In a container: instrumenting replaces module globals that hold the original (by identity).
ORIGINALS = {"stdio_client": mcp.client.stdio.stdio_client}
STALE_REFERENCE = mcp.client.stdio.stdio_client


async def _session(mode: str = "legacy") -> dict[str, Any]:
    """Run a fixed scenario; return what the application observed."""
    seen: dict[str, Any] = {}
    async with Client(build_server(), mode=mode) as client:
        seen["add"] = (await client.call_tool("add", {"a": 2, "b": 40})).model_dump()
        seen["boom"] = (await client.call_tool("boom", {})).model_dump()
        seen["tools"] = [t.name for t in (await client.list_tools()).tools]
        seen["prompt"] = (await client.get_prompt("greet", {"who": "x"})).model_dump()
        try:
            await client.read_resource("widget://missing")
        except MCPError as exc:
            seen["error"] = (type(exc).__name__, exc.error.code, exc.error.message)
    return seen


def _patched() -> bool:
    return isinstance(vars(jd.JSONRPCDispatcher)["send_raw_request"], wrapt.FunctionWrapper)


def test_uninstrument_restores_mcp_and_its_builtin_tracing(builtin_tracer: TracerProvider) -> None:
    exporter = InMemorySpanExporter()
    builtin_tracer.add_span_processor(SimpleSpanProcessor(exporter))
    original_otel_span = vars(jd)["otel_span"]
    original_for_loop = vars(mcp.server.connection.Connection)["for_loop"]
    instrumentor = McpInstrumentor()
    instrumentor.instrument(tracer_provider=TracerProvider())
    assert _patched() and vars(jd)["otel_span"] is not original_otel_span
    original = ORIGINALS["stdio_client"]
    assert mcp.stdio_client is not original  # mcp 2.1+ also imports it in mcp.client.client
    assert STALE_REFERENCE is not original  # an application's ``from ... import`` is covered
    anyio.run(_session)
    assert exporter.get_finished_spans() == ()  # built-in tracing off while instrumented
    instrumentor.uninstrument()
    assert not _patched()
    assert vars(jd)["otel_span"] is original_otel_span
    assert vars(mcp.server.connection.Connection)["for_loop"] is original_for_loop
    assert isinstance(original_for_loop, classmethod)
    assert mcp.stdio_client is original
    assert STALE_REFERENCE is original
    anyio.run(_session)
    names = {s.name for s in exporter.get_finished_spans()}
    assert "MCP send tools/call add" in names and "tools/call add" in names  # mcp's own again


def test_instrument_twice_is_idempotent(tracing: Tracing) -> None:
    McpInstrumentor().instrument(tracer_provider=tracing.provider)  # already instrumented: no-op
    anyio.run(_session)
    names = [s.name for s in tracing.spans()]
    assert names.count("tools/call add") == 2  # one CLIENT, one SERVER
    tracing.instrumentor.uninstrument()
    assert not _patched()
    tracing.instrumentor.uninstrument()  # twice: still fine


def test_results_and_errors_unchanged(tracing: Tracing) -> None:
    traced = anyio.run(_session)
    tracing.instrumentor.uninstrument()
    plain = anyio.run(_session)
    assert traced == plain
    assert traced["error"][1] == -32602


def test_suppression(tracing: Tracing, builtin_tracer: TracerProvider) -> None:
    exporter = InMemorySpanExporter()
    builtin_tracer.add_span_processor(SimpleSpanProcessor(exporter))

    async def main() -> dict[str, Any]:
        with suppress_instrumentation():
            return await _session()

    assert anyio.run(main)["add"]["structured_content"] == {"result": 42}
    assert tracing.spans() == []
    assert exporter.get_finished_spans() == ()


class _BrokenPropagator(TextMapPropagator):
    def extract(self, carrier: Any, context: Any = None, getter: Any = None) -> Any:
        raise RuntimeError("extract broke")

    def inject(self, carrier: Any, context: Any = None, setter: Any = None) -> None:
        raise RuntimeError("inject broke")

    @property
    def fields(self) -> set[str]:
        return {"x"}


@pytest.fixture
def broken_propagator(monkeypatch: pytest.MonkeyPatch) -> None:
    # _meta is written by the instrumentor's own W3C propagator, not the global one.
    monkeypatch.setattr(mcp_propagation, "_TRACECONTEXT", _BrokenPropagator())


@pytest.mark.internal_errors_expected
def test_broken_propagator_costs_only_propagation(
    tracing: Tracing, broken_propagator: None, fail_on_internal_errors: list[BaseException]
) -> None:
    result = anyio.run(_session)
    assert result["add"]["structured_content"] == {"result": 42}
    assert any("inject broke" in str(e) for e in fail_on_internal_errors)
    spans = tracing.spans()
    clients = [s for s in spans if s.name == "tools/call add" and s.kind.name == "CLIENT"]
    servers = [s for s in spans if s.name == "tools/call add" and s.kind.name == "SERVER"]
    assert len(clients) == 1 and len(servers) == 1
    # No _meta context arrived; the ambient context is the parent (in-process memory streams
    # carry the sender's contextvars, so that is the client span here).
    parent = servers[0].parent
    assert parent is not None and clients[0].context is not None
    assert parent.span_id == clients[0].context.span_id and not parent.is_remote


def test_entry_point_and_dependencies() -> None:
    eps = metadata.entry_points(group="opentelemetry_instrumentor", name="mcp")
    assert [ep.value for ep in eps] == ["widgettrace.instrumentation.mcp:McpInstrumentor"]
    assert list(McpInstrumentor().instrumentation_dependencies()) == ["mcp >= 2.0, < 3"]
    assert callable(mcp.server._otel.OpenTelemetryMiddleware)  # the built-in we switch off
