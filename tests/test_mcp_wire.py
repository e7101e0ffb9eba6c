"""The MCP wire with and without the instrumentor: the same bytes except the W3C keys in _meta.

The MCP conventions (semantic-conventions-genai ``docs/gen-ai/mcp.md``, "Context propagation")
name ``traceparent``, ``tracestate`` and ``baggage`` in ``params._meta``, and nothing else. Each
test runs one scripted exchange twice against the demo server over real streamable HTTP (uvicorn
on 127.0.0.1): once bare, once instrumented with widgettrace's default global propagator (which
writes ``sentry-trace`` and ``sentry-*`` baggage on HTTP headers) and a Sentry DSC in the
baggage. A recording ASGI middleware keeps every JSON-RPC message's bytes, both directions.
Removing the W3C keys from the instrumented run must give the bare run's bytes, message by
message; nothing may be added where a message had no params (``ping``).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.server.mcpserver import Context
from mcp_servers.uvicorn_thread import serve
from mcp_servers.widgets import CALLBACKS, build_server
from opentelemetry import baggage, propagate
from opentelemetry import context as context_api
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from widgettrace.exporters.propagation import default_propagator
from widgettrace.instrumentation.mcp import McpInstrumentor

W3C_KEYS = frozenset({"traceparent", "tracestate", "baggage"})

Asgi = Callable[..., Awaitable[None]]


class WireRecorder:
    """ASGI middleware keeping the bytes of every JSON-RPC message in both directions."""

    def __init__(self, app: Asgi) -> None:
        self.app = app
        self.messages: list[bytes] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def recording_receive() -> dict[str, Any]:
            message: dict[str, Any] = await receive()
            body = message.get("body") or b""
            if message["type"] == "http.request" and body.strip():
                self.messages.append(body.strip())
            return message

        async def recording_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body":
                self._response(message.get("body") or b"")
            await send(message)

        await self.app(scope, recording_receive, recording_send)

    def _response(self, body: bytes) -> None:
        stripped = body.strip()
        if stripped.startswith(b"{"):
            self.messages.append(stripped)
            return
        for line in body.splitlines():  # SSE frames: one JSON-RPC message per data line
            if line.startswith(b"data:") and line[5:].strip():
                self.messages.append(line[5:].strip())


def _without_w3c(raw: bytes, drop_empty: bool = False) -> tuple[bytes, set[str]]:
    """The message re-encoded as mcp encodes it, minus the W3C _meta keys; the keys removed."""
    message = json.loads(raw)
    params = message.get("params")
    meta = params.get("_meta") if isinstance(params, dict) else None
    removed: set[str] = set()
    dropped = False
    if isinstance(meta, dict):
        removed = {key for key in meta if key in W3C_KEYS}
        for key in removed:
            del meta[key]
        if not meta and (removed or drop_empty):
            del params["_meta"]
            dropped = True
    if not removed and not dropped:
        return raw, removed
    # mcp writes compact JSON (pydantic model_dump_json) in field order; so does this.
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode(), removed


def _canonical(raw: bytes) -> str:
    return json.dumps(json.loads(raw), sort_keys=True)


def _build_app() -> Any:
    server = build_server()

    @server.tool()
    async def log_and_progress(ctx: Context) -> str:
        await ctx.log("info", "hello from tool")  # notifications/message
        await ctx.report_progress(1, 1, "half")
        return "ok"

    return server


async def _exchange(url: str, mode: str) -> None:
    async def on_log(params: Any) -> None:
        return None

    async with Client(
        f"{url}/mcp", mode=mode, log_level="info", logging_callback=on_log, **CALLBACKS
    ) as client:
        if mode == "legacy":
            await client.send_ping()  # 2026-07-28 has no ping
        await client.list_tools()
        await client.call_tool("add", {"a": 2, "b": 3})
        await client.call_tool("log_and_progress", {})
        await client.get_prompt("greet", {"who": "ada"})
        await client.read_resource("widget://info")
        if mode == "legacy":
            await client.call_tool("ask_llm", {})  # server-to-client request
            await client.call_tool("notify", {})  # server-to-client notification


def _run(mode: str, instrumented: bool) -> list[bytes]:
    recorder = WireRecorder(_build_app().streamable_http_app())
    saved = propagate.get_global_textmap()
    instrumentor = McpInstrumentor()
    token = None
    if instrumented:
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
        instrumentor.instrument(tracer_provider=provider, capture_payloads=False)
        # What opentelemetry-instrument sets up with widgettrace: sentry-trace + Sentry baggage,
        # and an incoming Sentry DSC plus an application entry in the baggage.
        propagate.set_global_textmap(default_propagator())
        ctx = baggage.set_baggage("sentry-trace_id", "0af7651916cd43dd8448eb211c80319c")
        ctx = baggage.set_baggage("widget.tenant", "acme", ctx)
        token = context_api.attach(ctx)
    else:
        propagate.set_global_textmap(
            CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()])
        )
    try:
        with serve(recorder) as url:
            anyio.run(_exchange, url, mode)
    finally:
        if token is not None:
            context_api.detach(token)
        if instrumented:
            instrumentor.uninstrument()
        propagate.set_global_textmap(saved)
    return recorder.messages


@pytest.fixture(params=["legacy", "auto"], ids=["2025-11-25", "2026-07-28"])
def mode(request: pytest.FixtureRequest) -> str:
    return request.param


def test_wire_unchanged_but_w3c_meta(mode: str) -> None:
    bare = _run(mode, instrumented=False)
    traced = _run(mode, instrumented=True)
    assert bare, "nothing recorded"

    injected: dict[str, set[str]] = {}
    for raw in traced:
        removed = _without_w3c(raw)[1]
        message = json.loads(raw)
        if removed:
            injected[str(message.get("method"))] = removed
            meta = message["params"]["_meta"]
            assert "sentry-" not in meta.get("baggage", ""), meta
            assert meta.get("baggage") == "widget.tenant=acme", meta
        # Only W3C keys may differ: no sentry-trace, no other propagation key in _meta.
        params = message.get("params")
        if isinstance(params, dict) and isinstance(params.get("_meta"), dict):
            assert "sentry-trace" not in params["_meta"], message

    # Same messages, same bytes, once the W3C keys are gone (order across concurrent HTTP
    # exchanges may differ, so compare as sorted multisets of exact byte strings).
    # An empty _meta is mcp's own choice (2.0 writes "_meta":{} on requests, 2.3 leaves it off),
    # so both sides drop it: what remains may differ only by the W3C keys.
    bare_normal = sorted(_without_w3c(raw, drop_empty=True)[0] for raw in bare)
    traced_normal = sorted(_without_w3c(raw, drop_empty=True)[0] for raw in traced)
    assert traced_normal == bare_normal or sorted(map(_canonical, traced_normal)) == sorted(
        map(_canonical, bare_normal)
    ), "the instrumented wire differs beyond the W3C _meta keys"
    # Messages we did not touch are byte-for-byte identical.
    untouched = [raw for raw in traced if not _without_w3c(raw)[1]]
    assert set(untouched) <= set(bare)

    # Propagation did happen where a message had params: requests and notifications.
    assert "tools/call" in injected
    assert "notifications/message" in injected
    assert injected["tools/call"] >= {"traceparent", "baggage"}
    # ping had no params: none created, in both runs.
    if mode == "legacy":
        # ping goes out exactly as mcp writes it: no params created (mcp 2.3 sends none; 2.0
        # sends "params":{"_meta":{}} itself), byte for byte.
        def pings(run: list[bytes]) -> list[bytes]:
            return [raw for raw in run if json.loads(raw).get("method") == "ping"]

        assert pings(traced)
        assert pings(traced) == pings(bare)
