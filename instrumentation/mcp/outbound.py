"""CLIENT spans: every request and notification a peer sends (JSON-RPC and direct dispatch)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.trace import INVALID_SPAN, Span, SpanKind
from opentelemetry.util.types import AttributeValue

from widgettrace.instrumentation import semconv as sc
from widgettrace.instrumentation._guard import guarded, internal_errors
from widgettrace.instrumentation.mcp import _common
from widgettrace.instrumentation.mcp._common import (
    _INBOUND_ATTRS_KEY,
    _INHERITED_ATTRS,
    _INHERITED_SPAN_ATTRS,
    _OUTBOUND_SPAN,
    _PROGRESS,
    _bind,
    _is_id,
    _is_map,
    _Peer,
    _peer_of,
    _rebind,
    _State,
    _str_or_none,
)
from widgettrace.instrumentation.mcp.attributes import (
    _Call,
    _fail,
    _meta_version,
    _method_attrs,
    _progress_event,
    _resource_uri,
    _sentry_names,
    _span_name,
    _succeed,
)
from widgettrace.instrumentation.mcp.propagation import _inject, _with_meta
from widgettrace.instrumentation.mcp.redaction import _record_arguments


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
    inbound: Mapping[Any, Any] | None = None
    if peer is not None:
        peer.transport_attrs(attrs, client_side=True)
    else:
        inbound = _inherit_inbound(attrs)
    version = _meta_version(params)
    if version is None and peer is not None:
        version = peer.mcp_version()
    if version is None:
        # Sent while handling a request on a connection with no handshake (2026-07-28 stdio):
        # the version the request carried.
        handled = context_api.get_value(_INBOUND_ATTRS_KEY)
        if _is_map(handled):
            version = _str_or_none(handled.get(sc.MCP_PROTOCOL_VERSION))
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
    _sentry_outbound(start_attrs, method, dispatcher, peer, inbound)
    span = state.tracer.start_span(
        _span_name(method, target), kind=SpanKind.CLIENT, attributes=start_attrs
    )
    _record_arguments(span, method, params, state.capture_payloads, state.payload_max_bytes)
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


def _sentry_outbound(
    start_attrs: dict[str, AttributeValue],
    method: str,
    dispatcher: Any,
    peer: _Peer | None,
    inbound: Mapping[Any, Any] | None,
) -> None:
    """Sentry's names on a CLIENT span: transport, client name, aliases, notification op."""
    sender_is_server: bool | None = None
    if peer is not None:
        if peer.mcp_transport is not None:
            start_attrs[sc.MCP_TRANSPORT] = peer.mcp_transport
        name = peer.client_name()
        if name is not None:
            start_attrs[sc.MCP_CLIENT_NAME] = name
        if peer.session is not None:
            sender_is_server = False
        elif peer.connection is not None:
            sender_is_server = True
    elif inbound is not None:
        for key in _INHERITED_SPAN_ATTRS:
            value = inbound.get(key)
            if value is not None:
                start_attrs[key] = value
    if type(dispatcher).__name__ == "_SingleExchangeDispatchContext":
        sender_is_server = True  # the 2026-07-28 HTTP exchange: only servers send through it
    _sentry_names(start_attrs, method, sender_is_server)


def _inherit_inbound(attrs: dict[str, AttributeValue]) -> Mapping[Any, Any] | None:
    """Transport and protocol of the message being handled, for a sender we know nothing of.

    The 2026-07-28 HTTP exchange sends a handler's notifications (``notifications/message``,
    ``subscriptions/listen`` events) through a per-request context, not a dispatcher we tagged:
    they travel on the same HTTP exchange as the request being handled.
    """
    inbound = context_api.get_value(_INBOUND_ATTRS_KEY)
    if not _is_map(inbound):
        return None
    for key in _INHERITED_ATTRS:
        value = inbound.get(key)
        if value is not None:
            attrs[key] = value
    return inbound


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
        state = _common._state
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
            span.set_attributes({sc.JSONRPC_REQUEST_ID: rid, sc.MCP_REQUEST_ID: rid})


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
