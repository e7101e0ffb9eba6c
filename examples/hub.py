"""A stand-in model hub: a small JSON-over-HTTP server the platform searches during discovery.

It plays the part of a public model hub (think of a Hugging Face-like API) so the example runs
without network access. Endpoints::

    GET /api/models?search=<text>     models whose id or pipeline contains <text>
    GET /api/models/<owner>/<name>    one model, with its widget config
    GET /api/repos/<name>             upstream metadata of a Git repository; the one named
                                      demo_data.SLOW_REPOSITORY answers only after
                                      demo_data.SLOW_UPSTREAM_SECONDS (the slow endpoint)

Usage::

    with ModelHub() as hub:          # binds 127.0.0.1 on a free port, serves from a thread
        requests.get(f"{hub.url}/api/models", params={"search": "text"})

The hub is deliberately not instrumented (it stands for someone else's service): its requests
show up only as the platform's outgoing client spans.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from demo_data import HUB_MODELS, REPOSITORIES, SLOW_REPOSITORY, SLOW_UPSTREAM_SECONDS

__all__ = ["ModelHub"]


class _HubServer(ThreadingHTTPServer):
    daemon_threads = True
    stopping: threading.Event

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (timeout) is normal here: no traceback on the console."""


class _Handler(BaseHTTPRequestHandler):
    server: _HubServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Keep the example's console quiet."""

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        try:
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the caller timed out and hung up

    def do_GET(self) -> None:
        """Route a GET request."""
        url = urlsplit(self.path)
        parts = [p for p in url.path.split("/") if p]
        if parts[:2] == ["api", "models"] and len(parts) == 2:
            query = parse_qs(url.query).get("search", [""])[0].lower()
            hits = [
                {k: m[k] for k in ("id", "pipeline", "downloads")}
                for m in HUB_MODELS
                if query in m["id"].lower() or query in m["pipeline"]
            ]
            self._send(200, hits)
        elif parts[:2] == ["api", "models"] and len(parts) == 4:
            model_id = "/".join(parts[2:])
            found = [m for m in HUB_MODELS if m["id"] == model_id]
            self._send(200, found[0]) if found else self._send(404, {"error": "no such model"})
        elif parts[:2] == ["api", "repos"] and len(parts) == 3:
            name = parts[2]
            if name == SLOW_REPOSITORY:
                # The upstream mirror of this repository is overloaded; the event lets the
                # hub stop promptly at shutdown instead of sleeping on.
                self.server.stopping.wait(SLOW_UPSTREAM_SECONDS)
            if name in REPOSITORIES:
                self._send(
                    200,
                    {
                        "name": name,
                        "upstream": f"https://git.example/{name}",
                        "stars": 10 * len(name),
                    },
                )
            else:
                self._send(404, {"error": "no such repository"})
        else:
            self._send(404, {"error": "not found"})


class ModelHub:
    """The hub server, run on a daemon thread while the context manager is open."""

    def __init__(self) -> None:
        self._server = _HubServer(("127.0.0.1", 0), _Handler)
        self._server.stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="model-hub", daemon=True
        )

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:40123``."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> ModelHub:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
