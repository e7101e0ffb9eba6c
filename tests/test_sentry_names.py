"""Sentry's names beside the OTel ones, exactly as getsentry/sentry-conventions defines them.

Attribute names are checked against the conventions' published registry (the PyPI package
``sentry-conventions``, a test dependency): every Sentry name we set is defined there, with the
type we send, and each alias we write is one the registry lists for the OTel name. Span ops are
not in that package; their lists below are copied from the upstream files named beside them.
Real MCP sessions (in-process and streamable HTTP) then show the names on the spans, and the
span-to-Sentry conversion gives them ops from those lists.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from mcp import Client
from mcp_servers.fixtures import Tracing, tracing
from mcp_servers.uvicorn_thread import serve
from mcp_servers.widgets import build_server
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sentry_conventions.attributes import ATTRIBUTE_METADATA, AttributeType

from widgettrace.exporters._sentry_convert import op_for
from widgettrace.instrumentation import api
from widgettrace.instrumentation import semconv as sc

__all__ = ["tracing"]

# getsentry/sentry-conventions model/op/mcp.json at 1211dbdd56db41b78f81021b4905463f932f53b3
MCP_OPS = frozenset(
    {"mcp.server", "mcp.notification.client_to_server", "mcp.notification.server_to_client"}
)
# getsentry/sentry-conventions model/op/gen_ai.json at 0c6226d3ea54c150f59f0a54a10813f0405beba6
GEN_AI_OPS = frozenset(
    {
        "gen_ai.chat",
        "gen_ai.execute_tool",
        "gen_ai.handoff",
        "gen_ai.invoke_agent",
        "gen_ai.embeddings",
        "gen_ai.generate_content",
        "gen_ai.rerank",
        "gen_ai.evaluate",
        "gen_ai.create_agent",
        "gen_ai.responses",
        "gen_ai.text_completion",
        "gen_ai.memory.client",
    }
)
SENTRY_NAMES = (
    sc.MCP_TOOL_NAME,
    sc.MCP_PROMPT_NAME,
    sc.MCP_REQUEST_ID,
    sc.MCP_TRANSPORT,
    sc.MCP_CLIENT_NAME,
    sc.MCP_RESOURCE_URI,
    sc.SENTRY_OP,
)


@pytest.mark.parametrize("name", SENTRY_NAMES)
def test_name_is_in_the_conventions(name: str) -> None:
    meta = ATTRIBUTE_METADATA.get(name)
    assert meta is not None, f"{name} is not a sentry-conventions attribute"
    assert meta.type is AttributeType.STRING


@pytest.mark.parametrize(("otel", "sentry"), sc.SENTRY_MCP_ALIASES)
def test_aliases_are_the_conventions_own(otel: str, sentry: str) -> None:
    meta = ATTRIBUTE_METADATA[sentry]
    # Both directions as the registry writes them; "backfill" means: send both names.
    assert otel in (meta.aliases or []), (sentry, meta.aliases)
    assert sentry in (ATTRIBUTE_METADATA[otel].aliases or [])
    if meta.deprecation is not None:
        assert meta.deprecation.replacement == otel
        assert meta.deprecation.status is not None
        assert meta.deprecation.status.value == "backfill"


def _by(spans: list[ReadableSpan], name: str, kind: str) -> dict[str, Any]:
    found = [s for s in spans if s.name == name and s.kind.name == kind]
    assert len(found) == 1, (name, kind, [s.name for s in spans])
    span = found[0]
    attrs = dict(span.attributes or {})
    attrs["__op__"] = op_for(span.kind, attrs)
    return attrs


def test_mcp_spans_carry_sentry_names_in_process(tracing: Tracing) -> None:
    async def main() -> None:
        async with Client(build_server(), mode="legacy") as client:
            await client.call_tool("add", {"a": 1, "b": 2})
            await client.get_prompt("greet", {"who": "ada"})
            await client.read_resource("widget://info")
            await client.call_tool("notify", {})

    anyio.run(main)
    spans = tracing.spans()
    tool = _by(spans, "tools/call add", "SERVER")
    assert tool["__op__"] == "mcp.server"
    assert tool[sc.MCP_TOOL_NAME] == tool[sc.GEN_AI_TOOL_NAME] == "add"
    assert tool[sc.MCP_REQUEST_ID] == tool[sc.JSONRPC_REQUEST_ID]
    assert tool[sc.MCP_TRANSPORT] == "memory"
    assert tool[sc.MCP_CLIENT_NAME] == "mcp"  # mcp's default clientInfo name
    client_tool = _by(spans, "tools/call add", "CLIENT")
    assert client_tool[sc.MCP_TOOL_NAME] == "add"
    assert client_tool[sc.MCP_REQUEST_ID] == client_tool[sc.JSONRPC_REQUEST_ID]
    prompt = _by(spans, "prompts/get greet", "SERVER")
    assert prompt[sc.MCP_PROMPT_NAME] == prompt[sc.GEN_AI_PROMPT_NAME] == "greet"
    resource = _by(spans, "resources/read", "SERVER")
    assert resource[sc.MCP_RESOURCE_URI] == "widget://info"
    # Notifications: Sentry's op by who sent them, on both sides.
    for kind in ("CLIENT", "SERVER"):
        assert (
            _by(spans, "notifications/initialized", kind)["__op__"]
            == "mcp.notification.client_to_server"
        )
        assert (
            _by(spans, "notifications/tools/list_changed", kind)["__op__"]
            == "mcp.notification.server_to_client"
        )
    for span in spans:
        attrs = dict(span.attributes or {})
        if span.kind.name == "SERVER" or sc.SENTRY_OP in attrs:
            op = op_for(span.kind, attrs)
            assert op in MCP_OPS, (span.name, op)
            assert op != "mcp.server" or not span.name.startswith("notifications/")


def test_streamable_http_modern_sentry_names(tracing: Tracing) -> None:
    async def main(url: str) -> None:
        async with Client(f"{url}/mcp", log_level="info", logging_callback=_ignore) as client:
            await client.call_tool("chatty", {})

    with serve(build_server().streamable_http_app()) as url:
        anyio.run(main, url)
    spans = tracing.spans()
    tool = _by(spans, "tools/call chatty", "SERVER")
    assert tool[sc.MCP_TRANSPORT] == "http"
    assert tool[sc.MCP_CLIENT_NAME] == "mcp"
    log = _by(spans, "notifications/message", "CLIENT")  # sent by the server's tool
    assert log["__op__"] == "mcp.notification.server_to_client"
    assert log[sc.MCP_TRANSPORT] == "http"
    assert _by(spans, "notifications/message", "SERVER")["__op__"] == (
        "mcp.notification.server_to_client"
    )


async def _ignore(params: Any) -> None:
    return None


def test_gen_ai_ops_are_the_agents_pages_ones() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    api.set_tracer_provider(provider)
    try:
        with api.agent_block_span("Block 5 QA agent"):
            with api.llm_call_span("gpt-4o-mini"):
                pass
            with api.llm_call_span("text-embedding-3-small", operation="embeddings"):
                pass
            with api.tool_span("search"):
                pass
    finally:
        api.set_tracer_provider(None)
    ops = {op_for(s.kind, dict(s.attributes or {})) for s in exporter.get_finished_spans()}
    assert ops == {"gen_ai.invoke_agent", "gen_ai.chat", "gen_ai.embeddings", "gen_ai.execute_tool"}
    assert ops <= GEN_AI_OPS
