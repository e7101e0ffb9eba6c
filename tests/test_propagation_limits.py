"""Outgoing headers stay within the W3C limits, and Sentry's own entries survive trimming.

``baggage``: at most 180 list-members and 8192 bytes (https://www.w3.org/TR/baggage/#limits).
``tracestate``: at most 32 list-members, and within 512 characters (entries over 128 characters
dropped first, then from the end: https://www.w3.org/TR/trace-context/#tracestate-limits).
Incoming headers come through the real composite propagator, as a server would extract them,
including a request that repeats the ``baggage`` header.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import baggage, trace
from opentelemetry.context import attach, detach, get_current
from opentelemetry.propagators.textmap import Getter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased

from widgettrace.exporters.propagation import build_propagator, default_propagator
from widgettrace.instrumentation._config import reset_settings

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT = f"00-{TRACE_ID}-b7ad6b7169203331-01"
SENTRY_DSC = (
    f"sentry-trace_id={TRACE_ID},sentry-public_key=abc,sentry-release=widgets%401.0,"
    "sentry-environment=prod,sentry-sample_rate=1.0,sentry-sampled=true"
)


class MultiGetter(Getter[dict[str, list[str]]]):
    """Header lists as an ASGI server sees them (a repeated header is two values)."""

    def get(self, carrier: dict[str, list[str]], key: str) -> list[str] | None:
        return carrier.get(key.lower())

    def keys(self, carrier: dict[str, list[str]]) -> list[str]:
        return list(carrier)


@pytest.fixture(autouse=True)
def _fresh_settings() -> Iterator[None]:
    reset_settings()
    yield
    reset_settings()


def _outgoing(
    incoming: dict[str, list[str]], propagator_names: str | None = None
) -> dict[str, str]:
    propagator = (
        default_propagator() if propagator_names is None else build_propagator(propagator_names)
    )
    ctx = propagator.extract(incoming, context=get_current(), getter=MultiGetter())
    token = attach(ctx)
    try:
        tracer = TracerProvider(sampler=ParentBased(ALWAYS_ON)).get_tracer("limits")
        with tracer.start_as_current_span("outgoing call", kind=trace.SpanKind.CLIENT):
            carrier: dict[str, str] = {}
            propagator.inject(carrier)
            return carrier
    finally:
        detach(token)


def _members(value: str) -> list[str]:
    return [m.strip() for m in value.split(",") if m.strip()]


def _many(count: int, start: int = 0, size: int = 8) -> str:
    return ",".join(f"k{i}={'v' * size}" for i in range(start, start + count))


@pytest.mark.parametrize("names", [None, "tracecontext,baggage,sentry"])
def test_baggage_at_most_180_members_with_sentry_entries_kept(names: str | None) -> None:
    incoming = {"traceparent": [PARENT], "baggage": [f"{_many(200)},{SENTRY_DSC}"]}
    out = _outgoing(incoming, names)
    members = _members(out["baggage"])
    assert len(members) <= 180, len(members)
    assert len(out["baggage"].encode()) <= 8192
    for member in _members(SENTRY_DSC):
        assert member in members, member  # Sentry's DSC passed on whole
    assert len({m.split("=")[0] for m in members}) == len(members)  # no key twice


@pytest.mark.parametrize(
    "repeated",
    [
        [f"{_many(175)},{SENTRY_DSC}", f"{_many(175)},{SENTRY_DSC}"],
        [_many(170), f"{_many(170, start=170)},{SENTRY_DSC}"],
    ],
    ids=["same-twice", "split"],
)
def test_baggage_limits_when_the_request_repeats_the_header(repeated: list[str]) -> None:
    incoming = {"traceparent": [PARENT], "baggage": repeated}
    out = _outgoing(incoming)
    members = _members(out["baggage"])
    assert len(members) <= 180, len(members)
    assert len(out["baggage"].encode()) <= 8192
    for member in _members(SENTRY_DSC):
        assert member in members


def test_baggage_at_most_8192_bytes_with_sentry_entries_kept() -> None:
    # The application's own baggage: 120 members of ~100 bytes, under the member limit and
    # over the byte limit once Sentry's DSC is added.
    ctx = baggage.set_baggage("first", "1")
    for i in range(120):
        ctx = baggage.set_baggage(f"k{i}", "v" * 100, context=ctx)
    token = attach(ctx)
    try:
        out = _outgoing({"traceparent": [PARENT], "baggage": [SENTRY_DSC]})
    finally:
        detach(token)
    assert len(out["baggage"].encode()) <= 8192, len(out["baggage"].encode())
    members = _members(out["baggage"])
    for member in _members(SENTRY_DSC):
        assert member in members
    assert "first=1" in members  # trimmed from the end, not emptied
    assert len(members) > 60


def test_small_baggage_is_passed_on_unchanged() -> None:
    incoming = {"traceparent": [PARENT], "baggage": [f"user=alice,{SENTRY_DSC}"]}
    members = _members(_outgoing(incoming)["baggage"])
    assert "user=alice" in members
    assert sorted(members) == sorted(["user=alice", *_members(SENTRY_DSC)])


def test_tracestate_within_32_members_and_512_characters() -> None:
    long_entry = "big=" + "x" * 200
    entries = [f"v{i}=value{i:04d}" for i in range(30)]
    incoming = {
        "traceparent": [PARENT],
        "tracestate": [",".join([entries[0], long_entry, *entries[1:]])],
    }
    out = _outgoing(incoming)
    state = out.get("tracestate", "")
    members = _members(state)
    assert len(members) <= 32
    assert len(state) <= 512, len(state)
    assert long_entry not in members  # entries over 128 characters go first
    assert members[0] == entries[0]  # then from the end: the first ones stay
    assert len(members) >= 20
