"""The MCP server object: tools and resources registered on the SDK's ``MCPServer``.

:func:`build_server` registers :class:`~widgettrace.mcp_server._tools.Tools`' methods as tools
(the SDK derives each input schema from the annotations and each output schema from the return
model) and two kinds of resources: ``widgettrace://standup/latest`` (Markdown) and
``widgettrace://issues/{issue_id}`` (JSON), with every open issue listed by ``resources/list``.

A caller's mistake never comes back as a tool result that looks like data: arguments that fail
validation, an unknown tool, an unknown issue or trace, a bad time or cursor become a JSON-RPC
error ``INVALID_PARAMS`` (-32602) whose message says what to change.
"""

from __future__ import annotations

import json
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, ToolAnnotations
from mcp_types import Resource as MCPResource
from pydantic import ValidationError

from widgettrace import __version__
from widgettrace.mcp_server._backend import Backend, BadArgument
from widgettrace.mcp_server._tools import Tools

__all__ = ["TOOL_NAMES", "build_server"]

TOOL_NAMES = (
    "list_issues",
    "get_issue",
    "search_events",
    "get_trace",
    "release_health",
    "performance",
    "standup",
    "cost",
)

_INSTRUCTIONS = """\
widgettrace's own telemetry of the widget platform (read-only): errors grouped into issues,
releases, performance, traces, LLM cost and the daily standup. Start with list_issues (e.g.
since='last-release'), then get_issue for the stack trace and what happened before it, then
get_trace for the whole request across services. Times are epoch seconds; durations in ms."""


def _invalid(message: str) -> MCPError:
    return MCPError(code=INVALID_PARAMS, message=message)


def _validation_message(tool: str, exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ())) or "arguments"
        parts.append(f"{where}: {err.get('msg')}")
    return f"invalid arguments for {tool}: " + "; ".join(parts)


class WidgetTraceMCPServer(MCPServer[Any]):
    """``MCPServer`` with caller mistakes as JSON-RPC errors and open issues as resources."""

    def __init__(self, tools: Tools, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tools = tools

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> Any:
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            cause = exc.__cause__
            if isinstance(cause, ValidationError):
                raise _invalid(_validation_message(name, cause)) from None
            if isinstance(cause, BadArgument):
                raise _invalid(str(cause)) from None
            if cause is None and str(exc).startswith("Unknown tool"):
                raise _invalid(f"{exc}; the tools are: {', '.join(TOOL_NAMES)}") from None
            raise

    async def list_resources(self) -> list[MCPResource]:
        listed = await super().list_resources()
        for issue in self.tools.open_issues():
            listed.append(
                MCPResource(
                    uri=f"widgettrace://issues/{issue.issue_id}",
                    name=f"issue {issue.issue_id}",
                    title=issue.title,
                    description=f"{issue.status}, {issue.count} events, last release "
                    f"{issue.last_release or '-'}",
                    mime_type="application/json",
                )
            )
        return listed


def build_server(backend: Backend) -> WidgetTraceMCPServer:
    """The server for ``backend``'s log (tools, resources); run it with ``run_*_async``."""
    tools = Tools(backend)
    server = WidgetTraceMCPServer(
        tools,
        name="widgettrace",
        title="widgettrace insights",
        version=__version__,
        instructions=_INSTRUCTIONS,
        log_level="WARNING",
    )
    read_only = ToolAnnotations(read_only_hint=True, open_world_hint=False)
    for name in TOOL_NAMES:
        method = getattr(tools, name, None)
        if method is not None:
            server.add_tool(method, name=name, annotations=read_only)

    @server.resource(
        "widgettrace://standup/latest",
        name="standup",
        title="Latest standup",
        description="The standup of the last 24 h, as Markdown.",
        mime_type="text/markdown",
    )
    def latest_standup() -> str:
        result = tools.standup(format="markdown")
        return result.markdown or ""

    @server.resource(
        "widgettrace://issues/{issue_id}",
        name="issue",
        title="Issue",
        description="One issue as JSON (what get_issue returns).",
        mime_type="application/json",
    )
    def issue_resource(issue_id: str) -> str:
        try:
            detail = tools.get_issue(issue_id=issue_id)
        except BadArgument as exc:
            raise _invalid(str(exc)) from None
        return json.dumps(detail.model_dump(mode="json"), indent=1)

    del latest_standup, issue_resource
    return server
