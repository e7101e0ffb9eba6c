"""Shared state of the MCP instrumentor: settings, what we know per connection, small helpers."""

from __future__ import annotations

import asyncio
import dataclasses
import weakref
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any, Final, TypeGuard

from opentelemetry import context as context_api
from opentelemetry.metrics import Histogram
from opentelemetry.trace import Span, Tracer
from opentelemetry.util.types import AttributeValue

from widgettrace.instrumentation import semconv as sc
from widgettrace.instrumentation._guard import guarded

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
    # Sentry's mcp.transport: the implementation (stdio, http, sse, memory, direct).
    mcp_transport: str | None = None
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

    def client_name(self) -> str | None:
        """The MCP client's clientInfo name: ours on a client, the peer's on a server."""
        session = self.session() if self.session is not None else None
        if session is not None:
            return _str_or_none(getattr(getattr(session, "_client_info", None), "name", None))
        return _client_name_of(self.connection() if self.connection is not None else None)

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
# In the OTel context while a received message is handled: its span attributes, for what the
# handler sends on a channel that knows nothing of its connection (the 2026-07-28 HTTP exchange).
_INBOUND_ATTRS_KEY: Final = context_api.create_key("widgettrace-mcp-inbound-attrs")
# What an outbound message inherits from the inbound one it is sent while handling.
_INHERITED_ATTRS: Final = (
    sc.NETWORK_TRANSPORT,
    sc.NETWORK_PROTOCOL_NAME,
    sc.NETWORK_PROTOCOL_VERSION,
    sc.MCP_PROTOCOL_VERSION,
)
# The same for the span only (Sentry's names are not metric dimensions).
_INHERITED_SPAN_ATTRS: Final = (sc.MCP_TRANSPORT, sc.MCP_CLIENT_NAME)
_NEW_HTTP_TRANSPORT: ContextVar[Any] = ContextVar("widgettrace_mcp_http_transport", default=None)


def _client_name_of(connection: Any) -> str | None:
    """The clientInfo name a server-side mcp ``Connection`` holds (after the handshake)."""
    info = getattr(getattr(connection, "client_params", None), "client_info", None)
    return _str_or_none(getattr(info, "name", None))


def _peer_of(dispatcher: Any) -> _Peer | None:
    try:
        peer = _PEERS.get(dispatcher)
    except TypeError:  # not weak-referenceable: a dispatcher we do not know
        return None
    if peer is None and type(dispatcher).__name__ == "DirectDispatcher":
        peer = _Peer(transport=_TRANSPORT_INPROC, mcp_transport="direct")
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


@guarded("mcp.server_detach", None)
def _detach(token: object) -> None:
    context_api.detach(token)  # type: ignore[arg-type]
