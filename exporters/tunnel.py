"""A Sentry tunnel for the frontend: the browser SDK's envelopes, through your own API.

The Sentry browser SDK's ``tunnel`` option posts its envelopes to a URL of your app instead of
to Sentry (ad blockers block sentry.io; a local-log setup has no Sentry at all). Mount the
tunnel on a FastAPI/Starlette app with one line::

    from widgettrace.exporters.tunnel import SentryTunnel

    app.add_route("/tunnel", SentryTunnel(), methods=["POST"])

and in the page::

    Sentry.init({dsn: "<tunnel.browser_dsn>", tunnel: "/tunnel",
                 tracePropagationTargets: [location.origin]})

What a request goes through, refused with nothing written or forwarded unless it passes:

1. size: ``Content-Length`` or the body beyond ``WIDGETTRACE_TUNNEL_MAX_BYTES`` -> 413;
2. rate: more than ``WIDGETTRACE_TUNNEL_RATE`` envelopes a minute from one client address ->
   429 with ``Retry-After``;
3. shape: not a Sentry envelope (header line, items with valid lengths, JSON events) -> 400;
4. DSN: the envelope header's ``dsn`` must be the configured ``SENTRY_DSN``'s project (same
   host, project id and public key), never any other: this is not an open relay -> 403. With
   no ``SENTRY_DSN`` (local log only) the one allowed DSN is :data:`LOCAL_DSN`;
5. scrubbing: every event and transaction goes through the same scrubber as the server's own
   events (:func:`widgettrace.exporters._scrub.scrub_event`); only ``event``, ``transaction``,
   ``session(s)``, ``client_report``, ``span``
   and ``log`` items are kept (no replays or attachments: they carry page content);
6. forwarding: the envelope, re-addressed to the configured DSN, is handed to the process's
   Sentry transport: the local log and/or the DSN, like every other event (never blocks).

Answers ``200 {"id": ...}`` like Sentry, or 503 when telemetry is off in this process.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from widgettrace.instrumentation._guard import internal_errors, logger

__all__ = ["FORWARDED_ITEM_TYPES", "LOCAL_DSN", "EnvelopeError", "SentryTunnel", "parse_envelope"]

#: The DSN a page uses when the server has no ``SENTRY_DSN`` (its events go to the local log).
LOCAL_DSN = "http://widgettrace@localhost/0"

#: Item types passed on; anything else in a browser envelope is dropped.
FORWARDED_ITEM_TYPES = frozenset(
    {"event", "transaction", "session", "sessions", "client_report", "span", "log"}
)
_JSON_ITEMS = frozenset({"event", "transaction"})
_MAX_CLIENTS = 4096

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class EnvelopeError(ValueError):
    """The body is not a well-formed Sentry envelope."""


def parse_envelope(body: bytes) -> tuple[dict[str, Any], list[tuple[dict[str, Any], bytes]]]:
    """Envelope headers and ``(item headers, payload)`` pairs; raises :class:`EnvelopeError`."""
    header_end = body.find(b"\n")
    first = body if header_end < 0 else body[:header_end]
    try:
        headers = json.loads(first)
    except ValueError:
        raise EnvelopeError("envelope header is not JSON") from None
    if not isinstance(headers, dict):
        raise EnvelopeError("envelope header is not an object")
    items: list[tuple[dict[str, Any], bytes]] = []
    pos = len(body) if header_end < 0 else header_end + 1
    while pos < len(body):
        line_end = body.find(b"\n", pos)
        line = body[pos : len(body) if line_end < 0 else line_end]
        pos = len(body) if line_end < 0 else line_end + 1
        if not line.strip():
            continue
        try:
            item_headers = json.loads(line)
        except ValueError:
            raise EnvelopeError("item header is not JSON") from None
        if not isinstance(item_headers, dict) or not isinstance(item_headers.get("type"), str):
            raise EnvelopeError("item header without a type")
        length = item_headers.get("length")
        if length is not None:
            if not isinstance(length, int) or length < 0 or pos + length > len(body):
                raise EnvelopeError("item length runs past the body")
            payload = body[pos : pos + length]
            pos += length
            if pos < len(body) and body[pos : pos + 1] == b"\n":
                pos += 1
        else:
            end = body.find(b"\n", pos)
            payload = body[pos : len(body) if end < 0 else end]
            pos = len(body) if end < 0 else end + 1
        items.append((item_headers, payload))
    if not items:
        raise EnvelopeError("envelope has no items")
    return headers, items


def _dsn_key(dsn: str) -> tuple[str, int | None, str, str, str] | None:
    from sentry_sdk.utils import BadDsn, Dsn

    try:
        parsed = Dsn(dsn)
    except (BadDsn, ValueError, TypeError):
        return None
    return (parsed.host, parsed.port, parsed.path, str(parsed.project_id), parsed.public_key)


class _RateLimiter:
    """Token bucket per client address (bounded: the least recently seen are forgotten)."""

    def __init__(self, per_minute: int) -> None:
        self.capacity = float(per_minute)
        self.refill = per_minute / 60.0
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, client: str, now: float) -> float:
        """0 when allowed, else the seconds until the next envelope would be."""
        with self._lock:
            tokens, last = self._buckets.pop(client, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.refill)
            wait = 0.0
            if tokens >= 1.0:
                tokens -= 1.0
            else:
                wait = (1.0 - tokens) / self.refill
            self._buckets[client] = (tokens, now)
            if len(self._buckets) > _MAX_CLIENTS:
                self._buckets.popitem(last=False)
            return wait


def _scrub(payload: dict[str, Any], client: Any) -> dict[str, Any]:
    """The server's own scrubbing, applied to a browser event or transaction."""
    from widgettrace.exporters._scrub import scrub_event

    scrub_event(payload)
    if not (client.options or {}).get("send_default_pii"):
        user = payload.get("user")
        if isinstance(user, dict):
            user.pop("ip_address", None)
            user.pop("email", None)
    from sentry_sdk.serializer import serialize

    # The SDK's serializer (as for the server's own events) keeps the payload JSON-ready,
    # turning any value the SDK marks (AnnotatedValue) into the event's `_meta`.
    return dict(serialize(payload))


class SentryTunnel:
    """The ASGI app behind the browser SDK's ``tunnel`` URL (see the module docstring)."""

    def __init__(
        self,
        *,
        dsn: str | None = None,
        max_bytes: int | None = None,
        rate_per_minute: int | None = None,
    ) -> None:
        from widgettrace.instrumentation._config import get_settings

        settings = get_settings()
        self.dsn = dsn or settings.sentry_dsn
        self.max_bytes = max_bytes or settings.tunnel_max_bytes
        self._limiter = _RateLimiter(rate_per_minute or settings.tunnel_rate)
        self._allowed = _dsn_key(self.browser_dsn)
        self.refused: dict[int, int] = {}

    @property
    def browser_dsn(self) -> str:
        """The DSN to give the page's ``Sentry.init``: the server's, or :data:`LOCAL_DSN`."""
        return self.dsn or LOCAL_DSN

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope.get("method") != "POST":
            await self._answer(send, 405, {"detail": "POST an envelope"}, [(b"allow", b"POST")])
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._refuse(send, 413, "envelope too large")
            return
        if headers.get(b"content-encoding", b"identity").lower() not in {b"identity", b""}:
            await self._refuse(send, 415, "compressed envelopes are not accepted")
            return
        client = (scope.get("client") or ("unknown", 0))[0]
        wait = self._limiter.take(str(client), time.monotonic())
        if wait > 0:
            retry = str(max(1, round(wait))).encode()
            await self._refuse(send, 429, "rate limited", [(b"retry-after", retry)])
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                await self._refuse(send, 413, "envelope too large")
                return
            if not message.get("more_body"):
                break
        status, answer = 500, {"detail": "internal error in the tunnel"}
        with internal_errors("tunnel.handle"):  # a bug here answers 500, never crashes the app
            status, answer = self._handle(bytes(body))
        if status != 200:
            await self._refuse(send, status, str(answer["detail"]))
            return
        await self._answer(send, 200, answer)

    def _handle(self, body: bytes) -> tuple[int, dict[str, Any]]:
        try:
            headers, items = parse_envelope(body)
        except EnvelopeError as exc:
            return 400, {"detail": f"malformed envelope: {exc}"}
        dsn = headers.get("dsn")
        if not isinstance(dsn, str) or _dsn_key(dsn) is None:
            return 400, {"detail": "envelope header has no valid dsn"}
        if self._allowed is None or _dsn_key(dsn) != self._allowed:
            return 403, {"detail": "this tunnel only forwards to its own project"}
        import sentry_sdk

        client = sentry_sdk.get_client()
        transport = client.transport if client.is_active() else None
        if transport is None:
            return 503, {"detail": "telemetry is off on this server"}
        try:
            envelope = self._rebuild(headers, items, client)
        except ValueError:
            return 400, {"detail": "malformed envelope: an event is not a JSON object"}
        if envelope.items:
            with internal_errors("tunnel.capture_envelope"):
                transport.capture_envelope(envelope)
        return 200, {"id": headers.get("event_id")} if headers.get("event_id") else {}

    def _rebuild(
        self, headers: dict[str, Any], items: list[tuple[dict[str, Any], bytes]], client: Any
    ) -> Any:
        from sentry_sdk.envelope import Envelope, Item, PayloadRef

        out_headers = {k: v for k, v in headers.items() if k in {"event_id", "sent_at", "sdk"}}
        if isinstance(headers.get("trace"), dict):
            out_headers["trace"] = headers["trace"]
        if self.dsn:
            out_headers["dsn"] = self.dsn
        envelope = Envelope(headers=out_headers)
        for item_headers, payload in items:
            kind = item_headers["type"]
            if kind not in FORWARDED_ITEM_TYPES:
                continue
            clean = {k: v for k, v in item_headers.items() if k != "length"}
            if kind in _JSON_ITEMS:
                event = json.loads(payload)
                if not isinstance(event, dict):
                    raise ValueError(kind)
                envelope.add_item(
                    Item(payload=PayloadRef(json=_scrub(event, client)), headers=clean)
                )
            else:
                envelope.add_item(Item(payload=PayloadRef(bytes=payload), headers=clean))
        return envelope

    async def _refuse(
        self, send: Send, status: int, detail: str, extra: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        self.refused[status] = self.refused.get(status, 0) + 1
        logger.debug("widgettrace: tunnel refused an envelope: %d %s", status, detail)
        await self._answer(send, status, {"detail": detail}, extra)

    @staticmethod
    async def _answer(
        send: Send,
        status: int,
        body: dict[str, Any],
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        data = json.dumps(body).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(data)).encode()),
            *(extra or []),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": data})
