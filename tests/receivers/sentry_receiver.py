"""A real Sentry ingest endpoint for tests: HTTP on 127.0.0.1, envelopes decoded, faults on demand.

``SentryReceiver`` is a ``ThreadingHTTPServer`` bound to ``127.0.0.1:0`` that speaks the part of
Sentry's ingest protocol an SDK uses:

* ``POST /api/<project_id>/envelope/`` (envelopes) and the legacy ``POST /api/<project_id>/store/``
  (one JSON event);
* bodies with ``Content-Encoding`` ``gzip``, ``deflate`` (zlib or raw), ``br`` (when ``brotli`` is
  importable) or none, and chunked transfer encoding;
* authentication from the ``X-Sentry-Auth`` header, the ``sentry_key`` query parameter, or the
  envelope header's ``dsn``; a wrong or missing key answers 401 like Sentry does;
* envelope parsing per the spec: a headers line, then items, each a headers line and a payload of
  ``length`` bytes or, without ``length``, up to the next newline;
* answers ``200 {"id": "<event id>"}``.

Every ``event`` and ``transaction`` item is run through sentry-relay's ``StoreNormalizer`` (see
``receivers.relay``); ``normalization_errors()`` lists the items relay complained about.

Usage::

    with SentryReceiver() as receiver:
        run_app(dsn=receiver.dsn)              # http://public@127.0.0.1:<port>/1
        receiver.wait_for(lambda r: len(r.transactions()) >= 1, timeout=10)
        assert receiver.events()[0]["exception"]["values"][0]["type"] == "ValueError"
        assert receiver.normalization_errors() == []

Faults (``set_fault``) make the receiver misbehave the ways a real Sentry or network does:
``"429"`` (with ``Retry-After`` and ``X-Sentry-Rate-Limits``), ``"500"``, ``"slow"`` (answer after
``delay`` seconds), ``"reset"`` (read the request, then reset the TCP connection), ``"stall"``
(read the request and never answer, until healed or stopped), ``"garbage"`` (answer with bytes that
are not HTTP, then close), ``None`` (heal). A receiver that is down is ``stop()``-ped (connections
refused); ``restart()`` brings it back on the same port.
``times=N`` limits a fault to the next N requests. Refused requests are not stored as envelopes;
they are counted in ``rejected``.
"""

from __future__ import annotations

import contextlib
import gzip
import inspect
import json
import socket
import struct
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from receivers import relay

__all__ = [
    "EVENT_ITEM_TYPES",
    "EnvelopeItem",
    "FaultMode",
    "ReceivedEnvelope",
    "RejectedRequest",
    "SentryReceiver",
    "parse_auth_header",
    "parse_envelope",
    "watch_receivers",
]

FaultMode = Literal["429", "500", "slow", "reset", "stall", "garbage"]

#: What the "garbage" fault answers: not HTTP at all.
GARBAGE_REPLY = b"\x00\xffthis is not HTTP\r\n\r\n\x16\x03\x01garbage\n"

# Item types relay's StoreNormalizer understands (events of every kind and transactions).
EVENT_ITEM_TYPES = frozenset({"event", "transaction"})

# Lists of receivers created while a watcher is active (strong references: a test's own receiver
# is usually garbage by the time its teardown checks it).
_watchers: list[list[SentryReceiver]] = []
_watchers_lock = threading.Lock()


@contextmanager
def watch_receivers() -> Iterator[list[SentryReceiver]]:
    """Collect every SentryReceiver created inside the ``with`` block (for the teardown check)."""
    created: list[SentryReceiver] = []
    with _watchers_lock:
        _watchers.append(created)
    try:
        yield created
    finally:
        with _watchers_lock:
            _watchers.remove(created)


@dataclass
class EnvelopeItem:
    """One envelope item: its headers, raw payload, decoded JSON and relay's verdict."""

    headers: dict[str, Any]
    payload: bytes
    json: Any = None
    normalized: dict[str, Any] | None = None
    normalization_errors: list[Any] = field(default_factory=list)

    @property
    def type(self) -> str:
        return str(self.headers.get("type", ""))


@dataclass
class ReceivedEnvelope:
    """One accepted request, decoded."""

    headers: dict[str, Any]
    items: list[EnvelopeItem]
    endpoint: Literal["envelope", "store"]
    project_id: str
    auth: dict[str, str]
    request_headers: dict[str, str]
    content_encoding: str
    received_at: float


@dataclass
class RejectedRequest:
    """A request the receiver refused (fault mode, bad auth, bad body)."""

    path: str
    status: int | None  # None: the connection was reset
    reason: str
    request_headers: dict[str, str]
    body: bytes = b""


def parse_auth_header(value: str) -> dict[str, str]:
    """Parse ``Sentry sentry_key=..., sentry_version=7, sentry_client=...`` into a dict."""
    value = value.strip()
    if value.lower().startswith("sentry "):
        value = value[len("sentry ") :]
    out: dict[str, str] = {}
    for part in value.split(","):
        key, sep, val = part.strip().partition("=")
        if sep:
            out[key.strip()] = val.strip()
    return out


def parse_envelope(
    body: bytes, decode: Callable[[str], bool] | None = None
) -> tuple[dict[str, Any], list[EnvelopeItem]]:
    """Split an envelope into its headers and items (payload JSON decoded where it is JSON).

    ``decode(item_type)`` says which payloads to JSON-decode (default: all); the others keep
    ``json=None``. Raises ``ValueError`` on a malformed envelope (bad header JSON, ``length`` past
    the end).
    """
    first_nl = body.find(b"\n")
    header_line = body if first_nl < 0 else body[:first_nl]
    headers = json.loads(header_line or b"{}")
    if not isinstance(headers, dict):
        raise ValueError("envelope headers are not a JSON object")
    items: list[EnvelopeItem] = []
    pos = len(body) if first_nl < 0 else first_nl + 1
    while pos < len(body):
        nl = body.find(b"\n", pos)
        line = body[pos:] if nl < 0 else body[pos:nl]
        pos = len(body) if nl < 0 else nl + 1
        if not line.strip():
            # Trailing newline(s) after the last item.
            continue
        item_headers = json.loads(line)
        if not isinstance(item_headers, dict):
            raise ValueError("item headers are not a JSON object")
        length = item_headers.get("length")
        if length is not None:
            if not isinstance(length, int) or length < 0 or pos + length > len(body):
                raise ValueError(f"item length {length!r} runs past the envelope end")
            payload = body[pos : pos + length]
            pos += length
            if body[pos : pos + 1] == b"\n":
                pos += 1
        else:
            nl = body.find(b"\n", pos)
            payload = body[pos:] if nl < 0 else body[pos:nl]
            pos = len(body) if nl < 0 else nl + 1
        wanted = decode is None or decode(str(item_headers.get("type", "")))
        items.append(
            EnvelopeItem(
                headers=item_headers,
                payload=payload,
                json=_maybe_json(payload) if wanted else None,
            )
        )
    return headers, items


def _maybe_json(payload: bytes) -> Any:
    try:
        return json.loads(payload)
    except ValueError:
        return None


def _decode_body(body: bytes, encoding: str) -> bytes:
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding in ("gzip", "x-gzip"):
        return gzip.decompress(body)
    if encoding == "deflate":
        try:
            return zlib.decompress(body)
        except zlib.error:
            # Some clients send raw deflate without the zlib wrapper.
            return zlib.decompress(body, -zlib.MAX_WBITS)
    if encoding == "br":
        import brotli  # type: ignore[import-not-found,unused-ignore]

        data: bytes = brotli.decompress(body)
        return data
    raise ValueError(f"unsupported Content-Encoding {encoding!r}")


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    # Keep-alive plus Nagle plus delayed ACK stalls every response ~40 ms (21 req/s).
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        # Quiet: pytest shows stderr of failing tests, and access logs would drown the real cause.
        return

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size_line = self.rfile.readline()
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    # Trailer section ends with an empty line.
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send_json(
        self, status: int, payload: Any, extra_headers: dict[str, str] | None = None
    ) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for key, value in (extra_headers or {}).items():
            self.send_header(key, value)
        # end_headers() then wfile.write(body) is two writes, and the client wakes up twice; the
        # blank line and the body go out with the headers in one write instead.
        self._headers_buffer.append(b"\r\n" + body)
        self.flush_headers()

    def do_GET(self) -> None:
        if urlsplit(self.path).path.rstrip("/") in ("", "/_health"):
            self._send_json(200, {"ok": True})
        else:
            self._send_json(404, {"detail": "not found"})

    def do_POST(self) -> None:
        receiver = self.server.receiver
        body = self._read_body()
        request_headers = {k.lower(): v for k, v in self.headers.items()}
        split = urlsplit(self.path)
        parts = [p for p in split.path.split("/") if p]
        if len(parts) != 3 or parts[0] != "api" or parts[2] not in ("envelope", "store"):
            self._send_json(404, {"detail": "not found"})
            return

        fault = receiver._take_fault()
        if fault is not None:
            mode, options = fault
            if mode == "slow":
                receiver._closing.wait(float(options.get("delay", 2.0)))
            elif mode == "stall":
                receiver._reject(self.path, None, "stall", request_headers, body)
                receiver._healed.wait()
                self.close_connection = True
                return
            elif mode == "garbage":
                receiver._reject(self.path, None, "garbage", request_headers, body)
                self.wfile.write(GARBAGE_REPLY)
                self.close_connection = True
                return
            elif mode == "reset":
                receiver._reject(self.path, None, "reset", request_headers, body)
                # SO_LINGER 0 makes close() send RST: the client sees a connection reset.
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.close_connection = True
                self.connection.close()
                return
            elif mode == "429":
                receiver._reject(self.path, 429, "fault 429", request_headers, body)
                headers = {"Retry-After": str(options.get("retry_after", 60))}
                default_limits = f"{options.get('retry_after', 60)}::organization"
                rate_limits = options.get("rate_limits", default_limits)
                if rate_limits:
                    headers["X-Sentry-Rate-Limits"] = str(rate_limits)
                self._send_json(429, {"detail": "rate limited"}, headers)
                return
            elif mode == "500":
                receiver._reject(self.path, 500, "fault 500", request_headers, body)
                self._send_json(500, {"detail": "internal server error"})
                return

        try:
            decoded = _decode_body(body, self.headers.get("Content-Encoding", ""))
        except Exception as exc:  # any decoder failure is the client's bad body
            receiver._reject(self.path, 400, f"bad body encoding: {exc}", request_headers, body)
            self._send_json(400, {"detail": f"bad body encoding: {exc}"})
            return

        endpoint: Literal["envelope", "store"] = "envelope" if parts[2] == "envelope" else "store"
        try:
            if endpoint == "envelope":
                env_headers, items = parse_envelope(decoded, receiver._decode_item)
            else:
                event = json.loads(decoded)
                env_headers = {"event_id": event.get("event_id")}
                item_type = "transaction" if event.get("type") == "transaction" else "event"
                items = [EnvelopeItem(headers={"type": item_type}, payload=decoded, json=event)]
        except ValueError as exc:
            receiver._reject(self.path, 400, f"bad envelope: {exc}", request_headers, decoded)
            self._send_json(400, {"detail": f"bad envelope: {exc}"})
            return

        auth = parse_auth_header(self.headers.get("X-Sentry-Auth", ""))
        query = parse_qs(split.query)
        for key in ("sentry_key", "sentry_version", "sentry_client"):
            if key not in auth and key in query:
                auth[key] = query[key][0]
        if "sentry_key" not in auth and isinstance(env_headers.get("dsn"), str):
            dsn_key = urlsplit(env_headers["dsn"]).username
            if dsn_key:
                auth["sentry_key"] = dsn_key
        if auth.get("sentry_key") != receiver.public_key:
            receiver._reject(self.path, 401, "bad or missing sentry_key", request_headers, decoded)
            self._send_json(401, {"detail": "missing authorization information"})
            return

        received = ReceivedEnvelope(
            headers=env_headers,
            items=items,
            endpoint=endpoint,
            project_id=parts[1],
            auth=auth,
            request_headers=request_headers,
            content_encoding=self.headers.get("Content-Encoding", ""),
            received_at=time.time(),
        )
        receiver._accept(received)
        event_id = env_headers.get("event_id")
        if not event_id:
            for item in items:
                if isinstance(item.json, dict) and item.json.get("event_id"):
                    event_id = item.json["event_id"]
                    break
        self._send_json(200, {"id": event_id or uuid.uuid4().hex})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default listen backlog is 5; a sender opening 32 connections at once on a
    # loaded machine would see SYN retries a real ingest endpoint never causes.
    request_queue_size = 128
    # restart() rebinds the port it had while its old connections may be in TIME_WAIT (on Linux
    # SO_REUSEADDR never lets two servers listen on one port).
    allow_reuse_address = True
    receiver: SentryReceiver

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.receiver._cond:
            self.receiver._connections.add(request)
            self.receiver._accepted += 1
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.receiver._cond:
            self.receiver._connections.discard(request)
        super().shutdown_request(request)


class SentryReceiver:
    """A Sentry-protocol HTTP receiver on 127.0.0.1 (see the module docstring).

    ``normalize=False`` skips relay normalisation (for load tests where it would be the bottleneck);
    ``keep_payloads=False`` keeps only counts per item type and the client reports' drop counts
    (for very long runs). With both, item payloads other than client reports are not even
    JSON-decoded (a lean counting mode: the receiver stands in for Relay, which is far faster than
    this Python server, so it must not be what limits a load measurement).
    """

    def __init__(
        self,
        *,
        project_id: int = 1,
        public_key: str = "public",
        normalize: bool = True,
        keep_payloads: bool = True,
    ) -> None:
        self.project_id = project_id
        self.public_key = public_key
        self.normalize = normalize
        self.keep_payloads = keep_payloads
        self._cond = threading.Condition()
        self._envelopes: list[ReceivedEnvelope] = []
        self._rejected: list[RejectedRequest] = []
        self._counts: dict[str, int] = {}
        self._discarded: dict[tuple[str, str], int] = {}
        self._generation = 0
        self._fault: tuple[FaultMode, dict[str, Any]] | None = None
        self._fault_remaining: int | None = None
        self._closing = threading.Event()
        self._healed = threading.Event()  # set while no "stall" fault holds requests
        self._healed.set()
        self._rejected_count = 0
        self._last_port = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._port = 0
        self._connections: set[socket.socket] = set()
        self._accepted = 0
        with _watchers_lock:
            for watcher in _watchers:
                watcher.append(self)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> SentryReceiver:
        if self._server is not None:
            return self
        self._closing.clear()
        server = _Server(("127.0.0.1", self._port), _Handler)
        server.receiver = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"SentryReceiver:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._last_port = self.port
        self._closing.set()  # wakes "slow" handlers
        self._healed.set()  # and "stall" ones
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        # Kept-alive connections would otherwise still be served by their handler threads after
        # the server stopped; a stopped receiver is gone, like a restarted Sentry.
        with self._cond:
            connections, self._connections = list(self._connections), set()
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._server = None
        self._thread = None

    def restart(self) -> None:
        """Stop (dropping every open connection) and start again on the same port (also after
        a ``stop()``: a Sentry that was down comes back)."""
        port = self.port if self._server is not None else self._last_port
        self.stop()
        self._port = port
        try:
            self.start()
        finally:
            self._port = 0

    @property
    def connections_accepted(self) -> int:
        """TCP connections accepted since the receiver was created."""
        with self._cond:
            return self._accepted

    def __enter__(self) -> SentryReceiver:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses ---------------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("SentryReceiver is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def dsn(self) -> str:
        return f"http://{self.public_key}@127.0.0.1:{self.port}/{self.project_id}"

    @property
    def envelope_url(self) -> str:
        return f"{self.url}/api/{self.project_id}/envelope/"

    # -- faults ------------------------------------------------------------------------------
    def set_fault(
        self,
        mode: FaultMode | None,
        *,
        times: int | None = None,
        retry_after: int = 60,
        rate_limits: str | None = None,
        delay: float = 2.0,
    ) -> None:
        """Misbehave on the next ``times`` requests (all, when None) until ``set_fault(None)``.

        ``"429"``: ``Retry-After: <retry_after>`` and ``X-Sentry-Rate-Limits: <rate_limits>``
        (default ``"<retry_after>::organization"``: every category; e.g. ``"60:transaction"`` limits
        only transactions; ``""`` sends no such header so the SDK falls back to Retry-After).
        ``"slow"``: wait ``delay`` seconds, then accept. ``"reset"``: reset the connection.
        ``"stall"``: never answer (until ``set_fault(None)`` or ``stop()``). ``"garbage"``: answer
        bytes that are not HTTP and close.
        """
        with self._cond:
            if mode is None:
                self._fault = None
                self._fault_remaining = None
                self._healed.set()
                return
            if mode not in ("429", "500", "slow", "reset", "stall", "garbage"):
                raise ValueError(f"unknown fault mode {mode!r}")
            options: dict[str, Any] = {"retry_after": retry_after, "delay": delay}
            if rate_limits is not None:
                options["rate_limits"] = rate_limits
            self._fault = (mode, options)
            self._fault_remaining = times
            if mode == "stall":
                self._healed.clear()

    def _take_fault(self) -> tuple[FaultMode, dict[str, Any]] | None:
        with self._cond:
            fault = self._fault
            if fault is not None and self._fault_remaining is not None:
                self._fault_remaining -= 1
                if self._fault_remaining <= 0:
                    self._fault = None
                    self._fault_remaining = None
            return fault

    # -- recording ---------------------------------------------------------------------------
    def _decode_item(self, item_type: str) -> bool:
        """Whether to JSON-decode an item's payload (all, except in the lean counting mode)."""
        return self.normalize or self.keep_payloads or item_type == "client_report"

    def _accept(self, envelope: ReceivedEnvelope) -> None:
        if self.normalize:
            for item in envelope.items:
                if item.type in EVENT_ITEM_TYPES:
                    source: Any = item.json if isinstance(item.json, dict) else item.payload
                    item.normalized, item.normalization_errors = relay.normalize(source)
        with self._cond:
            for item in envelope.items:
                self._counts[item.type] = self._counts.get(item.type, 0) + 1
                if item.type == "client_report" and isinstance(item.json, dict):
                    for entry in item.json.get("discarded_events") or []:
                        key = (str(entry.get("reason")), str(entry.get("category")))
                        quantity = int(entry.get("quantity") or 0)
                        self._discarded[key] = self._discarded.get(key, 0) + quantity
            if self.keep_payloads:
                self._envelopes.append(envelope)
            elif any(item.normalization_errors for item in envelope.items):
                # Still keep what relay rejected, so the teardown check can show it.
                self._envelopes.append(envelope)
            self._generation += 1
            self._cond.notify_all()

    def _reject(
        self, path: str, status: int | None, reason: str, headers: dict[str, str], body: bytes
    ) -> None:
        with self._cond:
            self._rejected_count += 1
            if self.keep_payloads:
                self._rejected.append(RejectedRequest(path, status, reason, headers, body))
            self._generation += 1
            self._cond.notify_all()

    # -- reading back ------------------------------------------------------------------------
    @property
    def envelopes(self) -> list[ReceivedEnvelope]:
        """Accepted envelopes (and store requests), in arrival order (a snapshot)."""
        with self._cond:
            return list(self._envelopes)

    @property
    def rejected(self) -> list[RejectedRequest]:
        """Requests refused by a fault, bad auth or a bad body (a snapshot)."""
        with self._cond:
            return list(self._rejected)

    @property
    def rejected_count(self) -> int:
        """Requests refused (kept even when ``keep_payloads=False``)."""
        with self._cond:
            return self._rejected_count

    def counts(self) -> dict[str, int]:
        """Items received per item type (kept even when ``keep_payloads=False``)."""
        with self._cond:
            return dict(self._counts)

    def items(self, item_type: str | None = None) -> list[EnvelopeItem]:
        """Every accepted item, or only those of one type (``"event"``, ``"client_report"``...)."""
        return [
            item
            for envelope in self.envelopes
            for item in envelope.items
            if item_type is None or item.type == item_type
        ]

    def payloads(self, item_type: str) -> list[dict[str, Any]]:
        """Decoded JSON payloads of the items of one type."""
        return [i.json for i in self.items(item_type) if isinstance(i.json, dict)]

    def events(self) -> list[dict[str, Any]]:
        """Error and message events (``event`` items and store requests), oldest first."""
        return self.payloads("event")

    def transactions(self) -> list[dict[str, Any]]:
        return self.payloads("transaction")

    def client_reports(self) -> list[dict[str, Any]]:
        return self.payloads("client_report")

    def discarded(self) -> dict[tuple[str, str], int]:
        """Client reports summed up: ``{(reason, category): quantity}``.

        Kept even when ``keep_payloads=False`` (a load test's drop count must not read zero).
        """
        with self._cond:
            return dict(self._discarded)

    def normalization_errors(self) -> list[tuple[EnvelopeItem, list[Any]]]:
        """``(item, relay errors)`` for each event/transaction item relay did not accept cleanly."""
        return [
            (item, item.normalization_errors) for item in self.items() if item.normalization_errors
        ]

    def clear(self) -> None:
        """Forget everything received and rejected (faults stay as set)."""
        with self._cond:
            self._envelopes.clear()
            self._rejected.clear()
            self._counts.clear()
            self._discarded.clear()
            self._rejected_count = 0

    def wait_for(
        self,
        predicate: Callable[[SentryReceiver], Any] | Callable[[], Any],
        timeout: float = 10.0,
        *,
        raise_on_timeout: bool = True,
    ) -> Any:
        """Wait until ``predicate`` is truthy and return its value; no polling loop.

        ``predicate`` takes the receiver (``lambda r: len(r.events()) == 2``) or nothing. On timeout
        raises ``TimeoutError`` with a summary of what did arrive (or returns the falsy value when
        ``raise_on_timeout=False``).
        """
        takes_arg = _takes_argument(predicate)

        def check() -> Any:
            return predicate(self) if takes_arg else predicate()  # type: ignore[call-arg]

        deadline = time.monotonic() + timeout
        while True:
            with self._cond:
                generation = self._generation
            # The predicate reads snapshots (which take the lock), so it runs without holding it.
            value = check()
            if value:
                return value
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            with self._cond:
                if self._generation == generation:
                    self._cond.wait(min(remaining, 0.5))
        if raise_on_timeout:
            raise TimeoutError(
                f"SentryReceiver.wait_for timed out after {timeout}s; {self.summary()}"
            )
        return value

    def summary(self) -> str:
        """One line describing what arrived, for failure messages."""
        rejected = self.rejected
        return (
            f"received items {self.counts()}, "
            f"{len(rejected)} rejected requests {[r.reason for r in rejected][:10]}"
        )

    def __iter__(self) -> Iterator[ReceivedEnvelope]:
        return iter(self.envelopes)

    def __repr__(self) -> str:
        where = self.url if self._server is not None else "stopped"
        return f"<SentryReceiver {where} {self.summary()}>"


def _takes_argument(func: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return True
    positional = [
        p
        for p in params
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
    ]
    return bool(positional)
