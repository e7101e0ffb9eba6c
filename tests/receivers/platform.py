"""The example platform's API kept running for a test (not the scripted examples/run.py).

``running_platform(tmp, **env)`` starts what examples/run.py starts -- the stand-in model hub
(thread), the MCP ranker widget and the FastAPI service (children, under
``opentelemetry-instrument``, with a clean environment plus ``env``) -- waits until the API
answers, yields it, then stops the children by PID (SIGTERM: they flush their telemetry).

Usage::

    with running_platform(tmp_path, WIDGETTRACE_LOG_PATH=str(log)) as api:
        requests.get(f"{api.url}/api/widgets/status")
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

__all__ = ["EXAMPLES", "running_platform"]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
BIN = Path(sys.executable).parent


@contextmanager
def running_platform(tmp: Path, **env: str) -> Iterator[object]:
    """Hub, ranker and API up; yields the API's ``Child`` (``.url``); stopped on exit."""
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    from _serving import Child, listening_socket
    from demo_data import create_repositories
    from hub import ModelHub
    from run import child_env, wait_ready

    world = tmp / "world"
    create_repositories(world / "repos")
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SENTRY_", "OTEL_", "WIDGETTRACE_", "WIDGET_"))
    }
    children: list[Child] = []
    with ModelHub() as hub:
        ranker_sock, api_sock = listening_socket(), listening_socket()
        ranker_url = f"http://127.0.0.1:{ranker_sock.getsockname()[1]}"
        # run.py's settings for the children, without what this process's environment added.
        platform = {
            k: v
            for k, v in child_env(hub.url, world, ranker_url).items()
            if k.startswith("WIDGET_") or k not in os.environ
        }
        child = {**clean, **platform, **env}
        instrument = [str(BIN / "opentelemetry-instrument"), sys.executable]
        try:
            children.append(
                Child.start(
                    "widget-ranker",
                    [*instrument, str(EXAMPLES / "widget_ranker.py")],
                    ranker_sock,
                    {**child, "OTEL_SERVICE_NAME": "widget-ranker"},
                    world,
                )
            )
            api = Child.start(
                "widget-platform",
                [*instrument, str(EXAMPLES / "service.py")],
                api_sock,
                child,
                world,
            )
            children.append(api)
            with requests.Session() as session:
                wait_ready(session, api, timeout=60)
            yield api
        finally:
            for running in reversed(children):
                running.stop()
