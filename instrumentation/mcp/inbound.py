"""SERVER spans: every request and notification a peer receives; tool crashes reported."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.trace import Link, Span, SpanKind
from opentelemetry.util.types import AttributeValue

from widgettrace.instrumentation import semconv as sc
from widgettrace.instrumentation._guard import guarded, internal_errors, logger
from widgettrace.instrumentation.mcp import _common
from widgettrace.instrumentation.mcp._common import (
    _INBOUND_ATTRS_KEY,
    _PEERS,
    _PROGRESS,
    _TRANSPORT_INPROC,
    _TRANSPORT_TCP,
    _bind,
    _client_name_of,
    _detach,
    _is_cancellation,
    _is_id,
    _is_map,
    _Peer,
    _peer_of,
    _State,
    _str_or_none,
)
from widgettrace.instrumentation.mcp.attributes import (
    _Call,
    _fail,
    _is_mcp_error,
    _method_attrs,
    _resource_uri,
    _sentry_names,
    _span_name,
    _succeed,
)
from widgettrace.instrumentation.mcp.propagation import _parent_from_meta
from widgettrace.instrumentation.mcp.redaction import _record_arguments

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
        # mcp's SSE transport posts to a URL with the session in the query (as Sentry's SDK checks).
        mcp_transport = "sse" if b"session_id=" in (scope.get("query_string") or b"") else "http"
        if extra is not None:
            extra[sc.MCP_TRANSPORT] = mcp_transport
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
                peer.mcp_transport = mcp_transport
                peer.protocol_name = "http"
                peer.protocol_version = http_version
        return peer
    if peer is not None:
        peer.transport_attrs(attrs, client_side=False)
        if extra is not None and peer.mcp_transport is not None:
            extra[sc.MCP_TRANSPORT] = peer.mcp_transport
        return peer
    transport = getattr(inner, "transport", None)
    if getattr(transport, "kind", None) == "direct":
        attrs[sc.NETWORK_TRANSPORT] = _TRANSPORT_INPROC
        if extra is not None:
            extra[sc.MCP_TRANSPORT] = "direct"
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
    client_name = _inbound_client_name(instance, method, params, server_peer, holder)
    if client_name is not None:
        start_attrs[sc.MCP_CLIENT_NAME] = client_name
    # The receiver of a notification knows who sent it: the other role.
    _sentry_names(start_attrs, method, sender_is_server=not server_peer)
    span = state.tracer.start_span(
        _span_name(method, target),
        context=parent,
        kind=SpanKind.SERVER,
        attributes=start_attrs,
        links=links,
    )
    _record_arguments(span, method, params, state.capture_payloads, state.payload_max_bytes)
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
    # The span's attributes (a superset of the metric ones) for what the handler sends.
    return call, context_api.set_value(
        _INBOUND_ATTRS_KEY, start_attrs, trace.set_span_in_context(span, parent)
    )


def _inbound_client_name(
    instance: Any, method: str, params: Any, server_peer: bool, holder: Any
) -> str | None:
    """Sentry's mcp.client.name: the client's clientInfo name, on either peer."""
    if not server_peer:
        return _str_or_none(getattr(getattr(instance, "_client_info", None), "name", None))
    if method == "initialize" and _is_map(params):
        info = params.get("clientInfo")
        return _str_or_none(info.get("name")) if _is_map(info) else None
    return _client_name_of(holder)


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
        state = _common._state
        if state is None or not is_instrumentation_enabled():
            return wrapped(*args, **kwargs)
        return _traced_inbound(state, wrapped, instance, args, kwargs, server_peer)

    return wrapper


# Tool exceptions ---------------------------------------------------------------------------------


def _report_tool_exception(exc: BaseException) -> None:
    from mcp.server.mcpserver import exceptions

    # A crash arrives wrapped (from the original); a ToolError the tool raised on purpose is an
    # anticipated failure (tool_error on the span, no error event). mcp >= 2.1 wraps a crash in
    # UnexpectedToolError; mcp 2.0 wraps everything in a plain ToolError, its own included.
    cause = exc.__cause__
    if cause is None:
        return
    unexpected = getattr(exceptions, "UnexpectedToolError", None)
    if unexpected is not None:
        if isinstance(exc, unexpected):
            _capture(cause)
    elif isinstance(exc, exceptions.ToolError) and not isinstance(cause, exceptions.ToolError):
        _capture(cause)


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
    if _common._state is None or not is_instrumentation_enabled():
        return wrapped(*args, **kwargs)
    return _traced_call_tool(wrapped, args, kwargs)
