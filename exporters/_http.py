"""sentry-sdk's ``HttpTransport`` with a cheaper request layer for plain-http DSNs.

The SDK's ``HttpTransport`` sends each envelope through a urllib3 ``PoolManager`` (pool lookup,
``Retry`` bookkeeping, a connection checked out and back per request): about twice the CPU per
envelope of a plain kept-alive ``http.client.HTTPConnection``, measured on this project's 2-core
machines, and the one worker thread sends serially. :class:`KeepAliveRequests` replaces only the
request layer (``_make_pool`` / ``_request``) for the simple case (an ``http://`` DSN, no proxy
from the options or the environment, no socket options, no ``keep_alive``): one kept-alive
connection per sending thread, on a plain socket, which writes the request and reads the
response itself (:class:`_Connection`; half the CPU of ``http.client`` per request).
Everything else (``https`` DSNs, proxies, custom sockets) takes the stock urllib3 path unchanged.

What stays the SDK's: the ``BackgroundWorker``, envelope preparation and serialisation, rate limits
(``_handle_response`` / ``_update_rate_limits`` read ``status`` and the ``Retry-After`` /
``X-Sentry-Rate-Limits`` headers of the response object returned here), client reports and
``record_lost_event``. An idle connection the server closed is replaced before use (as urllib3
does); a connection error on a kept-alive connection reconnects once; a failure on a fresh
connection (or a timeout, which is not resent) raises at once (a failing server costs one
attempt), and ``BaseHttpTransport._send_request`` counts the envelope as lost
(``network_error``) exactly as it does for urllib3. Nothing raises out of ``capture_envelope``:
the SDK's worker job wraps the send in ``capture_internal_exceptions``.

A resent request may reach the server twice; Sentry deduplicates events by ``event_id``.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import select
import socket
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from sentry_sdk.consts import EndpointType
from sentry_sdk.transport import HttpTransport

__all__ = ["KeepAliveHttpTransport", "KeepAliveRequests", "fast_path_reason"]

if TYPE_CHECKING:
    _Base = HttpTransport
else:
    _Base = object

#: Idle connections kept per transport (one per thread that sent concurrently; the delivery
#: transport runs at most 32 senders).
_MAX_IDLE = 32
#: Pause per answer still awaited in a pipelined batch: first guess, and bounds (the whole
#: pause is at most _MAX_PAUSE_S).
_FIRST_GAP_S = 20e-6
_MIN_GAP_S = 1e-6
_MAX_PAUSE_S = 0.005
#: An idle connection reused within this many seconds is not polled for a close first.
_FRESH_S = 0.25


class _Headers(dict[str, str]):
    """Response headers by lower-cased name; ``get`` is case-insensitive like urllib3's."""

    def get(self, key: str, default: Any = None) -> Any:
        return dict.get(self, key.lower(), default)


class _Response:
    """What ``_handle_response`` / ``_get_header_value`` / ``_send_request`` use of a response."""

    __slots__ = ("at", "data", "headers", "status")

    def __init__(self, status: int, headers: _Headers, data: bytes) -> None:
        self.status = status
        self.headers = headers
        self.data = data
        #: When it was read (``time.monotonic``): how far apart pipelined answers come.
        self.at = time.monotonic()

    def close(self) -> None:
        """The body was read in full; the connection stays with the transport."""


class _BadResponse(http.client.HTTPException):
    """What the server sent is not an HTTP/1.x response we can read."""


_MAX_HEAD = 65_536  # status line and headers; relay's are a few hundred bytes
#: Parsed response heads by their bytes (read-only once stored; a few per second: Date).
_HEADS: dict[bytes, tuple[bytes, int, _Headers]] = {}
_HEADS_MAX = 64


def host_header(host: str, port: int) -> bytes:
    """The ``Host`` header's value for ``host:port``, as http.client writes it."""
    name = f"[{host}]" if ":" in host else host  # an IPv6 address
    return (name if port == 80 else f"{name}:{port}").encode("idna")


def request_bytes(
    host: bytes, method: str, path: str, headers: Mapping[str, str], body: bytes
) -> bytes:
    """One request as the bytes to write (ValueError for a header that would inject)."""
    key = (host, method, path, *headers.items())
    head = _REQUEST_HEADS.get(key)
    if head is None:
        lines = [f"{method} {path} HTTP/1.1".encode("ascii"), b"Host: " + host]
        for name, value in headers.items():
            if "\n" in value or "\r" in value or "\n" in name or "\r" in name or ":" in name:
                # Refused, as http.client refuses it: a line break would inject a header.
                raise ValueError(f"Invalid header value {value!r}")
            lines.append(f"{name}: {value}".encode("latin-1"))
        lines.append(b"Content-Length: ")
        head = b"\r\n".join(lines)
        if len(_REQUEST_HEADS) >= _HEADS_MAX:
            _REQUEST_HEADS.clear()
        _REQUEST_HEADS[key] = head
    return b"%b%d\r\n\r\n%b" % (head, len(body), body)


#: Request heads up to ``Content-Length: `` by (host, method, path, headers): an envelope's
#: headers are the same every time (auth, content type; gzip or not).
_REQUEST_HEADS: dict[tuple[Any, ...], bytes] = {}


class _Connection:
    """One kept-alive HTTP/1.1 connection on a plain socket. Not thread-safe (one user at a time).

    It writes each request as one buffer and reads the response itself: status line and
    headers, then the body by ``Content-Length``, chunked, or to the close; 1xx answers are
    skipped, and ``Connection: close``, HTTP/1.0 and stray bytes after a response make the
    connection single-use. ``http.client`` did the same at twice the CPU per request (its
    header parsing goes through the ``email`` package), and this runs once per envelope.
    """

    __slots__ = ("buf", "host", "pid", "poller", "reads", "sock", "used")

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.pid = os.getpid()
        self.host = host_header(host, port)
        self.sock = socket.create_connection((host, port), timeout=timeout)
        try:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.poller = select.poll()
            self.poller.register(self.sock, select.POLLIN)
        except BaseException:
            self.sock.close()
            raise
        self.buf = bytearray()
        self.reads = 0  # recv calls made
        self.used = 0.0  # when it went back to the idle list

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def dropped(self) -> bool:
        """Whether this idle connection was closed by the server (or has stray bytes to read)."""
        # Readable while idle means EOF, a reset or stray bytes: not reusable. (recv would
        # wait for the socket's timeout first, so poll with a zero timeout, as urllib3 does.)
        try:
            return bool(self.poller.poll(0))
        except (OSError, ValueError):
            return True

    def roundtrip(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[_Response, bool]:
        """Send one request; return the response and whether the connection can be reused."""
        self.sock.sendall(request_bytes(self.host, method, path, headers, body))
        return self.response(method, last=True)

    def response(self, method: str, *, last: bool) -> tuple[_Response, bool]:
        """Read the next response; ``last``: no other request is waiting for its answer on
        this connection (bytes after this response are then stray)."""
        while True:
            version, status, received = self._read_head()
            if not (100 <= status < 200):
                break  # 1xx (100 Continue): the real answer follows
        reusable = version == b"HTTP/1.1"
        get = dict.get  # the keys are lower case already: no lower() per lookup
        connection = get(received, "connection", "").lower()
        if "close" in connection:
            reusable = False
        elif "keep-alive" in connection:
            reusable = True
        if "chunked" in get(received, "transfer-encoding", "").lower():
            data = self._read_chunked()
        elif "content-length" in received:
            try:
                length = int(received["content-length"])
            except ValueError:
                raise _BadResponse("bad Content-Length") from None
            data = self._read_exact(length)
        elif status in (204, 304) or method == "HEAD":
            data = b""
        else:  # delimited by the close
            data = self._read_to_close()
            reusable = False
        if last and self.buf:
            reusable = False  # bytes nobody asked for: the stream is out of step
        return _Response(status, received, data), reusable

    def _fill(self) -> None:
        self.reads += 1
        chunk = self.sock.recv(65_536)
        if not chunk:
            raise http.client.RemoteDisconnected("the server closed the connection")
        self.buf += chunk

    def _read_head(self) -> tuple[bytes, int, _Headers]:
        buf = self.buf
        while True:
            end = buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            if len(buf) > _MAX_HEAD:
                raise _BadResponse("response headers too long")
            self._fill()
        block = bytes(buf[:end])
        del buf[: end + 4]
        # A server answers with the same status line and headers, Date aside, again and again:
        # parsed once per distinct block (a tenth of a sender's CPU per envelope otherwise).
        known = _HEADS.get(block)
        if known is not None:
            return known
        lines = block.split(b"\r\n")
        parts = lines[0].split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise _BadResponse(f"bad status line {lines[0][:80]!r}")
        received = _Headers()
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                raise _BadResponse(f"bad header line {line[:80]!r}")
            key = name.strip().decode("latin-1").lower()
            text = value.strip().decode("latin-1")
            received[key] = f"{received[key]}, {text}" if key in received else text
        head = (parts[0], int(parts[1]), received)
        if len(_HEADS) >= _HEADS_MAX:
            _HEADS.clear()
        _HEADS[block] = head
        return head

    def _read_exact(self, length: int) -> bytes:
        buf = self.buf
        while len(buf) < length:
            self._fill()
        data = bytes(buf[:length])
        del buf[:length]
        return data

    def _read_line(self) -> bytes:
        buf = self.buf
        while (end := buf.find(b"\r\n")) < 0:
            if len(buf) > _MAX_HEAD:
                raise _BadResponse("chunk header too long")
            self._fill()
        line = bytes(buf[:end])
        del buf[: end + 2]
        return line

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            try:
                size = int(self._read_line().split(b";", 1)[0], 16)
            except ValueError:
                raise _BadResponse("bad chunk size") from None
            if size == 0:
                while self._read_line():  # trailers, up to the empty line
                    pass
                return b"".join(parts)
            parts.append(self._read_exact(size))
            self._read_line()  # the CRLF after each chunk

    def _read_to_close(self) -> bytes:
        with contextlib.suppress(http.client.RemoteDisconnected):
            while True:
                self._fill()
        data = bytes(self.buf)
        self.buf.clear()
        return data


def fast_path_reason(transport: HttpTransport) -> str | None:
    """None when ``transport`` may use the keep-alive fast path, else why not."""
    dsn = transport.parsed_dsn
    if dsn is None:
        return "no DSN"
    if dsn.scheme != "http":
        return f"{dsn.scheme} DSN"
    options = transport.options
    if options.get("socket_options") is not None:
        return "socket_options set"
    if options.get("keep_alive"):
        return "keep_alive (TCP keep-alive socket options) set"
    if transport._resolve_proxy():
        return "proxy"
    return None


def _sent_headers(headers: Mapping[str, str]) -> dict[str, str]:
    # The connection writes Host and Content-Length, and refuses a header with a line break.
    return {key: value for key, value in headers.items() if key.lower() not in _OWN_HEADERS}


_OWN_HEADERS = frozenset(("host", "content-length", "transfer-encoding", "connection"))


class KeepAliveRequests(_Base):
    """Mixin for ``HttpTransport`` subclasses: the fast request layer (see the module doc).

    Put it before the ``HttpTransport`` class in the bases. ``self._pool`` stays the SDK's urllib3
    pool; it is used when :func:`fast_path_reason` says the DSN needs it.
    """

    _fast_host: str | None
    _fast_port: int
    _fast_host_header: bytes
    _fast_netloc: str
    _fast_paths: dict[EndpointType, str]
    _fast_idle: list[_Connection]
    _answer_gap: float

    def _make_pool(self) -> Any:
        pool = super()._make_pool()
        self._fast_paths = {}
        self._fast_idle = []
        self._answer_gap = _FIRST_GAP_S
        self._fast_host = None
        self._fast_port = 80
        self._fast_netloc = ""
        if fast_path_reason(self) is None:
            url = urlsplit(self._auth.get_api_url(EndpointType.ENVELOPE))
            if url.hostname:
                self._fast_host = url.hostname
                self._fast_port = url.port or 80
                self._fast_host_header = host_header(self._fast_host, self._fast_port)
                self._fast_netloc = url.netloc
        return pool

    @property
    def uses_fast_path(self) -> bool:
        """Whether requests go over the kept-alive connection (else the SDK's urllib3 pool)."""
        return self._fast_host is not None

    def _request(
        self,
        method: str,
        endpoint_type: EndpointType,
        body: Any,
        headers: Mapping[str, str],
    ) -> Any:
        if self._fast_host is None:
            return super()._request(method, endpoint_type, body, headers)
        data = bytes(body)
        path = self._fast_path(endpoint_type)
        sent = _sent_headers(headers)
        conn, reused = self._take_connection()
        try:
            response, reusable = conn.roundtrip(method, path, sent, data)
        except TimeoutError:
            conn.close()
            raise  # the server is slow, not gone: resending would double the wait
        except (OSError, http.client.HTTPException):
            conn.close()
            if not reused:
                raise  # a fresh connection failed: the server is failing, one attempt is enough
            # Once more on a new connection: the server closed a kept-alive one, or reset it.
            conn = self._new_connection()
            try:
                response, reusable = conn.roundtrip(method, path, sent, data)
            except BaseException:
                conn.close()
                raise  # _send_request counts the envelope as lost (network_error)
        except BaseException:
            conn.close()
            raise
        self._give_back(conn, reusable)
        return response

    def _request_many(
        self,
        method: str,
        endpoint_type: EndpointType,
        requests: Sequence[tuple[bytes, Mapping[str, str]]],
    ) -> list[Any]:
        """Each request's response, or the exception that stands for it, in order.

        On the fast path the requests are pipelined (HTTP/1.1, RFC 9112 section 9.3): written
        to one kept-alive connection in one ``sendall``, the responses read in order. A batch
        then costs one write and a few reads instead of a round trip, two system calls and a
        thread wake-up per envelope. Requests left unanswered when a server closes the
        connection (``Connection: close``, a reset, or EOF after some answers) are written
        again on a new connection, as :meth:`_request` retries a kept-alive connection once; a
        fresh connection that answers nothing, or a timeout, fails the rest (the SDK counts
        them lost). Elsewhere (urllib3) each request is made in turn.
        """
        if self._fast_host is None or len(requests) == 1:
            out: list[Any] = []
            for body, headers in requests:
                try:
                    out.append(self._request(method, endpoint_type, body, headers))
                except Exception as exc:
                    out.append(exc)
            return out
        path = self._fast_path(endpoint_type)
        results: list[Any] = [None] * len(requests)
        wire: list[tuple[int, bytes]] = []
        host = self._fast_host_header
        for index, (body, headers) in enumerate(requests):
            try:
                data = request_bytes(host, method, path, _sent_headers(headers), body)
            except ValueError as exc:  # a header that would inject: refused, as _request does
                results[index] = exc
                continue
            wire.append((index, data))
        if not wire:
            return results
        try:
            conn, reused = self._take_connection()
        except OSError as exc:
            return [exc if result is None else result for result in results]
        while wire:
            answered = 0
            paused_at = -1
            try:
                conn.sock.sendall(b"".join(data for _, data in wire))
                reusable = True
                while answered < len(wire) and reusable:
                    last = answered == len(wire) - 1
                    response, reusable = conn.response(method, last=last)
                    results[wire[answered][0]] = response
                    answered += 1
                    if answered == 1 and len(wire) > 2:
                        self._pause_for_answers(conn, len(wire) - 1)
                        paused_at = conn.reads
            except TimeoutError as exc:  # slow, not gone: resending would double the wait
                conn.close()
                for index, _ in wire[answered:]:
                    results[index] = exc
                return results
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                if not answered and not reused:
                    for index, _ in wire:  # a fresh connection answered nothing: failing
                        results[index] = exc
                    return results
                reusable = False
            wire = wire[answered:]
            if not wire:
                if paused_at >= 0:
                    self._paused_enough(conn.reads == paused_at)
                self._give_back(conn, reusable)
                break
            conn.close()  # it closed (or broke) with requests unanswered: a new one for them
            try:
                conn, reused = self._new_connection(), False
            except OSError as exc:
                for index, _ in wire:
                    results[index] = exc
                return results
        return results

    def _pause_for_answers(self, conn: _Connection, waiting: int) -> None:
        """Sleep once, as long as the other answers of a batch take to come, instead of a
        blocking read (a thread wake-up) for each (a server writes them one by one).

        The pause per answer adapts: shorter when every answer was in after it, longer when a
        read still had to wait; never more than :data:`_MAX_PAUSE_S`."""
        pause = min(self._answer_gap * waiting, _MAX_PAUSE_S)
        if pause > 0.0001:
            time.sleep(pause)

    def _paused_enough(self, enough: bool) -> None:
        """After a batch: were all answers in after the pause (``enough``)?"""
        gap = self._answer_gap * (0.85 if enough else 1.25)
        self._answer_gap = min(max(gap, _MIN_GAP_S), _MAX_PAUSE_S)

    def _fast_path(self, endpoint_type: EndpointType) -> str:
        path = self._fast_paths.get(endpoint_type)
        if path is None:
            url = urlsplit(self._auth.get_api_url(endpoint_type))
            path = self._fast_paths[endpoint_type] = url.path + (
                f"?{url.query}" if url.query else ""
            )
        return path

    def _give_back(self, conn: _Connection, reusable: bool) -> None:
        if reusable and len(self._fast_idle) < _MAX_IDLE:
            conn.used = time.monotonic()
            self._fast_idle.append(conn)
        else:
            conn.close()

    # -- connections ---------------------------------------------------------------------------
    def _new_connection(self) -> _Connection:
        assert self._fast_host is not None
        return _Connection(self._fast_host, self._fast_port, self.TIMEOUT)

    def _take_connection(self) -> tuple[_Connection, bool]:
        """An idle connection still open (and True), or a new one (and False)."""
        idle = self._fast_idle
        pid = os.getpid()
        while idle:
            try:
                conn = idle.pop()
            except IndexError:  # another thread took the last one
                break
            if conn.pid != pid:
                continue  # inherited over fork(): the parent's socket, leave it alone
            # Idle for a moment only: a server closes a kept-alive connection after seconds,
            # not milliseconds, and a reused one that fails is retried once on a new one
            # (_request), so skip the poll() system call under load.
            if time.monotonic() - conn.used < _FRESH_S or not conn.dropped():
                return conn, True
            conn.close()
        return self._new_connection(), False

    def kill(self) -> None:
        super().kill()
        idle, self._fast_idle = self._fast_idle, []
        pid = os.getpid()
        for conn in idle:
            if conn.pid == pid:
                conn.close()


class KeepAliveHttpTransport(KeepAliveRequests, HttpTransport):
    """sentry-sdk's ``HttpTransport`` with the keep-alive request layer."""
