"""A real Spotlight sidecar (npm ``@spotlightjs/spotlight``) on 127.0.0.1, for end-to-end tests.

Spotlight is Sentry's development sidecar: SDKs given ``spotlight="http://127.0.0.1:<port>/stream"``
send it a copy of every envelope (no DSN needed), and ``GET /stream`` replays what it holds as
server-sent events (``event: application/x-sentry-envelope``, ``data: [headers, [[item headers,
payload], ...]]``).

The node package and its dependencies live in ``tests/receivers/spotlight/`` (``package.json``
pins 4.11.8, and ``hono`` to 4.12.25 through ``overrides``: newer hono breaks every request);
``scripts/setup-receivers.sh`` installs them. ``serve.mjs`` starts the sidecar through the package's
exported ``setupSpotlight`` (the stock CLI listens on every interface and starts its own telemetry)
on ``127.0.0.1:0`` and prints the port.

Usage::

    server = SpotlightServer(tmp_path).start()
    run_app(spotlight=server.url)             # http://127.0.0.1:<port>/stream
    envelopes = server.wait_for(lambda envs: any_transaction(envs), timeout=10)
    server.clear()
    server.stop()
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

__all__ = [
    "PACKAGE_DIR",
    "SpotlightEnvelope",
    "SpotlightServer",
    "SpotlightUnavailable",
    "items_of",
    "parse_sse",
]

PACKAGE_DIR = Path(__file__).resolve().parent / "spotlight"


class SpotlightUnavailable(RuntimeError):
    """Spotlight could not be started (no node, dependencies not installed, no port reported)."""


@dataclass
class SpotlightEnvelope:
    """One envelope as Spotlight replays it: headers and ``(item headers, payload)`` pairs."""

    id: str
    content_type: str
    headers: dict[str, Any]
    items: list[tuple[dict[str, Any], Any]]

    def payloads(self, item_type: str) -> list[Any]:
        return [payload for headers, payload in self.items if headers.get("type") == item_type]


def parse_sse(lines: Iterator[str]) -> Iterator[tuple[str, str, str]]:
    """Yield ``(id, event, data)`` for each server-sent event read from ``lines``."""
    event_id = event = ""
    data: list[str] = []
    for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data:
                yield event_id, event or "message", "\n".join(data)
            event_id = event = ""
            data = []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "data":
            data.append(value)
        elif field == "event":
            event = value
        elif field == "id":
            event_id = value


def _to_envelope(event_id: str, event: str, data: str) -> SpotlightEnvelope | None:
    try:
        parsed = json.loads(data)
    except ValueError:
        return None
    if not (isinstance(parsed, list) and len(parsed) == 2 and isinstance(parsed[0], dict)):
        return None
    items = [
        (item[0], item[1])
        for item in parsed[1]
        if isinstance(item, list) and len(item) == 2 and isinstance(item[0], dict)
    ]
    return SpotlightEnvelope(id=event_id, content_type=event, headers=parsed[0], items=items)


class SpotlightServer:
    """One Spotlight sidecar process (see the module docstring)."""

    def __init__(self, workdir: Path, *, node: str | None = None) -> None:
        self.workdir = Path(workdir)
        self.node = node or os.environ.get("WIDGETTRACE_NODE") or shutil.which("node") or ""
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_path = self.workdir / "spotlight.log"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The value for the SDK's ``spotlight=`` option (and ``SENTRY_SPOTLIGHT``)."""
        return f"{self.base_url}/stream"

    def start(self, timeout: float = 30.0) -> SpotlightServer:
        if self._proc is not None:
            return self
        if not self.node:
            raise SpotlightUnavailable("node is not on PATH")
        if not (PACKAGE_DIR / "node_modules" / "@spotlightjs" / "spotlight").is_dir():
            raise SpotlightUnavailable(f"node dependencies not installed in {PACKAGE_DIR}")
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("SENTRY_", "SPOTLIGHT_", "OTEL_", "WIDGETTRACE_"))
        }
        log = self._log_path.open("ab")
        try:
            self._proc = subprocess.Popen(
                [self.node, str(PACKAGE_DIR / "serve.mjs"), "0"],
                cwd=PACKAGE_DIR,
                env=env,
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,
            )
        finally:
            log.close()
        self.port = self._read_port(timeout)
        self._wait_ready(timeout)
        return self

    def _read_port(self, timeout: float) -> int:
        proc = self._proc
        assert proc is not None
        assert proc.stdout is not None
        stdout = proc.stdout
        result: list[bytes] = []
        # readline() has no timeout; a thread keeps a hung node from hanging the test session.
        reader = threading.Thread(target=lambda: result.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        line = result[0] if result else b""
        try:
            info = json.loads(line)
            return int(info["port"])
        except (ValueError, KeyError, TypeError):
            raise SpotlightUnavailable(
                f"Spotlight reported no port within {timeout}s (exit code {proc.poll()}): "
                f"{line[:200]!r} {self.log_tail()}"
            ) from None

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.base_url}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError) as exc:
                if time.monotonic() > deadline:
                    raise SpotlightUnavailable(f"no answer on {self.base_url}: {exc!r}") from exc
            time.sleep(0.1)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            try:
                # The process group start() created holds only this node process.
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
            except ProcessLookupError:
                pass
        if proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> SpotlightServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self._log_path.read_text(encoding="utf-8", errors="replace")[-chars:]
        except OSError:
            return ""

    # -- reading back ------------------------------------------------------------------------
    def wait_for(
        self,
        predicate: Callable[[list[SpotlightEnvelope]], Any],
        timeout: float = 10.0,
    ) -> list[SpotlightEnvelope]:
        """Read ``GET /stream`` (which replays what Spotlight holds, then streams new envelopes)
        until ``predicate(envelopes so far)`` is truthy; return those envelopes.

        Raises ``TimeoutError`` listing what did arrive.
        """
        envelopes, matched = self._read(predicate, timeout)
        if not matched:
            raise TimeoutError(
                f"Spotlight never held the expected envelopes within {timeout}s; got "
                f"{[[h.get('type') for h, _ in e.items] for e in envelopes]}"
            )
        return envelopes

    def envelopes(self, settle: float = 1.0) -> list[SpotlightEnvelope]:
        """Everything Spotlight holds now: the replay of ``GET /stream``, read for ``settle`` s."""
        envelopes, _ = self._read(lambda _: False, settle)
        return envelopes

    def _read(
        self, predicate: Callable[[list[SpotlightEnvelope]], Any], timeout: float
    ) -> tuple[list[SpotlightEnvelope], bool]:
        envelopes: list[SpotlightEnvelope] = []
        if predicate(envelopes):
            return envelopes, True
        deadline = time.monotonic() + timeout
        conn = HTTPConnection("127.0.0.1", self.port, timeout=max(0.1, timeout))
        try:
            conn.request("GET", "/stream?client=widgettrace-tests")
            response = conn.getresponse()
            if response.status != 200:
                raise RuntimeError(f"GET /stream -> {response.status}")

            def lines() -> Iterator[str]:
                while True:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return
                    if conn.sock is not None:
                        conn.sock.settimeout(remaining)
                    try:
                        raw = response.fp.readline()
                    except TimeoutError:
                        return
                    if not raw:
                        return
                    yield raw.decode("utf-8", errors="replace")

            for event_id, event, data in parse_sse(lines()):
                envelope = _to_envelope(event_id, event, data)
                if envelope is not None:
                    envelopes.append(envelope)
                    if predicate(envelopes):
                        return envelopes, True
        finally:
            conn.close()
        return envelopes, False

    def clear(self) -> None:
        """Empty Spotlight's buffer (``DELETE /clear``), e.g. between tests sharing the session."""
        request = urllib.request.Request(f"{self.base_url}/clear", method="DELETE")
        with urllib.request.urlopen(request, timeout=5):
            pass


def items_of(envelopes: list[SpotlightEnvelope], item_type: str) -> list[Any]:
    """All payloads of one item type (``"event"``, ``"transaction"``...) across envelopes."""
    return [p for envelope in envelopes for p in envelope.payloads(item_type)]
