"""``widgettrace mcp``: agents ask their own telemetry, over MCP.

An MCP server (the official ``mcp`` SDK) over :mod:`widgettrace.insights`, reading the local log::

    widgettrace mcp                       # stdio (what an MCP client config launches)
    widgettrace mcp --http 8765           # streamable HTTP on http://127.0.0.1:8765/mcp
    widgettrace mcp --log path/to/sentry.log --trace-log off

Tools: ``list_issues``, ``get_issue``, ``search_events``, ``get_trace``, ``release_health``,
``performance``, ``standup``, ``cost``; resources ``widgettrace://standup/latest`` and
``widgettrace://issues/{issue_id}`` (each open issue is listed). See docs/agents.md.

Read-only: the log is never written (the derived DuckDB tables beside it are the insights
store's cache). The server traces its own MCP calls with our MCP instrumentation, into
``--trace-log`` (default: ``widgettrace-mcp.log`` beside the served log), never into the log it
serves, so its answers never include its own calls (no feedback loop). Run under
``opentelemetry-instrument`` with the local log pointing at the served log, it refuses to start.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, TextIO

__all__ = ["add_parser", "serve"]


def _same_file(a: str | Path, b: str | Path) -> bool:
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def _trace_self(served: Path, trace_log: str) -> str | None:
    """Set up our own tracing away from ``served``; an error message when that is impossible."""
    import os

    from widgettrace.instrumentation import configurator
    from widgettrace.instrumentation._config import get_settings, reset_settings

    if configurator.is_configured():
        current = get_settings().log_path
        if current is not None and not os.environ.get("SENTRY_DSN") and _same_file(current, served):
            return (
                f"this process already writes its telemetry to {served}, the log it would serve "
                "(a feedback loop); run `widgettrace mcp` without opentelemetry-instrument (it "
                "traces itself into --trace-log) or set WIDGETTRACE_LOG_PATH to another file"
            )
        return None
    if trace_log.lower() != "off" and _same_file(trace_log, served):
        return f"--trace-log {trace_log} is the log being served; pick another file or 'off'"
    for name in ("WIDGETTRACE_LOG_PATH", "OTEL_WIDGETTRACE_LOG_PATH"):
        os.environ[name] = trace_log
    os.environ.setdefault("OTEL_SERVICE_NAME", "widgettrace-mcp")
    # The settings may have been read already (the CLI reads them): read them again, with ours.
    reset_settings()
    if get_settings().log_path is not None and _same_file(str(get_settings().log_path), served):
        return "internal error: the server's own telemetry would go to the served log"
    if configurator.configure():
        from widgettrace.instrumentation.mcp import McpInstrumentor

        McpInstrumentor().instrument()
    return None


def serve(
    log: Path,
    *,
    http_port: int | None = None,
    trace_log: str | None = None,
    err: TextIO | None = None,
) -> int:
    """Run the server until the client disconnects (stdio) or Ctrl-C (HTTP); exit status."""
    import sys

    import anyio

    from widgettrace.insights import InsightsError
    from widgettrace.mcp_server._backend import Backend
    from widgettrace.mcp_server._server import build_server

    err = err or sys.stderr
    problem = _trace_self(log, trace_log or str(log.with_name("widgettrace-mcp.log")))
    if problem:
        print(f"widgettrace mcp: {problem}", file=err)
        return 2
    backend = Backend(log)
    try:
        backend.open()
    except InsightsError as exc:
        print(f"widgettrace mcp: {exc}", file=err)
        return 1
    server = build_server(backend)
    server.tools.warm()
    try:
        if http_port is None:
            anyio.run(server.run_stdio_async)
        else:
            print(f"widgettrace mcp: http://127.0.0.1:{http_port}/mcp (log {log})", file=err)
            err.flush()
            anyio.run(lambda: server.run_streamable_http_async(host="127.0.0.1", port=http_port))
    except KeyboardInterrupt:
        pass
    finally:
        backend.close()
        _flush_own_telemetry()
    return 0


def _flush_own_telemetry() -> None:
    """Deliver this server's own spans now: a stdio client ends the process soon after it closes
    the pipe, before exit handlers may get to run."""
    from opentelemetry import trace

    shutdown = getattr(trace.get_tracer_provider(), "shutdown", None)
    if callable(shutdown):
        shutdown()


def _cmd_mcp(args: argparse.Namespace, out: TextIO) -> int:
    import sys

    try:
        import mcp  # noqa: F401
    except ImportError:
        print("widgettrace mcp needs the MCP SDK: pip install 'widgettrace[mcp]'", file=sys.stderr)
        return 2
    from widgettrace.cli import default_log_path

    log = Path(args.log) if args.log else default_log_path()
    if log is None:
        print(
            "widgettrace mcp: the local log is off (WIDGETTRACE_LOG_PATH=off); pass --log",
            file=sys.stderr,
        )
        return 2
    return serve(log.resolve(), http_port=args.http, trace_log=args.trace_log)


def add_parser(commands: Any) -> None:
    """Register ``mcp`` on the ``widgettrace`` command line."""
    parser = commands.add_parser(
        "mcp", help="serve the insights (issues, traces, releases, standup) over MCP"
    )
    parser.add_argument("--log", metavar="PATH", help="the log to serve (default: configured)")
    parser.add_argument(
        "--http",
        type=int,
        metavar="PORT",
        help="streamable HTTP on 127.0.0.1:PORT/mcp instead of stdio",
    )
    parser.add_argument(
        "--trace-log",
        metavar="PATH|off",
        help="where this server's own spans go (default: widgettrace-mcp.log "
        "beside the served log; never the served log itself)",
    )
    parser.set_defaults(run=_cmd_mcp)
