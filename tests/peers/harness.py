"""Start and stop peer processes; a capturing HTTP endpoint; span files written by peers.

``PeerProcess`` runs ``python tests/peers/<script> ...`` (optionally under
``opentelemetry-instrument``) and waits for its ``LISTENING <port>`` line. ``CaptureServer`` is
a real ``ThreadingHTTPServer`` on 127.0.0.1:0 that records every request with its raw headers
(duplicates kept) and decompressed body. ``read_spans`` reads the JSON lines that
``peers.common.JsonLinesSpanExporter`` writes.
"""

from __future__ import annotations

import gzip
import json
import os
import select
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = [
    "PEERS_DIR",
    "VENV_BIN",
    "CaptureServer",
    "CapturedRequest",
    "PeerProcess",
    "clean_env",
    "envelope_items",
    "read_spans",
    "wait_for",
]

PEERS_DIR = Path(__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent


def clean_env(**overrides: str) -> dict[str, str]:
    """The environment for a peer: no inherited OTel/Sentry/widgettrace settings."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("OTEL_", "SENTRY_", "WIDGETTRACE_"))
    }
    env.pop("PYTHONPATH", None)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(overrides)
    return env


class PeerProcess:
    """A peer script in its own process; ``port`` is what it printed as ``LISTENING <port>``."""

    def __init__(
        self,
        script: str,
        args: Sequence[str],
        env: Mapping[str, str],
        *,
        instrument: bool = False,
        timeout: float = 30.0,
    ) -> None:
        command = [sys.executable, str(PEERS_DIR / script), *args]
        if instrument:
            command = [str(VENV_BIN / "opentelemetry-instrument"), *command]
        self.command = command
        self.proc = subprocess.Popen(
            command,
            env=dict(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.port = 0
        self.stdout_lines: list[str] = []
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if ready:
                line = self.proc.stdout.readline()
                if not line:
                    break
                self.stdout_lines.append(line)
                if line.startswith("LISTENING "):
                    self.port = int(line.split()[1])
                    return
            elif self.proc.poll() is not None:
                break
        err = self.stop()
        raise RuntimeError(f"peer {command} did not start: {''.join(self.stdout_lines)}\n{err}")

    @property
    def url(self) -> str:
        """Base URL of the peer's server."""
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> str:
        """Terminate this peer (by its own PID) and return its stderr."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        stderr = self.proc.stderr.read() if self.proc.stderr else ""
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        return stderr


def read_spans(path: Path) -> list[dict[str, Any]]:
    """The spans a peer wrote (one JSON object per line); missing file means none yet."""
    if not path.exists():
        return []
    spans = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            spans.append(json.loads(line))
    return spans


def envelope_items(requests_: Iterable[CapturedRequest]) -> list[tuple[str, dict[str, Any]]]:
    """(item type, payload) of every envelope item received."""
    items = []
    for request in requests_:
        if not request.path.rstrip("/").endswith("/envelope"):
            continue
        body = request.body
        _, _, rest = body.partition(b"\n")  # envelope header
        while rest.strip():
            header_line, _, rest = rest.partition(b"\n")
            header = json.loads(header_line)
            if "length" in header:
                payload, rest = rest[: header["length"]], rest[header["length"] :]
                rest = rest.removeprefix(b"\n")
            else:
                payload, _, rest = rest.partition(b"\n")
            try:
                items.append((header.get("type", ""), json.loads(payload)))
            except ValueError:
                items.append((header.get("type", ""), {}))
    return items


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``predicate`` every 50 ms until it is true or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


@dataclass
class CapturedRequest:
    """One request as it arrived: raw header list (duplicates kept) and decoded body."""

    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes

    def header_values(self, name: str) -> list[str]:
        """Every value sent for ``name`` (case-insensitive), in wire order."""
        return [v for k, v in self.headers if k.lower() == name.lower()]


@dataclass
class CaptureServer:
    """A real HTTP server on 127.0.0.1:0 that records requests and answers 200 ``{}``.

    Bodies with ``Content-Encoding: gzip`` or ``deflate`` are decompressed. Use as a context
    manager; ``dsn`` is a Sentry DSN pointing at it (project 1).
    """

    requests: list[CapturedRequest] = field(default_factory=list)
    response_body: bytes = b"{}"
    response_type: str = "application/json"

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> CaptureServer:
        capture = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                encoding = (self.headers.get("Content-Encoding") or "").lower()
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                captured = CapturedRequest(
                    self.command, self.path, list(self.headers.items()), body
                )
                with capture._lock:
                    capture.requests.append(captured)
                self.send_response(200)
                self.send_header("Content-Type", capture.response_type)
                self.send_header("Content-Length", str(len(capture.response_body)))
                self.end_headers()
                self.wfile.write(capture.response_body)

            do_GET = _handle
            do_POST = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def port(self) -> int:
        """The bound port."""
        assert self._server is not None
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def dsn(self) -> str:
        """A Sentry DSN whose ingest endpoints are this server."""
        return f"http://public@127.0.0.1:{self.port}/1"

    def snapshot(self) -> list[CapturedRequest]:
        """A copy of the requests received so far."""
        with self._lock:
            return list(self.requests)

    def __iter__(self) -> Iterator[CapturedRequest]:
        return iter(self.snapshot())
