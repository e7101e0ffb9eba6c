"""Every instrumentor of ours loads under opentelemetry-instrument's own loader: never a skip.

The loader (``opentelemetry.instrumentation.auto_instrumentation._load``) checks a
distribution's ``instruments`` extra once for all its instrumentors and skips them all, with one
debug line, when it is unmet. These tests run the real loader in a subprocess and fail when an
instrumentor of ours did not load: at the versions installed (the main job's newest and the
lowest-versions job's lowest), and in a real environment without mcp, where the functions
instrumentor (which needs no mcp) must still load and the MCP one must be skipped cleanly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

PROBE = r"""
import json, logging, sys
logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
if len(sys.argv) > 1:
    import site
    site.addsitedir(sys.argv[1])
from opentelemetry.instrumentation.auto_instrumentation import initialize
initialize()
from widgettrace.instrumentation.functions import FunctionsInstrumentor
try:
    import mcp  # noqa: F401
except ModuleNotFoundError:
    mcp_loaded = None
else:
    from widgettrace.instrumentation.mcp import McpInstrumentor
    mcp_loaded = McpInstrumentor().is_instrumented_by_opentelemetry
print(json.dumps({
    "functions": FunctionsInstrumentor().is_instrumented_by_opentelemetry,
    "mcp": mcp_loaded,
}))
"""


def _run(
    tmp_path: Path, site_dir: Path | None = None, probe: str = PROBE
) -> tuple[dict[str, Any], str]:
    """``probe`` run in a fresh interpreter under our distro (from ``site_dir`` when given);
    its last stdout line (JSON) and its stderr."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OTEL_", "SENTRY_", "WIDGETTRACE_"))
    }
    env.pop("PYTHONPATH", None)
    env["OTEL_PYTHON_DISTRO"] = "widgettrace"
    env["OTEL_PYTHON_CONFIGURATOR"] = "widgettrace"
    env["WIDGETTRACE_LOG_PATH"] = str(tmp_path / "sentry.log")
    env["WIDGETTRACE_TRACE_FUNCTIONS"] = "json:dumps"
    result = subprocess.run(
        # -S: no site-packages but site_dir (its .pth files are processed by addsitedir).
        [sys.executable, "-S", "-c", probe, str(site_dir)]
        if site_dir is not None
        else [sys.executable, "-c", probe],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return data, result.stderr


def test_every_instrumentor_loads(tmp_path: Path) -> None:
    data, stderr = _run(tmp_path)
    assert data == {"functions": True, "mcp": True}, stderr
    assert "Skipping instrumentation" not in stderr
    assert "DependencyConflict" not in stderr


def _site_without_mcp(tmp_path: Path) -> Path:
    """A real site directory holding every installed distribution except mcp (symlinks)."""
    site = Path(sysconfig.get_paths()["purelib"])
    overlay = tmp_path / "site-without-mcp"
    overlay.mkdir()
    for entry in site.iterdir():
        name = entry.name.lower()
        if name == "mcp" or name.startswith("mcp-") or name.startswith("mcp_types"):
            continue
        (overlay / entry.name).symlink_to(entry)
    return overlay


def test_functions_instrumentor_loads_without_mcp(tmp_path: Path) -> None:
    overlay = _site_without_mcp(tmp_path)
    data, stderr = _run(tmp_path, overlay)
    assert data == {"functions": True, "mcp": None}, stderr
    # The MCP instrumentor is refused for its own reason (mcp missing), nothing else is.
    assert 'mcp only instruments "mcp >= 2.0, < 3", but no installed version' in stderr
    assert "Instrumented widgettrace_functions" in stderr
    assert "widgettrace_functions only instruments" not in stderr


LAZY_PROBE = r"""
import json, sys
from opentelemetry.instrumentation.auto_instrumentation import initialize
initialize()
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry import trace
before = "mcp" in sys.modules
exporter = InMemorySpanExporter()
trace.get_tracer_provider().add_span_processor(SimpleSpanProcessor(exporter))
# The application imports mcp only now, after instrumentation.
import anyio
from mcp.client import Client
from mcp.server.mcpserver import MCPServer
server = MCPServer("lazy")

@server.tool()
def add(a: int, b: int) -> int:
    return a + b

async def main():
    async with Client(server) as client:
        await client.call_tool("add", {"a": 1, "b": 2})

anyio.run(main)
names = sorted({(s.name, s.kind.name) for s in exporter.get_finished_spans()
                if s.name.startswith("tools/call")})
print(json.dumps({"mcp_imported_at_start": before, "spans": names}))
"""


def test_mcp_is_patched_when_the_app_imports_it_not_before(tmp_path: Path) -> None:
    # An app that never uses MCP never loads mcp (48,000 objects its garbage collector would
    # otherwise walk in every full collection); one that imports it later is traced all the same.
    data, stderr = _run(tmp_path, probe=LAZY_PROBE)
    assert data["mcp_imported_at_start"] is False, stderr
    assert data["spans"] == [["tools/call add", "CLIENT"], ["tools/call add", "SERVER"]]
