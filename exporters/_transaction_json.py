"""Sentry transaction JSON: the encoding half of the transactions span processor.

:class:`TransactionEncoder` runs on the export thread of
:class:`~widgettrace.exporters._transactions.WidgetTraceSpanProcessor`. Each ended span is
encoded once, when the thread drains it (:meth:`TransactionEncoder.record`): a local root as its
transaction event without spans, any other span as a child span, so what waits for a
transaction is bytes. What one route's transactions share (name, op, status, description, tags)
and what every transaction shares (platform, SDK, release, environment, the envelope's dynamic
sampling context) is encoded once and spliced in. :meth:`TransactionEncoder.envelope` then joins
a root and its spans into the SDK's ``Envelope``, adding what the scope API set on them (user,
tags, contexts) and their breadcrumbs.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

import orjson
import sentry_sdk
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import SpanKind
from sentry_sdk.envelope import Envelope, Item, PayloadRef
from sentry_sdk.utils import format_timestamp

from widgettrace.exporters._scrub import Scrubber
from widgettrace.exporters._sentry_convert import (
    Ended,
    breadcrumbs_from,
    classify,
    dumps,
    span_json,
    with_events,
)
from widgettrace.instrumentation import semconv as sc

__all__ = [
    "MAX_TAG_LENGTH",
    "Rec",
    "TransactionEncoder",
    "resource_tags_of",
    "transaction_envelope",
]

#: Sentry's limit on a tag value.
MAX_TAG_LENGTH = 200
#: Scope user fields by their OTel attribute (``user.*``).
_USER_ATTRS = {
    sc.USER_ID: "id",
    sc.USER_EMAIL: "email",
    sc.USER_NAME: "username",
    sc.USER_FULL_NAME: "name",
    sc.USER_ROLES: "roles",
}
_getrandbits = random.Random().getrandbits
_SDK_INFO = {"name": "sentry.python.widgettrace", "version": sentry_sdk.VERSION}
_RESOURCE_TAGS = (sc.SERVICE_NAME, sc.SERVICE_VERSION)

#: What an ended span leaves until its transaction is sent: (local parent span id or 0 for a
#: local root, start time in ns, JSON (a local root's transaction event without its spans, any
#: other span as a child span), the transaction name (local root) or span name, None or (scope
#: API attributes, breadcrumbs)). Tuples of plain values: the garbage collector stops walking
#: them after one pass, where span objects and dicts cost it a visit every time.
Rec = tuple[
    int,
    int,
    bytes,
    str,
    "tuple[list[tuple[str, Any]], list[dict[str, Any]] | None] | None",
]

_TRANSACTION_ITEM_HEADERS = {"type": "transaction", "content_type": "application/json"}


def transaction_envelope(headers: dict[str, Any], payload: bytes, spans: list[bytes]) -> Envelope:
    """``Envelope(headers, [Item(payload, type="transaction")])``, built the way its
    constructors would build it, without their copies and checks (a microsecond a transaction).
    ``tests/test_sentry_processor.py`` compares the two."""
    item = Item.__new__(Item)
    item.headers = _TRANSACTION_ITEM_HEADERS.copy()
    item.payload = PayloadRef(bytes=payload, json={"spans": spans})
    envelope = Envelope.__new__(Envelope)
    envelope.headers = headers
    envelope.items = [item]
    return envelope


def resource_tags_of(resource: Resource | None) -> dict[str, str]:
    """The resource attributes every event carries as tags."""
    res = dict(resource.attributes) if resource is not None else {}
    return {key: str(res[key])[:MAX_TAG_LENGTH] for key in _RESOURCE_TAGS if key in res}


def _dsn_host(client: Any) -> str | None:
    dsn = getattr(client, "parsed_dsn", None)
    return getattr(dsn, "netloc", None) if dsn is not None else None


class TransactionEncoder:
    """Transaction events for one processor (see the module docstring). Not thread-safe: the
    export thread's alone; a forked child makes its own (event ids are unique per process)."""

    def __init__(
        self,
        *,
        scrubber: Scrubber,
        release: str | None,
        environment: str | None,
        resource_tags: dict[str, str],
    ) -> None:
        self._scrubber = scrubber
        self._release = release
        self._environment = environment
        self._resource_tags = resource_tags
        self._id_prefix = f"{random.SystemRandom().getrandbits(64):016x}"
        self._id_counter = itertools.count(_getrandbits(32))
        #: The envelopes' ``sent_at`` and the SDK client, set per batch (:meth:`begin`).
        self.sent_at = format_timestamp(datetime.now(timezone.utc))
        self.client: Any = None
        self._static = b"}"
        self._heads: dict[tuple[str, str, str, str, str], bytes] = {}
        self._static_for: Any = None
        self._dsc: dict[str, str] | None = None
        self._dsc_for: Any = None

    def begin(self, client: Any) -> None:
        """Start a batch: once per batch, not per envelope (both are measurable at thousands
        a second)."""
        self.sent_at = format_timestamp(datetime.now(timezone.utc))
        self.client = client

    def record(self, span: Ended, sid: int, psid: int, trace_hex: str) -> Rec | None:
        """What a span leaves behind until its transaction is sent (None: not to be sent).

        A local root keeps its transaction event (without spans); any other span its JSON as a
        child span, turned into a transaction of its own only if it ends up without its parent.
        """
        scope_items: list[tuple[str, Any]] = []
        name = span[2]
        if psid:
            body = span_json(span, sid, psid, trace_hex, self._scrubber, scope_items)
        else:
            attrs = span[5]
            if span[1] is None and span[3] is SpanKind.CLIENT and attrs:
                # The SDK's own HTTP requests to Sentry, if urllib3 is instrumented: never loop.
                host = _dsn_host(self.client)
                url = attrs.get(sc.URL_FULL) or attrs.get(sc.HTTP_URL_OLD)
                if host and url and host in str(url):
                    return None
            body, name = self._top(span, sid, trace_hex, scope_items)
        events = span[6]
        crumbs = breadcrumbs_from(events, self._scrubber) if events else None
        extras = (scope_items, crumbs) if scope_items or crumbs else None
        return (psid, span[7], body, name, extras)

    def _top(
        self, root: Ended, sid: int, trace_hex: str, scope_items: list[tuple[str, Any]]
    ) -> tuple[bytes, str]:
        """A local root's transaction event as JSON (without event id, spans and shared fields)
        and the transaction's name.

        Encoded now, so that sending it (usually with its spans, nothing else) is a join. What
        one route's transactions share (name, op, status, description, tags) is encoded once.
        """
        _, parent, name, kind, code, attrs, events, start, end = root
        if attrs:
            keys = tuple(attrs)
            classified = classify(name, kind, code, attrs, keys)
            data = self._scrubber.data_json(attrs, scope_items, keys)
        else:
            classified = classify(name, kind, code, {}, ())
            data = b"{}"
        if events:
            data = with_events(data, events, self._scrubber)
        head = self._heads.get(classified)
        if head is None:
            head = self._head(classified)
        # Timestamps as seconds with nine decimals, formatted from the integer nanoseconds:
        # a float's repr costs a microsecond each.
        return (
            b'%b"trace_id":"%b","span_id":"%016x"%b,"data":%b}},'
            b'"start_timestamp":%d.%09d,"timestamp":%d.%09d}'
            % (
                head,
                trace_hex.encode(),
                sid,
                b"" if parent is None else b',"parent_span_id":"%016x"' % parent.span_id,
                data,
                start // 1_000_000_000,
                start % 1_000_000_000,
                end // 1_000_000_000,
                end % 1_000_000_000,
            ),
            self._scrubber.text_cached(classified[3]),
        )

    def _head(self, classified: tuple[str, str, str, str, str]) -> bytes:
        """The start of a transaction event, up to the trace context's varying fields."""
        op, description, status, name, source = classified
        # Names and descriptions are free text (span names, db.statement): scrubbed once here.
        name = self._scrubber.text_cached(name)
        description = self._scrubber.text_cached(description)
        event: dict[str, Any] = {
            "type": "transaction",
            "transaction": name,
            "transaction_info": {"source": source},
        }
        if self._resource_tags:
            event["tags"] = self._resource_tags
        trace_context = {"op": op, "status": status, "origin": "auto.otel"}
        if description != name:
            trace_context["description"] = description
        head = dumps(event)[:-1] + b',"contexts":{"trace":' + dumps(trace_context)[:-1] + b","
        if len(self._heads) >= 4096:  # names of url-sourced transactions vary without bound
            self._heads.clear()
        self._heads[classified] = head
        return head

    def _orphan_event(self, span: bytes, name: str) -> dict[str, Any]:
        """A transaction for a span whose parent was sent (or never ended) without it."""
        doc = orjson.loads(span)
        trace_context: dict[str, Any] = {
            key: doc[key]
            for key in ("trace_id", "span_id", "parent_span_id", "op", "status", "data")
            if key in doc
        }
        trace_context["origin"] = "auto.otel"
        if doc.get("description", name) != name:
            trace_context["description"] = doc["description"]
        event: dict[str, Any] = {
            "type": "transaction",
            "transaction": name,
            "transaction_info": {"source": "custom"},
            "start_timestamp": doc["start_timestamp"],
            "timestamp": doc["timestamp"],
            "contexts": {"trace": trace_context},
        }
        if self._resource_tags:
            event["tags"] = self._resource_tags
        return event

    def _dsc_base(self, client: Any) -> dict[str, str] | None:
        """The parts of the envelope's dynamic sampling context every transaction shares."""
        if client is self._dsc_for:
            return self._dsc
        dsn = getattr(client, "parsed_dsn", None)
        dsc = None
        if dsn is not None:
            dsc = {"public_key": dsn.public_key, "sampled": "true"}
            if self._release:
                dsc["release"] = self._release
            if self._environment:
                dsc["environment"] = self._environment
        self._dsc, self._dsc_for = dsc, client
        return dsc

    def _static_suffix(self, client: Any) -> bytes:
        """``,"platform":...}``: the fields every transaction shares, closing the event."""
        if client is self._static_for:
            return self._static
        fields: dict[str, Any] = {"platform": "python", "sdk": _SDK_INFO}
        if self._release:
            fields["release"] = self._release
        if self._environment:
            fields["environment"] = self._environment
        server_name = client.options.get("server_name") if client.options else None
        if server_name:
            fields["server_name"] = server_name
        self._static = b"," + dumps(fields)[1:]
        self._static_for = client
        return self._static

    def envelope(self, trace_hex: str, top: Rec, members: Sequence[Rec]) -> Envelope:
        """The transaction envelope of a local root (or a span that lost its parent) and the
        spans sent with it, its event and spans already encoded (:meth:`record`)."""
        client = self.client
        psid, _, body, name, extras = top
        # A local root was encoded when it ended; a span that lost its parent becomes a
        # transaction of its own (rare).
        event_json = body if not psid else dumps(self._orphan_event(body, name))
        spans = [m[2] for m in members]
        if extras is not None or (members and any(m[4] is not None for m in members)):
            event_json = self._with_scope(event_json, members, extras)
        # Unique, not secret: a random per-process prefix and a counter, no system call.
        event_id = f"{self._id_prefix}{next(self._id_counter):016x}"
        payload = b'{"event_id":"%b","spans":[%b],%b%b' % (
            event_id.encode(),
            b",".join(spans),
            event_json[1:-1],
            self._static_suffix(client),
        )
        headers: dict[str, Any] = {"event_id": event_id, "sent_at": self.sent_at}
        dsc_base = self._dsc_base(client)
        if dsc_base is not None:
            trace_header = dsc_base.copy()
            trace_header["trace_id"] = trace_hex
            trace_header["transaction"] = name
            headers["trace"] = trace_header
        # The SDK reads payload.json only to count the spans of a dropped transaction.
        return transaction_envelope(headers, payload, spans)

    def _with_scope(
        self,
        event_json: bytes,
        members: Sequence[Rec],
        extras: tuple[list[tuple[str, Any]], list[dict[str, Any]] | None] | None,
    ) -> bytes:
        """The event with the scope API's user, tags and contexts and the breadcrumbs of its
        spans (children first and the root last, so the root's values win)."""
        items: list[tuple[str, Any]] = []
        crumbs: list[dict[str, Any]] = []
        for member in members:
            if member[4] is not None:
                items.extend(member[4][0])
                crumbs.extend(member[4][1] or ())
        if extras is not None:
            items.extend(extras[0])
            crumbs.extend(extras[1] or ())
        tags: dict[str, str] = {}
        user: dict[str, Any] = {}
        contexts: dict[str, Any] = {}
        if items:
            self._scope_from_items(items, tags, user, contexts)
        if not tags and not user and not contexts and not crumbs:
            # Nothing to add (e.g. client.address without send_default_pii, on every request
            # of a server): the event is not decoded and encoded again.
            return event_json
        event = orjson.loads(event_json)
        if tags:
            event["tags"] = {**(event.get("tags") or {}), **tags}
        if user:
            event["user"] = user
        for name, values in contexts.items():
            event["contexts"].setdefault(name, {}).update(values)
        if crumbs:
            crumbs.sort(key=lambda c: c["timestamp"])
            event["breadcrumbs"] = {"values": crumbs[-100:]}
        return dumps(event)

    def _scope_from_items(
        self,
        items: list[tuple[str, Any]],
        tags: dict[str, str],
        user: dict[str, Any],
        contexts: dict[str, Any],
    ) -> None:
        """Map scope API attributes (user.*, widget.tag.*, widget.context.*) onto the event.

        ``items`` lists children first and the root last, so the root's values win.
        """
        pii = self._scrubber.send_default_pii
        for key, value in items:
            if key.startswith("user."):
                field_name = _USER_ATTRS.get(key)
                if field_name is None or (field_name == "email" and not pii):
                    continue
                user[field_name] = list(value) if isinstance(value, tuple) else value
            elif key == sc.CLIENT_ADDRESS:
                if pii:
                    user["ip_address"] = value
            elif key.startswith(sc.WIDGET_TAG_PREFIX):
                tag = key[len(sc.WIDGET_TAG_PREFIX) :]
                if self._scrubber.verdict(key) & 3 == 0:
                    tags[tag[:MAX_TAG_LENGTH]] = self._scrubber.text(str(value))[:MAX_TAG_LENGTH]
            elif key.startswith(sc.WIDGET_CONTEXT_PREFIX):
                rest = key[len(sc.WIDGET_CONTEXT_PREFIX) :]
                ctx_name, _, ctx_field = rest.partition(".")
                if ctx_name and ctx_field and ctx_name != "trace":
                    scrubbed = self._scrubber.data({ctx_field: value})
                    contexts.setdefault(ctx_name, {}).update(scrubbed)
