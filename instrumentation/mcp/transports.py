"""What each connection is (stdio, HTTP, SSE, memory) and its session durations."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

import wrapt
from opentelemetry.util.types import AttributeValue

from widgettrace.instrumentation import semconv as sc
from widgettrace.instrumentation._guard import internal_errors
from widgettrace.instrumentation.mcp import _common
from widgettrace.instrumentation.mcp._common import (
    _NEW_HTTP_TRANSPORT,
    _PEERS,
    _SESSION_STARTS,
    _STREAM_TAGS,
    _TRANSPORT_INPROC,
    _TRANSPORT_PIPE,
    _TRANSPORT_TCP,
    _bind,
    _Peer,
    _peer_of,
    _State,
    _str_or_none,
)
from widgettrace.instrumentation.mcp.attributes import _error_of

# Sessions and transports -------------------------------------------------------------------------


def _dispatcher_init_wrapper(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    result = wrapped(*args, **kwargs)
    if _common._state is not None and _STREAM_TAGS:
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
    if _common._state is None:
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
    state = _common._state
    if state is None:
        return wrapped(*args, **kwargs)
    return _traced_session_exit(state, wrapped, instance, args, kwargs)


def _connection_for_loop_wrapper(
    wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    connection = wrapped(*args, **kwargs)
    state = _common._state
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
    if _common._state is not None:
        _NEW_HTTP_TRANSPORT.set(instance)
    return result


# wrapt's stubs make ObjectProxy generic, but subscripting it at run time needs wrapt >= 2.2
# (mcp's own lock file pins 1.17.3): the subscripted form is for the type checker only.
if TYPE_CHECKING:
    _Proxy = wrapt.ObjectProxy[Any]
else:
    _Proxy = wrapt.ObjectProxy


class _TaggingTransport(_Proxy):
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
            if _common._state is None:
                return cm
            template: _Peer | None = None
            with internal_errors("mcp.transport_factory"):
                if kind == "http":
                    host, port = _address_of(args[0] if args else kwargs.get("url"))
                    template = _Peer(
                        transport=_TRANSPORT_TCP,
                        mcp_transport="sse" if factory.__name__ == "sse_client" else "http",
                        protocol_name="http",
                        server_address=host,
                        server_port=port,
                    )
                elif kind == "pipe":
                    template = _Peer(transport=_TRANSPORT_PIPE, mcp_transport="stdio")
                else:
                    template = _Peer(transport=_TRANSPORT_INPROC, mcp_transport="memory")
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
