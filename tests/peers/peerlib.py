"""Shared pieces of the peer scripts: a span file exporter, a silent Sentry transport, servers.

Imported by the scripts in this directory (which run with it as ``sys.path[0]``), never by
widgettrace itself.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

__all__ = ["JsonLinesSpanExporter", "NullTransport", "announce", "bind_socket"]


class JsonLinesSpanExporter(SpanExporter):
    """Appends each finished span as one JSON line (ids in hex) to ``path``."""

    def __init__(self, path: str, service: str) -> None:
        self._path = Path(path)
        self._service = service
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = []
        for span in spans:
            context = span.get_span_context()
            assert context is not None
            parent = span.parent
            lines.append(
                json.dumps(
                    {
                        "service": self._service,
                        "name": span.name,
                        "kind": span.kind.name,
                        "trace_id": f"{context.trace_id:032x}",
                        "span_id": f"{context.span_id:016x}",
                        "parent_span_id": None if parent is None else f"{parent.span_id:016x}",
                        "parent_is_remote": None if parent is None else parent.is_remote,
                        "sampled": context.trace_flags.sampled,
                    }
                )
            )
        self._append(lines)
        return SpanExportResult.SUCCESS

    def write_raw(self, record: dict[str, Any]) -> None:
        """Append one already-built record (peers without OTel write Sentry spans this way)."""
        self._append([json.dumps(record)])

    def _append(self, lines: list[str]) -> None:
        with self._lock, self._path.open("a", encoding="utf-8") as fh:
            fh.write("".join(line + "\n" for line in lines))


class NullTransport(Transport):
    """A Sentry transport that drops everything (the peer only needs an active client)."""

    def capture_envelope(self, envelope: Envelope) -> None:
        pass

    def flush(self, timeout: float, callback: Any = None) -> None:
        pass


def bind_socket() -> socket.socket:
    """A listening TCP socket on 127.0.0.1 with a free port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock


def announce(port: int) -> None:
    """Tell the harness the server is up."""
    print(f"LISTENING {port}", flush=True)
