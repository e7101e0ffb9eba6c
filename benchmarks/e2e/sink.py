"""A counting sink for ``bench_e2e.py``: speaks enough of Sentry's and Datadog's ingest protocols.

- Sentry: ``POST /api/<project>/envelope/`` (and ``/store/``), bodies plain, gzip, deflate or br
  (br only when the ``brotli`` module is importable; otherwise counted as undecodable). Counts
  envelopes, items by type (``transaction``, ``event``, ``span``, ...), streamed spans and their
  segments (one per request), and the ``discarded_events`` of
  client reports by ``category:reason`` (what an SDK says it dropped).
- Sentry's OTLP endpoint: ``POST /api/<project>/integration/otlp/v1/traces/`` (protobuf,
  decoded with ``opentelemetry-proto`` when importable) counts requests, spans and SERVER spans.
- Datadog agent: ``PUT|POST /v0.x/traces`` counts payloads and traces (the ``X-Datadog-Trace-Count``
  header, else the msgpack top-level array length); other agent paths (``/info``, telemetry,
  stats) get 404 or 200 so the tracer falls back to its defaults.
- ``GET /_stats`` returns the counters as JSON; ``POST /_reset`` zeroes them.

HTTP/1.1 keep-alive on a ThreadingHTTPServer bound to 127.0.0.1 on a free port; prints
``PORT <n>`` on stdout once listening. Run: ``python benchmarks/e2e/sink.py``; stop with SIGTERM.
"""

from __future__ import annotations

import gzip
import json
import signal
import sys
import threading
import zlib
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any

__all__ = ["Counts", "count_envelope", "count_otlp", "main", "msgpack_array_len"]


class Counts:
    """Thread-safe counters of what arrived."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.envelopes = 0
        self.items: Counter[str] = Counter()
        self.discarded: Counter[str] = Counter()
        self.undecodable = 0
        self.dd_payloads = 0
        self.dd_traces = 0
        self.otlp_requests = 0
        self.otlp_spans = 0
        self.otlp_server_spans = 0
        self.spans = 0
        self.span_segments = 0
        self.bytes = 0
        self.other: Counter[str] = Counter()

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "envelopes": self.envelopes,
                "items": dict(self.items),
                "transactions": self.items.get("transaction", 0),
                "discarded": dict(self.discarded),
                "undecodable": self.undecodable,
                "dd_payloads": self.dd_payloads,
                "dd_traces": self.dd_traces,
                "otlp_requests": self.otlp_requests,
                "otlp_spans": self.otlp_spans,
                "otlp_server_spans": self.otlp_server_spans,
                "spans": self.spans,
                "span_segments": self.span_segments,
                "bytes": self.bytes,
                "other": dict(self.other),
            }


def _decode(body: bytes, encoding: str) -> bytes | None:
    encoding = encoding.strip().lower()
    try:
        if encoding == "gzip":
            return gzip.decompress(body)
        if encoding == "deflate":
            return zlib.decompress(body)
        if encoding == "br":
            import brotli  # type: ignore[import-not-found,unused-ignore]

            data: bytes = brotli.decompress(body)
            return data
    except Exception:
        return None
    return body if encoding in ("", "identity") else None


def count_envelope(data: bytes, counts: Counts) -> None:
    """Count the items of one Sentry envelope (``counts.lock`` must be held)."""
    pos = data.find(b"\n")
    if pos < 0:
        return
    pos += 1
    while pos < len(data):
        end = data.find(b"\n", pos)
        if end < 0:
            end = len(data)
        line = data[pos:end].strip()
        pos = end + 1
        if not line:
            continue
        header = json.loads(line)
        length = header.get("length")
        if length is None:
            end = data.find(b"\n", pos)
            end = len(data) if end < 0 else end
            payload = data[pos:end]
            pos = end + 1
        else:
            payload = data[pos : pos + int(length)]
            pos += int(length) + 1
        kind = str(header.get("type"))
        counts.items[kind] += 1
        if kind == "span":
            # Streamed spans (span v2): a segment (local root) is one request's transaction.
            streamed = json.loads(payload).get("items", [])
            counts.spans += len(streamed)
            counts.span_segments += sum(1 for span in streamed if span.get("is_segment"))
        if kind == "client_report":
            report = json.loads(payload)
            for d in report.get("discarded_events", []):
                key = f"{d.get('category')}:{d.get('reason')}"
                counts.discarded[key] += int(d.get("quantity", 1))


def count_otlp(data: bytes) -> tuple[int, int] | None:
    """(spans, SERVER spans) in an OTLP/protobuf ExportTraceServiceRequest, or None when
    opentelemetry-proto is not importable or the body does not parse."""
    try:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )
        from opentelemetry.proto.trace.v1.trace_pb2 import Span
    except ImportError:
        return None
    req = ExportTraceServiceRequest()
    try:
        req.ParseFromString(data)
    except Exception:
        return None
    spans = server = 0
    for rs in req.resource_spans:
        for ss in rs.scope_spans:
            for span in ss.spans:
                spans += 1
                server += span.kind == Span.SPAN_KIND_SERVER
    return spans, server


def msgpack_array_len(data: bytes) -> int | None:
    """Length of the msgpack array that ``data`` starts with (ddtrace's v0.4 list of traces)."""
    if not data:
        return None
    b = data[0]
    if 0x90 <= b <= 0x9F:
        return b & 0x0F
    if b == 0xDC and len(data) >= 3:
        return int.from_bytes(data[1:3], "big")
    if b == 0xDD and len(data) >= 5:
        return int.from_bytes(data[1:5], "big")
    return None


COUNTS = Counts()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, the second waits for the client's
    # delayed ACK (~40 ms), which would cap every SDK at ~25 envelopes a second per connection.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # the sink stays quiet
        return

    def _reply(self, code: int, body: bytes = b"{}") -> None:
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_GET(self) -> None:
        if self.path.startswith("/_stats"):
            self._reply(200, json.dumps(COUNTS.snapshot()).encode())
            return
        with COUNTS.lock:
            COUNTS.other[f"GET {self.path.split('?')[0]}"] += 1
        self._reply(404)

    def do_PUT(self) -> None:
        self.do_POST()

    def do_POST(self) -> None:
        raw = self._body()
        path = self.path.split("?")[0]
        if path == "/_reset":
            with COUNTS.lock:
                COUNTS.reset()
            self._reply(200)
            return
        if path.startswith("/api/") and (path.endswith("/envelope/") or path.endswith("/store/")):
            data = _decode(raw, self.headers.get("Content-Encoding", ""))
            with COUNTS.lock:
                COUNTS.bytes += len(raw)
                if data is None:
                    COUNTS.undecodable += 1
                elif path.endswith("/store/"):
                    COUNTS.items["event"] += 1
                else:
                    COUNTS.envelopes += 1
                    try:
                        count_envelope(data, COUNTS)
                    except (ValueError, KeyError):
                        COUNTS.undecodable += 1
            self._reply(200, b'{"id": "00000000000000000000000000000000"}')
            return
        if "/otlp/v1/traces" in path:
            # Sentry's OTLP endpoint: a SERVER span is one request's transaction.
            data = _decode(raw, self.headers.get("Content-Encoding", ""))
            counted = count_otlp(data) if data is not None else None
            with COUNTS.lock:
                COUNTS.bytes += len(raw)
                COUNTS.otlp_requests += 1
                if counted is None:
                    COUNTS.undecodable += 1
                else:
                    COUNTS.otlp_spans += counted[0]
                    COUNTS.otlp_server_spans += counted[1]
            self._reply(200, b"")
            return
        if path.endswith("/traces"):
            header = self.headers.get("X-Datadog-Trace-Count")
            n = int(header) if header and header.isdigit() else msgpack_array_len(raw)
            with COUNTS.lock:
                COUNTS.bytes += len(raw)
                COUNTS.dd_payloads += 1
                COUNTS.dd_traces += n or 0
            self._reply(200, b'{"rate_by_service": {}}')
            return
        with COUNTS.lock:
            COUNTS.other[f"POST {path}"] += 1
        self._reply(200)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client closing its keep-alive connection at exit is normal; anything else is shown.
        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            super().handle_error(request, client_address)


def main() -> None:
    server = _Server(("127.0.0.1", 0), _Handler)

    def stop(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever(poll_interval=0.2)
    server.server_close()
    sys.exit(0)


if __name__ == "__main__":
    main()
