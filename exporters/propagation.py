"""Trace propagation between widgettrace, plain OpenTelemetry and Sentry-instrumented services.

One composite propagator speaks both dialects:

* W3C ``traceparent``/``tracestate`` (OpenTelemetry's default),
* W3C ``baggage``, with Sentry's ``sentry-*`` entries (its dynamic sampling context, "DSC")
  merged into the same header,
* Sentry's ``sentry-trace`` (``<trace_id>-<span_id>-<sampled>``).

Extract: either dialect is accepted; when a valid ``traceparent`` is present it wins (it is the
OTel pipeline's own header; Sentry's stdlib patch is known to add a ``sentry-trace`` unrelated
to the OTel span). Garbage headers are ignored, so the request starts a new trace; nothing here
ever raises into the application.

Inject: ``traceparent`` and ``sentry-trace`` for the current span, and ONE ``baggage`` header
holding the W3C baggage entries plus the ``sentry-*`` entries: the incoming DSC, passed on
frozen as Sentry requires, or, when this service starts the trace, a DSC built from the span
and the Sentry client's options. The composite from :func:`default_propagator` writes every
header exactly once, whatever the carrier's setter does with repeated keys.

Usage::

    from opentelemetry.propagate import set_global_textmap
    from widgettrace.exporters.propagation import default_propagator

    set_global_textmap(default_propagator())  # the configurator does this by default

``SentryPropagator`` alone is the ``opentelemetry_propagator`` entry point (for
``OTEL_PROPAGATORS``); :func:`build_propagator` turns an ``OTEL_PROPAGATORS`` value into the
merging composite with ``sentry`` resolved to this module (sentry-sdk registers its own
``sentry`` entry point, which only works with its deprecated span processor).

Sentry's SDK must not add headers of its own on top: pass :data:`SENTRY_SDK_OPTIONS` to
``sentry_sdk.init`` (``trace_propagation_targets=[]`` turns off the header injection of its
stdlib, httpx and aiohttp integrations).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
from typing import Any, Final
from urllib.parse import quote, quote_plus, unquote

import sentry_sdk
from opentelemetry import baggage as otel_baggage
from opentelemetry import trace
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context, create_key, get_current, get_value, set_value
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import (
    CarrierT,
    Getter,
    Setter,
    TextMapPropagator,
    default_getter,
    default_setter,
)
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from widgettrace.instrumentation._config import get_settings
from widgettrace.instrumentation._guard import internal_errors, logger

__all__ = [
    "BAGGAGE_HEADER",
    "SENTRY_SDK_OPTIONS",
    "SENTRY_TRACE_HEADER",
    "TRACEPARENT_HEADER",
    "MergingCompositePropagator",
    "SentryPropagator",
    "build_propagator",
    "default_propagator",
    "dynamic_sampling_context",
    "incoming_sentry_baggage",
]

SENTRY_TRACE_HEADER: Final = "sentry-trace"
BAGGAGE_HEADER: Final = "baggage"
TRACEPARENT_HEADER: Final = "traceparent"

#: Options the Sentry SDK must be initialised with next to this propagator: Sentry's own
#: outgoing-request integrations (stdlib ``http.client``, httpx, aiohttp) then add no
#: ``sentry-trace``/``baggage`` of their own, so the OTel propagator is the only writer.
SENTRY_SDK_OPTIONS: Final[Mapping[str, Any]] = {"trace_propagation_targets": []}

_SENTRY_PREFIX: Final = "sentry-"
# W3C baggage limits (https://www.w3.org/TR/baggage/#limits).
_MAX_BAGGAGE_ENTRIES: Final = 180
_MAX_BAGGAGE_BYTES: Final = 8192
# W3C Trace Context tracestate limits (https://www.w3.org/TR/trace-context/#tracestate-limits).
_MAX_TRACESTATE_ENTRIES: Final = 32
_MAX_TRACESTATE_CHARS: Final = 512
_MAX_TRACESTATE_ENTRY_CHARS: Final = 128
TRACESTATE_HEADER: Final = "tracestate"

# Sentry's own grammar: trace id, span id, optional sampled flag (absent = deferred decision).
_SENTRY_TRACE_RE: Final = re.compile(r"^[ \t]*([0-9a-f]{32})-([0-9a-f]{16})(?:-([01]))?[ \t]*$")
_TRACEPARENT_RE: Final = re.compile(
    r"^[ \t]*([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?[ \t]*$"
)
# RFC 7230 token: what a W3C baggage key may be.
_TOKEN_RE: Final = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")

_SENTRY_BAGGAGE_KEY: Final = create_key("widgettrace-sentry-baggage")


# --- parsing helpers (never raise on any input) ------------------------------------------------


def _header_values(getter: Getter[CarrierT], carrier: CarrierT, name: str) -> list[str]:
    """Every value of a header, split on commas (frameworks join repeated headers that way)."""
    raw = getter.get(carrier, name)
    if raw is None:
        return []
    if type(raw) is list and len(raw) == 1:
        only = raw[0]
        if type(only) is str and "," not in only:
            return [only.strip()]  # the usual case, without the general loop below
    if isinstance(raw, str | bytes):
        raw = [raw]
    values: list[str] = []
    for item in raw:
        text = item.decode("latin-1") if isinstance(item, bytes) else item
        if not isinstance(text, str):
            continue
        values.extend(part.strip() for part in text.split(",") if part.strip())
    return values


def _parse_sentry_trace(value: str) -> tuple[int, int, bool | None] | None:
    match = _SENTRY_TRACE_RE.match(value)
    if match is None:
        return None
    trace_id, span_id = int(match.group(1), 16), int(match.group(2), 16)
    if trace_id == 0 or span_id == 0:
        return None
    flag = match.group(3)
    return trace_id, span_id, None if flag is None else flag == "1"


def _parse_traceparent(value: str) -> tuple[int, int] | None:
    match = _TRACEPARENT_RE.match(value)
    if match is None:
        return None
    version, trace_hex, span_hex, _flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest):
        return None
    trace_id, span_id = int(trace_hex, 16), int(span_hex, 16)
    if trace_id == 0 or span_id == 0:
        return None
    return trace_id, span_id


def _parse_sentry_baggage(values: Iterable[str]) -> list[tuple[str, str]]:
    """The ``sentry-*`` members of (possibly several) baggage headers, as received.

    Pairs of (key without the prefix, value), both still percent-encoded so they can be passed
    on byte for byte; the first occurrence of a key wins.
    """
    members: list[tuple[str, str]] = []
    seen: set[str] = set()
    for member in values:
        if _SENTRY_PREFIX not in member:
            continue
        pair = member.split(";", 1)[0]
        if "=" not in pair:
            continue
        key, value = pair.split("=", 1)
        key, value = key.strip(" \t"), value.strip(" \t")
        if not key.startswith(_SENTRY_PREFIX) or not _TOKEN_RE.match(key):
            continue
        name = key[len(_SENTRY_PREFIX) :]
        if name and name not in seen and _TOKEN_RE.match(value or "-"):
            seen.add(name)
            members.append((name, value))
    return members


# --- the dynamic sampling context ---------------------------------------------------------------


class _IncomingDsc:
    """The ``sentry-*`` members of an incoming baggage header (Sentry's frozen DSC)."""

    __slots__ = ("_entries", "members", "serialized", "trace_id")

    def __init__(self, members: list[tuple[str, str]]) -> None:
        self.members = members
        self.trace_id = next((value for key, value in members if key == "trace_id"), None)
        # Passed on exactly as received: Sentry's rule for a DSC is "frozen at the head".
        self.serialized = ",".join(f"{_SENTRY_PREFIX}{key}={value}" for key, value in members)
        self._entries: dict[str, str] | None = None

    @property
    def entries(self) -> Mapping[str, str]:
        """Decoded keys (without prefix) and values."""
        if self._entries is None:
            self._entries = {unquote(key): unquote(value) for key, value in self.members}
        return self._entries


def incoming_sentry_baggage(context: Context | None = None) -> Mapping[str, str] | None:
    """The ``sentry-*`` baggage entries (keys without prefix) extracted into ``context``.

    ``None`` when the request carried none. The Sentry span processor can use this as the
    envelope's ``trace`` header (the frozen DSC) for transactions continuing that trace.
    """
    value = get_value(_SENTRY_BAGGAGE_KEY, context)
    return value.entries if isinstance(value, _IncomingDsc) else None


def _incoming_for(context: Context | None, trace_hex: str) -> _IncomingDsc | None:
    value = get_value(_SENTRY_BAGGAGE_KEY, context)
    if isinstance(value, _IncomingDsc) and value.trace_id in (None, trace_hex):
        return value
    return None


# (client, settings, fields, serialized): the head DSC's fixed part, rebuilt when the Sentry
# client or the settings object changes (a re-init, or tests resetting settings).
_head_cache: tuple[object, object, dict[str, str], str] | None = None


def _head_fields() -> tuple[dict[str, str], str]:
    """DSC fields fixed for the process: public key, release, environment, sample rate."""
    global _head_cache
    client = sentry_sdk.get_client()
    settings = get_settings()
    cached = _head_cache
    if cached is not None and cached[0] is client and cached[1] is settings:
        return cached[2], cached[3]
    fields: dict[str, str] = {}
    if client.is_active():
        parsed = client.parsed_dsn
        if parsed is not None and parsed.public_key:
            fields["public_key"] = str(parsed.public_key)
        options = client.options
        for name in ("release", "environment"):
            value = options.get(name)
            if value:
                fields[name] = str(value)
    if settings.traces_sampler is None:
        # With a user-chosen OTel sampler the rate is not ours to state.
        rate = settings.traces_sample_rate
        fields["sample_rate"] = "1.0" if rate is None else repr(float(rate))
    serialized = ",".join(
        f"{_SENTRY_PREFIX}{quote(key, safe='')}={quote(value, safe='')}"
        for key, value in fields.items()
    )
    _head_cache = (client, settings, fields, serialized)
    return fields, serialized


def dynamic_sampling_context(
    span_context: SpanContext, context: Context | None = None
) -> dict[str, str]:
    """The Sentry DSC for a span: the incoming one when it belongs to this trace, else a new one.

    Keys are without the ``sentry-`` prefix, as in a Sentry envelope's ``trace`` header.
    """
    trace_hex = f"{span_context.trace_id:032x}"
    incoming = _incoming_for(context, trace_hex)
    if incoming is not None:
        # Sentry's rule: the head service's DSC is frozen and passed on unchanged.
        return dict(incoming.entries)
    dsc = {"trace_id": trace_hex}
    dsc.update(_head_fields()[0])
    dsc["sampled"] = "true" if span_context.trace_flags.sampled else "false"
    return dsc


def _sentry_members(context: Context, span_context: SpanContext) -> str:
    """The DSC as baggage members, serialised (the frozen incoming one, or a new head one)."""
    trace_hex = f"{span_context.trace_id:032x}"
    incoming = _incoming_for(context, trace_hex)
    if incoming is not None:
        return incoming.serialized
    fixed = _head_fields()[1]
    sampled = "true" if span_context.trace_flags.sampled else "false"
    middle = f"{fixed}," if fixed else ""
    return f"{_SENTRY_PREFIX}trace_id={trace_hex},{middle}{_SENTRY_PREFIX}sampled={sampled}"


def _merged_baggage(context: Context, span_context: SpanContext) -> str:
    """One baggage value: Sentry's DSC first (as Sentry writes it), then W3C baggage entries."""
    sentry_part = _sentry_members(context, span_context) if span_context.is_valid else ""
    entries = otel_baggage.get_all(context)
    if not entries and len(sentry_part) <= _MAX_BAGGAGE_BYTES:
        return sentry_part  # the usual case: nothing else to merge or trim
    members = sentry_part.split(",") if sentry_part else []
    for name, entry in entries.items():
        if name.startswith(_SENTRY_PREFIX):
            continue  # stale copies picked up by the W3C baggage propagator; ours are current
        members.append(f"{quote_plus(str(name))}={quote_plus(str(entry))}")
    kept: list[str] = []
    size = 0
    for member in members[:_MAX_BAGGAGE_ENTRIES]:
        extra = len(member) + (1 if kept else 0)
        if size + extra > _MAX_BAGGAGE_BYTES:
            break
        kept.append(member)
        size += extra
    return ",".join(kept)


def _internal_error(where: str, exc: Exception) -> None:
    """Report a telemetry bug through the guard (kept off the happy path: no context manager)."""
    with internal_errors(where):
        raise exc


# --- the propagators ---------------------------------------------------------------------------


class SentryPropagator(TextMapPropagator):
    """``sentry-trace`` plus Sentry's ``sentry-*`` baggage entries, for the OTel pipeline.

    Unlike sentry-sdk's class of the same name it needs neither Sentry's span processor nor
    Sentry tracing: it reads and writes the OTel span context. When a valid W3C
    ``traceparent`` was already extracted into the context it is kept (W3C wins).
    """

    def extract(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        getter: Getter[CarrierT] = default_getter,
    ) -> Context:
        """Continue the trace named by ``sentry-trace`` unless W3C already did; never raises."""
        if context is None:
            context = get_current()
        try:
            return self._extract(carrier, context, getter)
        except Exception as exc:
            _internal_error("propagation.sentry_extract", exc)
            return context

    def _extract(self, carrier: CarrierT, context: Context, getter: Getter[CarrierT]) -> Context:
        dsc = _parse_sentry_baggage(_header_values(getter, carrier, BAGGAGE_HEADER))
        current = trace.get_current_span(context).get_span_context()
        w3c = next(
            (
                ids
                for ids in map(
                    _parse_traceparent, _header_values(getter, carrier, TRACEPARENT_HEADER)
                )
                if ids is not None
            ),
            None,
        )
        parsed = next(
            (
                ids
                for ids in map(
                    _parse_sentry_trace, _header_values(getter, carrier, SENTRY_TRACE_HEADER)
                )
                if ids is not None
            ),
            None,
        )
        if w3c is not None and current.is_remote and (current.trace_id, current.span_id) == w3c:
            # The tracecontext propagator already continued the W3C trace: it wins.
            if parsed is not None and parsed[0] != current.trace_id:
                logger.debug("widgettrace: sentry-trace names another trace than traceparent")
            if dsc:
                context = set_value(_SENTRY_BAGGAGE_KEY, _IncomingDsc(dsc), context)
            return context
        if parsed is None:
            return context  # no or unusable sentry-trace: the request starts a new trace
        trace_id, span_id, sampled = parsed
        if sampled is None:
            # Deferred decision: the DSC may carry the head's; otherwise follow Sentry's own
            # OTel propagator and continue as sampled (the head has not decided against it).
            sampled = dict(dsc).get("sampled", "true") != "false"
        span_context = SpanContext(
            trace_id=trace_id,
            span_id=span_id,
            is_remote=True,
            trace_flags=TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT),
        )
        context = trace.set_span_in_context(NonRecordingSpan(span_context), context)
        if dsc:
            context = set_value(_SENTRY_BAGGAGE_KEY, _IncomingDsc(dsc), context)
        return context

    def inject(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        setter: Setter[CarrierT] = default_setter,
    ) -> None:
        """Write ``sentry-trace`` for the current span and the merged ``baggage``."""
        try:
            if context is None:
                context = get_current()
            span_context = trace.get_current_span(context).get_span_context()
            if span_context.is_valid:
                flag = "1" if span_context.trace_flags.sampled else "0"
                setter.set(
                    carrier,
                    SENTRY_TRACE_HEADER,
                    f"{span_context.trace_id:032x}-{span_context.span_id:016x}-{flag}",
                )
            merged = _merged_baggage(context, span_context)
            if merged:
                setter.set(carrier, BAGGAGE_HEADER, merged)
        except Exception as exc:
            _internal_error("propagation.sentry_inject", exc)

    @property
    def fields(self) -> set[str]:
        """The headers :meth:`inject` writes."""
        return {SENTRY_TRACE_HEADER, BAGGAGE_HEADER}


def _baggage_key(member: str) -> str:
    return member.split("=", 1)[0].strip()


def _merge_baggage_values(first: str, second: str) -> str:
    """Union of two baggage values by key; the later writer's value wins for a repeated key.

    ``sentry-*`` entries form one unit (the DSC): if the later value has any, they replace
    all of the earlier value's, so two DSCs are never mixed.
    """
    later = [member.strip() for member in second.split(",") if member.strip()]
    earlier = [member.strip() for member in first.split(",") if member.strip()]
    if any(_baggage_key(member).startswith(_SENTRY_PREFIX) for member in later):
        earlier = [m for m in earlier if not _baggage_key(m).startswith(_SENTRY_PREFIX)]
    merged: dict[str, str] = {}
    for member in [*earlier, *later]:
        key = _baggage_key(member)
        merged.pop(key, None)  # keep the later one, at the later position
        merged[key] = member
    return ",".join(merged.values())


def _baggage_within_limits(value: str) -> str:
    """``value`` cut to the W3C limits (180 members, 8192 bytes); Sentry's entries kept first.

    The merged header is the union of what every member wrote (W3C baggage, Sentry's DSC, the
    incoming entries passed on), so each part may be within the limits and the whole not. The
    ``sentry-*`` members (the DSC Sentry samples and links by) go first; the others follow in
    order until a limit is reached; a key is written once.
    """
    if (
        value.count(",") < _MAX_BAGGAGE_ENTRIES
        and len(value) <= _MAX_BAGGAGE_BYTES
        and value.isascii()  # then characters are bytes
    ):
        return value  # the usual case, without splitting
    members = [member.strip() for member in value.split(",") if member.strip()]
    sentry = [m for m in members if _baggage_key(m).startswith(_SENTRY_PREFIX)]
    others = [m for m in members if not _baggage_key(m).startswith(_SENTRY_PREFIX)]
    kept: list[str] = []
    seen: set[str] = set()
    size = 0
    for member in [*sentry, *others]:
        key = _baggage_key(member)
        extra = len(member.encode()) + (1 if kept else 0)
        if key in seen or size + extra > _MAX_BAGGAGE_BYTES:
            continue  # a smaller member further on may still fit
        kept.append(member)
        seen.add(key)
        size += extra
        if len(kept) == _MAX_BAGGAGE_ENTRIES:
            break
    return ",".join(kept)


def _tracestate_within_limits(value: str) -> str:
    """``value`` cut to 32 members and 512 characters, as W3C Trace Context says to cut it.

    Entries longer than 128 characters are removed first, then entries from the end.
    """
    if value.count(",") < _MAX_TRACESTATE_ENTRIES and len(value) <= _MAX_TRACESTATE_CHARS:
        return value
    members = [member.strip() for member in value.split(",") if member.strip()]
    members = members[:_MAX_TRACESTATE_ENTRIES]
    if len(",".join(members)) > _MAX_TRACESTATE_CHARS:
        members = [m for m in members if len(m) <= _MAX_TRACESTATE_ENTRY_CHARS]
    while members and len(",".join(members)) > _MAX_TRACESTATE_CHARS:
        members.pop()
    return ",".join(members)


# The headers the composite cuts to their W3C limits after merging what every member wrote.
_WITHIN_LIMITS: Final[Mapping[str, Callable[[str], str]]] = {
    BAGGAGE_HEADER: _baggage_within_limits,
    TRACESTATE_HEADER: _tracestate_within_limits,
}


class _CollectingSetter(Setter[MutableMapping[str, str]]):
    """Collects header writes so the composite can emit each header exactly once."""

    def set(self, carrier: MutableMapping[str, str], key: str, value: str) -> None:
        name = key.lower()
        previous = carrier.get(name)
        if name == BAGGAGE_HEADER and previous:
            carrier[name] = _merge_baggage_values(previous, value)
        else:
            carrier[name] = value


_COLLECTING_SETTER: Final = _CollectingSetter()


class MergingCompositePropagator(CompositePropagator):
    """A composite propagator that writes each header once, merging repeated ``baggage``.

    The stock composite lets every member call the carrier's setter: with a setter that
    appends (gRPC metadata, Kafka headers, raw ASGI header lists) two members writing
    ``baggage`` put two values on the wire. This one collects first, then sets once.
    """

    def __init__(self, propagators: Sequence[TextMapPropagator]) -> None:
        super().__init__(list(propagators))
        self.propagators: tuple[TextMapPropagator, ...] = tuple(propagators)
        # Sentry members inject last: their baggage (W3C entries plus the current DSC) is a
        # superset of the W3C baggage member's, so it must be the value that wins the merge.
        self._inject_order: tuple[TextMapPropagator, ...] = tuple(
            p for p in propagators if not isinstance(p, SentryPropagator)
        ) + tuple(p for p in propagators if isinstance(p, SentryPropagator))

    def extract(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        getter: Getter[CarrierT] = default_getter,
    ) -> Context:
        """Run every member's extract; a member that chokes on garbage input is skipped.

        Upstream propagators raise on some malformed carriers (bytes values, for one); a
        request with unreadable headers must start a new trace, not fail.
        """
        if context is None:
            context = get_current()
        for propagator in self.propagators:
            try:
                context = propagator.extract(carrier, context, getter=getter)
            except Exception as exc:
                logger.debug(
                    "widgettrace: %s could not read the incoming headers (%r); ignored",
                    type(propagator).__name__,
                    exc,
                )
        return context

    def inject(
        self,
        carrier: CarrierT,
        context: Context | None = None,
        setter: Setter[CarrierT] = default_setter,
    ) -> None:
        """Run every member's inject into a buffer, then write each header once."""
        collected: dict[str, str] = {}
        for propagator in self._inject_order:
            try:
                propagator.inject(collected, context=context, setter=_COLLECTING_SETTER)
            except Exception as exc:
                _internal_error("propagation.inject", exc)
        for key, value in collected.items():
            limited = _WITHIN_LIMITS.get(key)
            out = value if limited is None else limited(value)
            if out:
                setter.set(carrier, key, out)


def default_propagator() -> MergingCompositePropagator:
    """W3C tracecontext + W3C baggage + sentry-trace: widgettrace's default propagator."""
    return MergingCompositePropagator(
        [TraceContextTextMapPropagator(), W3CBaggagePropagator(), SentryPropagator()]
    )


def build_propagator(names: str | None) -> MergingCompositePropagator:
    """The propagator for an ``OTEL_PROPAGATORS`` value (``None`` or empty: the default).

    ``sentry`` always means :class:`SentryPropagator` (sentry-sdk registers an entry point of
    the same name whose inject needs its deprecated span processor); ``none`` means no
    propagation; other names are loaded from ``opentelemetry_propagator`` entry points, and
    an unknown name is logged and skipped (upstream raises, which aborts auto-instrumentation).
    """
    if not names or not names.strip():
        return default_propagator()
    members: list[TextMapPropagator] = []
    for raw in names.split(","):
        name = raw.strip()
        if not name:
            continue
        lowered = name.lower()
        if lowered == "none":
            return MergingCompositePropagator([])
        if lowered == "tracecontext":
            members.append(TraceContextTextMapPropagator())
        elif lowered == "baggage":
            members.append(W3CBaggagePropagator())
        elif lowered == "sentry":
            members.append(SentryPropagator())
        else:
            loaded = _load_entry_point(name)
            if loaded is not None:
                members.append(loaded)
    return MergingCompositePropagator(members)


def _load_entry_point(name: str) -> TextMapPropagator | None:
    from importlib.metadata import entry_points

    for entry_point in entry_points(group="opentelemetry_propagator", name=name):
        try:
            propagator = entry_point.load()()
        except Exception:
            logger.exception("widgettrace: OTEL_PROPAGATORS: loading %r failed; skipped", name)
            return None
        if isinstance(propagator, TextMapPropagator):
            return propagator
    logger.warning("widgettrace: OTEL_PROPAGATORS: unknown propagator %r; skipped", name)
    return None
