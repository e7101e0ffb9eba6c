"""Unit tests of widgettrace's propagators: sentry-trace, W3C, merged baggage, garbage input."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sentry_sdk
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry import baggage, trace
from opentelemetry.context import Context, attach, detach
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import Getter, Setter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from widgettrace.exporters.propagation import (
    SENTRY_SDK_OPTIONS,
    MergingCompositePropagator,
    SentryPropagator,
    build_propagator,
    default_propagator,
    dynamic_sampling_context,
    incoming_sentry_baggage,
)
from widgettrace.instrumentation._config import reset_settings

TRACE_A = "0af7651916cd43dd8448eb211c80319c"
SPAN_A = "b7ad6b7169203331"
TRACE_B = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_B = "00f067aa0ba902b7"


class ListSetter(Setter[list[tuple[str, str]]]):
    """Appends, like gRPC metadata or raw ASGI header lists: repeated writes show."""

    def set(self, carrier: list[tuple[str, str]], key: str, value: str) -> None:
        carrier.append((key, value))


class MultiGetter(Getter[dict[str, list[str]]]):
    """A carrier holding every value of a repeated header, like Starlette's getlist."""

    def get(self, carrier: dict[str, list[str]], key: str) -> list[str] | None:
        return carrier.get(key)

    def keys(self, carrier: dict[str, list[str]]) -> list[str]:
        return list(carrier)


@pytest.fixture
def tracer() -> trace.Tracer:
    return TracerProvider(sampler=ParentBased(ALWAYS_ON)).get_tracer("test")


@pytest.fixture(autouse=True)
def _fresh_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("OTEL_TRACES_SAMPLER", "SENTRY_TRACES_SAMPLE_RATE"):
        monkeypatch.delenv(name, raising=False)
    reset_settings()
    yield
    reset_settings()


def remote(trace_id: str, span_id: str, sampled: bool = True) -> Context:
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    span_context = SpanContext(
        int(trace_id, 16), int(span_id, 16), is_remote=True, trace_flags=flags
    )
    return trace.set_span_in_context(NonRecordingSpan(span_context))


def ids(context: Context) -> tuple[str, str, bool, bool]:
    span_context = trace.get_current_span(context).get_span_context()
    return (
        f"{span_context.trace_id:032x}",
        f"{span_context.span_id:016x}",
        span_context.trace_flags.sampled,
        span_context.is_remote,
    )


def baggage_members(value: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for member in value.split(","):
        key, val = member.split("=", 1)
        assert key not in out, f"repeated baggage key {key} in {value}"
        out[key] = val
    return out


# --- extract ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flag", "expected"),
    [("-1", True), ("-0", False), ("", True)],
)
def test_extract_sentry_trace_alone(flag: str, expected: bool) -> None:
    context = default_propagator().extract({"sentry-trace": f"{TRACE_A}-{SPAN_A}{flag}"}, Context())
    assert ids(context) == (TRACE_A, SPAN_A, expected, True)


def test_deferred_sentry_trace_follows_sentry_sampled_baggage() -> None:
    carrier = {"sentry-trace": f"{TRACE_A}-{SPAN_A}", "baggage": "sentry-sampled=false"}
    assert ids(default_propagator().extract(carrier, Context()))[2] is False


def test_w3c_wins_when_both_agree() -> None:
    carrier = {
        "traceparent": f"00-{TRACE_A}-{SPAN_B}-01",
        "sentry-trace": f"{TRACE_A}-{SPAN_A}-1",
    }
    assert ids(default_propagator().extract(carrier, Context())) == (TRACE_A, SPAN_B, True, True)


def test_w3c_wins_when_sentry_trace_names_another_trace() -> None:
    # The known failure: Sentry's stdlib patch adds a sentry-trace unrelated to the OTel span.
    carrier = {
        "traceparent": f"00-{TRACE_A}-{SPAN_A}-01",
        "sentry-trace": f"{TRACE_B}-{SPAN_B}-0",
    }
    for propagator in (default_propagator(), build_propagator("sentry,tracecontext")):
        assert ids(propagator.extract(carrier, Context())) == (TRACE_A, SPAN_A, True, True)


def test_sentry_trace_used_when_traceparent_is_garbage() -> None:
    carrier = {"traceparent": "00-zz-yy-01", "sentry-trace": f"{TRACE_A}-{SPAN_A}-1"}
    assert ids(default_propagator().extract(carrier, Context())) == (TRACE_A, SPAN_A, True, True)


def test_first_valid_of_repeated_sentry_trace_values() -> None:
    carrier = {"sentry-trace": ["garbage", f"{TRACE_A}-{SPAN_A}-1", f"{TRACE_B}-{SPAN_B}-1"]}
    context = SentryPropagator().extract(carrier, Context(), getter=MultiGetter())
    assert ids(context)[:2] == (TRACE_A, SPAN_A)


def test_comma_joined_sentry_trace_values() -> None:
    carrier = {"sentry-trace": f"nope, {TRACE_A}-{SPAN_A}-0"}
    assert ids(default_propagator().extract(carrier, Context()))[:3] == (TRACE_A, SPAN_A, False)


GARBAGE = [
    "",
    " ",
    "-",
    "--",
    "0" * 32 + "-" + "0" * 16 + "-1",  # all-zero ids are invalid
    f"{TRACE_A}-{'0' * 16}-1",
    f"{TRACE_A.upper()}-{SPAN_A}-1",  # Sentry's grammar is lower-case hex
    f"{TRACE_A}-{SPAN_A}-2",
    f"{TRACE_A}{SPAN_A}1",
    f"{TRACE_A}-{SPAN_A}-1-extra",
    "\x00\xff\u2603",
    "x" * 10000,
]


@pytest.mark.parametrize("value", GARBAGE)
def test_garbage_sentry_trace_starts_a_new_trace(value: str, tracer: trace.Tracer) -> None:
    carrier = {"sentry-trace": value, "baggage": value, "traceparent": value}
    context = default_propagator().extract(carrier, Context())
    assert not trace.get_current_span(context).get_span_context().is_valid
    with tracer.start_as_current_span("server", context=context) as span:
        assert not span.get_span_context().is_remote
        assert getattr(span, "parent", None) is None  # a new trace, not a crash


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["sentry-trace", "baggage", "traceparent", "tracestate"]),
        st.one_of(
            st.text(max_size=200),
            st.lists(st.text(max_size=80), max_size=4),
            st.binary(max_size=60),
            st.none(),
            st.integers(),
        ),
    )
)
def test_any_header_values_never_raise(carrier: dict[str, Any]) -> None:
    propagator = default_propagator()
    context = propagator.extract(carrier, Context())
    out: dict[str, str] = {}
    propagator.inject(out, context=context)
    assert all(isinstance(v, str) for v in out.values())


# --- inject -------------------------------------------------------------------------------------


def test_inject_writes_each_header_once_for_the_current_span(tracer: trace.Tracer) -> None:
    with tracer.start_as_current_span("client") as span:
        carrier: list[tuple[str, str]] = []
        default_propagator().inject(carrier, setter=ListSetter())
        span_context = span.get_span_context()
    names = [name for name, _ in carrier]
    assert sorted(names) == ["baggage", "sentry-trace", "traceparent"]
    headers = dict(carrier)
    trace_hex, span_hex = f"{span_context.trace_id:032x}", f"{span_context.span_id:016x}"
    assert headers["traceparent"].startswith(f"00-{trace_hex}-{span_hex}-")
    assert int(headers["traceparent"][-2:], 16) & 1  # sampled (the SDK may add the random flag)
    assert headers["sentry-trace"] == f"{trace_hex}-{span_hex}-1"
    members = baggage_members(headers["baggage"])
    assert members["sentry-trace_id"] == trace_hex
    assert members["sentry-sampled"] == "true"
    assert members["sentry-sample_rate"] == "1.0"


def test_stock_composite_would_write_baggage_twice(tracer: trace.Tracer) -> None:
    """Why MergingCompositePropagator exists: the stock one lets both members write."""
    members = list(default_propagator().propagators)
    token = attach(baggage.set_baggage("user_tier", "gold"))
    with tracer.start_as_current_span("client"):
        stock: list[tuple[str, str]] = []
        CompositePropagator(members).inject(stock, setter=ListSetter())
        merged: list[tuple[str, str]] = []
        MergingCompositePropagator(members).inject(merged, setter=ListSetter())
    detach(token)
    assert [n for n, _ in stock].count("baggage") == 2
    assert [n for n, _ in merged].count("baggage") == 1


def test_unsampled_span_propagates_sampled_zero(tracer: trace.Tracer) -> None:
    context = remote(TRACE_A, SPAN_A, sampled=False)
    with tracer.start_as_current_span("client", context=context) as span:
        assert not span.is_recording()
        carrier: dict[str, str] = {}
        default_propagator().inject(carrier)
    assert carrier["sentry-trace"].startswith(TRACE_A)
    assert carrier["sentry-trace"].endswith("-0")
    assert not int(carrier["traceparent"][-2:], 16) & 1
    assert baggage_members(carrier["baggage"])["sentry-sampled"] == "false"


def test_no_span_no_trace_headers() -> None:
    carrier: dict[str, str] = {}
    default_propagator().inject(carrier, context=Context())
    assert carrier == {}


def test_w3c_baggage_and_sentry_entries_share_one_header(tracer: trace.Tracer) -> None:
    incoming = {
        "traceparent": f"00-{TRACE_A}-{SPAN_A}-01",
        "baggage": (
            "user_tier=gold,sentry-trace_id=" + TRACE_A + ",sentry-public_key=abc,"
            "sentry-release=svc%401.0,sentry-sample_rate=0.5,sentry-sampled=true,"
            "other=a%20b"
        ),
    }
    propagator = default_propagator()
    context = propagator.extract(incoming, Context())
    token = attach(context)  # as a server instrumentation does
    assert incoming_sentry_baggage(context) == {
        "trace_id": TRACE_A,
        "public_key": "abc",
        "release": "svc@1.0",
        "sample_rate": "0.5",
        "sampled": "true",
    }
    with tracer.start_as_current_span("client"):
        out: list[tuple[str, str]] = []
        propagator.inject(out, setter=ListSetter())
    detach(token)
    assert [n for n, _ in out].count("baggage") == 1
    members = baggage_members(dict(out)["baggage"])
    # The head's DSC passes on frozen; W3C entries pass on too.
    assert members == {
        "sentry-trace_id": TRACE_A,
        "sentry-public_key": "abc",
        "sentry-release": "svc%401.0",
        "sentry-sample_rate": "0.5",
        "sentry-sampled": "true",
        "user_tier": "gold",
        "other": "a+b",
    }


def test_dsc_of_another_trace_is_replaced(tracer: trace.Tracer) -> None:
    incoming = {
        "traceparent": f"00-{TRACE_A}-{SPAN_A}-01",
        "baggage": f"sentry-trace_id={TRACE_B},sentry-public_key=stale,sentry-sample_rand=0.1",
    }
    propagator = default_propagator()
    context = propagator.extract(incoming, Context())
    assert incoming_sentry_baggage(context) is not None
    token = attach(context)
    with tracer.start_as_current_span("client"):
        out: dict[str, str] = {}
        propagator.inject(out)
    detach(token)
    members = baggage_members(out["baggage"])
    assert members["sentry-trace_id"] == TRACE_A
    assert "sentry-public_key" not in members  # no client here, and the stale one is dropped
    assert "sentry-sample_rand" not in members


def test_head_dsc_uses_the_sentry_client(tracer: trace.Tracer) -> None:
    client = sentry_sdk.Client(
        dsn="http://pubkey@127.0.0.1:9/1",
        release="widgets@2.0",
        environment="staging",
        default_integrations=False,
        integrations=[],
    )
    with sentry_sdk.isolation_scope() as scope:
        scope.set_client(client)
        with tracer.start_as_current_span("root") as span:
            dsc = dynamic_sampling_context(span.get_span_context())
    client.close()
    assert dsc["public_key"] == "pubkey"
    assert dsc["release"] == "widgets@2.0"
    assert dsc["environment"] == "staging"


def test_sample_rate_in_dsc_follows_settings(
    monkeypatch: pytest.MonkeyPatch, tracer: trace.Tracer
) -> None:
    monkeypatch.setenv("SENTRY_TRACES_SAMPLE_RATE", "0.25")
    reset_settings()
    with tracer.start_as_current_span("root") as span:
        assert dynamic_sampling_context(span.get_span_context())["sample_rate"] == "0.25"
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_on")
    reset_settings()
    with tracer.start_as_current_span("root") as span:
        assert "sample_rate" not in dynamic_sampling_context(span.get_span_context())


def test_round_trip_between_two_widgettrace_services(tracer: trace.Tracer) -> None:
    propagator = default_propagator()
    token = attach(baggage.set_baggage("tenant", "t 1"))
    with tracer.start_as_current_span("client") as span:
        wire: dict[str, str] = {}
        propagator.inject(wire)
        sent = span.get_span_context()
    detach(token)
    received = propagator.extract(wire, Context())
    assert ids(received) == (f"{sent.trace_id:032x}", f"{sent.span_id:016x}", True, True)
    assert baggage.get_baggage("tenant", received) == "t 1"
    assert incoming_sentry_baggage(received) is not None
    # The same headers read by a Sentry-only reader and by a W3C-only reader agree.
    via_sentry = build_propagator("sentry").extract({"sentry-trace": wire["sentry-trace"]})
    via_w3c = build_propagator("tracecontext").extract({"traceparent": wire["traceparent"]})
    assert ids(via_sentry) == ids(via_w3c) == ids(received)


# --- composition --------------------------------------------------------------------------------


def test_build_propagator_names() -> None:
    assert [type(p).__name__ for p in build_propagator(None).propagators] == [
        "TraceContextTextMapPropagator",
        "W3CBaggagePropagator",
        "SentryPropagator",
    ]
    only = build_propagator("tracecontext, sentry")
    assert [type(p).__name__ for p in only.propagators] == [
        "TraceContextTextMapPropagator",
        "SentryPropagator",
    ]
    assert build_propagator("none").propagators == ()


def test_build_propagator_skips_unknown_names(caplog: pytest.LogCaptureFixture) -> None:
    propagator = build_propagator("tracecontext,no-such-propagator")
    assert len(propagator.propagators) == 1
    assert "no-such-propagator" in caplog.text


def test_sentry_propagator_fields() -> None:
    assert SentryPropagator().fields == {"sentry-trace", "baggage"}
    assert default_propagator().fields >= {"traceparent", "baggage", "sentry-trace"}


def test_sentry_sdk_options_turn_off_sentrys_own_header_injection() -> None:
    from sentry_sdk.tracing_utils import should_propagate_trace

    client = sentry_sdk.Client(
        dsn="http://pubkey@127.0.0.1:9/1",
        default_integrations=False,
        integrations=[],
        **SENTRY_SDK_OPTIONS,
    )
    default = sentry_sdk.Client(
        dsn="http://pubkey@127.0.0.1:9/1", default_integrations=False, integrations=[]
    )
    try:
        assert not should_propagate_trace(client, "http://127.0.0.1:8000/hop")
        assert should_propagate_trace(default, "http://127.0.0.1:8000/hop")
    finally:
        client.close()
        default.close()


def test_sentry_entry_point_name_is_shared_with_sentry_sdk() -> None:
    """sentry-sdk also registers ``opentelemetry_propagator: sentry`` (its class only works with
    its deprecated span processor); which one OTel's loader picks depends on install order, so
    :func:`build_propagator` resolves ``sentry`` to ours explicitly."""
    from importlib.metadata import entry_points

    owners = {ep.value for ep in entry_points(group="opentelemetry_propagator", name="sentry")}
    assert "widgettrace.exporters.propagation:SentryPropagator" in owners
    (member,) = build_propagator("sentry").propagators
    assert type(member) is SentryPropagator
