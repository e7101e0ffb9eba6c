"""Trace context in ``params._meta``: what we write on the wire and what we read from it."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any, Final

from opentelemetry import context as context_api
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import Getter

from widgettrace.instrumentation._guard import guarded
from widgettrace.instrumentation.mcp._common import _MAX_META_KEYS, _MAX_META_VALUE, _is_map


def _with_meta(params: Any, carrier: dict[str, str]) -> Any:
    """``params`` with the propagation keys merged into ``_meta`` (a copy; None stays a dict)."""
    if not carrier:
        return params
    if params is None:
        return {"_meta": dict(carrier)}
    if not _is_map(params):
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


@guarded("mcp.inject", None)
def _inject(carrier: dict[str, str], ctx: context_api.Context) -> None:
    propagate.inject(carrier, context=ctx)
