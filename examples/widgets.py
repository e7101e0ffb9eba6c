"""Widget-to-widget links over MCP: the platform's clients for the linter and ranker widgets.

* linter: ``examples/widget_linter.py`` spawned as a subprocess, MCP over **stdio**;
* ranker: ``examples/widget_ranker.py`` under uvicorn, MCP over **streamable HTTP**.

Both sessions are opened once (in the FastAPI lifespan) and shared by all requests. Each tool
call runs in the caller's context, so its MCP client span is a child of the calling agent's tool
span and the server side joins the same trace through ``params._meta``.

The linter child gets the platform's whole environment (the MCP SDK passes only a safe subset by
default), so ``opentelemetry-instrument``'s ``PYTHONPATH`` and the ``WIDGETTRACE_*`` /
``SENTRY_*`` settings reach it and it is instrumented too.

Usage::

    async with WidgetLinks(ranker_url) as links:
        verdict = await links.lint({"name": "x", ...})
        ranked = await links.rank(["acme/sentiment-widget"])
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import AsyncExitStack
from pathlib import Path
from types import TracebackType
from typing import Any

from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.types import CallToolResult, TextContent

__all__ = ["WidgetLinks", "WidgetToolError"]

_LINTER = Path(__file__).with_name("widget_linter.py")


class WidgetToolError(RuntimeError):
    """A widget's tool answered with ``isError`` (the widget rejected the call)."""


def _payload(result: CallToolResult) -> Any:
    texts = [c.text for c in result.content if isinstance(c, TextContent)]
    if result.is_error:
        raise WidgetToolError(" ".join(texts) or "tool failed")
    if result.structured_content is not None:
        content = result.structured_content
        return content.get("result", content)
    return json.loads(texts[0]) if texts else None


class WidgetLinks:
    """Open MCP sessions to the linter (stdio) and ranker (streamable HTTP) widgets."""

    def __init__(self, ranker_url: str) -> None:
        self._ranker_url = ranker_url
        self._stack = AsyncExitStack()
        self._linter: Client | None = None
        self._ranker: Client | None = None

    async def __aenter__(self) -> WidgetLinks:
        env = {**os.environ, "OTEL_SERVICE_NAME": "widget-linter"}
        params = StdioServerParameters(command=sys.executable, args=[str(_LINTER)], env=env)
        try:
            # stdio_client(params), not Client(params): the latter needs mcp >= 2.1.
            self._linter = await self._stack.enter_async_context(Client(stdio_client(params)))
            self._ranker = await self._stack.enter_async_context(Client(self._ranker_url))
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()

    async def lint(self, config: dict[str, Any]) -> dict[str, Any]:
        """Lint one widget config over stdio; raises :class:`WidgetToolError` on rejection."""
        assert self._linter is not None, "use WidgetLinks as an async context manager"
        result = await self._linter.call_tool("lint_config", {"config": config})
        verdict: dict[str, Any] = _payload(result)
        return verdict

    async def rank(self, model_ids: list[str]) -> list[dict[str, Any]]:
        """Rank hub models over streamable HTTP (the ranker asks the hub)."""
        assert self._ranker is not None, "use WidgetLinks as an async context manager"
        ranked: list[dict[str, Any]] = _payload(
            await self._ranker.call_tool("rank_widgets", {"model_ids": model_ids})
        )
        return ranked
