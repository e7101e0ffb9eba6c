"""OTel spans to Sentry transaction payloads: op, description, status, data, scrubbing.

Pure functions used by :mod:`widgettrace.exporters.sentry`'s export thread (never on the thread
that ends a span). Both the current and the old HTTP/DB semantic conventions are read.

* op: ``widget.op`` or ``sentry.op`` if set (the MCP instrumentor sets Sentry's
  ``mcp.notification.*`` ops, which need the sender's role); HTTP (``http.server`` /
  ``http.client``); ``db``; MCP (``mcp.server`` / ``mcp.client``); GenAI
  (``gen_ai.<gen_ai.operation.name>``, e.g. ``gen_ai.chat``, ``gen_ai.invoke_agent``,
  ``gen_ai.execute_tool``); messaging (``queue.publish`` / ``queue.process``); ``rpc``; else by
  span kind (``function`` for internal).
* description: ``GET /api/widgets/status`` for servers (method + route), ``POST hub.local/search``
  for clients (method + host + path, no query), the query text for databases, else the span name.
* status: OTel ERROR is ``internal_error`` unless an HTTP status says more; an HTTP status code
  maps the way Sentry's SDK maps it; otherwise ``ok``.
* data: every attribute, scrubbed by :mod:`widgettrace.exporters._scrub` (secret keys, URLs,
  credential patterns in any text; without ``send_default_pii`` also emails and IP addresses).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from operator import itemgetter
from typing import Any
from urllib.parse import urlsplit

import orjson
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import SpanContext, SpanKind, StatusCode
from sentry_sdk.tracing import get_span_status_from_http_code

from widgettrace.exporters._scrub import FILTERED, SCOPE_FLAG, Scrubber, dumps
from widgettrace.instrumentation import semconv as sc

__all__ = [
    "FILTERED",
    "SCOPE_FLAG",
    "Ended",
    "Fragment",
    "Scrubber",
    "classify",
    "description_for",
    "dumps",
    "ended",
    "op_for",
    "span_json",
    "status_for",
    "transaction_name",
    "with_events",
]

Fragment = orjson.Fragment


_KIND_OPS = {
    SpanKind.INTERNAL: "function",
    SpanKind.SERVER: "server",
    SpanKind.CLIENT: "client",
    SpanKind.PRODUCER: "queue.publish",
    SpanKind.CONSUMER: "queue.process",
}


def _method(attrs: Mapping[str, Any]) -> Any:
    return attrs.get(sc.HTTP_REQUEST_METHOD) or attrs.get(sc.HTTP_METHOD_OLD)


def op_for(kind: SpanKind, attrs: Mapping[str, Any]) -> str:
    """Sentry op for a span (see the module docstring for the order)."""
    op = attrs.get(sc.WIDGET_OP) or attrs.get(sc.SENTRY_OP)
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


#: Attributes whose values op, description, status or the transaction name are read from (the
#: others that matter, such as ``mcp.method.name``, only by presence: the key tuple has them).
_VALUE_KEYS = (
    sc.WIDGET_OP,
    sc.HTTP_REQUEST_METHOD,
    sc.HTTP_METHOD_OLD,
    sc.HTTP_ROUTE,
    sc.URL_PATH,
    sc.HTTP_TARGET_OLD,
    sc.URL_FULL,
    sc.HTTP_URL_OLD,
    sc.SERVER_ADDRESS,
    sc.NET_PEER_NAME_OLD,
    sc.GEN_AI_OPERATION_NAME,
    sc.DB_QUERY_TEXT,
    sc.DB_STATEMENT_OLD,
    sc.HTTP_RESPONSE_STATUS_CODE,
    sc.HTTP_STATUS_CODE_OLD,
)
_PATH_KEYS = (sc.URL_PATH, sc.HTTP_TARGET_OLD)
_MEMO_MAX = 4096
#: (op, description, status, transaction name, transaction source)
Classification = tuple[str, str, str, str, str]
_Getter = Callable[[Mapping[str, Any]], Any]
#: attribute key tuple -> (value getter for non-client spans, value getter for client spans)
_plans: dict[tuple[str, ...], tuple[_Getter, _Getter]] = {}
_memo: dict[tuple[Any, ...], Classification] = {}


def _getter(keys: list[str]) -> _Getter:
    if not keys:
        return lambda attrs: None
    return itemgetter(*keys)


def _plan(keys: tuple[str, ...]) -> tuple[_Getter, _Getter]:
    present = [key for key in _VALUE_KEYS if key in keys]
    # Server and internal spans read a path only when there is no route: leaving it out of the
    # memo key is what makes every request to one route share an entry.
    routed = sc.HTTP_ROUTE in keys
    other = [key for key in present if not (routed and key in _PATH_KEYS)]
    plan = (_getter(other), _getter(present))
    if len(_plans) < _MEMO_MAX:  # key tuples are few; never let this grow
        _plans[keys] = plan
    return plan


def _derive(
    name: str, kind: SpanKind, code: StatusCode, attrs: Mapping[str, Any]
) -> Classification:
    txn, source = transaction_name(name, kind, attrs)
    return (
        op_for(kind, attrs),
        description_for(name, kind, attrs),
        status_for(code, attrs),
        txn,
        source,
    )


def classify(
    name: str,
    kind: SpanKind,
    code: StatusCode,
    attrs: Mapping[str, Any],
    keys: tuple[str, ...],
) -> Classification:
    """(op, description, status, transaction name, source) of a span; ``keys`` is
    ``tuple(attrs)``.

    The same as :func:`op_for`, :func:`description_for`, :func:`status_for` and
    :func:`transaction_name`, memoised on exactly what they read (the name, kind, status, the
    attribute keys and the values of :data:`_VALUE_KEYS`): spans of one route or one widget
    operation then cost one lookup instead of some thirty.
    """
    plan = _plans.get(keys)
    if plan is None:
        plan = _plan(keys)
    try:
        memo_key = (
            keys,
            name,
            kind._value_,
            code._value_,
            plan[kind is SpanKind.CLIENT](attrs),
        )
        hit = _memo.get(memo_key)
    except TypeError:  # an unhashable value (attributes given as a plain dict of lists)
        return _derive(name, kind, code, attrs)
    if hit is None:
        hit = _derive(name, kind, code, attrs)
        if len(_memo) >= _MEMO_MAX:  # URLs and queries vary without bound: start over
            _memo.clear()
        _memo[memo_key] = hit
    return hit


def events_json(events: Iterable[Event], scrubber: Scrubber) -> list[dict[str, Any]]:
    """Span events as span data: name, timestamp (s) and scrubbed attributes."""
    out = []
    for event in events:
        item: dict[str, Any] = {"name": event.name, "timestamp": event.timestamp / 1e9}
        if event.attributes:
            item["attributes"] = scrubber.data(event.attributes)
        out.append(item)
    return out


def breadcrumbs_from(events: Iterable[Event], scrubber: Scrubber) -> list[dict[str, Any]]:
    """Breadcrumbs from ``breadcrumb`` span events (scope.add_breadcrumb) and exceptions."""
    crumbs: list[dict[str, Any]] = []
    for event in events:
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
                        f"{attrs.get(sc.EXCEPTION_TYPE, '')}: {attrs.get(sc.EXCEPTION_MESSAGE, '')}"
                    ),
                }
            )
    crumbs.sort(key=lambda c: c["timestamp"])
    return crumbs[-100:]


#: What is kept of an ended span until the export thread has encoded it: (context, parent
#: context, name, kind, status code, attributes, events or None, start ns, end ns). Taken in
#: ``on_end`` so that the span object itself is released on the thread that ended it.
Ended = tuple[
    SpanContext,
    "SpanContext | None",
    str,
    SpanKind,
    StatusCode,
    "Mapping[str, Any] | None",
    "Sequence[Event] | None",
    int,
    int,
]


def ended(span: ReadableSpan) -> Ended:
    """The :data:`Ended` record of a span (the SDK's spans without their wrappers)."""
    attrs: Any = span._attributes
    if type(attrs) is BoundedAttributes:
        attrs = attrs._dict
    events: Any = span._events
    if type(events) is BoundedList:
        events = events._dq  # type: ignore[attr-defined]
    return (
        span._context,  # type: ignore[return-value]
        span._parent,
        span._name,
        span._kind,
        span._status._status_code,  # the property is a Python call
        attrs or None,
        events or None,
        span._start_time or 0,
        span._end_time or 0,
    )


def with_events(data: bytes, events: Iterable[Event], scrubber: Scrubber) -> bytes:
    """``data`` (a JSON object) with the span's events added as ``otel.events``."""
    encoded = dumps(events_json(events, scrubber))
    if data == b"{}":
        return b'{"otel.events":' + encoded + b"}"
    return data[:-1] + b',"otel.events":' + encoded + b"}"


def span_json(
    span: Ended,
    span_id: int,
    parent_id: int,
    trace_hex: str,
    scrubber: Scrubber,
    scope_items: list[tuple[str, Any]] | None = None,
) -> bytes:
    """One child span of a transaction, as JSON (``parent_id`` 0: none in this process)."""
    _, parent, name, kind, code, attrs, events, start, end = span
    if attrs:
        keys = tuple(attrs)
        data = scrubber.data_json(attrs, scope_items, keys)
        op, description, status, _, _ = classify(name, kind, code, attrs, keys)
    else:
        data = b"{}"
        op = _KIND_OPS.get(kind, "function")
        description = name
        status = "internal_error" if code is StatusCode.ERROR else "ok"
    # Descriptions are queries (db.statement) and span names: free text.
    description = scrubber.text_cached(description)
    if events:
        data = with_events(data, events, scrubber)
    if not parent_id and parent is not None:  # a remote parent
        parent_id = parent.span_id
    doc: dict[str, Any] = {
        "trace_id": trace_hex,
        "span_id": f"{span_id:016x}",
        "op": op,
        "description": description,
        "status": status,
        "start_timestamp": start / 1e9,
        "timestamp": end / 1e9,
        "data": Fragment(data),
    }
    if parent_id:
        doc["parent_span_id"] = f"{parent_id:016x}"
    return dumps(doc)
