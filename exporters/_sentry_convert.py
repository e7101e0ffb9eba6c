"""OTel spans to Sentry transaction payloads: op, description, status, data, scrubbing.

Pure functions used by :mod:`widgettrace.exporters.sentry`'s export thread (never on the thread
that ends a span). Both the current and the old HTTP/DB semantic conventions are read.

* op: ``widget.op`` if set; HTTP (``http.server`` / ``http.client``); ``db``; MCP
  (``mcp.server`` / ``mcp.client``); GenAI (``gen_ai.<gen_ai.operation.name>``, e.g.
  ``gen_ai.chat``, ``gen_ai.invoke_agent``, ``gen_ai.execute_tool``); messaging
  (``queue.publish`` / ``queue.process``); ``rpc``; else by span kind (``function`` for internal).
* description: ``GET /api/widgets/status`` for servers (method + route), ``POST hub.local/search``
  for clients (method + host + path, no query), the query text for databases, else the span name.
* status: OTel ERROR is ``internal_error`` unless an HTTP status says more; an HTTP status code
  maps the way Sentry's SDK maps it; otherwise ``ok``.
* data: every attribute, secrets scrubbed (keys: authorization, cookies, tokens, API keys,
  passwords, sessions...; values: ``Bearer``/``Basic`` credentials, secret query parameters);
  with ``send_default_pii`` false also emails and IP addresses.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from json.encoder import encode_basestring_ascii
from typing import Any
from urllib.parse import urlsplit

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode
from sentry_sdk.scrubber import DEFAULT_DENYLIST, DEFAULT_PII_DENYLIST
from sentry_sdk.tracing import get_span_status_from_http_code

from widgettrace.instrumentation import semconv as sc

__all__ = [
    "FILTERED",
    "SCOPE_FLAG",
    "Scrubber",
    "description_for",
    "encode",
    "op_for",
    "span_json",
    "status_for",
    "transaction_name",
]

FILTERED = "[Filtered]"

# Shared by every payload: json.dumps with options builds a new encoder per call, and even a
# reused JSONEncoder builds its C encoder per call; this one is built once (no circular check:
# payloads are trees we build).
_ENCODER = json.JSONEncoder(allow_nan=False, separators=(",", ":"))
_enc_str = encode_basestring_ascii


def _refuse(value: Any) -> Any:
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


try:
    from json.encoder import c_make_encoder  # type: ignore[attr-defined]

    _c_encoder: Any = c_make_encoder(
        None, _refuse, encode_basestring_ascii, None, ":", ",", False, False, False
    )
except (ImportError, TypeError):  # another Python: the pure encoder is fine
    _c_encoder = None


def encode(value: Any) -> str:
    """Compact JSON; anything the encoder refuses becomes its ``str``."""
    try:
        if _c_encoder is not None:
            return "".join(_c_encoder(value, 0))
        return _ENCODER.encode(value)
    except (TypeError, ValueError):
        return json.dumps(value, default=str, separators=(",", ":"))


_KIND_OPS = {
    SpanKind.INTERNAL: "function",
    SpanKind.SERVER: "server",
    SpanKind.CLIENT: "client",
    SpanKind.PRODUCER: "queue.publish",
    SpanKind.CONSUMER: "queue.process",
}

# Key segments (a key split on "." with "-" read as "_") that always hold secrets.
_SECRET_SEGMENTS = frozenset(
    s.lower().replace("-", "_")
    for s in [
        *DEFAULT_DENYLIST,
        "access_token",
        "refresh_token",
        "id_token",
        "auth_token",
        "api_token",
        "bearer",
        "client_secret",
        "jwt",
        "passphrase",
        "pwd",
        "x_auth_token",
        "x_api_key",
        "api-key",
        "set_cookie",
        "proxy_authorization",
    ]
)
_SECRET_PART = re.compile(r"passw|secret|api_?key|private_?key|credential|(^|_)token$|^auth")
_PII_KEYS = frozenset(
    {sc.USER_EMAIL, sc.CLIENT_ADDRESS, "enduser.email", "net.peer.ip", "net.sock.peer.addr"}
)
_PII_SEGMENTS = frozenset(
    s.lower().replace("-", "_") for s in [*DEFAULT_PII_DENYLIST, "email", "x_real_ip"]
)
_URL_KEYS = frozenset({sc.URL_FULL, sc.HTTP_URL_OLD, sc.HTTP_TARGET_OLD, "url.query"})
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")
_CREDENTIAL = re.compile(r"\b(Bearer|Basic|Token|Digest)\s+\S+", re.IGNORECASE)
_SECRET_QUERY = re.compile(
    r"([?&;](?:[^=&;#]*(?:passw|secret|token|api_?key|apikey|auth|session|sig|signature|"
    r"credential|code)[^=&;#]*)=)[^&;#]*",
    re.IGNORECASE,
)

# Attributes that can change a span's description from its name.
_DESCRIBED = frozenset(
    {sc.HTTP_REQUEST_METHOD, sc.HTTP_METHOD_OLD, sc.DB_QUERY_TEXT, sc.DB_STATEMENT_OLD}
)

_KEEP, _SECRET, _PII, _URL = 0, 1, 2, 3
#: Flag on a verdict: the key carries scope API data (user, tag, context) for the event.
SCOPE_FLAG = 4
_SCOPE_PREFIXES = ("user.", sc.WIDGET_TAG_PREFIX, sc.WIDGET_CONTEXT_PREFIX)


def _classify(key: str) -> int:
    if key.startswith(_SCOPE_PREFIXES) or key == sc.CLIENT_ADDRESS:
        return _classify_plain(key) | SCOPE_FLAG
    return _classify_plain(key)


def _classify_plain(key: str) -> int:
    if key in _URL_KEYS:
        return _URL
    if key in _PII_KEYS:
        return _PII
    # Numbers of tokens (gen_ai.usage.input_tokens) are not tokens: segments are matched whole
    # or by the patterns above, which stop at "tokens".
    for raw in key.lower().replace("-", "_").split("."):
        if raw in _SECRET_SEGMENTS or _SECRET_PART.search(raw):
            return _SECRET
        if raw in _PII_SEGMENTS:
            return _PII
    return _KEEP


class Scrubber:
    """Scrubs attribute mappings by key (memoised per key) and string values by content."""

    def __init__(self, send_default_pii: bool = False) -> None:
        self.send_default_pii = send_default_pii
        self._verdicts: dict[str, int] = {}

    def verdict(self, key: str) -> int:
        verdict = self._verdicts.get(key)
        if verdict is None:
            verdict = _classify(key)
            if len(self._verdicts) < 10000:  # attribute keys are few; never let this grow
                self._verdicts[key] = verdict
        return verdict

    def value(self, value: str) -> str:
        """Scrub secrets (and, without PII, emails) out of free text."""
        if " " in value:
            value = _CREDENTIAL.sub(r"\1 " + FILTERED, value)
        if not self.send_default_pii and "@" in value:
            value = _EMAIL.sub(FILTERED, value)
        return value

    def data(
        self,
        attributes: Mapping[str, Any],
        scope_items: list[tuple[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """A scrubbed, JSON-ready copy of span attributes.

        Scope API attributes (user.*, widget.tag.*, widget.context.*, client.address) are also
        appended, unscrubbed, to ``scope_items`` when given: the event-level mapping decides.
        """
        out: dict[str, Any] = {}
        verdicts = self._verdicts
        pii = self.send_default_pii
        for key, raw in attributes.items():
            verdict = verdicts.get(key)
            if verdict is None:
                verdict = self.verdict(key)
            if verdict:
                if verdict & SCOPE_FLAG:
                    if scope_items is not None:
                        scope_items.append((key, raw))
                    verdict &= 3
                if verdict == _SECRET or (verdict == _PII and not pii):
                    out[key] = FILTERED
                    continue
            value = raw
            cls = type(value)
            if cls is str:
                if verdict == _URL and ("?" in value or "@" in value):
                    value = _scrub_url(value, pii)
                elif " " in value or "@" in value:
                    value = self.value(value)
            elif cls is float and not math.isfinite(value):
                value = str(value)  # JSON (and Sentry) have no NaN or infinity
            elif cls is tuple:
                value = [self.value(v) if type(v) is str else _finite(v) for v in value]
            out[key] = value
        return out


def _finite(value: Any) -> Any:
    if type(value) is float and not math.isfinite(value):
        return str(value)
    return value


def _scrub_url(url: str, pii: bool) -> str:
    url = _SECRET_QUERY.sub(r"\1" + FILTERED, url)
    if "@" in url:
        # user:password@host
        url = re.sub(r"//[^/@]*@", "//" + FILTERED + "@", url, count=1)
        if not pii:
            url = _EMAIL.sub(FILTERED, url)
    return url


def _method(attrs: Mapping[str, Any]) -> Any:
    return attrs.get(sc.HTTP_REQUEST_METHOD) or attrs.get(sc.HTTP_METHOD_OLD)


def op_for(kind: SpanKind, attrs: Mapping[str, Any]) -> str:
    """Sentry op for a span (see the module docstring for the order)."""
    op = attrs.get(sc.WIDGET_OP)
    if op:
        return str(op)
    if _method(attrs):
        if kind is SpanKind.SERVER:
            return "http.server"
        if kind is SpanKind.CLIENT:
            return "http.client"
        return "http"
    if sc.MCP_METHOD_NAME in attrs:
        if kind is SpanKind.SERVER:
            return "mcp.server"
        if kind is SpanKind.CLIENT:
            return "mcp.client"
        return "mcp"
    gen_ai = attrs.get(sc.GEN_AI_OPERATION_NAME)
    if gen_ai:
        return f"gen_ai.{gen_ai}"
    if sc.DB_SYSTEM_NAME in attrs or sc.DB_SYSTEM_OLD in attrs:
        return "db"
    if sc.MESSAGING_SYSTEM in attrs:
        return "queue.process" if kind is SpanKind.CONSUMER else "queue.publish"
    if sc.RPC_SYSTEM in attrs:
        return "rpc"
    return _KIND_OPS.get(kind, "function")


def _path_of(attrs: Mapping[str, Any]) -> str | None:
    path = attrs.get(sc.URL_PATH)
    if path:
        return str(path)
    target = attrs.get(sc.HTTP_TARGET_OLD)
    if target:
        return str(target).split("?", 1)[0]
    return None


def description_for(name: str, kind: SpanKind, attrs: Mapping[str, Any]) -> str:
    """Human description: "GET /api/widgets/status", "POST hub.local/search", a query, or name."""
    method = _method(attrs)
    if method:
        if kind is SpanKind.CLIENT:
            url = attrs.get(sc.URL_FULL) or attrs.get(sc.HTTP_URL_OLD)
            if url:
                parts = urlsplit(str(url))
                host = parts.hostname or ""
                if parts.port:
                    host = f"{host}:{parts.port}"
                return f"{method} {host}{parts.path or '/'}"
            peer = attrs.get(sc.SERVER_ADDRESS) or attrs.get(sc.NET_PEER_NAME_OLD)
            path = _path_of(attrs) or ""
            if peer:
                return f"{method} {peer}{path}"
            return name
        route = attrs.get(sc.HTTP_ROUTE) or _path_of(attrs)
        if route:
            return f"{method} {route}"
        return name
    query = attrs.get(sc.DB_QUERY_TEXT) or attrs.get(sc.DB_STATEMENT_OLD)
    if query:
        return str(query)
    return name


def transaction_name(name: str, kind: SpanKind, attrs: Mapping[str, Any]) -> tuple[str, str]:
    """Transaction name and its source ("route", "url" or "custom")."""
    method = _method(attrs)
    if method and kind is SpanKind.SERVER:
        route = attrs.get(sc.HTTP_ROUTE)
        if route:
            return f"{method} {route}", "route"
        path = _path_of(attrs)
        if path:
            return f"{method} {path}", "url"
    return name, "custom"


def status_for(code: StatusCode, attrs: Mapping[str, Any]) -> str:
    """Sentry span status from the OTel status and any HTTP status code."""
    http_status = attrs.get(sc.HTTP_RESPONSE_STATUS_CODE) or attrs.get(sc.HTTP_STATUS_CODE_OLD)
    if http_status:
        try:
            status = get_span_status_from_http_code(int(http_status))
        except (TypeError, ValueError):
            status = None
        if status is not None and (code is not StatusCode.ERROR or status != "ok"):
            return status
    if code is StatusCode.ERROR:
        return "internal_error"
    return "ok"


def events_json(span: ReadableSpan, scrubber: Scrubber) -> list[dict[str, Any]]:
    """Span events as span data: name, timestamp (s) and scrubbed attributes."""
    out = []
    for event in span._events:
        item: dict[str, Any] = {"name": event.name, "timestamp": event.timestamp / 1e9}
        if event.attributes:
            item["attributes"] = scrubber.data(event.attributes)
        out.append(item)
    return out


def breadcrumbs_from(spans: Iterable[ReadableSpan], scrubber: Scrubber) -> list[dict[str, Any]]:
    """Breadcrumbs from ``breadcrumb`` span events (scope.add_breadcrumb) and exceptions."""
    crumbs: list[dict[str, Any]] = []
    for span in spans:
        for event in span.events:
            attrs = event.attributes or {}
            if event.name == sc.BREADCRUMB_EVENT:
                crumb: dict[str, Any] = {
                    "timestamp": event.timestamp / 1e9,
                    "level": str(attrs.get(sc.BREADCRUMB_LEVEL, "info")),
                }
                for key, field in (
                    (sc.BREADCRUMB_MESSAGE, "message"),
                    (sc.BREADCRUMB_CATEGORY, "category"),
                    (sc.BREADCRUMB_TYPE, "type"),
                ):
                    if key in attrs:
                        crumb[field] = str(attrs[key])
                if "message" in crumb:
                    crumb["message"] = scrubber.value(crumb["message"])
                data = {
                    k[len(sc.BREADCRUMB_DATA_PREFIX) :]: v
                    for k, v in attrs.items()
                    if k.startswith(sc.BREADCRUMB_DATA_PREFIX)
                }
                if data:
                    crumb["data"] = scrubber.data(data)
                crumbs.append(crumb)
            elif event.name == sc.EXCEPTION_EVENT:
                crumbs.append(
                    {
                        "timestamp": event.timestamp / 1e9,
                        "level": "error",
                        "category": "exception",
                        "message": scrubber.value(
                            f"{attrs.get(sc.EXCEPTION_TYPE, '')}: "
                            f"{attrs.get(sc.EXCEPTION_MESSAGE, '')}"
                        ),
                    }
                )
    crumbs.sort(key=lambda c: c["timestamp"])
    return crumbs[-100:]


def attributes_of(span: ReadableSpan) -> Mapping[str, Any]:
    """The span's attributes without the read-only proxy (its lookups are slow)."""
    attrs = span._attributes
    if attrs is None:
        return {}
    inner = getattr(attrs, "_dict", None)
    return inner if inner is not None else attrs


def span_json(
    span: ReadableSpan,
    span_id: int,
    parent_id: int,
    trace_hex: str,
    scrubber: Scrubber,
    scope_items: list[tuple[str, Any]] | None = None,
) -> str:
    """One child span of a transaction, as JSON (``parent_id`` 0: none in this process)."""
    attrs = span._attributes
    if attrs is not None:
        attrs = getattr(attrs, "_dict", attrs)
    kind = span._kind
    name = span._name
    if attrs:
        data = scrubber.data(attrs, scope_items)
        op = op_for(kind, attrs)
        description = description_for(name, kind, attrs) if _DESCRIBED & attrs.keys() else name
        status = status_for(span._status.status_code, attrs)
    else:
        data = {}
        op = _KIND_OPS.get(kind, "function")
        description = name
        status = "internal_error" if span._status.status_code is StatusCode.ERROR else "ok"
    if span._events:
        data["otel.events"] = events_json(span, scrubber)
    if not parent_id and span._parent is not None:  # a remote parent
        parent_id = span._parent.span_id
    # Formatted rather than built as a dict and encoded: this runs for every span and is
    # about twice as fast; strings go through the C JSON string encoder, data through the
    # shared encoder (values are already JSON-safe: see Scrubber.data).
    parent = f',"parent_span_id":"{parent_id:016x}"' if parent_id else ""
    return (
        f'{{"trace_id":"{trace_hex}","span_id":"{span_id:016x}"{parent},'
        f'"op":{_enc_str(op)},"description":{_enc_str(description)},"status":"{status}",'
        f'"start_timestamp":{span._start_time / 1e9!r},"timestamp":{span._end_time / 1e9!r},'  # type: ignore[operator]
        f'"data":{encode(data)}}}'
    )
