"""The linter widget: an MCP server over stdio that checks widget configs for the platform.

The platform spawns it as a subprocess (``mcp.client.stdio``) and keeps one session open for its
lifetime; under ``opentelemetry-instrument`` the child sets itself up from the inherited
environment, so its MCP server spans join the caller's trace through ``params._meta``.

Tool ``lint_config(config)`` returns the problems found. A config using a field the platform has
removed (``legacy_runtime``) makes the tool raise ``ValueError``; MCP turns it into an
``isError`` result for the caller, and the exception itself is an error event of this process.

Run alone (it speaks JSON-RPC on stdin/stdout)::

    python examples/widget_linter.py
"""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import MCPServer

__all__ = ["lint_config", "server"]

server = MCPServer("widget-linter", instructions="Lints widget configs.")

_REMOVED_FIELDS = ("legacy_runtime",)
_KNOWN_TYPES = ("card", "classifier", "generator", "tokenizer", "captioner", "bundle")


@server.tool()
def lint_config(config: dict[str, Any]) -> dict[str, Any]:
    """Check one widget config; raises on a removed field (the caller sees isError)."""
    for removed in _REMOVED_FIELDS:
        if removed in config:
            raise ValueError(f"{config.get('name', '?')}: field {removed!r} was removed in 2.0")
    problems = []
    if config.get("type") not in _KNOWN_TYPES:
        problems.append(f"unknown type {config.get('type')!r}")
    if not config.get("inputs"):
        problems.append("no inputs declared")
    return {"name": config.get("name"), "ok": not problems, "problems": problems}


if __name__ == "__main__":
    server.run("stdio")
