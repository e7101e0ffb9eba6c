"""The read side behind the MCP tools: one insights store per served log, with limits and scrubbing.

:class:`Backend` opens :func:`widgettrace.insights.open_store` on the log once (ingestion), and
before each call brings it up to date with what was appended (at most every
``refresh_interval`` seconds: a tool call must stay cheap). DuckDB connections are not shared
between threads, so calls are serialised by a lock (tools run on worker threads).
:attr:`Backend.version` goes up whenever new lines were ingested, which is what the tools' answer
cache keys on: the same question about an unchanged log is answered once.

Everything handed back to a client goes through :func:`bounded`: strings are cut at
``MAX_STRING`` characters, and secrets are scrubbed once more (the log is scrubbed when written;
this keeps a log written with scrubbing off, or an older one, from leaking through an agent).

:class:`BadArgument` marks a caller's mistake; the server turns it into a JSON-RPC
``INVALID_PARAMS`` error with its message.
"""

from __future__ import annotations

import base64
import binascii
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from widgettrace.insights import Store, open_store

__all__ = [
    "MAX_LIMIT",
    "MAX_STRING",
    "Backend",
    "BadArgument",
    "bounded",
    "decode_cursor",
    "encode_cursor",
    "parse_time",
]

MAX_LIMIT = 100
MAX_STRING = 2000


class BadArgument(ValueError):
    """A tool argument the server cannot use (the message says which and why)."""


def parse_time(value: str | None, name: str) -> float | None:
    """``"24h"``/``"7d"`` (ago), ISO 8601 or epoch seconds -> epoch seconds (``None`` stays).

    The insights CLI's parser (one grammar for ``--since`` and the tools' ``since``).
    """
    if value is None or not value.strip():
        return None
    from argparse import ArgumentTypeError

    from widgettrace.insights.cli import parse_since

    try:
        return float(parse_since(value))
    except ArgumentTypeError:
        raise BadArgument(
            f"{name}={value!r} is not a time: use e.g. '24h', '7d', an ISO 8601 timestamp "
            "or epoch seconds"
        ) from None


def encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int:
    """The offset a ``next_cursor`` stands for (``None``: the first page)."""
    if not cursor:
        return 0
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, number = raw.partition(":")
        offset = int(number)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise BadArgument(f"cursor={cursor!r} is not a cursor this server returned") from None
    if kind != "o" or offset < 0:
        raise BadArgument(f"cursor={cursor!r} is not a cursor this server returned")
    return offset


def _scrubber() -> Any:
    try:  # the privacy helper's scrubber, once it has landed
        from widgettrace.exporters._scrub import get_scrubber

        return get_scrubber()
    except ImportError:
        return None


_SCRUB = _scrubber()
_FALLBACK: Any = None


def _scrub_text(text: str) -> str:
    global _FALLBACK
    if _FALLBACK is None:
        from widgettrace.exporters._sentry_convert import Scrubber

        _FALLBACK = Scrubber()
    out: str = _FALLBACK.value(text)
    return out


def bounded(value: Any) -> Any:
    """A JSON-ready copy of ``value`` with long strings cut and secrets scrubbed."""
    if _SCRUB is not None:
        value = _SCRUB.tree(value)
    return _bound(value)


def _bound(value: Any) -> Any:
    if isinstance(value, str):
        if _SCRUB is None:
            value = _scrub_text(value)
        return value if len(value) <= MAX_STRING else value[: MAX_STRING - 3] + "..."
    if isinstance(value, dict):
        return {str(k): _bound(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_bound(v) for v in value]
    if isinstance(value, float) and math.isnan(value):  # NaN is not JSON
        return None
    return value


class Backend:
    """The insights store of one log, opened on first use and kept up to date."""

    def __init__(self, log: Path, *, refresh_interval: float = 1.0, persist: bool = True) -> None:
        self.log = log
        self.refresh_interval = refresh_interval
        self.persist = persist
        self._lock = threading.Lock()
        self._store: Store | None = None
        self._refreshed = 0.0
        #: Goes up each time a refresh ingests new lines (answers computed before are stale).
        self.version = 0

    def open(self) -> None:
        """Ingest now, single spans' rows included (the server does this at start, so the first
        call is fast: the insights commands write those rows only when a view reads them, and
        traces and journeys are what agents ask for)."""
        with self.store() as store:
            store.ensure_spans()

    @contextmanager
    def store(self) -> Iterator[Store]:
        with self._lock:
            now = time.monotonic()
            if self._store is None:
                self._store = open_store(self.log, persist=self.persist)
                self._refreshed = now
            elif now - self._refreshed >= self.refresh_interval:
                if self._store.refresh():
                    self.version += 1
                self._refreshed = now
            yield self._store

    def current_version(self) -> int:
        """:attr:`version` after bringing the store up to date (when the interval allows)."""
        with self.store():
            return self.version

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None
