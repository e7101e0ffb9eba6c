"""What the MCP spans and metrics say: errors, tool failures, timeouts, cancellation, progress,
server-to-client requests, notifications, propagation, the histograms, tool exceptions reaching
the error sink, and opt-in payload capture. Real in-process client/server pairs: the
``DirectDispatcher`` (``mode="auto"``) and JSON-RPC over memory streams (``mode="legacy"``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.server import Server
from mcp.shared.exceptions import MCPError
from mcp_servers.fixtures import Tracing, by_name, tracing
from mcp_servers.widgets import CALLBACKS, build_server
from opentelemetry import baggage, context, trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from widgettrace.instrumentation import scope
from widgettrace.instrumentation.mcp import DURATION_BUCKETS, McpInstrumentor, redact

__all__ = ["tracing"]

MODES = pytest.mark.parametrize("mode", ["auto", "legacy"])


def one(spans: list[ReadableSpan], name: str, kind: str) -> ReadableSpan:
    found = by_name(spans, name, kind)
    assert len(found) == 1, (name, kind, [(s.name, s.kind.name) for s in spans])
    return found[0]


def child_of(child: ReadableSpan, parent: ReadableSpan) -> bool:
    """``child`` is ``parent``'s child; across peers (SERVER under CLIENT) the parent must have
    arrived through ``params._meta`` (a remote parent), not through shared contextvars."""
    assert child.parent is not None and parent.context is not None and child.context is not None
    across = child.kind is SpanKind.SERVER and parent.kind is SpanKind.CLIENT
    return bool(
        child.parent.span_id == parent.context.span_id
        and child.context.trace_id == parent.context.trace_id
        and (child.parent.is_remote or not across)
    )


@pytest.fixture
def sink() -> Iterator[list[scope.ErrorReport]]:
    reports: list[scope.ErrorReport] = []
    saved = scope.get_error_sink()
    scope.set_error_sink(reports.append)
    try:
        yield reports
    finally:
        scope.set_error_sink(saved)


@MODES
def test_jsonrpc_error_sets_code_and_status(tracing: Tracing, mode: str) -> None:
    async def main() -> None:
        async with Client(build_server(), mode=mode) as client:
            with pytest.raises(MCPError) as raised:
                await client.read_resource("widget://missing")
            assert raised.value.error.code == -32602

    anyio.run(main)
    spans = tracing.spans()
    for kind in ("CLIENT", "SERVER"):
        span = one(spans, "resources/read", kind)
        assert span.attributes is not None
        assert span.attributes["error.type"] == "-32602"
        assert span.attributes["rpc.response.status_code"] == "-32602"
        assert span.attributes["mcp.resource.uri"] == "widget://missing"
        assert span.status.status_code is StatusCode.ERROR
        assert span.status.description


@MODES
def test_tool_errors_on_both_sides(tracing: Tracing, mode: str, sink: list[Any]) -> None:
    async def main() -> None:
        async with Client(build_server(), mode=mode) as client:
            assert (await client.call_tool("boom", {})).is_error
            assert (await client.call_tool("refuse", {})).is_error

    anyio.run(main)
    spans = tracing.spans()
    for tool in ("boom", "refuse"):
        for kind in ("CLIENT", "SERVER"):
            span = one(spans, f"tools/call {tool}", kind)
            assert span.attributes is not None
            assert span.attributes["error.type"] == "tool_error"
            assert span.status.status_code is StatusCode.ERROR
            assert "rpc.response.status_code" not in span.attributes
    # The crash reached the sink once, as the original exception, linked to the tool's span;
    # the ToolError raised on purpose did not.
    assert len(sink) == 1
    report = sink[0]
    assert isinstance(report.exception, ValueError) and str(report.exception) == "kaboom in tool"
    server = one(spans, "tools/call boom", "SERVER")
    assert server.context is not None
    assert (report.trace_id, report.span_id) == (server.context.trace_id, server.context.span_id)
    assert [e.name for e in server.events] == ["exception"]
    assert not one(spans, "tools/call refuse", "SERVER").events


def test_lowlevel_handler_exception_is_captured(tracing: Tracing, sink: list[Any]) -> None:
    async def crash(ctx: Any, params: Any) -> Any:
        raise RuntimeError("handler crashed")

    server: Server[Any] = Server("low", on_call_tool=crash)

    async def main() -> None:
        async with Client(server, mode="legacy") as client:
            with pytest.raises(MCPError):
                await client.call_tool("x", {})

    anyio.run(main)
    span = one(tracing.spans(), "tools/call x", "SERVER")
    assert span.attributes is not None and span.attributes["error.type"] == "RuntimeError"
    assert [e.name for e in span.events] == ["exception"]  # recorded once
    assert len(sink) == 1 and isinstance(sink[0].exception, RuntimeError)
    client = one(tracing.spans(), "tools/call x", "CLIENT")
    assert client.attributes is not None and client.attributes["error.type"] == "0"


def test_timeout_and_peer_cancellation(tracing: Tracing) -> None:
    async def main() -> None:
        async with Client(build_server(), mode="legacy") as client:
            with pytest.raises(MCPError):
                await client.call_tool("slow", {"seconds": 5, "steps": 0}, read_timeout_seconds=0.2)
            await anyio.sleep(0.05)  # let the server settle the cancelled handler

    anyio.run(main)
    spans = tracing.spans()
    request = one(spans, "tools/call slow", "CLIENT")
    assert request.attributes is not None and request.attributes["error.type"] == "timeout"
    assert request.status.status_code is StatusCode.ERROR
    cancel = one(spans, "notifications/cancelled", "CLIENT")
    assert child_of(cancel, request)
    server = one(spans, "tools/call slow", "SERVER")
    assert server.attributes is not None and server.attributes["error.type"] == "cancelled"
    assert child_of(one(spans, "notifications/cancelled", "SERVER"), cancel)


def test_caller_cancellation(tracing: Tracing) -> None:
    async def main() -> None:
        async with Client(build_server(), mode="auto") as client:
            with anyio.move_on_after(0.1):
                await client.call_tool("slow", {"seconds": 5, "steps": 0})

    anyio.run(main)
    for kind in ("CLIENT", "SERVER"):
        span = one(tracing.spans(), "tools/call slow", kind)
        assert span.attributes is not None and span.attributes["error.type"] == "cancelled"


@MODES
def test_progress_becomes_span_events(tracing: Tracing, mode: str) -> None:
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    async def main() -> None:
        async with Client(build_server(), mode=mode) as client:
            await client.call_tool("slow", {"steps": 3}, progress_callback=on_progress)
            await anyio.sleep(0.05)  # progress callbacks run in their own tasks

    anyio.run(main)
    assert seen == [1.0, 2.0, 3.0]  # the application's callback still gets every update
    spans = tracing.spans()
    assert not [s for s in spans if "progress" in s.name]
    request = one(spans, "tools/call slow", "CLIENT")
    events = [e for e in request.events if e.name == "mcp.progress"]
    assert [e.attributes["mcp.progress.value"] for e in events if e.attributes] == [1.0, 2.0, 3.0]
    assert events[0].attributes and events[0].attributes["mcp.progress.total"] == 3.0
    assert events[0].attributes["mcp.progress.message"] == "step 1"
    if mode == "legacy":  # over JSON-RPC the sender records them too
        server = one(spans, "tools/call slow", "SERVER")
        assert len([e for e in server.events if e.name == "mcp.progress"]) == 3


def test_server_to_client_requests_and_notifications(tracing: Tracing) -> None:
    async def main() -> None:
        async with Client(build_server(), mode="legacy", **CALLBACKS) as client:
            for tool in ("ask_llm", "ask_user", "roots", "notify"):
                assert not (await client.call_tool(tool, {})).is_error
            await anyio.sleep(0.05)

    anyio.run(main)
    spans = tracing.spans()
    for tool, method in (
        ("ask_llm", "sampling/createMessage"),
        ("ask_user", "elicitation/create"),
        ("roots", "roots/list"),
        ("notify", "notifications/tools/list_changed"),
    ):
        handler = one(spans, f"tools/call {tool}", "SERVER")
        sent = one(spans, method, "CLIENT")  # sent by the server
        received = one(spans, method, "SERVER")  # handled by the client
        assert child_of(sent, handler), method
        if method in ("roots/list", "notifications/tools/list_changed"):
            # Sent without params: no _meta is created for it (the wire stays as mcp wrote it).
            assert received.parent is None or not received.parent.is_remote
        else:
            assert child_of(received, sent), method
        assert sent.attributes is not None and sent.attributes["mcp.method.name"] == method
        assert sent.attributes["network.transport"] == "inproc"
        assert sent.attributes["mcp.protocol.version"] == "2025-11-25"
        if not method.startswith("notifications/"):
            assert received.attributes is not None
            assert (
                received.attributes["jsonrpc.request.id"] == sent.attributes["jsonrpc.request.id"]
            )
    # Client-to-server notification without params: traced on both sides, but no _meta is
    # created for it (notifications with params, e.g. notifications/cancelled, do carry it).
    initialized = one(spans, "notifications/initialized", "SERVER")
    assert one(spans, "notifications/initialized", "CLIENT")
    assert initialized.parent is None or not initialized.parent.is_remote


@MODES
def test_context_and_baggage_reach_the_tool(tracing: Tracing, mode: str) -> None:
    tracer = tracing.provider.get_tracer("app")
    result: dict[str, Any] = {}

    async def main() -> None:
        async with Client(build_server(), mode=mode) as client:
            token = context.attach(baggage.set_baggage("widget.id", "w-7"))
            try:
                with tracer.start_as_current_span("widget A"):
                    res = await client.call_tool("peek", {})
                    result.update(res.structured_content or {})
            finally:
                context.detach(token)

    anyio.run(main)
    spans = tracing.spans()
    app = one(spans, "widget A", "INTERNAL")
    client = one(spans, "tools/call peek", "CLIENT")
    server = one(spans, "tools/call peek", "SERVER")
    assert child_of(client, app) and child_of(server, client)
    assert server.context is not None
    assert result["trace_id"] == format(server.context.trace_id, "032x")
    assert result["span_id"] == format(server.context.span_id, "016x")
    assert result["baggage"] == {"widget.id": "w-7"}


def test_prompt_and_resource_attributes(tracing: Tracing) -> None:
    async def main() -> None:
        async with Client(build_server(), mode="legacy") as client:
            await client.get_prompt("greet", {"who": "ada"})
            await client.read_resource("widget://info")

    anyio.run(main)
    spans = tracing.spans()
    for kind in ("CLIENT", "SERVER"):
        prompt = one(spans, "prompts/get greet", kind)
        assert prompt.attributes is not None
        assert prompt.attributes["gen_ai.prompt.name"] == "greet"
        assert "gen_ai.operation.name" not in prompt.attributes
        resource = one(spans, "resources/read", kind)  # the URI stays out of the name
        assert resource.attributes is not None
        assert resource.attributes["mcp.resource.uri"] == "widget://info"
    assert one(spans, "prompts/get greet", "CLIENT").kind is SpanKind.CLIENT


def test_duration_histograms(tracing: Tracing) -> None:
    async def main() -> None:
        async with Client(build_server(), mode="legacy") as client:
            await client.call_tool("add", {"a": 1, "b": 2})
            await client.call_tool("refuse", {})

    anyio.run(main)
    metrics = tracing.histograms()
    for name in (
        "mcp.client.operation.duration",
        "mcp.server.operation.duration",
        "mcp.client.session.duration",
        "mcp.server.session.duration",
    ):
        metric = metrics[name]
        assert metric.unit == "s"
        points = list(metric.data.data_points)
        assert points, name
        assert tuple(points[0].explicit_bounds) == DURATION_BUCKETS
    for name in ("mcp.client.operation.duration", "mcp.server.operation.duration"):
        by_attrs = {
            (p.attributes.get("mcp.method.name"), p.attributes.get("gen_ai.tool.name")): p
            for p in metrics[name].data.data_points
        }
        add = by_attrs[("tools/call", "add")]
        assert add.count == 1 and "error.type" not in add.attributes
        assert add.attributes["network.transport"] == "inproc"
        assert "jsonrpc.request.id" not in add.attributes  # high cardinality: spans only
        assert by_attrs[("tools/call", "refuse")].attributes["error.type"] == "tool_error"
    session = next(iter(metrics["mcp.client.session.duration"].data.data_points))
    assert session.attributes["mcp.protocol.version"] == "2025-11-25"


def test_payloads_not_captured_by_default(tracing: Tracing) -> None:
    async def main() -> None:
        async with Client(build_server(), mode="legacy") as client:
            await client.call_tool("echo", {"data": {"password": "hunter2"}})

    anyio.run(main)
    for span in tracing.spans():
        text = json.dumps(dict(span.attributes or {}))
        assert "hunter2" not in text and "gen_ai.tool.call" not in text


def test_payload_capture_opt_in_redacts_and_caps(tracing: Tracing) -> None:
    tracing.instrumentor.uninstrument()
    McpInstrumentor().instrument(
        tracer_provider=tracing.provider, capture_payloads=True, payload_max_bytes=300
    )
    data = {
        "user": "ada@example.org",
        "api_key": "abc",
        "headers": {"Authorization": "Bearer xyz", "X-Trace": "ok"},
        "nested": [{"refreshToken": "r"}, "ghp_abcdefghijklmnopqrstu"],
        "note": "visible",
    }

    async def main() -> None:
        async with Client(build_server(), mode="legacy") as client:
            res = await client.call_tool("echo", {"data": data})
            assert res.structured_content == data  # the application sees the real values
            await client.call_tool("echo", {"data": {"blob": "x" * 5000}})

    anyio.run(main)
    spans = tracing.spans()
    for kind in ("CLIENT", "SERVER"):
        first, second = by_name(spans, "tools/call echo", kind)
        assert first.attributes is not None and second.attributes is not None
        args = str(first.attributes["gen_ai.tool.call.arguments"])
        result = str(first.attributes["gen_ai.tool.call.result"])
        for text in (args, result):
            for secret in ("ada@example.org", "abc", "xyz", "ghp_", '"r"'):
                assert secret not in text, (secret, text)
            assert "visible" in text and "X-Trace" in text
        assert json.loads(args)["data"]["note"] == "visible"
        capped = str(second.attributes["gen_ai.tool.call.arguments"])
        assert len(capped.encode()) <= 300 + len("...[truncated]")
        assert capped.endswith("...[truncated]")


def test_redact_helper() -> None:
    assert redact({"sessionId": "s", "monkey": "m", "key": "k", "apiKey": "a"}) == {
        "sessionId": "[Filtered]",
        "monkey": "m",
        "key": "[Filtered]",
        "apiKey": "[Filtered]",
    }
    assert redact("mail bob@example.com now") == "mail [Filtered] now"
    assert redact("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc") == "[Filtered]"
    assert redact({"cookie": {"a": 1}, "n": [1, 2.5, None, True]}) == {
        "cookie": "[Filtered]",
        "n": [1, 2.5, None, True],
    }


def test_sampled_out_still_propagates(tracing: Tracing) -> None:
    """A non-recording span still carries the trace to the server (parent-based sampling)."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    tracing.instrumentor.uninstrument()
    provider = TracerProvider(sampler=ALWAYS_OFF)
    McpInstrumentor().instrument(tracer_provider=provider)
    seen: dict[str, Any] = {}

    async def main() -> None:
        async with Client(build_server(), mode="legacy") as client:
            with provider.get_tracer("app").start_as_current_span("root") as root:
                res = await client.call_tool("peek", {})
                seen.update(res.structured_content or {})
                seen["root"] = format(root.get_span_context().trace_id, "032x")

    anyio.run(main)
    assert seen["trace_id"] == seen["root"]
    assert not trace.get_current_span().is_recording()
