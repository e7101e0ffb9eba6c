"""The ranker widget: an MCP server over streamable HTTP, run under uvicorn by examples/run.py.

Tool ``rank_widgets(model_ids)`` looks each model up on the model hub with ``requests`` and
ranks them by downloads. The call chain platform -> MCP -> ranker -> ``requests`` -> hub is one
trace: the MCP server span takes its parent from ``params._meta``, and the outgoing requests are
auto-instrumented children of it.

Run (``--fd`` is a listening socket inherited from the parent; see examples/_serving.py)::

    WIDGET_HUB_URL=http://127.0.0.1:8000 python examples/widget_ranker.py --fd 3
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import requests
from mcp.server.mcpserver import MCPServer

from _serving import serve_main

__all__ = ["app", "rank_widgets", "server"]

server = MCPServer("widget-ranker", instructions="Ranks widgets by hub popularity.")


def _lookup(hub_url: str, model_ids: list[str]) -> list[dict[str, Any]]:
    ranked = []
    with requests.Session() as session:
        for model_id in model_ids:
            response = session.get(f"{hub_url}/api/models/{model_id}", timeout=5)
            if response.status_code == 404:
                continue
            response.raise_for_status()
            model = response.json()
            ranked.append({"id": model_id, "downloads": model["downloads"]})
    return sorted(ranked, key=lambda m: -m["downloads"])


@server.tool()
async def rank_widgets(model_ids: list[str]) -> list[dict[str, Any]]:
    """Rank hub models by downloads (most popular first)."""
    hub_url = os.environ["WIDGET_HUB_URL"]
    # asyncio.to_thread copies the context: the hub requests stay children of this tool call.
    return await asyncio.to_thread(_lookup, hub_url, model_ids)


app = server.streamable_http_app()

if __name__ == "__main__":
    serve_main(app, "widget-ranker")
