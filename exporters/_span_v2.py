"""Span v2 JSON: one ended OTel span as sentry-sdk's stream mode sends it, cheaply.

:class:`SpanEncoder` runs on the span stream's export thread (:mod:`._stream`). It writes a
span's JSON from pieces encoded once and remembered: the static attributes (SDK, release,
environment, service) per processor, Sentry's derived ones (``sentry.op``, ``sentry.segment.*``)
per op and segment name, and the user's attributes per (key, value, type) in a bounded memo, each
already scrubbed and typed the way ``sentry_sdk.utils.serialize_attribute`` types it. The
scrubber decides per key and value alone, so a spliced member is exactly what scrubbing the
whole mapping gives (``tests/test_sentry_stream.py`` checks it, and the format field by field
against sentry-sdk's own stream mode). :func:`span_envelope` wraps encoded spans in the SDK's
``Envelope`` / ``Item``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import orjson
from opentelemetry.trace import StatusCode
from sentry_sdk._span_batcher import SpanBatcher
from sentry_sdk.envelope import Envelope, Item, PayloadRef
from sentry_sdk.utils import format_attribute, serialize_attribute

from widgettrace.exporters._scrub import Scrubber
from widgettrace.exporters._sentry_convert import classify, dumps

__all__ = [
    "MAX_OPEN",
    "SPAN_CONTENT_TYPE",
    "Rec",
    "SpanEncoder",
    "record",
    "span_envelope",
    "typed",
]

SPAN_CONTENT_TYPE = SpanBatcher.CONTENT_TYPE
#: Open spans whose local root is remembered, and segment names kept for late children.
MAX_OPEN = 100_000
_PLATFORM_JSON = b'"sentry.platform":{"value":"python","type":"string"}'
_SEGMENT_ID = b'"sentry.segment.id":{"value":"%016x","type":"string"}'
#: Attributes this module sets per span (a user attribute of the same name wins).
_DERIVED = frozenset(
    {
        "sentry.op",
        "sentry.platform",
        "sentry.segment.id",
        "sentry.segment.name",
        "sentry.segment.name.source",
    }
)


def span_envelope(sent_at: str, dsc: dict[str, str], spans: list[bytes]) -> Envelope:
    """``Envelope(headers, [Item(PayloadRef(bytes=...), type="span", ...)])``, built the way
    those constructors build it without their copies and checks (they cost more than the
    encoding of a small trace); ``tests/test_sentry_stream.py`` compares the two."""
    item = Item.__new__(Item)
    item.headers = {
        "item_count": len(spans),
        "type": SpanBatcher.TYPE,
        "content_type": SPAN_CONTENT_TYPE,
    }
    item.payload = PayloadRef(bytes=b'{"version":2,"items":[' + b",".join(spans) + b"]}")
    envelope = Envelope.__new__(Envelope)
    envelope.headers = {"sent_at": sent_at, "trace": dsc}
    envelope.items = [item]
    return envelope


_TYPES = {str: "string", bool: "boolean", int: "integer", float: "double"}


def typed(value: Any) -> dict[str, Any]:
    """An attribute value in the span v2 wire format, exactly as the SDK types it
    (``sentry_sdk.utils.format_attribute`` then ``serialize_attribute``)."""
    kind = _TYPES.get(type(value))
    if kind is not None and (kind != "double" or math.isfinite(value)):
        return {"value": value, "type": kind}
    return serialize_attribute(format_attribute(value))  # type: ignore[return-value]


#: What an ended span leaves for the export thread: its context, parent context, name, kind,
#: status code, attributes (a plain dict), links, start and end (ns), and its segment's span id
#: (0 when unknown). Taken on the application's thread (:func:`record`), so the span object
#: itself is freed there, where its memory is hot, and not on the export thread.
Rec = tuple[Any, Any, str, Any, Any, Any, Any, int, int, int]


def record(span: Any, segment: int) -> Rec:
    """The :data:`Rec` of an ended SDK span (its private fields: no property calls)."""
    attrs = span._attributes
    return (
        span._context,
        span._parent,
        span._name,
        span._kind,
        span._status._status_code,
        getattr(attrs, "_dict", attrs),
        span._links,
        span._start_time or 0,
        span._end_time or 0,
        segment,
    )


#: Attribute fragments remembered (:meth:`SpanEncoder.attributes_json`); past it, start over.
_FRAGMENTS_MAX = 8192


class SpanEncoder:
    """Span v2 JSON for one processor (see the module docstring). Not thread-safe: the export
    thread's alone."""

    def __init__(self, static: dict[str, dict[str, Any]], scrubber: Scrubber) -> None:
        self.static = static
        # ``"k":{...},...`` : the attributes every span starts with, encoded once.
        self.static_inner = dumps(static)[1:-1]
        self._scrubber = scrubber
        #: segment span id -> ``,"sentry.segment.name":...`` for children sent with or after it
        self.root_names: dict[int, bytes] = {}
        self._shapes: dict[tuple[str, ...], bool] = {}
        self._fragments: dict[tuple[Any, ...], bytes] = {}
        self._ops: dict[str, bytes] = {}
        self._names_json: dict[str, bytes] = {}
        self._segments_json: dict[tuple[str, str], tuple[bytes, bytes]] = {}

    def close(self, spans: list[tuple[bytes, int]]) -> list[bytes]:
        """A trace's encoded spans as finished JSON, segment names filled in where known: a child
        usually ends before its segment, whose final name is known only when it ends."""
        names = self.root_names
        out = []
        for body, needs in spans:
            fragment = names.get(needs) if needs else None
            out.append(body + b"}}" if fragment is None else body + fragment + b"}}")
        return out

    def encode(self, rec: Rec, trace_hex: bytes) -> tuple[bytes, str | None, int]:
        """One span as span v2 JSON without its last two braces, its segment name when it is a
        segment, and the segment id whose name it still needs (0: none).

        The attributes are spliced from encoded fragments: the static ones once per processor,
        Sentry's derived ones per op and segment name, the user's per (key, value) through a
        bounded memo (:meth:`attributes_json`), so a span of a known route, host or widget
        operation costs lookups rather than scrubbing, typing and encoding."""
        ctx, parent, name, kind, code, attrs, links, start, end, segment = rec
        sid = ctx[1]
        is_segment = parent is None or parent[2]
        attributes = attrs or {}
        keys = tuple(attributes)
        op, description, _status, segment_name, source = classify(
            name, kind, code, attributes, keys
        )
        needs = 0
        text = self._scrubber.text_cached  # names and descriptions are free text
        if is_segment:
            segment_name = text(segment_name)
            display = segment_name
            segment_json = self.segment_json(segment_name, source)
            names = self.root_names
            if len(names) >= MAX_OPEN:
                names.clear()
            names[sid] = segment_json[0]
            derived = b"%b,%b,%b,%b" % (
                self.op_json(op),
                _PLATFORM_JSON,
                _SEGMENT_ID % sid,
                segment_json[1],
            )
        else:
            display = text(description)
            # Unknown (its parent started before this processor was added): the parent.
            needs = segment or parent[1]
            derived = b"%b,%b" % (self.op_json(op), _SEGMENT_ID % needs)
        if not attributes:
            attributes_json = b"{%b,%b" % (self.static_inner, derived)
        else:
            clash = self._shapes.get(keys)
            if clash is None:
                clash = any(k in self.static or k in _DERIVED for k in keys)
                if len(self._shapes) < 4096:
                    self._shapes[keys] = clash
            if clash:  # the user's value wins, as in the SDK (its attributes are set last)
                extra = orjson.loads(b"{" + derived + b"}")
                user = self.typed_attributes(attributes, keys)
                attributes_json = dumps({**self.static, **extra, **user})[:-1]
            else:
                attributes_json = b"{%b,%b,%b" % (
                    self.static_inner,
                    self.attributes_json(attributes),
                    derived,
                )
        head = (
            b'{"trace_id":"%b","span_id":"%016x","name":%b,"status":"%b","is_segment":%b,'
            b'"start_timestamp":%d.%09d,"end_timestamp":%d.%09d'
            % (
                trace_hex,
                sid,
                self.name_json(display),
                b"error" if code is StatusCode.ERROR else b"ok",
                b"true" if is_segment else b"false",
                start // 1_000_000_000,
                start % 1_000_000_000,
                end // 1_000_000_000,
                end % 1_000_000_000,
            )
        )
        if parent is not None:
            head += b',"parent_span_id":"%016x"' % parent[1]
        if links:
            head += b',"links":' + dumps([self.link(link) for link in links])
        return (
            head + b',"attributes":' + attributes_json,
            segment_name if is_segment else None,
            needs,
        )

    def attributes_json(self, attributes: Mapping[str, Any]) -> bytes:
        """The user's attributes, scrubbed and typed, as JSON members without braces.

        Each ``"key":{"value":...,"type":...}`` is remembered per (key, value) (and the value's
        type, so that ``1``, ``1.0`` and ``True`` stay apart): the scrubber decides per key and
        value alone, so splicing remembered members gives exactly what scrubbing the whole
        mapping gives (``tests/test_sentry_stream.py`` checks it)."""
        fragments = self._fragments
        out = []
        for key, value in attributes.items():
            cls = type(value)
            memo = (key, value) if cls is str else (key, value, cls)
            try:
                fragment = fragments.get(memo)
            except TypeError:  # unhashable (a list in a plain dict of attributes)
                out.append(dumps(self.typed_attributes({key: value}, (key,)))[1:-1])
                continue
            if fragment is None:
                fragment = dumps(self.typed_attributes({key: value}, (key,)))[1:-1]
                if len(fragments) >= _FRAGMENTS_MAX:  # values vary without bound: start over
                    fragments.clear()
                fragments[memo] = fragment
            out.append(fragment)
        return b",".join(out)

    def op_json(self, op: str) -> bytes:
        hit = self._ops.get(op)
        if hit is None:
            hit = b'"sentry.op":' + dumps(typed(op))
            if len(self._ops) < 4096:
                self._ops[op] = hit
        return hit

    def name_json(self, name: str) -> bytes:
        hit = self._names_json.get(name)
        if hit is None:
            hit = dumps(name)
            if len(self._names_json) >= _FRAGMENTS_MAX:
                self._names_json.clear()
            self._names_json[name] = hit
        return hit

    def segment_json(self, name: str, source: str) -> tuple[bytes, bytes]:
        """(``,"sentry.segment.name":...`` for the children, the segment's own
        ``"sentry.segment.name":...,"sentry.segment.name.source":...``)."""
        hit = self._segments_json.get((name, source))
        if hit is None:
            named = b'"sentry.segment.name":' + dumps(typed(name))
            hit = (b"," + named, named + b',"sentry.segment.name.source":' + dumps(typed(source)))
            if len(self._segments_json) >= _FRAGMENTS_MAX:
                self._segments_json.clear()
            self._segments_json[name, source] = hit
        return hit

    def typed_attributes(
        self, attributes: Mapping[str, Any], keys: tuple[str, ...]
    ) -> dict[str, dict[str, Any]]:
        """Scrubbed attributes (the scrubber's ``data``) in the wire's typed form."""
        out: dict[str, dict[str, Any]] = {}
        types = _TYPES
        for key, value in self._scrubber.data(attributes).items():
            kind = types.get(type(value))
            if kind is None or (kind == "double" and not math.isfinite(value)):
                out[key] = typed(value)  # sequences, non-finite numbers: the SDK's handling
            else:
                out[key] = {"value": value, "type": kind}
        return out

    def link(self, link: Any) -> dict[str, Any]:
        lctx = link.context
        out: dict[str, Any] = {
            "trace_id": format(lctx.trace_id, "032x"),
            "span_id": format(lctx.span_id, "016x"),
            "sampled": bool(lctx.trace_flags & 1),
        }
        if link.attributes:
            out["attributes"] = {
                k: typed(v) for k, v in self._scrubber.data(link.attributes).items()
            }
        return out
