"""Fuzzing the MCP instrumentation with malformed messages and ``params._meta``.

Raw JSON-RPC frames go straight into a real server (memory streams, no client session to tidy
them up). For every generated message the server's answer must be byte-for-byte what it is
without instrumentation, the guard must not have swallowed anything (the suite's autouse fixture
fails the test otherwise), and the server span must take a valid ``traceparent`` as parent and
start a new trace for anything else.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from mcp import types
from mcp.server._otel import OpenTelemetryMiddleware
from mcp.shared.memory import create_client_server_memory_streams
from mcp.shared.message import SessionMessage
from mcp_servers.widgets import build_server
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from widgettrace.instrumentation import mcp as mcp_instr
from widgettrace.instrumentation.mcp import McpInstrumentor
from widgettrace.instrumentation.mcp import propagation as mcp_propagation
from widgettrace.instrumentation.mcp import redaction as mcp_redaction

HEX = "0123456789abcdef"
valid_traceparent = st.builds(
    lambda t, s, f: f"00-{t}-{s}-{f}",
    st.text(HEX, min_size=32, max_size=32).filter(lambda v: set(v) != {"0"}),
    st.text(HEX, min_size=16, max_size=16).filter(lambda v: set(v) != {"0"}),
    st.sampled_from(["00", "01"]),
)
json_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=40)
)
json_value = st.recursive(
    json_scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
garbage = st.one_of(
    json_value,
    valid_traceparent,
    st.text(max_size=60),
    st.just("00-" + "f" * 32 + "-" + "f" * 16 + "-01" + "x" * 50_000),  # huge
    st.just("z" * 100_000),
    st.builds(lambda n: ",".join(f"k{i}=v{i}" for i in range(n)), st.integers(0, 400)),
)
meta_keys = st.sampled_from(
    ["traceparent", "tracestate", "baggage", "progressToken", "sentry-trace", "x", ""]
)
meta = st.one_of(
    json_value,
    st.dictionaries(meta_keys, garbage, max_size=5),
    st.builds(lambda tp: {"traceparent": tp}, valid_traceparent),
)
methods = st.one_of(
    st.sampled_from(
        ["tools/call", "tools/list", "prompts/get", "resources/read", "ping", "logging/setLevel"]
    ),
    st.text(max_size=30),
)


async def _exchange(frames: list[types.JSONRPCMessage], builtin: bool = True) -> list[str]:
    """Handshake, then ``frames``; the server's answers as JSON (ids of requests in order).

    ``builtin=False`` drops mcp's own OpenTelemetryMiddleware: the application's behaviour with
    no tracing at all, the baseline the instrumentation must not change.
    """
    server = build_server()._lowlevel_server
    if not builtin:
        server.middleware = [
            m for m in server.middleware if not isinstance(m, OpenTelemetryMiddleware)
        ]
    answers: list[str] = []
    async with create_client_server_memory_streams() as (client, server_streams):
        read, write = client
        async with anyio.create_task_group() as tg:
            tg.start_soon(
                lambda: server.run(
                    server_streams[0], server_streams[1], server.create_initialization_options()
                )
            )
            init = types.JSONRPCRequest(
                jsonrpc="2.0",
                id="init",
                method="initialize",
                params={
                    "protocolVersion": "2025-11-25",
                    "capabilities": {},
                    "clientInfo": {"name": "fuzz", "version": "0"},
                },
            )
            await write.send(SessionMessage(init))
            await read.receive()
            await write.send(
                SessionMessage(
                    types.JSONRPCNotification(jsonrpc="2.0", method="notifications/initialized")
                )
            )
            expected = 0
            # A closing ping: answered after the frames before it were dispatched, so spawned
            # notification handlers have run by the time it comes back.
            sentinel = types.JSONRPCRequest(jsonrpc="2.0", id="sentinel", method="ping")
            for frame in [*frames, sentinel]:
                await write.send(SessionMessage(frame))
                if isinstance(frame, types.JSONRPCRequest):
                    expected += 1
            with anyio.fail_after(5):
                for _ in range(expected):
                    item = await read.receive()
                    assert isinstance(item, SessionMessage)
                    answers.append(item.message.model_dump_json(by_alias=True, exclude_none=True))
            await write.aclose()
            tg.cancel_scope.cancel()
    return sorted(answers)


def _frames(method: str, params: Any, as_notification: bool) -> list[types.JSONRPCMessage]:
    if as_notification:
        return [types.JSONRPCNotification(jsonrpc="2.0", method=method, params=params)]
    return [types.JSONRPCRequest(jsonrpc="2.0", id=7, method=method, params=params)]


@settings(
    max_examples=30,
    deadline=None,
    # No shrinking: each example runs two real sessions; a failure still prints its input.
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    method=methods,
    meta_value=meta,
    arguments=st.dictionaries(st.text(max_size=8), json_value, max_size=3),
    as_notification=st.booleans(),
)
def test_malformed_messages_and_meta(
    method: str, meta_value: Any, arguments: dict[str, Any], as_notification: bool
) -> None:
    params: dict[str, Any] = {"name": "add", "arguments": arguments, "_meta": meta_value}
    frames = _frames(method, params, as_notification)
    plain = anyio.run(_exchange, frames, False)

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrumentor = McpInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        traced = anyio.run(_exchange, frames)
    finally:
        instrumentor.uninstrument()
    assert traced == plain  # the instrumentation never changes an answer

    servers = [
        s
        for s in exporter.get_finished_spans()
        if s.kind.name == "SERVER"
        and s.attributes
        and s.attributes.get("mcp.method.name") == method
        # not the handshake's or the closing ping's span
        and s.attributes.get("jsonrpc.request.id") == (None if as_notification else "7")
    ]
    if method == "notifications/progress":
        return
    parent = mcp_propagation._parent_from_meta(params)
    if parent is not None and meta_value["traceparent"].endswith("-00"):
        assert servers == []  # a valid, unsampled parent: parent-based sampling drops it
        return
    assert len(servers) == 1
    span = servers[0]
    if parent is None:
        assert span.parent is None  # garbage _meta: a new trace
    else:
        tp = meta_value["traceparent"]
        assert span.parent is not None and span.parent.is_remote
        assert format(span.parent.span_id, "016x") == tp.split("-")[2]


anything = st.recursive(
    st.one_of(json_scalar, st.binary(max_size=10), st.builds(object)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(inner, inner),
        st.dictionaries(st.one_of(st.text(max_size=5), st.integers()), inner, max_size=3),
    ),
    max_leaves=10,
)


@settings(max_examples=200, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(params=anything, carrier=st.dictionaries(st.text(max_size=5), st.text(max_size=5)))
def test_meta_helpers_never_raise(params: Any, carrier: dict[str, str]) -> None:
    mcp_propagation._parent_from_meta(params)
    mcp_propagation._parent_from_meta({"_meta": params})
    out = mcp_propagation._with_meta(params, carrier)
    if (
        isinstance(params, dict)
        and params  # absent or empty params get no _meta (mcp leaves empty ones off the wire)
        and carrier
        and (params.get("_meta") is None or isinstance(params.get("_meta"), dict))
    ):
        assert out["_meta"] == {**(params.get("_meta") or {}), **carrier}
        assert out is not params  # never mutates the caller's dict
    elif not params:
        assert out is params
    json.dumps(mcp_instr.redact(params))
    assert len(mcp_redaction._payload(params, 64).encode()) <= 64 + len("...[truncated]")


def test_builtin_tracing_breaks_on_non_string_baggage_ours_does_not() -> None:
    """Found by the fuzzer: mcp 2.3.0's own middleware raises AttributeError on a non-string
    ``_meta.baggage`` and the tool call fails; with our instrumentation it succeeds."""
    params = {"name": "add", "arguments": {"a": 1, "b": 2}, "_meta": {"baggage": 1.5}}
    frames = _frames("tools/call", params, as_notification=False)
    with_builtin = [a for a in anyio.run(_exchange, frames) if '"id":7' in a]
    assert '"error"' in with_builtin[0]
    instrumentor = McpInstrumentor()
    instrumentor.instrument(tracer_provider=TracerProvider())
    try:
        ours = [a for a in anyio.run(_exchange, frames) if '"id":7' in a]
    finally:
        instrumentor.uninstrument()
    assert '"result"' in ours[0] and '"isError":false' in ours[0].replace(" ", "")
