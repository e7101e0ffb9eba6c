"""Trace context in ``params._meta``: what we write on the wire and what we read from it.

Written: the W3C keys the MCP conventions name and nothing else (semantic-conventions-genai,
``docs/gen-ai/mcp.md``, "Context propagation": ``traceparent``, ``tracestate``, ``baggage`` in
``params._meta``), whatever the process's global propagator is. widgettrace's default global
propagator also writes ``sentry-trace`` and Sentry's ``sentry-*`` baggage entries, which belong on
HTTP headers for Sentry peers; in ``_meta`` they would change messages that peers (and mcp's own
tests) compare exactly, and Sentry SDKs on the other side read W3C too.

Only into a params object the message already has: a message sent without params, or with
empty ones that mcp leaves off the wire (``ping``, ``notifications/initialized``), goes out
without one, so its receiver parents on its ambient
context. The conventions ask for propagation in ``params._meta``; they do not ask to create params.

Read: the global propagator (lenient: a peer's ``sentry-trace`` is understood too), over a getter
that accepts only bounded string values from the peer-controlled ``_meta``.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any, Final

from opentelemetry import baggage, propagate, trace
from opentelemetry import context as context_api
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from widgettrace.instrumentation._guard import guarded
from widgettrace.instrumentation.mcp._common import _MAX_META_KEYS, _MAX_META_VALUE, _is_map


def _with_meta(params: Any, carrier: dict[str, str]) -> Any:
    """``params`` with the propagation keys merged into ``_meta`` (a copy; no params stay none)."""
    # No params, or empty ones (which mcp leaves off the wire): nothing to carry the keys in.
    if not carrier or not params or not _is_map(params):
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


_TRACECONTEXT: Final = TraceContextTextMapPropagator()
_BAGGAGE: Final = W3CBaggagePropagator()
# Sentry's dynamic sampling context travels as baggage entries with this prefix.
_SENTRY_BAGGAGE_PREFIX: Final = "sentry-"


@guarded("mcp.inject", None)
def _inject(carrier: dict[str, str], ctx: context_api.Context) -> None:
    """``traceparent``/``tracestate`` and the application's W3C ``baggage`` (no ``sentry-*``)."""
    _TRACECONTEXT.inject(carrier, context=ctx)
    entries = baggage.get_all(ctx)
    if not entries:
        return
    if any(key.startswith(_SENTRY_BAGGAGE_PREFIX) for key in entries):
        # An incoming Sentry DSC extracted into OTel baggage: not ours to pass on in _meta.
        ctx = baggage.clear(ctx)
        for key, value in entries.items():
            if not key.startswith(_SENTRY_BAGGAGE_PREFIX):
                ctx = baggage.set_baggage(key, value, ctx)
    _BAGGAGE.inject(carrier, context=ctx)
