"""An agent-like MCP client (no LLM): ask widgettrace's own telemetry what broke and why.

Starts ``widgettrace mcp`` over stdio with the SDK's client and does what a QA agent would after
a failed run: list the issues since the latest release, open the worst one (stack trace and the
journey before it), then fetch its trace as a span tree. Prints each request and a shortened
answer (the transcript in docs/agents.md comes from this script)::

    scripts/run-example.sh                      # writes .claude/logs/sentry.log
    .venv/bin/python examples/ask_telemetry.py  # or: ... ask_telemetry.py PATH/TO/sentry.log
"""

from __future__ import annotations

import json
import shutil
import sys
from typing import Any

import anyio
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client


def _show(name: str, args: dict[str, Any], answer: Any, width: int = 900) -> None:
    print(f">>> tools/call {name} {json.dumps(args)}")
    text = json.dumps(answer, indent=1)
    print(text if len(text) <= width else text[:width] + "\n  ...")
    print()


def _has_error(node: dict[str, Any]) -> bool:
    return bool(node["errors"]) or any(_has_error(c) for c in node["children"])


def _tree(nodes: list[dict[str, Any]], depth: int = 0) -> list[str]:
    """The top of the tree, and the path down to each error (the rest is elided)."""
    lines: list[str] = []
    for node in nodes:
        if depth > 3 and not _has_error(node):
            continue
        errors = f"  !! {node['errors'][0]['title']}" if node["errors"] else ""
        lines.append(
            f"{'  ' * depth}{node['op']:<20} {node['name'][:40]:<40} "
            f"+{node['start_ms']:>6.1f} ms {node['duration_ms']:>6.1f} ms{errors}"
        )
        lines += _tree(node["children"], depth + 1)
    return lines


async def main(log: str) -> None:
    command = shutil.which("widgettrace") or "widgettrace"
    params = StdioServerParameters(command=command, args=["mcp", "--log", log])
    # stdio_client(params), not Client(params): the latter needs mcp >= 2.1 (we support 2.0).
    async with Client(stdio_client(params)) as client:
        tools = await client.list_tools()
        print("tools:", ", ".join(t.name for t in tools.tools), "\n")

        args: dict[str, Any] = {"since": "last-release", "limit": 3}
        page = (await client.call_tool("list_issues", args)).structured_content or {}
        _show("list_issues", args, page)
        if not page.get("issues"):
            return
        worst = page["issues"][0]

        args = {"issue_id": worst["issue_id"], "journey_steps": 6}
        detail = (await client.call_tool("get_issue", args)).structured_content or {}
        in_app = [f for f in detail.get("stacktrace", []) if f["in_app"]]
        _show("get_issue", args, {**detail, "stacktrace": in_app[-3:]}, width=2500)

        args = {"trace_id": detail["issue"]["latest_trace"], "max_spans": 200}
        trace = (await client.call_tool("get_trace", args)).structured_content or {}
        print(f">>> tools/call get_trace {json.dumps(args)}")
        print(json.dumps({k: v for k, v in trace.items() if k != "roots"}, indent=1))
        print("\n".join(_tree(trace.get("roots", []))))


if __name__ == "__main__":
    anyio.run(main, sys.argv[1] if len(sys.argv) > 1 else ".claude/logs/sentry.log")
