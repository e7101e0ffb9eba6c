"""sentry-sdk's ``HttpTransport`` with a cheaper request layer for plain-http DSNs.

The SDK's ``HttpTransport`` sends each envelope through a urllib3 ``PoolManager``: pool lookup,
``Retry`` bookkeeping, ``http.client``'s header-by-header request writing and its ``email``-parser
response headers cost ~0.4 ms of CPU per envelope on this project's 2-core machines, more than
building the transaction, and the one worker thread sends serially. :class:`KeepAliveRequests`
replaces only the request layer (``_make_pool`` / ``_request``) for the simple case (an ``http://``
DSN, no proxy from the options or the environment, no socket options, no ``keep_alive``): one
kept-alive connection per sending thread, the request written with one ``sendall`` and the
response read by a minimal HTTP/1.1 reader (``Content-Length``, chunked, or to the close; 1xx
skipped; ``Connection: close`` honoured). Everything else (``https`` DSNs, proxies, custom
sockets) takes the stock urllib3 path unchanged.

What stays the SDK's: the ``BackgroundWorker``, envelope preparation and serialisation, rate limits
(``_handle_response`` / ``_update_rate_limits`` read ``status`` and the ``Retry-After`` /
``X-Sentry-Rate-Limits`` headers of the response object returned here), client reports and
``record_lost_event``. An idle connection the server closed is replaced before use (as urllib3
does); a connection error during a request reconnects once; a second failure (or a timeout, which
is not resent) raises, and ``BaseHttpTransport._send_request`` counts the envelope as lost
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

#: Idle connections kept per transport (one per thread that sent concurrently; normally one).
_MAX_IDLE = 4


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


class ProtocolError(http.client.HTTPException):
    """The server's answer is not HTTP/1.x as this client reads it."""


_MAX_LINE = 65536
_MAX_HEADERS = 100
_MAX_BODY = 16 * 1024 * 1024


class _Connection:
    """One kept-alive HTTP/1.1 connection: one write per request, a buffered read per response.

    Deliberately small: requests with a ``Content-Length`` body; responses with a
    ``Content-Length``, chunked, or read-to-close body. Not thread-safe (one user at a time).
    """

    __slots__ = ("pid", "reader", "sock")

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.pid = os.getpid()
        sock = socket.create_connection((host, port), timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.reader = sock.makefile("rb")
        except BaseException:
            sock.close()
            raise
        self.sock: socket.socket | None = sock

    def close(self) -> None:
        sock, self.sock = self.sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                self.reader.close()
            with contextlib.suppress(OSError):
                sock.close()

    def dropped(self) -> bool:
        """Whether this idle connection was closed by the server (or has stray bytes to read)."""
        sock = self.sock
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

    def roundtrip(self, head: bytes, body: bytes) -> tuple[_Response, bool]:
        """Send one request; return the response and whether the connection can be reused."""
        sock = self.sock
        if sock is None:
            raise ConnectionError("connection closed")
        sock.sendall(head + body if len(body) < 65536 else head)
        if len(body) >= 65536:
            sock.sendall(body)
        while True:
            status, version, headers = self._read_head()
            if status >= 200 or status == 101:
                break
            # 1xx informational (100 Continue, 103 Early Hints): the real answer follows.
        data, reusable = self._read_body(status, headers)
        conn_tokens = (headers.get("connection") or "").lower()
        if "close" in conn_tokens or (version == "HTTP/1.0" and "keep-alive" not in conn_tokens):
            reusable = False
        return _Response(status, headers, data), reusable

    def _readline(self) -> bytes:
        line = self.reader.readline(_MAX_LINE + 1)
        if not line:
            raise http.client.RemoteDisconnected("the server closed the connection")
        if len(line) > _MAX_LINE:
            raise ProtocolError("response line too long")
        return line

    def _read_head(self) -> tuple[int, str, _Headers]:
        parts = self._readline().decode("latin-1").rstrip("\r\n").split(None, 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise ProtocolError(f"bad status line {' '.join(parts)[:100]!r}")
        status = int(parts[1])
        headers = _Headers()
        for _ in range(_MAX_HEADERS + 1):
            line = self._readline()
            if line in (b"\r\n", b"\n"):
                return status, parts[0], headers
            name, sep, value = line.decode("latin-1").partition(":")
            if not sep:
                raise ProtocolError(f"bad header line {line[:100]!r}")
            key = name.strip().lower()
            value = value.strip()
            if key in headers:
                value = f"{headers[key]}, {value}"
            headers[key] = value
        raise ProtocolError("too many response headers")

    def _read_body(self, status: int, headers: _Headers) -> tuple[bytes, bool]:
        if status in (204, 304) or status < 200:
            return b"", True
        if "chunked" in (headers.get("transfer-encoding") or "").lower():
            return self._read_chunked(), True
        length = headers.get("content-length")
        if length is not None:
            try:
                size = int(length.split(",")[0])
            except ValueError:
                raise ProtocolError(f"bad Content-Length {length!r}") from None
            if size < 0 or size > _MAX_BODY:
                raise ProtocolError(f"bad Content-Length {size}")
            return self._read_exactly(size), True
        # No length: the body runs to the end of the connection.
        data = self.reader.read(_MAX_BODY)
        return data, False

    def _read_exactly(self, size: int) -> bytes:
        data = self.reader.read(size) if size else b""
        if len(data) != size:
            raise http.client.IncompleteRead(data, size - len(data))
        return data

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            line = self._readline().split(b";", 1)[0].strip()
            try:
                size = int(line, 16)
            except ValueError:
                raise ProtocolError(f"bad chunk size {line[:40]!r}") from None
            if size == 0:
                while self._readline() not in (b"\r\n", b"\n"):
                    pass  # trailer fields
                return b"".join(chunks)
            total += size
            if total > _MAX_BODY:
                raise ProtocolError("chunked body too large")
            chunks.append(self._read_exactly(size))
            self._readline()  # CRLF after the chunk


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
        head = self._request_head(method, endpoint_type, headers, len(data))
        conn = self._take_connection()
        try:
            response, reusable = conn.roundtrip(head, data)
        except TimeoutError:
            conn.close()
            raise  # the server is slow, not gone: resending would double the wait
        except (OSError, http.client.HTTPException):
            conn.close()
            # Once more on a new connection: the server closed a kept-alive one, or reset it.
            conn = self._new_connection()
            try:
                response, reusable = conn.roundtrip(head, data)
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

    def _request_head(
        self, method: str, endpoint_type: EndpointType, headers: Mapping[str, str], length: int
    ) -> bytes:
        path = self._fast_paths.get(endpoint_type)
        if path is None:
            url = urlsplit(self._auth.get_api_url(endpoint_type))
            path = url.path + (f"?{url.query}" if url.query else "")
            self._fast_paths[endpoint_type] = path
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self._fast_netloc}"]
        for key, value in headers.items():
            if key.lower() in ("host", "content-length", "transfer-encoding", "connection"):
                continue
            line = f"{key}: {value}"
            if "\r" in line or "\n" in line:
                raise ValueError(f"request header {key!r} contains a line break")
            lines.append(line)
        lines.append(f"Content-Length: {length}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    # -- connections ---------------------------------------------------------------------------
    def _new_connection(self) -> _Connection:
        assert self._fast_host is not None
        return _Connection(self._fast_host, self._fast_port, self.TIMEOUT)

    def _take_connection(self) -> _Connection:
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
                return conn
            conn.close()
        return self._new_connection()

    def kill(self) -> None:
        super().kill()
        idle, self._fast_idle = self._fast_idle, []
        pid = os.getpid()
        for conn in idle:
            if conn.pid == pid:
                conn.close()


class KeepAliveHttpTransport(KeepAliveRequests, HttpTransport):
    """sentry-sdk's ``HttpTransport`` with the keep-alive request layer."""
