"""KeepAliveHttpTransport against the real SentryReceiver: keep-alive, 429s, resets, drops."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
from receivers.sentry_receiver import SentryReceiver
from sentry_sdk.client import _get_options
from sentry_sdk.consts import EndpointType
from sentry_sdk.envelope import Envelope, Item, PayloadRef
from sentry_sdk.transport import HttpTransport

from widgettrace.exporters._http import KeepAliveHttpTransport, fast_path_reason


class CountingTransport(KeepAliveHttpTransport):
    """Counts the TCP connections the fast path opens."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.connections_opened = 0
        super().__init__(options)

    def _new_connection(self) -> Any:
        self.connections_opened += 1
        return super()._new_connection()


def _options(dsn: str, **extra: Any) -> dict[str, Any]:
    options: dict[str, Any] = _get_options(dsn=dsn, **extra)
    return options


@pytest.fixture
def transports() -> Iterator[list[HttpTransport]]:
    made: list[HttpTransport] = []
    yield made
    for transport in made:
        transport.kill()


def _make(made: list[HttpTransport], dsn: str, **extra: Any) -> CountingTransport:
    transport = CountingTransport(_options(dsn, **extra))
    made.append(transport)
    return transport


def _event_envelope(message: str) -> tuple[str, Envelope]:
    event_id = uuid.uuid4().hex
    event = {
        "event_id": event_id,
        "message": message,
        "level": "error",
        "platform": "python",
        "timestamp": time.time(),
    }
    envelope = Envelope(headers={"event_id": event_id})
    envelope.add_item(Item(payload=PayloadRef(json=event), type="event"))
    return event_id, envelope


def _send(transport: HttpTransport, message: str) -> str:
    event_id, envelope = _event_envelope(message)
    transport.capture_envelope(envelope)
    return event_id


def test_many_envelopes_over_one_kept_alive_connection(transports: list[HttpTransport]) -> None:
    with SentryReceiver(normalize=False) as receiver:
        # The SDK's default queue holds 100 envelopes; these are queued faster than sent.
        transport = _make(transports, receiver.dsn, transport_queue_size=1000)
        assert transport.uses_fast_path
        sent = [_send(transport, f"event {i}") for i in range(300)]
        transport.flush(timeout=30)
        receiver.wait_for(lambda r: len(r.events()) >= 300, timeout=30)
        assert sorted(e["event_id"] for e in receiver.events()) == sorted(sent)
        assert transport.connections_opened == 1
        assert receiver.connections_accepted == 1
        assert receiver.rejected == []
        # Each request carried the SDK's auth header and gzip body (the receiver decoded both).
        envelope = receiver.envelopes[0]
        assert envelope.auth["sentry_key"] == "public"
        assert envelope.content_encoding == "gzip"
        assert envelope.request_headers["content-type"] == "application/x-sentry-envelope"


def test_events_pass_relay_normalisation(
    sentry_receiver: SentryReceiver, transports: list[HttpTransport]
) -> None:
    transport = _make(transports, sentry_receiver.dsn)
    _send(transport, "normalised")
    transport.flush(timeout=10)
    (event,) = sentry_receiver.wait_for(lambda r: r.events(), timeout=10)
    assert event["message"] == "normalised"
    assert sentry_receiver.normalization_errors() == []


def test_429_with_rate_limit_header_is_honoured_and_reported(
    sentry_receiver: SentryReceiver, transports: list[HttpTransport]
) -> None:
    # Only errors are limited, so the client report itself (category "internal") goes through.
    sentry_receiver.set_fault("429", times=1, retry_after=60, rate_limits="60:error:organization")
    transport = _make(transports, sentry_receiver.dsn)
    _send(transport, "answered 429")
    transport.flush(timeout=10)
    assert transport._check_disabled("error")
    assert not transport._check_disabled("transaction")
    _send(transport, "dropped locally")
    transport.flush(timeout=10)
    sentry_receiver.wait_for(lambda r: r.client_reports(), timeout=10)
    assert [r.status for r in sentry_receiver.rejected] == [429]
    assert sentry_receiver.events() == []
    assert sentry_receiver.discarded().get(("ratelimit_backoff", "error")) == 1


def test_429_with_only_retry_after_limits_everything(
    sentry_receiver: SentryReceiver, transports: list[HttpTransport]
) -> None:
    sentry_receiver.set_fault("429", times=1, retry_after=30, rate_limits="")
    transport = _make(transports, sentry_receiver.dsn)
    _send(transport, "answered 429")
    transport.flush(timeout=10)
    assert transport._check_disabled("error")
    assert transport._check_disabled("transaction")
    until = transport._disabled_until[None].timestamp()
    assert 20 < until - time.time() <= 30
    _send(transport, "dropped locally")
    transport._worker.flush(10)  # not transport.flush: that would send (drop) the client report
    assert len(sentry_receiver.rejected) == 1
    assert sentry_receiver.events() == []
    assert transport._discarded_events[("error", "ratelimit_backoff")] == 1


def test_a_reset_connection_is_retried_once_on_a_new_one(
    sentry_receiver: SentryReceiver, transports: list[HttpTransport]
) -> None:
    transport = _make(transports, sentry_receiver.dsn)
    _send(transport, "before")
    transport.flush(timeout=10)
    sentry_receiver.set_fault("reset", times=1)
    _send(transport, "reset once")
    _send(transport, "after")
    transport.flush(timeout=10)
    sentry_receiver.wait_for(lambda r: len(r.events()) >= 3, timeout=10)
    assert [e["message"] for e in sentry_receiver.events()] == ["before", "reset once", "after"]
    assert [r.reason for r in sentry_receiver.rejected] == ["reset"]
    assert transport.connections_opened == 2
    assert sentry_receiver.discarded() == {}


def test_a_second_failure_is_counted_as_lost(
    sentry_receiver: SentryReceiver, transports: list[HttpTransport]
) -> None:
    transport = _make(transports, sentry_receiver.dsn)
    _send(transport, "warm-up")  # a kept-alive connection: a reset on it is retried once
    transport.flush(timeout=10)
    sentry_receiver.wait_for(lambda r: r.events(), timeout=10)
    sentry_receiver.clear()
    sentry_receiver.set_fault("reset", times=2)
    _send(transport, "reset twice")
    transport.flush(timeout=10)
    _send(transport, "carries the client report")
    transport.flush(timeout=10)
    sentry_receiver.wait_for(lambda r: r.client_reports(), timeout=10)
    assert [r.reason for r in sentry_receiver.rejected] == ["reset", "reset"]
    assert [e["message"] for e in sentry_receiver.events()] == ["carries the client report"]
    assert sentry_receiver.discarded() == {("network_error", "error"): 1}


def test_receiver_restart_recovers(
    sentry_receiver: SentryReceiver, transports: list[HttpTransport]
) -> None:
    transport = _make(transports, sentry_receiver.dsn)
    _send(transport, "first")
    transport.flush(timeout=10)
    sentry_receiver.wait_for(lambda r: r.events(), timeout=10)
    port = sentry_receiver.port
    # Down: the kept-alive connection is closed and new ones are refused; the event is lost and
    # counted. Then up again on the same port: the next event goes through on a new connection.
    sentry_receiver.stop()
    _send(transport, "while down")
    transport._worker.flush(10)  # (transport.flush would also lose the client report)
    sentry_receiver._port = port
    sentry_receiver.start()
    sentry_receiver._port = 0
    _send(transport, "after restart")
    transport.flush(timeout=10)
    sentry_receiver.wait_for(lambda r: r.client_reports(), timeout=10)
    assert [e["message"] for e in sentry_receiver.events()] == ["first", "after restart"]
    assert sentry_receiver.discarded() == {("network_error", "error"): 1}
    assert sentry_receiver.connections_accepted == 2


def test_an_idle_connection_the_server_closed_is_replaced(
    sentry_receiver: SentryReceiver, transports: list[HttpTransport]
) -> None:
    transport = _make(transports, sentry_receiver.dsn)
    _send(transport, "first")
    transport.flush(timeout=10)
    sentry_receiver.wait_for(lambda r: r.events(), timeout=10)
    sentry_receiver.restart()  # closes the kept-alive connection while it is idle
    _send(transport, "second")
    transport.flush(timeout=10)
    sentry_receiver.wait_for(lambda r: len(r.events()) >= 2, timeout=10)
    assert [e["message"] for e in sentry_receiver.events()] == ["first", "second"]
    assert sentry_receiver.rejected == []
    assert sentry_receiver.discarded() == {}
    assert transport.connections_opened == 2


def test_a_slow_receiver_times_out_and_the_loss_is_counted(
    sentry_receiver: SentryReceiver,
    transports: list[HttpTransport],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(KeepAliveHttpTransport, "TIMEOUT", 0.3)
    sentry_receiver.set_fault("slow", times=1, delay=1.0)
    transport = _make(transports, sentry_receiver.dsn)
    _send(transport, "too slow")
    transport.flush(timeout=10)
    _send(transport, "carries the client report")
    transport.flush(timeout=10)
    sentry_receiver.wait_for(lambda r: r.client_reports(), timeout=10)
    # Not resent after a timeout (the server may still be working on it).
    assert transport.connections_opened == 2
    assert sentry_receiver.discarded() == {("network_error", "error"): 1}


# -- what takes the stock urllib3 path -------------------------------------------------------


@pytest.mark.parametrize(
    ("dsn", "extra", "reason"),
    [
        ("https://public@sentry.example/1", {}, "https DSN"),
        ("http://public@127.0.0.1:9/1", {"http_proxy": "http://127.0.0.1:3128"}, "proxy"),
        ("http://public@127.0.0.1:9/1", {"keep_alive": True}, "keep_alive"),
        ("http://public@127.0.0.1:9/1", {"socket_options": []}, "socket_options"),
    ],
)
def test_unusual_setups_use_the_sdk_request_path(
    transports: list[HttpTransport], dsn: str, extra: dict[str, Any], reason: str
) -> None:
    transport = _make(transports, dsn, **extra)
    assert not transport.uses_fast_path
    assert reason in (fast_path_reason(transport) or "")


def test_proxy_from_the_environment_uses_the_sdk_request_path(
    transports: list[HttpTransport], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:3128")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    transport = _make(transports, "http://public@127.0.0.1:9/1")
    assert not transport.uses_fast_path


def test_https_dsn_requests_go_through_urllib3(
    transports: list[HttpTransport], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []

    def fake_request(self: HttpTransport, method: str, *args: Any, **kwargs: Any) -> Any:
        calls.append(method)
        raise ConnectionError("no network in this test")

    monkeypatch.setattr(HttpTransport, "_request", fake_request)
    transport = _make(transports, "https://public@sentry.example/1")
    _send(transport, "over urllib3")
    transport._worker.flush(10)
    assert calls == ["POST"]
    assert transport.connections_opened == 0
    assert transport._discarded_events[("error", "network_error")] == 1


# -- response framing the receiver does not use -----------------------------------------------


def _one_shot_server(responses: list[bytes]) -> tuple[int, threading.Thread]:
    """Answer each request on one connection with the next canned response, then close."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        with listener:
            conn, _ = listener.accept()
            with conn:
                reader = conn.makefile("rb")
                for response in responses:
                    length = 0
                    while (line := reader.readline()) not in (b"\r\n", b""):
                        if line.lower().startswith(b"content-length:"):
                            length = int(line.split(b":")[1])
                    reader.read(length)
                    conn.sendall(response)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return port, thread


def test_chunked_and_connection_close_responses(transports: list[HttpTransport]) -> None:
    port, thread = _one_shot_server(
        [
            b"HTTP/1.1 100 Continue\r\n\r\n"
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b'5\r\n{"id"\r\n4\r\n:1}\n\r\n0\r\n\r\n',
            b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 45\r\n"
            b"Content-Length: 2\r\nConnection: close\r\n\r\n{}",
        ]
    )
    transport = _make(transports, f"http://public@127.0.0.1:{port}/1")
    _send(transport, "chunked answer")
    transport.flush(timeout=10)
    assert transport._disabled_until == {}
    _send(transport, "429 then close")
    transport.flush(timeout=10)
    thread.join(timeout=5)
    assert transport._check_disabled("error")
    assert transport.connections_opened == 1
    assert transport._fast_idle == []  # "Connection: close" was honoured


def test_a_header_with_a_line_break_is_refused_not_sent(
    sentry_receiver: SentryReceiver, transports: list[HttpTransport]
) -> None:
    transport = _make(transports, sentry_receiver.dsn)
    with pytest.raises(ValueError, match="Invalid header value"):
        transport._request("POST", EndpointType.ENVELOPE, b"{}", {"X-Evil": "a\r\nX-Injected: 1"})
    time.sleep(0.2)
    assert sentry_receiver.envelopes == []
    assert sentry_receiver.rejected == []


class _ClosingHandler(BaseHTTPRequestHandler):
    """Answers 200 and closes the connection after every third request on it, with
    pipelined requests still unanswered behind it (as a server's keep-alive limit does)."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        server: Any = self.server
        with server.lock:
            server.bodies.append(body)
            server.per_connection[self.connection] = (
                server.per_connection.get(self.connection, 0) + 1
            )
            close = server.per_connection[self.connection] % 3 == 0
        self.send_response(200)
        self.send_header("Content-Length", "2")
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


def test_pipelined_requests_a_closing_server_left_unanswered_are_sent_again() -> None:
    from http.server import ThreadingHTTPServer

    from widgettrace.exporters._delivery import DeliveryHttpTransport

    server: Any = ThreadingHTTPServer(("127.0.0.1", 0), _ClosingHandler)
    server.lock = threading.Lock()
    server.bodies = []
    server.per_connection = {}
    threading.Thread(target=server.serve_forever, daemon=True).start()
    transport = DeliveryHttpTransport(_options(f"http://key@127.0.0.1:{server.server_port}/1"))
    try:
        assert transport.pipeline > 1  # an http:// DSN: the pipelined path
        transport._depth = 8  # batches of up to 8 on connections that answer 3 each
        sent = []
        for i in range(40):
            event_id, envelope = _event_envelope(f"pipelined {i}")
            sent.append(event_id)
            transport.capture_envelope(envelope)
        transport.flush(10)
        received = [Envelope.deserialize(body).headers["event_id"] for body in server.bodies]
        assert sorted(set(received)) == sorted(sent)  # every one arrived (resends may repeat)
        assert transport.delivered == 40
        assert transport.dropped == 0
        assert len(server.per_connection) >= 40 // 3  # the server really closed them
    finally:
        transport.kill()
        server.shutdown()
        server.server_close()
