"""MCP tracing over every transport, with real client/server pairs.

Each test runs the demo server (tests/mcp_servers/widgets.py) behind one transport and checks the
CLIENT span on the caller, the SERVER span on the callee, that the server span is the client
span's child (context carried in ``params._meta``), the transport attributes, and that mcp's
built-in tracing emitted nothing (it is replaced, not duplicated).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.sse import sse_client
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver import Context
from mcp_servers.fixtures import Tracing, by_name, tracing
from mcp_servers.spans_file import read_spans, span_dict
from mcp_servers.uvicorn_thread import serve
from mcp_servers.widgets import CALLBACKS, build_server
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.trace import SpanKind

__all__ = ["tracing"]

SERVER_SCRIPT = Path(__file__).parent / "mcp_servers" / "stdio_server.py"


def _no_builtin(spans: list[dict[str, Any]]) -> None:
    assert not [s for s in spans if s["scope"] == "mcp-python-sdk" or s["name"].startswith("MCP ")]


# Sent without params (or with empty ones): no _meta is created for them, so the receiver
# parents on its ambient context, not on the sender's span.
UNLINKED = frozenset({"tools/list", "notifications/initialized", "ping", "roots/list"})


def _pair(spans: list[dict[str, Any]], name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    clients = [s for s in spans if s["name"] == name and s["kind"] == "CLIENT"]
    servers = [s for s in spans if s["name"] == name and s["kind"] == "SERVER"]
    assert len(clients) == 1, (name, clients)
    assert len(servers) == 1, (name, servers)
    client, server = clients[0], servers[0]
    if name in UNLINKED:
        assert not server["parent_remote"]
        return client, server
    assert server["trace_id"] == client["trace_id"]
    assert server["parent_id"] == client["span_id"]
    assert server["parent_remote"], "the parent must come from params._meta"
    return client, server


def _tool_call_attrs(span: dict[str, Any], request_id: str | None = None) -> None:
    attrs = span["attributes"]
    assert attrs["mcp.method.name"] == "tools/call"
    assert attrs["gen_ai.tool.name"] == "add"
    assert attrs["gen_ai.operation.name"] == "execute_tool"
    assert attrs["jsonrpc.request.id"]
    if request_id is not None:
        assert attrs["jsonrpc.request.id"] == request_id
    assert "error.type" not in attrs
    assert span["status"] == "UNSET"


def test_stdio_subprocess(tracing: Tracing, tmp_path: Path) -> None:
    spans_path = tmp_path / "server-spans.jsonl"
    env = {**os.environ, "WIDGETTRACE_TEST_SPANS": str(spans_path)}
    params = StdioServerParameters(command=sys.executable, args=[str(SERVER_SCRIPT)], env=env)

    async def main() -> None:
        # stdio_client(params): Client(params) itself needs mcp >= 2.1 (we support 2.0).
        async with Client(stdio_client(params), mode="legacy", **CALLBACKS) as client:
            assert (await client.call_tool("add", {"a": 2, "b": 3})).structured_content == {
                "result": 5
            }
            assert (await client.call_tool("ask_llm", {})).structured_content == {
                "result": "sampled"
            }

    anyio.run(main)
    client_spans = [span_dict(s) for s in tracing.spans()]
    server_spans = read_spans(spans_path)
    spans = client_spans + server_spans
    _no_builtin(spans)
    client, server = _pair(spans, "tools/call add")
    _tool_call_attrs(client)
    _tool_call_attrs(server, client["attributes"]["jsonrpc.request.id"])
    for span in (client, server):
        assert span["attributes"]["network.transport"] == "pipe"
        assert span["attributes"]["mcp.protocol.version"] == "2025-11-25"
        assert "mcp.session.id" not in span["attributes"]  # stdio has no sessions
        assert "server.address" not in span["attributes"]
    _pair(spans, "initialize")
    _pair(spans, "notifications/initialized")
    # Server-to-client sampling: CLIENT span in the server process, SERVER span in ours,
    # nested under the server's tools/call span.
    _, ask_server = _pair(spans, "tools/call ask_llm")
    sample_client, sample_server = _pair(spans, "sampling/createMessage")
    assert sample_client in server_spans and sample_server in client_spans
    assert sample_client["parent_id"] == ask_server["span_id"]
    assert sample_server["attributes"]["network.transport"] == "pipe"


def test_streamable_http_under_uvicorn(tracing: Tracing) -> None:
    server = build_server()
    app = OpenTelemetryMiddleware(server.streamable_http_app(), tracer_provider=tracing.provider)

    async def main(url: str) -> None:
        async with Client(f"{url}/mcp", mode="legacy", **CALLBACKS) as client:
            assert (await client.call_tool("add", {"a": 2, "b": 3})).structured_content == {
                "result": 5
            }
            assert (await client.call_tool("roots", {})).structured_content == {"result": 1}

    with serve(app) as url:
        anyio.run(main, url)
        port = int(url.rsplit(":", 1)[1])
    spans = [span_dict(s) for s in tracing.spans()]
    _no_builtin(spans)
    client, server_span = _pair(spans, "tools/call add")
    _tool_call_attrs(client)
    _tool_call_attrs(server_span, client["attributes"]["jsonrpc.request.id"])
    for span in (client, server_span):
        attrs = span["attributes"]
        assert attrs["network.transport"] == "tcp"
        assert attrs["network.protocol.name"] == "http"
        assert attrs["mcp.protocol.version"] == "2025-11-25"
    assert client["attributes"]["server.address"] == "127.0.0.1"
    assert client["attributes"]["server.port"] == port
    assert server_span["attributes"]["client.address"] == "127.0.0.1"
    assert isinstance(server_span["attributes"]["client.port"], int)
    session = server_span["attributes"]["mcp.session.id"]
    assert session and client["attributes"]["mcp.session.id"] == session
    # The MCP server span is a child of the MCP client span and links the HTTP server span.
    http_spans = [s for s in spans if s["scope"] and "asgi" in s["scope"] and s["kind"] == "SERVER"]
    assert server_span["links"] and server_span["links"][0] in {s["span_id"] for s in http_spans}
    roots_client, roots_server = _pair(spans, "roots/list")
    assert roots_client["attributes"]["network.transport"] == "tcp"
    assert roots_server["attributes"]["mcp.session.id"] == session


def test_sse_under_uvicorn(tracing: Tracing) -> None:
    server = build_server()

    async def main(url: str) -> None:
        async with Client(sse_client(f"{url}/sse"), mode="legacy", **CALLBACKS) as client:
            assert (await client.call_tool("add", {"a": 2, "b": 3})).structured_content == {
                "result": 5
            }

    with serve(server.sse_app()) as url:
        anyio.run(main, url)
    spans = [span_dict(s) for s in tracing.spans()]
    _no_builtin(spans)
    client, server_span = _pair(spans, "tools/call add")
    _tool_call_attrs(server_span, client["attributes"]["jsonrpc.request.id"])
    for span in (client, server_span):
        assert span["attributes"]["network.transport"] == "tcp"
        assert span["attributes"]["network.protocol.name"] == "http"
    assert client["attributes"]["server.address"] == "127.0.0.1"
    assert server_span["attributes"]["client.address"] == "127.0.0.1"


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_in_process(tracing: Tracing, mode: str) -> None:
    """auto: the DirectDispatcher (no JSON-RPC, modern protocol); legacy: memory streams."""

    async def main() -> None:
        async with Client(build_server(), mode=mode) as client:
            assert (await client.call_tool("add", {"a": 2, "b": 3})).structured_content == {
                "result": 5
            }

    anyio.run(main)
    spans = [span_dict(s) for s in tracing.spans()]
    _no_builtin(spans)
    client, server_span = _pair(spans, "tools/call add")
    _tool_call_attrs(client)
    _tool_call_attrs(server_span, client["attributes"]["jsonrpc.request.id"])
    version = "2026-07-28" if mode == "auto" else "2025-11-25"
    for span in (client, server_span):
        assert span["attributes"]["network.transport"] == "inproc"
        assert span["attributes"]["mcp.protocol.version"] == version
        assert "mcp.session.id" not in span["attributes"]
    raw = by_name(tracing.spans(), "tools/call add", "CLIENT")[0]
    assert raw.kind is SpanKind.CLIENT


def test_streamable_http_client_directly(tracing: Tracing) -> None:
    """The transport function used directly (not through ``Client(url)``) is recognised too."""
    server = build_server()

    async def main(url: str) -> None:
        async with Client(streamable_http_client(f"{url}/mcp"), mode="legacy") as client:
            await client.list_tools()

    with serve(server.streamable_http_app()) as url:
        anyio.run(main, url)
    spans = [span_dict(s) for s in tracing.spans()]
    client, server_span = _pair(spans, "tools/list")
    assert client["attributes"]["network.transport"] == "tcp"
    assert client["attributes"]["mcp.session.id"] == server_span["attributes"]["mcp.session.id"]


def test_streamable_http_modern_protocol(tracing: Tracing) -> None:
    """``mode="auto"`` negotiates 2026-07-28 over HTTP: stateless, so no mcp.session.id."""
    server = build_server()

    async def main(url: str) -> None:
        async with Client(f"{url}/mcp") as client:
            assert client.protocol_version == "2026-07-28"
            await client.call_tool("add", {"a": 1, "b": 1})

    with serve(server.streamable_http_app()) as url:
        anyio.run(main, url)
    spans = [span_dict(s) for s in tracing.spans()]
    _no_builtin(spans)
    client, server_span = _pair(spans, "tools/call add")
    for span in (client, server_span):
        assert span["attributes"]["network.transport"] == "tcp"
        assert span["attributes"]["mcp.protocol.version"] == "2026-07-28"
        assert "mcp.session.id" not in span["attributes"]
    assert server_span["attributes"]["client.address"] == "127.0.0.1"


def test_streamable_http_modern_notifications(tracing: Tracing) -> None:
    """2026-07-28 over HTTP: a tool's log and ``resources/updated`` notifications are traced.

    They ride the request's SSE response (``notifications/message``) and the client's
    ``subscriptions/listen`` stream (``notifications/resources/updated``), not a dispatcher:
    each gets a CLIENT span on the server and a SERVER span on the client, linked by _meta.
    """
    server = build_server()

    @server.tool()
    async def log_and_update(ctx: Context) -> str:
        await ctx.log("info", "hello from tool")
        await ctx.notify_resource_updated("widget://info")
        return "ok"

    received: list[Any] = []

    async def on_log(params: Any) -> None:
        received.append(params.data)

    async def main(url: str) -> None:
        async with Client(f"{url}/mcp", log_level="info", logging_callback=on_log) as client:
            assert client.protocol_version == "2026-07-28"
            async with client.listen(resource_subscriptions=["widget://info"]) as sub:
                await client.call_tool("log_and_update", {})
                with anyio.fail_after(5):
                    async for event in sub:
                        received.append(event)
                        break

    with serve(server.streamable_http_app()) as url:
        anyio.run(main, url)
    assert len(received) == 2, received
    spans = [span_dict(s) for s in tracing.spans()]
    _no_builtin(spans)
    _, tool_server = _pair(spans, "tools/call log_and_update")
    log_client, _ = _pair(spans, "notifications/message")
    assert log_client["parent_id"] == tool_server["span_id"]
    updated_client, _ = _pair(spans, "notifications/resources/updated")
    for span in (log_client, updated_client):
        attrs = span["attributes"]
        assert attrs["network.transport"] == "tcp"
        assert attrs["mcp.protocol.version"] == "2026-07-28"
    assert updated_client["attributes"]["mcp.resource.uri"] == "widget://info"


async def _ignore_log(params: Any) -> None:
    return None


@pytest.mark.parametrize(
    ("transport", "mode"),
    [
        ("memory", "legacy"),
        ("direct", "auto"),
        ("http", "legacy"),
        ("http", "auto"),
        ("stdio", "legacy"),
        ("stdio", "auto"),
    ],
)
def test_log_notification_traced_on_every_era_and_transport(
    tracing: Tracing, tmp_path: Path, transport: str, mode: str
) -> None:
    """A tool's ``notifications/message``: a CLIENT span where the server sends it, a SERVER span
    where the client receives it, on both protocol eras and every transport."""
    spans_path = tmp_path / "server-spans.jsonl"

    async def session(target: Any) -> str | None:
        async with Client(
            target, mode=mode, log_level="info", logging_callback=_ignore_log
        ) as client:
            assert (await client.call_tool("chatty", {})).structured_content == {"result": "ok"}
            await anyio.sleep(0.05)
            return client.protocol_version

    if transport in ("memory", "direct"):
        version = anyio.run(session, build_server())
    elif transport == "http":
        with serve(build_server().streamable_http_app()) as url:
            version = anyio.run(session, f"{url}/mcp")
    else:
        env = {**os.environ, "WIDGETTRACE_TEST_SPANS": str(spans_path)}
        params = StdioServerParameters(command=sys.executable, args=[str(SERVER_SCRIPT)], env=env)
        version = anyio.run(session, stdio_client(params))
    assert version == ("2026-07-28" if mode == "auto" else "2025-11-25")
    spans = [span_dict(s) for s in tracing.spans()]
    if transport == "stdio":
        spans += read_spans(spans_path)
    sent, received = _pair(spans, "notifications/message")
    _, handler = _pair(spans, "tools/call chatty")
    assert sent["parent_id"] == handler["span_id"]
    assert sent["attributes"]["mcp.protocol.version"] == version
    assert received["attributes"]["mcp.method.name"] == "notifications/message"
