"""OpenTelemetry instrumentation for the official ``mcp`` SDK (2.x), per the OTel MCP conventions.

Usage::

    opentelemetry-instrument python run.py          # entry point ``mcp``, nothing else to do

    # or by hand (tests, scripts):
    from widgettrace.instrumentation.mcp import McpInstrumentor
    McpInstrumentor().instrument(tracer_provider=provider, meter_provider=meters)

Disable it with ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=mcp``.

What it records (open-telemetry/semantic-conventions-genai, ``docs/gen-ai/mcp.md``):

* a CLIENT span for every request and notification a peer *sends* and a SERVER span for every one
  it *receives*, on both peers and in both directions (so ``sampling/createMessage``,
  ``elicitation/create`` and ``roots/list`` sent by a server get a CLIENT span on the server and a
  SERVER span on the client). Name ``{mcp.method.name} {target}`` (target: tool or prompt name),
  else ``{mcp.method.name}``. Over stdio, streamable HTTP, SSE, in-memory streams and the
  in-process ``DirectDispatcher``.
* context propagation through ``params._meta`` (``traceparent``, ``tracestate``, ``baggage``: the
  globally configured ``opentelemetry.propagate`` propagator) for requests *and* notifications. The
  receiver parents its span on ``_meta`` and links the ambient context (the HTTP server span);
  without a usable ``_meta`` context the ambient context is the parent (a new trace when there is
  none). Malformed ``_meta`` (wrong types, garbage, huge values) is ignored, never an error.
* attributes ``mcp.method.name``, ``jsonrpc.request.id``, ``gen_ai.tool.name`` (+
  ``gen_ai.operation.name=execute_tool``), ``gen_ai.prompt.name``, ``mcp.resource.uri``,
  ``mcp.session.id`` (only where the transport has sessions: streamable HTTP handshake era),
  ``mcp.protocol.version``, ``network.transport`` (``pipe`` stdio, ``tcp`` HTTP/SSE, ``inproc``
  memory streams and ``DirectDispatcher``), ``network.protocol.name/version``,
  ``server.address/port`` (client), ``client.address/port`` (server over HTTP).
* errors: ``error.type`` + ``rpc.response.status_code`` = the JSON-RPC error code and status
  ERROR with the error message; ``error.type=tool_error`` for ``isError`` tool results (client
  and server); ``timeout`` for a request the sender gave up on; ``cancelled`` for cancellation;
  the exception's class name for anything else.
* ``notifications/progress``: an event ``mcp.progress`` on the span of the request it reports on
  (receiver side: the CLIENT span waiting for the result; sender side: the handler's SERVER span)
  instead of a span of its own.
* metrics (OTel metrics API, the conventions' bucket boundaries):
  ``mcp.client.operation.duration``, ``mcp.server.operation.duration``,
  ``mcp.client.session.duration``, ``mcp.server.session.duration``.
* a tool that crashes (``MCPServer`` turns the exception into an ``isError`` result): the original
  exception goes to :func:`widgettrace.instrumentation.scope.capture_exception` while the tool's
  SERVER span is current (once: recorded on the span and forwarded to the Sentry sink). A
  ``ToolError`` the tool raises on purpose is an anticipated failure: ``tool_error`` on the span,
  no error event. Exceptions a lowlevel handler raises (mcp answers them with a JSON-RPC error) are
  captured the same way.
* tool arguments and results only with ``WIDGETTRACE_CAPTURE_PAYLOADS=true``
  (``gen_ai.tool.call.arguments`` / ``gen_ai.tool.call.result`` as JSON), capped at
  ``WIDGETTRACE_PAYLOAD_MAX_BYTES`` and with secret-looking keys (token, key, secret, password,
  authorization, cookie, session, credential) and values (bearer/basic credentials, JWTs, API-key
  prefixes, e-mail addresses) replaced by ``[Filtered]``.

While instrumented, mcp's own OpenTelemetry (the ``OpenTelemetryMiddleware`` SERVER spans and the
``MCP send ...`` CLIENT spans with their ``_meta`` injection) is switched off, so nothing is
recorded twice; ``uninstrument()`` switches it back on. ``suppress_instrumentation()`` turns both
off for the calls made under it.

Fail-open: every wrapper checks ``is_instrumentation_enabled()`` first, does its telemetry work
under widgettrace's internal-error guard and makes the SDK call outside it; return values,
exceptions and messages are those of the SDK (the only change on the wire is the ``_meta``
propagation keys, which mcp itself writes when not instrumented).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import itertools
import json
import re
import sys
import time
import weakref
from collections.abc import Awaitable, Callable, Collection, Mapping
from contextvars import ContextVar
from importlib import metadata
from typing import Any, Final, TypeGuard
from urllib.parse import urlsplit

import wrapt
from opentelemetry import context as context_api
from opentelemetry import propagate, trace
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.metrics import Histogram, get_meter
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import INVALID_SPAN, Link, Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.util.types import AttributeValue

from widgettrace.instrumentation import semconv as sc
from widgettrace.instrumentation._guard import guarded, internal_errors, logger

__all__ = ["DURATION_BUCKETS", "McpInstrumentor", "redact"]

_instruments: Final = ("mcp >= 2.3, < 3",)

try:
    __version__ = metadata.version("widgettrace")
except metadata.PackageNotFoundError:  # pragma: no cover - source tree without install
    __version__ = "0.0.0"

#: Explicit bucket boundaries the conventions give for all four MCP duration histograms.
DURATION_BUCKETS: Final = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)

_TRANSPORT_PIPE: Final = "pipe"
_TRANSPORT_TCP: Final = "tcp"
# Not a well-known network.transport value; the conventions allow custom ones.
_TRANSPORT_INPROC: Final = "inproc"

_TIMEOUT: Final = "timeout"
_CANCELLED: Final = "cancelled"
_TOOL_ERROR: Final = "tool_error"
_EXECUTE_TOOL: Final = "execute_tool"
_FILTERED: Final = "[Filtered]"
_PROGRESS: Final = "notifications/progress"
_RESOURCE_METHODS: Final = frozenset(
    {
        "resources/read",
        "resources/subscribe",
        "resources/unsubscribe",
        "notifications/resources/updated",
    }
)
# The 2026-07-28 envelope carries the protocol version per request in _meta.
_PROTOCOL_VERSION_META_KEY: Final = "io.modelcontextprotocol/protocolVersion"
# JSON-RPC error codes mcp itself produces for a request the sender gave up on.
_REQUEST_TIMEOUT_CODE: Final = -32001
_INVALID_PARAMS_CODE: Final = -32602
# Bounds on what the receiver reads out of a peer-controlled _meta.
_MAX_META_KEYS: Final = 32
_MAX_META_VALUE: Final = 8192


# --- state -------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _State:
    tracer: Tracer
    client_duration: Histogram
    server_duration: Histogram
    client_session_duration: Histogram
    server_session_duration: Histogram
    capture_payloads: bool
    payload_max_bytes: int


_state: _State | None = None


@dataclasses.dataclass
class _Peer:
    """What we know about one connection (one dispatcher) beyond what a message says."""

    transport: str | None = None
    protocol_name: str | None = None
    protocol_version: str | None = None
    server_address: str | None = None
    server_port: int | None = None
    # mcp's StreamableHTTPTransport (client side): it learns the Mcp-Session-Id.
    http_transport: Any = None
    session: weakref.ref[Any] | None = None
    connection: weakref.ref[Any] | None = None

    def session_id(self) -> str | None:
        sid = getattr(self.http_transport, "session_id", None)
        if isinstance(sid, str):
            return sid
        conn = self.connection() if self.connection is not None else None
        sid = getattr(conn, "session_id", None)
        return sid if isinstance(sid, str) else None

    def mcp_version(self) -> str | None:
        session = self.session() if self.session is not None else None
        if session is not None:
            version = getattr(session, "_negotiated_version", None)
            return version if isinstance(version, str) else None
        conn = self.connection() if self.connection is not None else None
        version = getattr(conn, "protocol_version", None)
        return version if isinstance(version, str) else None

    def transport_attrs(self, into: dict[str, AttributeValue], client_side: bool) -> None:
        if self.transport is not None:
            into[sc.NETWORK_TRANSPORT] = self.transport
        if self.protocol_name is not None:
            into[sc.NETWORK_PROTOCOL_NAME] = self.protocol_name
        if self.protocol_version is not None:
            into[sc.NETWORK_PROTOCOL_VERSION] = self.protocol_version
        if client_side and self.server_address is not None:
            into[sc.SERVER_ADDRESS] = self.server_address
            if self.server_port is not None:
                into[sc.SERVER_PORT] = self.server_port


# Dispatcher -> what we know about its connection. Weak: dispatchers die with their connection.
_PEERS: weakref.WeakKeyDictionary[Any, _Peer] = weakref.WeakKeyDictionary()
# Streams a tagged transport yielded (mcp's context streams are not weak-referenceable), keyed by
# id and holding the stream so the id cannot be reused; removed when the transport closes.
_STREAM_TAGS: dict[int, tuple[object, _Peer]] = {}
# Client sessions -> start time, for mcp.client.session.duration.
_SESSION_STARTS: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()
# The span of the outbound request being sent, for the shim that replaces mcp's own span.
_OUTBOUND_SPAN: ContextVar[Span | None] = ContextVar("widgettrace_mcp_outbound", default=None)
# The StreamableHTTPTransport created while a streamable_http_client is being entered.
_NEW_HTTP_TRANSPORT: ContextVar[Any] = ContextVar("widgettrace_mcp_http_transport", default=None)


def _peer_of(dispatcher: Any) -> _Peer | None:
    try:
        peer = _PEERS.get(dispatcher)
    except TypeError:  # not weak-referenceable: a dispatcher we do not know
        return None
    if peer is None and type(dispatcher).__name__ == "DirectDispatcher":
        peer = _Peer(transport=_TRANSPORT_INPROC)
        _PEERS[dispatcher] = peer
    return peer


# --- small helpers -----------------------------------------------------------------------------


def _bind(args: tuple[Any, ...], kwargs: dict[str, Any], names: tuple[str, ...]) -> list[Any]:
    """Positional-or-keyword values of ``names`` from a call (None when absent)."""
    values: list[Any] = []
    for i, name in enumerate(names):
        if i < len(args):
            values.append(args[i])
        else:
            values.append(kwargs.get(name))
    return values


def _rebind(
    args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str, value: Any
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if index < len(args):
        new_args = list(args)
        new_args[index] = value
        return tuple(new_args), kwargs
    new_kwargs = dict(kwargs)
    new_kwargs[name] = value
    return args, new_kwargs


def _is_cancellation(exc: BaseException) -> bool:
    if isinstance(exc, asyncio.CancelledError):
        return True
    # trio.Cancelled, without importing trio.
    return type(exc).__name__ == "Cancelled"


def _is_map(value: Any) -> TypeGuard[Mapping[Any, Any]]:
    # mcp hands us plain dicts; the ABC check is the slow path for anything else.
    return type(value) is dict or isinstance(value, Mapping)


def _is_id(value: Any) -> bool:
    return type(value) is int or type(value) is str


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _method_attrs(method: str, params: Any, attrs: dict[str, AttributeValue]) -> str | None:
    """Low-cardinality attributes from the method and params; returns the span-name target."""
    attrs[sc.MCP_METHOD_NAME] = method
    if not _is_map(params):
        return None
    if method == "tools/call":
        attrs[sc.GEN_AI_OPERATION_NAME] = _EXECUTE_TOOL
        name = _str_or_none(params.get("name"))
        if name is not None:
            attrs[sc.GEN_AI_TOOL_NAME] = name
        return name
    if method == "prompts/get":
        name = _str_or_none(params.get("name"))
        if name is not None:
            attrs[sc.GEN_AI_PROMPT_NAME] = name
        return name
    return None


def _span_name(method: str, target: str | None) -> str:
    return f"{method} {target}" if target else method


def _resource_uri(method: str, params: Any) -> str | None:
    if method in _RESOURCE_METHODS and _is_map(params):
        return _str_or_none(params.get("uri"))
    return None


def _meta_version(params: Any) -> str | None:
    if _is_map(params):
        meta = params.get("_meta")
        if _is_map(meta):
            return _str_or_none(meta.get(_PROTOCOL_VERSION_META_KEY))
    return None


def _with_meta(params: Any, carrier: dict[str, str]) -> Any:
    """``params`` with the propagation keys merged into ``_meta`` (a copy; None stays a dict)."""
    if not carrier:
        return params
    if params is None:
        return {"_meta": dict(carrier)}
    if not _is_map(params):
        return params
    meta = params.get("_meta")
    if meta is None:
        new_meta: dict[str, Any] = dict(carrier)
    elif _is_map(meta):
        new_meta = {**meta, **carrier}
    else:
        # Someone else's odd _meta: leave the message exactly as it was.
        return params
    new_params = dict(params)
    new_params["_meta"] = new_meta
    return new_params


class _MetaGetter(Getter[Mapping[Any, Any]]):
    """Reads a peer-controlled ``_meta`` for the propagators: string values of bounded size only."""

    def get(self, carrier: Mapping[Any, Any], key: str) -> list[str] | None:
        value = carrier.get(key)
        if isinstance(value, str) and len(value) <= _MAX_META_VALUE:
            return [value]
        return None

    def keys(self, carrier: Mapping[Any, Any]) -> list[str]:
        return [key for key in itertools.islice(carrier, _MAX_META_KEYS) if isinstance(key, str)]


_META_GETTER: Final = _MetaGetter()


def _parent_from_meta(params: Any) -> context_api.Context | None:
    """The context carried in ``params._meta`` when it holds a valid span context, else None."""
    if not _is_map(params):
        return None
    meta = params.get("_meta")
    if not _is_map(meta) or not meta:
        return None
    try:
        ctx = propagate.extract(meta, context=context_api.Context(), getter=_META_GETTER)
    except Exception:  # a propagator choking on garbage must not cost the message
        return None
    if not trace.get_current_span(ctx).get_span_context().is_valid:
        return None
    return ctx


# --- payload capture ---------------------------------------------------------------------------

_SECRET_KEY_PARTS: Final = (
    "password",
    "passwd",
    "secret",
    "token",
    "apikey",
    "api_key",
    "api-key",
    "authorization",
    "cookie",
    "credential",
    "private_key",
    "privatekey",
    "signature",
    "session",
)
_SECRET_KEY_WORDS: Final = frozenset({"key", "auth", "pwd", "pass", "jwt", "bearer", "sid"})
_WORD_SPLIT: Final = re.compile(r"[^a-z0-9]+")
_EMAIL: Final = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_SECRET_VALUE: Final = re.compile(
    r"^\s*(bearer|basic|token)\s+\S+"
    r"|eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"
    r"|\b(sk|pk|rk)-[A-Za-z0-9_-]{12,}"
    r"|\b(ghp|gho|ghs|ghu|github_pat|glpat|xox[abpr])[-_][A-Za-z0-9_-]{10,}"
    r"|\bAKIA[0-9A-Z]{16}\b",
    re.IGNORECASE,
)
_MAX_DEPTH: Final = 8
_MAX_ITEMS: Final = 200


def _secret_key(key: str) -> bool:
    lowered = key.lower()
    if any(part in lowered for part in _SECRET_KEY_PARTS):
        return True
    # camelCase words too: "apiKey" -> "api key"
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", key).lower()
    return any(word in _SECRET_KEY_WORDS for word in _WORD_SPLIT.split(spaced))


def redact(value: Any, _depth: int = 0) -> Any:
    """A JSON-able copy of ``value`` with secret-looking keys and values replaced by [Filtered]."""
    if _depth > _MAX_DEPTH:
        return "[...]"
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for count, (key, item) in enumerate(value.items()):
            if count >= _MAX_ITEMS:
                out["..."] = f"{len(value) - count} more"
                break
            skey = str(key)
            out[skey] = _FILTERED if _secret_key(skey) else redact(item, _depth + 1)
        return out
    if isinstance(value, list | tuple):
        items = [redact(item, _depth + 1) for item in value[:_MAX_ITEMS]]
        if len(value) > _MAX_ITEMS:
            items.append(f"... {len(value) - _MAX_ITEMS} more")
        return items
    if isinstance(value, str):
        if _SECRET_VALUE.search(value):
            return _FILTERED
        return _EMAIL.sub(_FILTERED, value)
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact(str(value), _depth + 1)


def _payload(value: Any, max_bytes: int) -> str:
    text = json.dumps(redact(value), ensure_ascii=False, default=str, separators=(",", ":"))
    raw = text.encode("utf-8")
    if len(raw) <= max_bytes:
        return text
    return raw[: max(0, max_bytes)].decode("utf-8", errors="ignore") + "...[truncated]"


def _tool_result_payload(result: Mapping[str, Any]) -> dict[str, Any]:
    return {k: result[k] for k in ("content", "structuredContent", "isError") if k in result}


# --- spans -------------------------------------------------------------------------------------


def _error_of(exc: BaseException) -> tuple[str, str | None, str | None]:
    """(error.type, rpc.response.status_code or None, status description) for an exception."""
    if _is_cancellation(exc):
        return _CANCELLED, None, None
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None)
    if isinstance(code, int) and _is_mcp_error(exc):
        message = _str_or_none(getattr(error, "message", None))
        if code == _REQUEST_TIMEOUT_CODE:
            return _TIMEOUT, None, message
        return str(code), str(code), message
    if type(exc).__name__ == "ValidationError":
        # What mcp writes on the wire for it.
        return str(_INVALID_PARAMS_CODE), str(_INVALID_PARAMS_CODE), "Invalid request parameters"
    return type(exc).__qualname__, None, str(exc) or None


def _is_mcp_error(exc: BaseException) -> bool:
    from mcp.shared.exceptions import MCPError

    return isinstance(exc, MCPError)


@dataclasses.dataclass
class _Call:
    """One traced message: its span, clock and low-cardinality (metric) attributes."""

    span: Span
    start: float
    method: str
    attrs: dict[str, AttributeValue]
    histogram: Histogram
    state: _State
    peer: _Peer | None = None
    version_holder: Any = None
    version_attr: str = ""
    context: context_api.Context | None = None

    def finish(
        self, result: Any = None, error: BaseException | None = None, record: bool = True
    ) -> None:
        span = self.span
        attrs = self.attrs
        # Only what is learned at the end goes onto the span: the rest was given at start.
        late: dict[str, AttributeValue] = {}
        if self.version_attr and sc.MCP_PROTOCOL_VERSION not in attrs:
            version = _str_or_none(getattr(self.version_holder, self.version_attr, None))
            if version is not None:
                late[sc.MCP_PROTOCOL_VERSION] = version
        status_message: str | None = None
        failed = False
        if error is not None:
            failed = True
            etype, code, status_message = _error_of(error)
            late[sc.ERROR_TYPE] = etype
            if code is not None:
                late[sc.RPC_RESPONSE_STATUS_CODE] = code
            elif record and etype not in (_CANCELLED, _TIMEOUT) and span.is_recording():
                span.record_exception(error)
        elif _is_map(result):
            if self.method == "tools/call" and result.get("isError") is True:
                failed = True
                late[sc.ERROR_TYPE] = _TOOL_ERROR
            elif self.method == "initialize" and sc.MCP_PROTOCOL_VERSION not in attrs:
                version = _str_or_none(result.get("protocolVersion"))
                if version is not None:
                    late[sc.MCP_PROTOCOL_VERSION] = version
            if self.state.capture_payloads and self.method == "tools/call" and span.is_recording():
                span.set_attribute(
                    sc.GEN_AI_TOOL_CALL_RESULT,
                    _payload(_tool_result_payload(result), self.state.payload_max_bytes),
                )
        if late:
            attrs.update(late)
            if span.is_recording():
                span.set_attributes(late)
        if failed and span.is_recording():
            span.set_status(Status(StatusCode.ERROR, status_message))
        span.end()
        self.histogram.record(time.perf_counter() - self.start, attributes=attrs)


# The hot path guards with ``guarded`` (a plain try/except) rather than ``internal_errors`` (a
# generator context manager, a few microseconds per use, several uses per round trip).
@guarded("mcp.finish", None)
def _fail(call: _Call, exc: BaseException, record: bool = True) -> None:
    call.finish(error=exc, record=record)


@guarded("mcp.finish", None)
def _succeed(call: _Call, result: Any) -> None:
    call.finish(result=result)


@guarded("mcp.inject", None)
def _inject(carrier: dict[str, str], ctx: context_api.Context) -> None:
    propagate.inject(carrier, context=ctx)


@guarded("mcp.server_detach", None)
def _detach(token: object) -> None:
    context_api.detach(token)  # type: ignore[arg-type]


# Outbound (CLIENT spans) -------------------------------------------------------------------------


def _progress_event(span: Span, progress: Any, total: Any, message: Any) -> None:
    if not span.is_recording():
        return
    attrs: dict[str, AttributeValue] = {}
    if isinstance(progress, int | float) and not isinstance(progress, bool):
        attrs[sc.MCP_PROGRESS_VALUE] = float(progress)
    if isinstance(total, int | float) and not isinstance(total, bool):
        attrs[sc.MCP_PROGRESS_TOTAL] = float(total)
    if isinstance(message, str):
        attrs[sc.MCP_PROGRESS_MESSAGE] = message[:256]
    span.add_event(sc.MCP_PROGRESS_EVENT, attrs)


def _wrap_on_progress(callback: Any, span: Span) -> Any:
    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        with internal_errors("mcp.progress_event"):
            _progress_event(span, progress, total, message)
        await callback(progress, total, message)

    return on_progress


def _start_outbound(
    state: _State,
    dispatcher: Any,
    method: Any,
    params: Any,
    opts: Any,
    *,
    request: bool,
    direct: bool,
) -> tuple[_Call, Any, Any] | None:
    """Start the CLIENT span for one outbound message; returns (call, params, opts) to send."""
    if not isinstance(method, str):
        return None
    if method == _PROGRESS:
        # A progress report belongs to the request being handled: an event on its span.
        if _is_map(params):
            _progress_event(
                trace.get_current_span(),
                params.get("progress"),
                params.get("total"),
                params.get("message"),
            )
        return None
    peer = _peer_of(dispatcher)
    attrs: dict[str, AttributeValue] = {}
    target = _method_attrs(method, params, attrs)
    if peer is not None:
        peer.transport_attrs(attrs, client_side=True)
    version = _meta_version(params)
    if version is None and peer is not None:
        version = peer.mcp_version()
    if version is not None:
        attrs[sc.MCP_PROTOCOL_VERSION] = version
    # Everything known now is given at start (samplers see it); only the opt-in payload, which
    # costs a JSON encoding, waits until we know the span records.
    start_attrs: dict[str, AttributeValue] = dict(attrs)
    uri = _resource_uri(method, params)
    if uri is not None:
        start_attrs[sc.MCP_RESOURCE_URI] = uri
    if peer is not None:
        sid = peer.session_id()
        if sid is not None:
            start_attrs[sc.MCP_SESSION_ID] = sid
    if direct and request:
        rid = _direct_request_id(dispatcher, opts)
        if rid is not None:
            start_attrs[sc.JSONRPC_REQUEST_ID] = rid
    span = state.tracer.start_span(
        _span_name(method, target), kind=SpanKind.CLIENT, attributes=start_attrs
    )
    if (
        state.capture_payloads
        and method == "tools/call"
        and _is_map(params)
        and span.is_recording()
    ):
        span.set_attribute(
            sc.GEN_AI_TOOL_CALL_ARGUMENTS,
            _payload(params.get("arguments") or {}, state.payload_max_bytes),
        )
    carrier: dict[str, str] = {}
    span_ctx = trace.set_span_in_context(span)
    # A failing propagator costs the propagation, not the span (which must still end).
    _inject(carrier, span_ctx)
    new_params = _with_meta(params, carrier)
    new_opts = opts
    if request and _is_map(opts):
        on_progress = opts.get("on_progress")
        if on_progress is not None:
            new_opts = dict(opts)
            new_opts["on_progress"] = _wrap_on_progress(on_progress, span)
    histogram = state.client_duration
    call = _Call(
        span=span,
        start=time.perf_counter(),
        method=method,
        attrs=attrs,
        histogram=histogram,
        state=state,
        peer=peer,
        context=span_ctx,
    )
    return call, new_params, new_opts


def _direct_request_id(dispatcher: Any, opts: Any) -> str | None:
    """The id DirectDispatcher will mint for this request (it mints it synchronously on entry)."""
    if _is_map(opts):
        supplied = opts.get("request_id")
        if _is_id(supplied):
            return str(supplied)
    ready = getattr(dispatcher, "_ready", None)
    next_id = getattr(dispatcher, "_next_id", None)
    in_flight = getattr(dispatcher, "_in_flight_ids", None)
    if ready is None or not ready.is_set() or not isinstance(next_id, int) or in_flight is None:
        return None
    rid = next_id + 1
    while rid in in_flight:
        rid += 1
    return str(rid)


_Outbound = tuple[_Call, tuple[Any, ...], dict[str, Any]]
_NO_OUTBOUND: _Outbound | None = None  # typed default for guarded()


@guarded("mcp.client_start", _NO_OUTBOUND)
def _prepare_outbound(
    state: _State,
    instance: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    request: bool,
    direct: bool,
) -> _Outbound | None:
    """The call to trace and the arguments to send, or None to send the message untouched."""
    method, params, opts = _bind(args, kwargs, ("method", "params", "opts"))
    started = _start_outbound(state, instance, method, params, opts, request=request, direct=direct)
    if started is None:
        return None
    call, new_params, new_opts = started
    args, kwargs = _rebind(args, kwargs, 1, "params", new_params)
    if new_opts is not opts:
        args, kwargs = _rebind(args, kwargs, 2, "opts", new_opts)
    return call, args, kwargs


async def _traced_outbound(
    state: _State,
    wrapped: Callable[..., Awaitable[Any]],
    instance: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    request: bool,
    direct: bool,
) -> Any:
    prepared = _prepare_outbound(state, instance, args, kwargs, request, direct)
    if prepared is None:
        return await wrapped(*args, **kwargs)
    call, args, kwargs = prepared
    token = _OUTBOUND_SPAN.set(call.span)
    ctx_token = context_api.attach(call.context or trace.set_span_in_context(call.span))
    try:
        result = await wrapped(*args, **kwargs)
    except BaseException as exc:
        _fail(call, exc)
        raise
    finally:
        context_api.detach(ctx_token)
        _OUTBOUND_SPAN.reset(token)
    _succeed(call, result)
    return result


def _outbound_wrapper(request: bool, direct: bool) -> Callable[..., Any]:
    def wrapper(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        state = _state
        if state is None or not is_instrumentation_enabled():
            return wrapped(*args, **kwargs)
        return _traced_outbound(state, wrapped, instance, args, kwargs, request, direct)

    return wrapper


@guarded("mcp.builtin_shim", None)
def _adopt_request_id(attributes: Any) -> None:
    span = _OUTBOUND_SPAN.get()
    if span is not None and _is_map(attributes) and span.is_recording():
        rid = attributes.get(sc.JSONRPC_REQUEST_ID)
        if isinstance(rid, str):
            span.set_attribute(sc.JSONRPC_REQUEST_ID, rid)


class _BuiltinSpanShim:
    """Stands in for mcp's ``otel_span`` while instrumented: no span of its own.

    It hands mcp's request id to our CLIENT span (mcp mints the id inside the call) and yields a
    non-recording span, so mcp's own error attributes go nowhere (ours are set by the wrapper).
    A plain class, not a generator context manager: it runs for every outbound message.
    """

    __slots__ = ()

    def __init__(self, name: str, *, kind: Any = None, attributes: Any = None, **_: Any) -> None:
        _adopt_request_id(attributes)

    def __enter__(self) -> Span:
        return INVALID_SPAN

    def __exit__(self, *exc: object) -> None:
        return None


_builtin_span_shim = _BuiltinSpanShim


def _builtin_inject_shim(meta: dict[str, Any]) -> None:
    """Stands in for mcp's ``inject_trace_context``: our wrapper already injected."""


def _builtin_middleware_passthrough(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    # mcp's OpenTelemetryMiddleware, switched off while we are instrumented.
    ctx, call_next = _bind(args, kwargs, ("ctx", "call_next"))
    return call_next(ctx)


# Inbound (SERVER spans) --------------------------------------------------------------------------


def _unwrap_dctx(dctx: Any) -> Any:
    for _ in range(4):
        inner = getattr(dctx, "_inner", None)
        if inner is None:
            break
        dctx = inner
    return dctx


def _inbound_peer(
    dctx: Any, attrs: dict[str, AttributeValue], extra: dict[str, AttributeValue] | None
) -> _Peer | None:
    """Transport attributes of an inbound message; returns the dispatcher's peer record."""
    inner = _unwrap_dctx(dctx)
    dispatcher = getattr(inner, "_dispatcher", None)
    peer = _peer_of(dispatcher) if dispatcher is not None else None
    metadata_ = getattr(inner, "message_metadata", None)
    request = getattr(metadata_, "request_context", None)
    scope = getattr(request, "scope", None)
    if _is_map(scope) and scope.get("type") == "http":
        attrs[sc.NETWORK_TRANSPORT] = _TRANSPORT_TCP
        attrs[sc.NETWORK_PROTOCOL_NAME] = "http"
        http_version = _str_or_none(scope.get("http_version"))
        if http_version is not None:
            attrs[sc.NETWORK_PROTOCOL_VERSION] = http_version
        if extra is not None:
            client = scope.get("client")
            if isinstance(client, list | tuple) and len(client) == 2:
                host, port = client
                if isinstance(host, str):
                    extra[sc.CLIENT_ADDRESS] = host
                    if isinstance(port, int):
                        extra[sc.CLIENT_PORT] = port
        if dispatcher is not None:
            # Learn the transport for this connection's outbound messages too.
            if peer is None:
                with contextlib.suppress(TypeError):
                    peer = _Peer()
                    _PEERS[dispatcher] = peer
            if peer is not None and peer.transport is None:
                peer.transport = _TRANSPORT_TCP
                peer.protocol_name = "http"
                peer.protocol_version = http_version
        return peer
    if peer is not None:
        peer.transport_attrs(attrs, client_side=False)
        return peer
    transport = getattr(inner, "transport", None)
    if getattr(transport, "kind", None) == "direct":
        attrs[sc.NETWORK_TRANSPORT] = _TRANSPORT_INPROC
    return None


_NO_INBOUND: tuple[_Call, object] | None = None  # typed default for guarded()


@guarded("mcp.server_start", _NO_INBOUND)
def _prepare_inbound(
    state: _State, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any], server_peer: bool
) -> tuple[_Call, object] | None:
    """Start the SERVER span and make it current; None for messages we do not trace."""
    dctx, method, params = _bind(args, kwargs, ("dctx", "method", "params"))
    if not isinstance(method, str) or method == _PROGRESS:
        return None
    call, ctx = _start_inbound(state, instance, dctx, method, params, server_peer)
    return call, context_api.attach(ctx)


async def _traced_inbound(
    state: _State,
    wrapped: Callable[..., Awaitable[Any]],
    instance: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    server_peer: bool,
) -> Any:
    started = _prepare_inbound(state, instance, args, kwargs, server_peer)
    if started is None:
        return await wrapped(*args, **kwargs)
    call, token = started
    try:
        result = await wrapped(*args, **kwargs)
    except BaseException as exc:
        captured = False
        with internal_errors("mcp.server_exception"):
            captured = _inbound_exception(call, exc)
        _fail(call, exc, record=not captured)
        raise
    finally:
        _detach(token)
    _succeed(call, result)
    return result


def _start_inbound(
    state: _State, instance: Any, dctx: Any, method: str, params: Any, server_peer: bool
) -> tuple[_Call, context_api.Context]:
    attrs: dict[str, AttributeValue] = {}
    target = _method_attrs(method, params, attrs)
    recording_extra: dict[str, AttributeValue] = {}
    peer = _inbound_peer(dctx, attrs, recording_extra)
    # Where the negotiated version lives: the server's Connection, the client's ClientSession.
    holder: Any
    version_attr: str
    if server_peer:
        holder = getattr(instance, "connection", None)
        version_attr = "protocol_version"
        session_id = _str_or_none(getattr(holder, "session_id", None))
    else:
        holder = instance
        version_attr = "_negotiated_version"
        session_id = peer.session_id() if peer is not None else None
    if method != "initialize":  # initialize negotiates it: read at the end
        current = _str_or_none(getattr(holder, version_attr, None))
        if current is not None:
            attrs[sc.MCP_PROTOCOL_VERSION] = current

    parent = _parent_from_meta(params)
    links: list[Link] | None = None
    if parent is None:
        parent = context_api.get_current()
    else:
        # A link to the span current here (if any) when the remote parent is another one.
        ambient = trace.get_current_span().get_span_context()
        if (
            ambient.is_valid
            and ambient.span_id != trace.get_current_span(parent).get_span_context().span_id
        ):
            links = [Link(ambient)]
    start_attrs: dict[str, AttributeValue] = dict(attrs)
    start_attrs.update(recording_extra)
    request_id = getattr(_unwrap_dctx(dctx), "request_id", None)
    if _is_id(request_id):
        start_attrs[sc.JSONRPC_REQUEST_ID] = str(request_id)
    uri = _resource_uri(method, params)
    if uri is not None:
        start_attrs[sc.MCP_RESOURCE_URI] = uri
    if session_id is not None:
        start_attrs[sc.MCP_SESSION_ID] = session_id
    span = state.tracer.start_span(
        _span_name(method, target),
        context=parent,
        kind=SpanKind.SERVER,
        attributes=start_attrs,
        links=links,
    )
    if (
        state.capture_payloads
        and method == "tools/call"
        and _is_map(params)
        and span.is_recording()
    ):
        span.set_attribute(
            sc.GEN_AI_TOOL_CALL_ARGUMENTS,
            _payload(params.get("arguments") or {}, state.payload_max_bytes),
        )
    call = _Call(
        span=span,
        start=time.perf_counter(),
        method=method,
        attrs=attrs,
        histogram=state.server_duration,
        state=state,
        peer=peer,
        version_holder=holder,
        version_attr=version_attr,
    )
    return call, trace.set_span_in_context(span, parent)


def _capture(exc: BaseException, span: Span | None = None) -> bool:
    """Forward a handled exception to widgettrace's error sink (scope.capture_exception)."""
    try:
        from widgettrace.instrumentation import scope
    except ImportError:  # the scope module is optional at this layer
        logger.debug("widgettrace.instrumentation.scope unavailable; exception not forwarded")
        return False
    scope.capture_exception(exc, span=span)
    return True


def _inbound_exception(call: _Call, exc: BaseException) -> bool:
    """An exception mcp turns into a JSON-RPC error response (the app never sees it): report it.

    Returns whether it was forwarded (then it is already recorded on the span)."""
    if _is_cancellation(exc) or not isinstance(exc, Exception):
        return False
    if _is_mcp_error(exc) or type(exc).__name__ == "ValidationError":
        return False
    return _capture(exc, span=call.span)


def _inbound_wrapper(server_peer: bool) -> Callable[..., Any]:
    def wrapper(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        state = _state
        if state is None or not is_instrumentation_enabled():
            return wrapped(*args, **kwargs)
        return _traced_inbound(state, wrapped, instance, args, kwargs, server_peer)

    return wrapper


# Tool exceptions ---------------------------------------------------------------------------------


def _report_tool_exception(exc: BaseException) -> None:
    from mcp.server.mcpserver.exceptions import UnexpectedToolError

    # A crash arrives wrapped (UnexpectedToolError from the original); a ToolError the tool
    # raised on purpose is an anticipated failure (tool_error on the span, no error event).
    if isinstance(exc, UnexpectedToolError) and exc.__cause__ is not None:
        _capture(exc.__cause__)


async def _traced_call_tool(
    wrapped: Callable[..., Awaitable[Any]], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    try:
        return await wrapped(*args, **kwargs)
    except Exception as exc:
        with internal_errors("mcp.tool_exception"):
            _report_tool_exception(exc)
        raise


def _call_tool_wrapper(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    if _state is None or not is_instrumentation_enabled():
        return wrapped(*args, **kwargs)
    return _traced_call_tool(wrapped, args, kwargs)


# Sessions and transports -------------------------------------------------------------------------


def _dispatcher_init_wrapper(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    result = wrapped(*args, **kwargs)
    if _state is not None and _STREAM_TAGS:
        with internal_errors("mcp.dispatcher_init"):
            for stream in _bind(args, kwargs, ("read_stream", "write_stream")):
                entry = _STREAM_TAGS.get(id(stream))
                if entry is not None and entry[0] is stream:
                    _PEERS[instance] = dataclasses.replace(entry[1])
                    break
    return result


def _session_attrs(
    peer: _Peer | None, version: str | None, client_side: bool
) -> dict[str, AttributeValue]:
    attrs: dict[str, AttributeValue] = {}
    if peer is not None:
        peer.transport_attrs(attrs, client_side=client_side)
    if version is not None:
        attrs[sc.MCP_PROTOCOL_VERSION] = version
    return attrs


async def _traced_session_enter(
    wrapped: Callable[..., Awaitable[Any]],
    instance: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    with internal_errors("mcp.session_enter"):
        _SESSION_STARTS[instance] = time.perf_counter()
        peer = _peer_of(getattr(instance, "_dispatcher", None))
        if peer is not None:
            peer.session = weakref.ref(instance)
    return await wrapped(*args, **kwargs)


def _session_enter_wrapper(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    if _state is None:
        return wrapped(*args, **kwargs)
    return _traced_session_enter(wrapped, instance, args, kwargs)


async def _traced_session_exit(
    state: _State,
    wrapped: Callable[..., Awaitable[Any]],
    instance: Any,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    try:
        return await wrapped(*args, **kwargs)
    finally:
        with internal_errors("mcp.session_exit"):
            start = _SESSION_STARTS.pop(instance, None)
            if start is not None:
                peer = _peer_of(getattr(instance, "_dispatcher", None))
                attrs = _session_attrs(
                    peer, _str_or_none(getattr(instance, "_negotiated_version", None)), True
                )
                exc = args[1] if len(args) > 1 else kwargs.get("exc_val")
                if isinstance(exc, BaseException):
                    attrs[sc.ERROR_TYPE] = _error_of(exc)[0]
                state.client_session_duration.record(time.perf_counter() - start, attributes=attrs)


def _session_exit_wrapper(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    state = _state
    if state is None:
        return wrapped(*args, **kwargs)
    return _traced_session_exit(state, wrapped, instance, args, kwargs)


def _connection_for_loop_wrapper(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    connection = wrapped(*args, **kwargs)
    state = _state
    if state is not None:
        with internal_errors("mcp.server_session"):
            (outbound,) = _bind(args, kwargs, ("outbound",))
            peer = _peer_of(outbound)
            if peer is None:
                peer = _Peer()
                with contextlib.suppress(TypeError):
                    _PEERS[outbound] = peer
            peer.connection = weakref.ref(connection)
            start = time.perf_counter()

            def record() -> None:
                with internal_errors("mcp.server_session_end"):
                    attrs = _session_attrs(
                        peer, _str_or_none(getattr(connection, "protocol_version", None)), False
                    )
                    state.server_session_duration.record(
                        time.perf_counter() - start, attributes=attrs
                    )

            # The connection's exit stack unwinds when the serving loop ends: the session's end.
            connection.exit_stack.callback(record)
    return connection


def _http_transport_init_wrapper(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    result = wrapped(*args, **kwargs)
    if _state is not None:
        _NEW_HTTP_TRANSPORT.set(instance)
    return result


class _TaggingTransport(wrapt.ObjectProxy[Any]):
    """A transport context manager whose streams we remember (to know the transport later)."""

    def __init__(self, wrapped: Any, template: _Peer, http: bool) -> None:
        super().__init__(wrapped)
        self._self_template = template
        self._self_http = http
        self._self_ids: list[int] = []

    async def __aenter__(self) -> Any:
        token = _NEW_HTTP_TRANSPORT.set(None) if self._self_http else None
        try:
            streams = await self.__wrapped__.__aenter__()
            with internal_errors("mcp.transport_tag"):
                if self._self_http:
                    self._self_template.http_transport = _NEW_HTTP_TRANSPORT.get()
                self._tag(streams)
        finally:
            if token is not None:
                _NEW_HTTP_TRANSPORT.reset(token)
        return streams

    def _tag(self, streams: Any) -> None:
        if not isinstance(streams, tuple):
            return
        for item in streams:
            if isinstance(item, tuple):  # create_client_server_memory_streams: two pairs
                self._tag(item)
            else:
                _STREAM_TAGS[id(item)] = (item, self._self_template)
                self._self_ids.append(id(item))

    async def __aexit__(self, *exc: Any) -> Any:
        try:
            return await self.__wrapped__.__aexit__(*exc)
        finally:
            for key in self._self_ids:
                _STREAM_TAGS.pop(key, None)
            self._self_ids.clear()


def _address_of(url: Any) -> tuple[str | None, int | None]:
    if not isinstance(url, str):
        return None, None
    parts = urlsplit(url)
    port = parts.port
    if port is None and parts.scheme in ("http", "https"):
        port = 443 if parts.scheme == "https" else 80
    return parts.hostname, port


def _transport_factory(kind: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def decorate(factory: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(factory)
        def patched(*args: Any, **kwargs: Any) -> Any:
            cm = factory(*args, **kwargs)
            if _state is None:
                return cm
            template: _Peer | None = None
            with internal_errors("mcp.transport_factory"):
                if kind == "http":
                    host, port = _address_of(args[0] if args else kwargs.get("url"))
                    template = _Peer(
                        transport=_TRANSPORT_TCP,
                        protocol_name="http",
                        server_address=host,
                        server_port=port,
                    )
                elif kind == "pipe":
                    template = _Peer(transport=_TRANSPORT_PIPE)
                else:
                    template = _Peer(transport=_TRANSPORT_INPROC)
            if template is None:
                return cm
            return _TaggingTransport(
                cm, template, http=kind == "http" and factory.__name__ != "sse_client"
            )

        patched.__widgettrace_original__ = factory  # type: ignore[attr-defined]
        return patched

    return decorate


# (module defining it, function name, kind)
_TRANSPORT_FACTORIES: Final = (
    ("mcp.client.stdio", "stdio_client", "pipe"),
    ("mcp.server.stdio", "stdio_server", "pipe"),
    ("mcp.client.streamable_http", "streamable_http_client", "http"),
    ("mcp.client.sse", "sse_client", "http"),
    ("mcp.shared.memory", "create_client_server_memory_streams", "inproc"),
)

# (module, "Class.method", wrapper factory) for wrapt.
_WRAPS: Final[tuple[tuple[str, str, Callable[[], Callable[..., Any]]], ...]] = (
    (
        "mcp.shared.jsonrpc_dispatcher",
        "JSONRPCDispatcher.send_raw_request",
        lambda: _outbound_wrapper(True, False),
    ),
    (
        "mcp.shared.jsonrpc_dispatcher",
        "JSONRPCDispatcher.notify",
        lambda: _outbound_wrapper(False, False),
    ),
    (
        "mcp.shared.jsonrpc_dispatcher",
        "JSONRPCDispatcher.__init__",
        lambda: _dispatcher_init_wrapper,
    ),
    (
        "mcp.shared.direct_dispatcher",
        "DirectDispatcher._dispatch_request",
        lambda: _outbound_wrapper(True, True),
    ),
    (
        "mcp.shared.direct_dispatcher",
        "DirectDispatcher._dispatch_notify",
        lambda: _outbound_wrapper(False, True),
    ),
    ("mcp.server.runner", "ServerRunner._on_request", lambda: _inbound_wrapper(True)),
    ("mcp.server.runner", "ServerRunner._on_notify", lambda: _inbound_wrapper(True)),
    ("mcp.client.session", "ClientSession._on_request", lambda: _inbound_wrapper(False)),
    ("mcp.client.session", "ClientSession._on_notify", lambda: _inbound_wrapper(False)),
    ("mcp.client.session", "ClientSession.__aenter__", lambda: _session_enter_wrapper),
    ("mcp.client.session", "ClientSession.__aexit__", lambda: _session_exit_wrapper),
    ("mcp.server.connection", "Connection.for_loop", lambda: _connection_for_loop_wrapper),
    ("mcp.server.mcpserver.server", "MCPServer.call_tool", lambda: _call_tool_wrapper),
    (
        "mcp.server._otel",
        "OpenTelemetryMiddleware.__call__",
        lambda: _builtin_middleware_passthrough,
    ),
    (
        "mcp.client.streamable_http",
        "StreamableHTTPTransport.__init__",
        lambda: _http_transport_init_wrapper,
    ),
)

# Module attributes replaced while instrumented: (module, name, original, replacement).
_replaced: list[tuple[Any, str, Any, Any]] = []


def _replace(module: Any, name: str, replacement: Any) -> None:
    original = getattr(module, name)
    setattr(module, name, replacement)
    _replaced.append((module, name, original, replacement))


def _patch_transport_factories() -> None:
    import importlib

    for module_name, attr, kind in _TRANSPORT_FACTORIES:
        module = importlib.import_module(module_name)
        original = getattr(module, attr)
        patched = _transport_factory(kind)(original)
        # Every module that imported the name (``from mcp.client.stdio import stdio_client``,
        # mcp's own and the application's) holds the original object: replace those module
        # globals too (identity, not name; restored by identity on uninstrument).
        for loaded in list(sys.modules.values()):
            namespace = getattr(loaded, "__dict__", None)
            if not isinstance(namespace, dict):
                continue
            for name, value in list(namespace.items()):
                if value is original:
                    _replace(loaded, name, patched)


def _disable_builtin() -> None:
    """Switch off mcp's own OpenTelemetry spans and injection (ours replace them)."""
    import mcp.shared.jsonrpc_dispatcher as jd

    _replace(jd, "otel_span", _builtin_span_shim)
    _replace(jd, "inject_trace_context", _builtin_inject_shim)


def _restore_replaced() -> None:
    while _replaced:
        module, name, original, replacement = _replaced.pop()
        if getattr(module, name, None) is replacement:
            setattr(module, name, original)


def _unwrap_all() -> None:
    import importlib

    for module_name, path, _factory in _WRAPS:
        with internal_errors("mcp.unwrap"):
            owner: Any = importlib.import_module(module_name)
            *parents, attr = path.split(".")
            for part in parents:
                owner = getattr(owner, part)
            current = vars(owner).get(attr)
            if isinstance(current, wrapt.FunctionWrapper):
                # From the class dict, not getattr: a wrapped classmethod must come back as the
                # classmethod object, not as a method bound to this class.
                setattr(owner, attr, current.__wrapped__)


class McpInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Traces MCP messages on both peers of the ``mcp`` SDK (see the module docstring).

    ``instrument(tracer_provider=..., meter_provider=..., capture_payloads=...,
    payload_max_bytes=...)``; the last two default to ``WIDGETTRACE_CAPTURE_PAYLOADS`` /
    ``WIDGETTRACE_PAYLOAD_MAX_BYTES``.
    """

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _instrument(self, **kwargs: Any) -> None:
        global _state
        import mcp.client._memory
        import mcp.client.client
        import mcp.client.session
        import mcp.client.streamable_http
        import mcp.server._otel
        import mcp.server.connection
        import mcp.server.mcpserver.server
        import mcp.server.runner
        import mcp.shared.direct_dispatcher
        import mcp.shared.jsonrpc_dispatcher  # noqa: F401  (fail early when mcp is missing)

        capture, max_bytes = _payload_settings(kwargs)
        tracer = trace.get_tracer(
            __name__,
            __version__,
            kwargs.get("tracer_provider"),
            schema_url="https://opentelemetry.io/schemas/1.40.0",
        )
        meter = get_meter(__name__, __version__, kwargs.get("meter_provider"))

        def histogram(name: str, description: str) -> Histogram:
            return meter.create_histogram(
                name,
                unit="s",
                description=description,
                explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS),
            )

        _state = _State(
            tracer=tracer,
            client_duration=histogram(
                sc.MCP_CLIENT_OPERATION_DURATION,
                "The duration of the MCP request or notification as observed on the sender "
                "from the time it was sent until the response or ack is received.",
            ),
            server_duration=histogram(
                sc.MCP_SERVER_OPERATION_DURATION,
                "MCP request or notification duration as observed on the receiver from the time "
                "it was received until the result or ack is sent.",
            ),
            client_session_duration=histogram(
                sc.MCP_CLIENT_SESSION_DURATION,
                "The duration of the MCP session as observed on the MCP client.",
            ),
            server_session_duration=histogram(
                sc.MCP_SERVER_SESSION_DURATION,
                "The duration of the MCP session as observed on the MCP server.",
            ),
            capture_payloads=capture,
            payload_max_bytes=max_bytes,
        )
        try:
            for module_name, path, factory in _WRAPS:
                wrapt.wrap_function_wrapper(module_name, path, factory())
            _disable_builtin()
            _patch_transport_factories()
        except Exception:
            # A partial patch would be worse than none: undo it and let the app run untraced.
            self._uninstrument()
            raise

    def _uninstrument(self, **kwargs: Any) -> None:
        global _state
        _state = None
        _unwrap_all()
        _restore_replaced()
        _STREAM_TAGS.clear()


def _payload_settings(kwargs: Mapping[str, Any]) -> tuple[bool, int]:
    capture = kwargs.get("capture_payloads")
    max_bytes = kwargs.get("payload_max_bytes")
    if capture is None or max_bytes is None:
        try:
            from widgettrace.instrumentation._config import get_settings

            settings = get_settings()
            default_capture, default_max = settings.capture_payloads, settings.payload_max_bytes
        except Exception:
            logger.debug("widgettrace settings unavailable; payload capture off", exc_info=True)
            default_capture, default_max = False, 4096
        if capture is None:
            capture = default_capture
        if max_bytes is None:
            max_bytes = default_max
    return bool(capture), int(max_bytes)
