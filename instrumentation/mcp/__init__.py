"""OpenTelemetry instrumentation for the official ``mcp`` SDK (>= 2.0, < 3), per OTel's conventions.

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
* context propagation through ``params._meta`` for requests *and* notifications that have
  params: the W3C keys ``traceparent``, ``tracestate``, ``baggage`` only, whatever the global
  propagator (see :mod:`.propagation`); no params object is created where a message had none. The
  receiver parents its span on ``_meta`` and links the ambient context (the HTTP server span);
  without a usable ``_meta`` context the ambient context is the parent (a new trace when there is
  none). Malformed ``_meta`` (wrong types, garbage, huge values) is ignored, never an error.
* attributes ``mcp.method.name``, ``jsonrpc.request.id``, ``gen_ai.tool.name`` (+
  ``gen_ai.operation.name=execute_tool``), ``gen_ai.prompt.name``, ``mcp.resource.uri``,
  ``mcp.session.id`` (only where the transport has sessions: streamable HTTP handshake era),
  ``mcp.protocol.version``, ``network.transport`` (``pipe`` stdio, ``tcp`` HTTP/SSE, ``inproc``
  memory streams and ``DirectDispatcher``), ``network.protocol.name/version``,
  ``server.address/port`` (client), ``client.address/port`` (server over HTTP).
* Sentry's names beside them (getsentry/sentry-conventions): ``mcp.tool.name``,
  ``mcp.prompt.name``, ``mcp.request.id``, ``mcp.transport``, ``mcp.client.name``, and
  ``sentry.op`` = ``mcp.notification.client_to_server`` / ``server_to_client`` on notifications.
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
exceptions and messages are those of the SDK (the only change on the wire is the W3C keys in
``_meta``; ``tests/test_mcp_wire.py`` compares the bytes with and without the instrumentor).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Collection, Mapping
from importlib import metadata
from typing import Any, Final

import wrapt
from opentelemetry import trace
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.metrics import Histogram, get_meter

from widgettrace.instrumentation import semconv as sc
from widgettrace.instrumentation._guard import internal_errors, logger
from widgettrace.instrumentation.mcp import _common
from widgettrace.instrumentation.mcp._common import _STREAM_TAGS, _State
from widgettrace.instrumentation.mcp.inbound import _call_tool_wrapper, _inbound_wrapper
from widgettrace.instrumentation.mcp.outbound import (
    _builtin_inject_shim,
    _builtin_middleware_passthrough,
    _builtin_span_shim,
    _outbound_wrapper,
)
from widgettrace.instrumentation.mcp.redaction import redact
from widgettrace.instrumentation.mcp.transports import (
    _TRANSPORT_FACTORIES,
    _connection_for_loop_wrapper,
    _dispatcher_init_wrapper,
    _http_transport_init_wrapper,
    _session_enter_wrapper,
    _session_exit_wrapper,
    _transport_factory,
)

__all__ = ["DURATION_BUCKETS", "McpInstrumentor", "redact"]

_instruments: Final = ("mcp >= 2.0, < 3",)

try:
    __version__ = metadata.version("widgettrace")
except metadata.PackageNotFoundError:  # pragma: no cover - source tree without install
    __version__ = "0.0.0"

#: Explicit bucket boundaries the conventions give for all four MCP duration histograms.
DURATION_BUCKETS: Final = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)

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
    # The 2026-07-28 HTTP exchange: a handler's notifications ride the request's SSE response.
    (
        "mcp.server._streamable_http_modern",
        "_SingleExchangeDispatchContext.notify",
        lambda: _outbound_wrapper(False, False),
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

#: Instrumented before mcp was imported: "pending" until the import hook patches it; "hooked"
#: once the (never removed) hook is registered; "patched" while mcp's functions are wrapped.
_lazy: dict[str, bool] = {"pending": False, "hooked": False, "patched": False}

# Module attributes replaced while instrumented: (module, name, original, replacement).
_replaced: list[tuple[Any, str, Any, Any]] = []


def _replace(module: Any, name: str, replacement: Any) -> None:
    original = getattr(module, name)
    setattr(module, name, replacement)
    _replaced.append((module, name, original, replacement))


def _patch_transport_factories() -> None:
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

        _common._state = _State(
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
        if "mcp" in sys.modules:
            self._patch()
        else:
            # Not imported yet: patch when the application imports it. An app that never uses
            # MCP then never loads mcp (about 48,000 objects the garbage collector would walk in
            # every full collection, which tripled its pause).
            _lazy["pending"] = True
            if not _lazy["hooked"]:
                _lazy["hooked"] = True
                wrapt.register_post_import_hook(self._patch_on_import, "mcp")

    def _patch_on_import(self, _module: Any) -> None:
        if not _lazy["pending"] or _common._state is None:
            return
        _lazy["pending"] = False
        with internal_errors("mcp.instrument_on_import"):
            self._patch()

    def _patch(self) -> None:
        import mcp.client._memory
        import mcp.client.client
        import mcp.client.session
        import mcp.client.streamable_http
        import mcp.server._otel
        import mcp.server._streamable_http_modern
        import mcp.server.connection
        import mcp.server.mcpserver.server
        import mcp.server.runner
        import mcp.shared.direct_dispatcher
        import mcp.shared.jsonrpc_dispatcher  # noqa: F401  (fail early when mcp is missing)

        _lazy["patched"] = True
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
        _common._state = None
        _lazy["pending"] = False
        if not _lazy["patched"]:
            return  # mcp was never imported: nothing to undo (and nothing to import for it)
        _lazy["patched"] = False
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
