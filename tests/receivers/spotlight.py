"""A real Spotlight sidecar (npm ``@spotlightjs/spotlight``) on 127.0.0.1, for end-to-end tests.

Spotlight is Sentry's development sidecar: SDKs given ``spotlight="http://127.0.0.1:<port>/stream"``
send it a copy of every envelope (no DSN needed), and ``GET /stream`` replays what it holds as
server-sent events (``event: application/x-sentry-envelope``, ``data: [headers, [[item headers,
payload], ...]]``).

Starting and stopping is the package's (:mod:`widgettrace.devtools.spotlight`, shared with
``widgettrace dev``): the node package lives in ``widgettrace/devtools/spotlight_node/``, installed
by ``scripts/setup-receivers.sh``, started through its exported ``setupSpotlight`` on
``127.0.0.1:0``. This module adds the reading back of ``GET /stream`` for the tests.

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
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.client import HTTPConnection
from pathlib import Path
from typing import Any

from widgettrace.devtools.spotlight import Spotlight, SpotlightUnavailable

__all__ = [
    "PACKAGE_DIR",
    "SpotlightEnvelope",
    "SpotlightServer",
    "SpotlightUnavailable",
    "items_of",
    "parse_sse",
]

#: The source checkout's node directory, where scripts/setup-receivers.sh installs the packages
#: (the tests may run against an installed wheel, whose copy has no node_modules).
PACKAGE_DIR = Path(__file__).resolve().parents[2] / "widgettrace" / "devtools" / "spotlight_node"


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


class SpotlightServer(Spotlight):
    """One Spotlight sidecar process (see the module docstring), with the reading back."""

    def __init__(self, workdir: Path, *, node: str | None = None) -> None:
        super().__init__(
            workdir, node=node or os.environ.get("WIDGETTRACE_NODE"), node_dir=PACKAGE_DIR
        )

    def start(self, timeout: float = 30.0) -> SpotlightServer:
        super().start(timeout)
        return self

    def __enter__(self) -> SpotlightServer:
        return self.start()

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


def items_of(envelopes: list[SpotlightEnvelope], item_type: str) -> list[Any]:
    """All payloads of one item type (``"event"``, ``"transaction"``...) across envelopes."""
    return [p for envelope in envelopes for p in envelope.payloads(item_type)]
