"""sentry-sdk's ``HttpTransport`` with a cheaper request layer for plain-http DSNs.

The SDK's ``HttpTransport`` sends each envelope through a urllib3 ``PoolManager`` (pool lookup,
``Retry`` bookkeeping, a connection checked out and back per request): about twice the CPU per
envelope of a plain kept-alive ``http.client.HTTPConnection``, measured on this project's 2-core
machines, and the one worker thread sends serially. :class:`KeepAliveRequests` replaces only the
request layer (``_make_pool`` / ``_request``) for the simple case (an ``http://`` DSN, no proxy
from the options or the environment, no socket options, no ``keep_alive``): one kept-alive
connection per sending thread (opened by ``http.client``), on which a request is written in one
``sendall`` and its response read by a small HTTP/1.1 reader (``http.client``'s request and
response objects cost ~130 us an envelope, most of it ``email.parser`` reading three headers:
more than everything else in sending ten streamed spans). Everything else (``https`` DSNs,
proxies, custom sockets) takes the stock urllib3 path unchanged.

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
import re
import select
import socket
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from sentry_sdk.consts import EndpointType
from sentry_sdk.transport import HttpTransport

__all__ = ["KeepAliveHttpTransport", "KeepAliveRequests", "fast_path_reason"]

if TYPE_CHECKING:
    from collections.abc import Mapping

    _Base = HttpTransport
else:
    _Base = object

#: Idle connections kept per transport (one per thread that sent concurrently; the delivery
#: transport runs at most 32 senders).
_MAX_IDLE = 32
#: Longest response head read (status line and headers).
_MAX_HEAD = 65536
# What http.client accepts as a header name and refuses in a value (its own patterns).
_LEGAL_NAME = re.compile(r"[^:\s][^:\r\n]*").fullmatch
_ILLEGAL_VALUE = re.compile(r"\n(?![ \t])|\r(?![ \t\n])").search


class _Headers(dict[str, str]):
    """Response headers by lower-cased name; ``get`` is case-insensitive like urllib3's."""

    def get(self, key: str, default: Any = None) -> Any:
        return dict.get(self, key.lower(), default)


class _Response:
    """What ``_handle_response`` / ``_get_header_value`` / ``_send_request`` use of a response."""

    __slots__ = ("data", "headers", "status")

    def __init__(self, status: int, headers: _Headers, data: bytes) -> None:
        self.status = status
        self.headers = headers
        self.data = data

    def close(self) -> None:
        """The body was read in full; the connection stays with the transport."""


class _Connection:
    """One kept-alive HTTP/1.1 connection (``http.client.HTTPConnection`` opens it). A request is
    written in one ``sendall``; the response is read by :meth:`_read_response` (status line,
    headers, a ``Content-Length``, chunked or to-the-close body; 1xx skipped; ``Connection:
    close`` and HTTP/1.0 honoured). ``http.client``'s own request and response objects cost
    ~130 us an envelope here (most of it ``email.parser`` reading three response headers),
    more than the rest of sending a span envelope. Not thread-safe (one user at a time)."""

    __slots__ = ("conn", "host", "pid")

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.pid = os.getpid()
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            conn.connect()
            if conn.sock is not None:
                conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except BaseException:
            conn.close()
            raise
        self.conn = conn
        # The Host header as http.client writes it.
        named = f"[{host}]" if ":" in host else host
        self.host = named if port == 80 else f"{named}:{port}"

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.close()

    def dropped(self) -> bool:
        """Whether this idle connection was closed by the server (or has stray bytes to read)."""
        sock = self.conn.sock
        if sock is None:
            return True
        # Readable while idle means EOF, a reset or stray bytes: not reusable. (sock.recv would
        # wait for the socket's timeout first, so poll with a zero timeout, as urllib3 does.)
        try:
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        except (OSError, ValueError):
            return True

    def roundtrip(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[_Response, bool]:
        """Send one request; return the response and whether the connection can be reused."""
        sock = self.conn.sock
        if sock is None:
            raise http.client.NotConnected(self.host)
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}"]
        for name, value in headers.items():
            text = str(value)
            if not _LEGAL_NAME(name):
                raise ValueError(f"Invalid header name {name!r}")
            if _ILLEGAL_VALUE(text):  # no header injection (http.client refuses them too)
                raise ValueError(f"Invalid header value {text!r}")
            lines.append(f"{name}: {text}")
        lines.append(f"Content-Length: {len(body)}\r\n\r\n")
        sock.sendall("\r\n".join(lines).encode("latin-1") + body)
        try:
            return self._read_response(sock, method)
        except ValueError as exc:  # a number that is not one: a broken server
            raise http.client.HTTPException(f"malformed response: {exc}") from None

    @staticmethod
    def _recv(sock: socket.socket, buf: bytes) -> bytes:
        chunk = sock.recv(65536)
        if not chunk:
            raise http.client.IncompleteRead(buf)
        return buf + chunk

    def _read_response(self, sock: socket.socket, method: str) -> tuple[_Response, bool]:
        buf = b""
        while True:
            end = buf.find(b"\r\n\r\n")
            while end < 0:
                if len(buf) > _MAX_HEAD:
                    raise http.client.LineTooLong("response head")
                chunk = sock.recv(65536)
                if not chunk:
                    raise http.client.RemoteDisconnected("closed without a response")
                buf += chunk
                end = buf.find(b"\r\n\r\n")
            status_line, *lines = buf[:end].decode("latin-1").split("\r\n")
            buf = buf[end + 4 :]
            version, _, rest = status_line.partition(" ")
            if not version.startswith("HTTP/"):
                raise http.client.BadStatusLine(status_line)
            status = int(rest.partition(" ")[0])
            if not 100 <= status < 200:
                break  # 1xx (100 Continue): an interim answer, the real one follows
        received = _Headers()
        for line in lines:
            name, sep, value = line.partition(":")
            if sep:
                key = name.strip().lower()
                value = value.strip()
                received[key] = f"{received[key]}, {value}" if key in received else value
        tokens = received.get("connection", "").lower()
        will_close = "close" in tokens or (version == "HTTP/1.0" and "keep-alive" not in tokens)
        if status in (204, 304) or method == "HEAD":
            data = b""
        elif "chunked" in received.get("transfer-encoding", "").lower():
            data, buf = self._chunked(sock, buf)
        elif "content-length" in received:
            length = int(received["content-length"])
            while len(buf) < length:
                buf = self._recv(sock, buf)
            data, buf = buf[:length], buf[length:]
        else:  # the body runs to the close
            parts = [buf]
            while chunk := sock.recv(65536):
                parts.append(chunk)
            data, buf, will_close = b"".join(parts), b"", True
        # Bytes beyond the response: the stream is out of step, do not reuse it.
        return _Response(status, received, data), not will_close and not buf

    def _chunked(self, sock: socket.socket, buf: bytes) -> tuple[bytes, bytes]:
        """A chunked body and what follows it."""
        out: list[bytes] = []
        while True:
            end = buf.find(b"\r\n")
            while end < 0:
                buf = self._recv(sock, buf)
                end = buf.find(b"\r\n")
            size = int(buf[:end].split(b";", 1)[0].strip(), 16)
            buf = buf[end + 2 :]
            if size == 0:
                while True:  # trailers, up to an empty line
                    end = buf.find(b"\r\n")
                    while end < 0:
                        buf = self._recv(sock, buf)
                        end = buf.find(b"\r\n")
                    line, buf = buf[:end], buf[end + 2 :]
                    if not line:
                        return b"".join(out), buf
            while len(buf) < size + 2:
                buf = self._recv(sock, buf)
            out.append(buf[:size])
            buf = buf[size + 2 :]


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


class KeepAliveRequests(_Base):
    """Mixin for ``HttpTransport`` subclasses: the fast request layer (see the module doc).

    Put it before the ``HttpTransport`` class in the bases. ``self._pool`` stays the SDK's urllib3
    pool; it is used when :func:`fast_path_reason` says the DSN needs it.
    """

    _fast_host: str | None
    _fast_port: int
    _fast_netloc: str
    _fast_paths: dict[EndpointType, str]
    _fast_idle: list[_Connection]

    def _make_pool(self) -> Any:
        pool = super()._make_pool()
        self._fast_paths = {}
        self._fast_idle = []
        self._fast_host = None
        self._fast_port = 80
        self._fast_netloc = ""
        if fast_path_reason(self) is None:
            url = urlsplit(self._auth.get_api_url(EndpointType.ENVELOPE))
            if url.hostname:
                self._fast_host = url.hostname
                self._fast_port = url.port or 80
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
        path = self._fast_paths.get(endpoint_type)
        if path is None:
            url = urlsplit(self._auth.get_api_url(endpoint_type))
            path = self._fast_paths[endpoint_type] = url.path + (
                f"?{url.query}" if url.query else ""
            )
        # http.client sets Host and Content-Length, and refuses a header with a line break.
        sent = {
            key: value
            for key, value in headers.items()
            if key.lower() not in ("host", "content-length", "transfer-encoding", "connection")
        }
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
        if reusable and len(self._fast_idle) < _MAX_IDLE:
            self._fast_idle.append(conn)
        else:
            conn.close()
        return response

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
            if not conn.dropped():
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
