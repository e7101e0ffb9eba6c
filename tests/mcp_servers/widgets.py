"""The demo MCP server every MCP test talks to, and the client callbacks it exercises.

Tools cover each outcome the instrumentation distinguishes: a result (``add``), a crash
(``boom``), an anticipated failure (``refuse``), progress (``slow``), server-to-client requests
(``ask_llm`` sampling, ``ask_user`` elicitation, ``roots``), a notification to the client
(``notify``), a log notification (``chatty``), a downstream call in the tool's context
(``peek``) and payloads (``echo``).
"""

from __future__ import annotations

from typing import Any

import anyio
from mcp import types
from mcp.client.session import ClientRequestContext
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from opentelemetry import baggage, trace

__all__ = ["CALLBACKS", "build_server", "list_roots", "on_elicit", "on_sample"]


def build_server(name: str = "widgets") -> MCPServer:
    server = MCPServer(name)

    @server.tool()
    def add(a: int, b: int) -> int:
        return a + b

    @server.tool()
    def boom() -> int:
        raise ValueError("kaboom in tool")

    @server.tool()
    def refuse() -> int:
        raise ToolError("refused on purpose")

    @server.tool()
    async def slow(ctx: Context, seconds: float = 0.0, steps: int = 2) -> str:
        for i in range(steps):
            await ctx.report_progress(i + 1, steps, f"step {i + 1}")
        await anyio.sleep(seconds)
        return "done"

    @server.tool()
    async def ask_llm(ctx: Context) -> str:
        result = await ctx.request_context.session.create_message(
            [types.SamplingMessage(role="user", content=types.TextContent(type="text", text="hi"))],
            max_tokens=5,
        )
        content = result.content
        return content.text if isinstance(content, types.TextContent) else "?"

    @server.tool()
    async def ask_user(ctx: Context) -> str:
        result = await ctx.request_context.session.elicit(
            "name?", {"type": "object", "properties": {"name": {"type": "string"}}}
        )
        return str((result.content or {}).get("name"))

    @server.tool()
    async def roots(ctx: Context) -> int:
        result = await ctx.request_context.session.list_roots()
        return len(result.roots)

    @server.tool()
    async def notify(ctx: Context) -> str:
        await ctx.request_context.session.send_tool_list_changed()
        return "sent"

    @server.tool()
    async def chatty(ctx: Context) -> str:
        """A log notification to the client (delivered when the client asked for logs)."""
        await ctx.log("info", "hello from tool")
        return "ok"

    @server.tool()
    def peek() -> dict[str, Any]:
        """What the tool's own code sees: the current trace and the baggage."""
        span_ctx = trace.get_current_span().get_span_context()
        return {
            "trace_id": format(span_ctx.trace_id, "032x"),
            "span_id": format(span_ctx.span_id, "016x"),
            "baggage": {k: str(v) for k, v in baggage.get_all().items()},
        }

    @server.tool()
    def echo(data: dict[str, Any]) -> dict[str, Any]:
        return data

    @server.prompt()
    def greet(who: str) -> str:
        return f"hello {who}"

    @server.resource("widget://info")
    def info() -> str:
        return "widget info"

    return server


async def on_sample(
    context: ClientRequestContext, params: types.CreateMessageRequestParams
) -> types.CreateMessageResult:
    return types.CreateMessageResult(
        role="assistant", content=types.TextContent(type="text", text="sampled"), model="m"
    )


async def on_elicit(
    context: ClientRequestContext, params: types.ElicitRequestParams
) -> types.ElicitResult:
    return types.ElicitResult(action="accept", content={"name": "ada"})


async def list_roots(context: ClientRequestContext) -> types.ListRootsResult:
    return types.ListRootsResult(
        roots=[types.Root.model_validate({"uri": "file:///tmp/w", "name": "w"})]
    )


CALLBACKS: dict[str, Any] = {
    "sampling_callback": on_sample,
    "elicitation_callback": on_elicit,
    "list_roots_callback": list_roots,
}
