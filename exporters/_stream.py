"""Span streaming: every sampled OTel span as a Sentry span v2 item, batched.

``WIDGETTRACE_SENTRY_SPANS=stream`` (and ``auto`` for sentry.io DSNs and the local log) replaces
the transaction processor with :class:`StreamSpanProcessor`. Sentry's own SDK does the same
since 2.66 with ``trace_lifecycle="stream"``; this module sends exactly its format
(``tests/test_sentry_stream.py`` compares the two field by field):

* one ``span`` item per envelope, content type ``application/vnd.sentry.items.span.v2+json``,
  payload ``{"version": 2, "items": [span, ...]}``, ``item_count`` in the item headers, the
  trace's dynamic sampling context as the envelope's ``trace`` header;
* each span: ``trace_id``, ``span_id``, ``parent_span_id`` (not on a local root), ``name``,
  ``status`` (``ok`` / ``error``), ``is_segment`` (a local root: no parent, or a remote one),
  ``start_timestamp`` / ``end_timestamp`` (seconds), ``links``, and ``attributes`` typed the way
  ``sentry_sdk.utils.serialize_attribute`` types them (``{"value": ..., "type": "string"}``);
  ``sentry.segment.id`` / ``sentry.segment.name`` name the local root, ``sentry.op`` is the op
  the transaction path would give the span.

Batching follows :class:`sentry_sdk._span_batcher.SpanBatcher` (its limits are read from it):
spans are bucketed per trace (an envelope carries one trace's sampling context), a bucket is sent
when its segment ends or it reaches 1000 spans or 5 MB, at most 1000 spans go in one envelope,
and beyond 2000 spans waiting in one trace the rest are dropped and counted (``queue_overflow``,
category ``span``). The SDK's batcher itself is not used: it serialises on a second thread that
wakes for every segment, which measured twice the CPU of a batch processor per span
(``benchmarks/bench_spans.py``); here the export thread that encodes the spans sends them, and
a bucket whose segment has not ended waits at most :data:`FLUSH_INTERVAL_S` (the SDK waits 5 s).
Envelopes are the SDK's ``Envelope``/``Item`` classes, handed to the client's transport and
Spotlight the way the SDK's own ``_capture_envelope`` does, so rate limits (category ``span``),
retries and client reports stay the SDK's. Errors never wait behind spans: they are sent by the
SDK's ``capture_event`` directly, not through this queue.

On the application's thread ``on_start`` remembers the span's local root (one dict entry while
the span is open) and ``on_end`` appends a tuple of references to a bounded deque; a daemon
thread turns them into span JSON (scrubbed like every other payload) and hands them to the
batcher.
"""

from __future__ import annotations

import math
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

import orjson
import sentry_sdk
from opentelemetry import context as context_api
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.trace import StatusCode
from sentry_sdk._span_batcher import SpanBatcher
from sentry_sdk.envelope import Envelope, Item, PayloadRef
from sentry_sdk.utils import format_attribute, format_timestamp, serialize_attribute

from widgettrace.exporters._scrub import Scrubber
from widgettrace.exporters._sentry_convert import classify, dumps
from widgettrace.instrumentation import semconv as sc
from widgettrace.instrumentation._guard import internal_errors, logger

__all__ = [
    "FLUSH_INTERVAL_S",
    "SPAN_CONTENT_TYPE",
    "StreamSpanProcessor",
    "span_envelope",
    "typed",
]

SPAN_CONTENT_TYPE = SpanBatcher.CONTENT_TYPE
#: Longest a span waits in the batcher when its segment has not ended (the SDK waits 5 s; a
#: short deadline keeps spans of long traces and late children flowing, and bounds what a
#: crash loses).
FLUSH_INTERVAL_S = 1.0
#: How often the export thread looks at its queue when nothing wakes it.
TICK_S = 0.05
#: Ended spans queued that wake the export thread before its tick.
WAKE_AT_QUEUED = 256
#: Most spans encoded before the buckets that are due are sent.
DRAIN_BATCH = 2048
#: Longest the export thread waits for room in a full transport queue.
BACKPRESSURE_WAIT_S = 2.0
#: Open spans whose local root is remembered; beyond it a span's segment is left unnamed.
MAX_OPEN = 100_000

_SDK_NAME = "sentry.python.widgettrace"
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


class _Bucket:
    """Encoded spans of one trace waiting for their envelope."""

    __slots__ = ("first", "hex", "hex_bytes", "size", "spans", "transaction")

    def __init__(self, first: float, trace_hex: str) -> None:
        self.first = first
        self.hex = trace_hex
        self.hex_bytes = trace_hex.encode()
        #: (span JSON without its last two braces, segment id whose name it still needs or 0)
        self.spans: list[tuple[bytes, int]] = []
        self.size = 0
        self.transaction: str | None = None


_TYPES = {str: "string", bool: "boolean", int: "integer", float: "double"}


def typed(value: Any) -> dict[str, Any]:
    """An attribute value in the span v2 wire format, exactly as the SDK types it
    (``sentry_sdk.utils.format_attribute`` then ``serialize_attribute``)."""
    kind = _TYPES.get(type(value))
    if kind is not None and (kind != "double" or math.isfinite(value)):
        return {"value": value, "type": kind}
    return serialize_attribute(format_attribute(value))  # type: ignore[return-value]


# (the ended span, its segment's span id or 0 when unknown): what the batch processor keeps
# (the span), plus the one thing only the application's thread knows (its local root).
_Rec = tuple[Any, int]
#: Encoded attribute fragments remembered (see ``_attributes_json``); past it, start over.
_FRAGMENTS_MAX = 8192


class StreamSpanProcessor(SpanProcessor):
    """Streams every sampled span to Sentry as span v2 items (see the module docstring)."""

    def __init__(
        self,
        *,
        resource: Resource | None = None,
        release: str | None = None,
        environment: str | None = None,
        send_default_pii: bool = False,
        queue_size: int = 20_000,
        get_client: Callable[[], Any] = sentry_sdk.get_client,
        scrubber: Scrubber | None = None,
        shutdown_timeout_s: float = 5.0,
    ) -> None:
        self._shutdown_timeout = shutdown_timeout_s
        self._release = release
        self._environment = environment
        self._scrubber = scrubber if scrubber is not None else Scrubber(send_default_pii)
        self._queue_size = queue_size
        self._get_client = get_client
        static: dict[str, Any] = {
            "sentry.origin": "auto.otel",
            "sentry.sdk.name": _SDK_NAME,
            "sentry.sdk.version": sentry_sdk.VERSION,
        }
        res = dict(resource.attributes) if resource is not None else {}
        for key in (sc.SERVICE_NAME, sc.SERVICE_VERSION):
            if key in res:
                static[key] = str(res[key])
        if release:
            static["sentry.release"] = release
        if environment:
            static["sentry.environment"] = environment
        self._static = {key: typed(value) for key, value in static.items()}
        # ``"k":{...},...`` : the attributes every span starts with, encoded once.
        self._static_inner = dumps(self._static)[1:-1]
        self._setup()
        if hasattr(os, "register_at_fork"):
            ref = weakref.ref(self)

            def restart_in_child() -> None:
                processor = ref()
                if processor is not None and not processor._stopped:
                    processor._setup()

            os.register_at_fork(after_in_child=restart_in_child)

    def _setup(self) -> None:
        self._queue: deque[_Rec] = deque()
        self._roots: dict[int, Any] = {}
        self._dropped = 0
        self._drop_lock = threading.Lock()
        self._warned = False
        self._wake = threading.Event()
        self._stopped = False
        self._flush_requests: list[threading.Event] = []
        self._requests_lock = threading.Lock()
        # Encoded spans per trace, oldest first (dicts keep insertion order).
        self._buckets: dict[int, _Bucket] = {}
        self._ready: set[int] = set()
        self._lost_full = 0
        #: segment span id -> ``,"sentry.segment.name":...`` for children sent with or after it
        self._root_names: dict[int, bytes] = {}
        self._dsc_for: Any = None
        self._dsc_base: dict[str, str] = {}
        self._shapes: dict[tuple[str, ...], bool] = {}
        # Encoded JSON remembered by the export thread (see _encode).
        self._fragments: dict[tuple[Any, ...], bytes] = {}
        self._ops: dict[str, bytes] = {}
        self._names_json: dict[str, bytes] = {}
        self._segments_json: dict[tuple[str, str], tuple[bytes, bytes]] = {}
        self._checks_for: Any = None
        self._checks: list[Callable[[], bool]] = []
        self._waits: list[Callable[[Envelope, float], bool]] = []
        self._thread = threading.Thread(
            target=self._run, name="widgettrace-sentry-stream", daemon=True
        )
        self._thread.start()

    # --- application thread ------------------------------------------------------------------

    def on_start(self, span: Any, parent_context: context_api.Context | None = None) -> None:
        """Remember the span's segment (its local root) while it is open, by span id."""
        try:
            # The SDK span's parent SpanContext (a tuple: [1] span id, [2] is_remote) is set
            # before on_start: no context lookup, no property calls on the application's thread.
            parent = span._parent
            if parent is None or parent[2]:
                return  # a segment itself
            roots = self._roots
            if len(roots) < MAX_OPEN:
                pid = parent[1]
                roots[span._context[1]] = roots.get(pid, pid)
        except Exception:
            with internal_errors("stream.on_start"):
                raise

    def on_end(self, span: ReadableSpan) -> None:
        """Queue the span (O(1), as the SDK's batch processor does); count it if the queue is
        full. Everything else (reading its fields, encoding, scrubbing) is the export thread's."""
        try:
            ctx: Any = span._context
            root = self._roots.pop(ctx[1], 0) if self._roots else 0
            if not ctx[3] & 1 or self._stopped:
                return
            queue = self._queue
            queued = len(queue)
            if queued >= self._queue_size:
                with self._drop_lock:
                    self._dropped += 1
                return
            queue.append((span, root))
            if queued == WAKE_AT_QUEUED:
                self._wake.set()
        except Exception:
            with internal_errors("stream.on_end"):
                raise

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Convert what is queued, send every bucket, then flush the SDK transport."""
        return self._flush(timeout_millis / 1000)

    @property
    def stopped(self) -> bool:
        """Whether :meth:`shutdown` ran (the exit handler asks)."""
        return self._stopped

    def shutdown(self) -> None:
        """Send everything queued, stop the thread."""
        self.shutdown_within(self._shutdown_timeout)

    def shutdown_within(self, timeout: float) -> None:
        """:meth:`shutdown`, giving up after ``timeout`` seconds."""
        if self._stopped:
            return
        deadline = time.monotonic() + timeout
        self._flush(timeout)
        self._stopped = True
        self._wake.set()
        self._thread.join(timeout=max(0.1, deadline - time.monotonic()))

    def _flush(self, timeout: float) -> bool:
        if not self._thread.is_alive():
            return False
        deadline = time.monotonic() + timeout
        done = threading.Event()
        with self._requests_lock:
            self._flush_requests.append(done)
        self._wake.set()
        if not done.wait(timeout):
            return False
        with internal_errors("stream.flush_transport"):
            client = self._get_client()
            remaining = deadline - time.monotonic()
            if client.transport is not None and remaining > 0:
                client.transport.flush(remaining)
        return time.monotonic() < deadline

    # --- export thread -----------------------------------------------------------------------

    def _run(self) -> None:
        # HTTP requests made from this thread (Spotlight) must not become spans themselves.
        context_api.attach(context_api.set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
        while True:
            self._wake.wait(TICK_S)
            self._wake.clear()
            with self._requests_lock:
                requests, self._flush_requests = self._flush_requests, []
            with internal_errors("stream.export"):
                while True:
                    # At most DRAIN_BATCH spans encoded between sends: a backlog (the
                    # delivery queue pushing back) is not all encoded and held at once.
                    more = self._drain()
                    self._send(flush_all=(bool(requests) or self._stopped) and not more)
                    if not more:
                        break
                self._report_dropped()
            for done in requests:
                done.set()
            if self._stopped:
                return

    def _drain(self) -> bool:
        """Encode queued spans into their trace's bucket; True when DRAIN_BATCH were taken and
        more wait."""
        queue = self._queue
        if not queue:
            return False
        client = self._get_client()
        if client is not self._dsc_for:
            self._dsc_for = client
            self._dsc_base = self._dsc_base_for(client)
        now = time.monotonic()
        buckets = self._buckets
        ready = self._ready
        popleft = queue.popleft
        max_drop = SpanBatcher.MAX_BEFORE_DROP
        max_count = SpanBatcher.MAX_BEFORE_FLUSH
        max_bytes = SpanBatcher.MAX_BYTES_BEFORE_FLUSH
        encode = self._encode
        for _ in range(DRAIN_BATCH):
            if not queue:
                return False
            rec = popleft()
            tid = rec[0]._context[0]
            bucket = buckets.get(tid)
            if bucket is None:
                bucket = buckets[tid] = _Bucket(now, format(tid, "032x"))
            elif len(bucket.spans) >= max_drop:
                self._lost_full += 1  # the SDK's limit per trace waiting
                continue
            try:
                body, segment_name, needs = encode(rec, bucket.hex_bytes)
            except Exception as exc:
                with internal_errors("stream.build_span"):
                    raise exc
                continue
            bucket.spans.append((body, needs))
            bucket.size += len(body)
            if segment_name is not None:
                bucket.transaction = segment_name
                ready.add(tid)
            elif len(bucket.spans) >= max_count or bucket.size >= max_bytes:
                ready.add(tid)
        return bool(queue)

    def _send(self, *, flush_all: bool) -> None:
        """Envelopes for the buckets whose segment ended, that are full, or waited too long."""
        buckets = self._buckets
        if not buckets:
            return
        if flush_all:
            due = list(buckets)
        else:
            due = list(self._ready)
            limit = time.monotonic() - FLUSH_INTERVAL_S
            for tid, bucket in buckets.items():  # oldest first
                if bucket.first > limit:
                    break
                due.append(tid)
        self._ready.clear()
        if not due:
            return
        sent_at = format_timestamp(datetime.now(timezone.utc))
        client = self._get_client()
        spotlight = getattr(client, "spotlight", None)
        transport = client.transport
        for tid in due:
            if tid not in buckets:
                continue
            bucket = buckets.pop(tid)
            dsc = dict(self._dsc_base)
            dsc["trace_id"] = bucket.hex
            if bucket.transaction is not None:
                dsc["transaction"] = bucket.transaction
            spans = self._close(bucket)
            step = SpanBatcher.MAX_ENVELOPE_SIZE
            for start in range(0, len(spans), step):
                envelope = span_envelope(sent_at, dsc, spans[start : start + step])
                try:
                    self._capture(envelope, spotlight, transport)
                except Exception as exc:
                    with internal_errors("stream.send"):
                        raise exc

    def _close(self, bucket: _Bucket) -> list[bytes]:
        """The bucket's spans as finished JSON, segment names filled in where known: a child
        usually ends before its segment, whose final name is known only when it ends."""
        names = self._root_names
        out = []
        for body, needs in bucket.spans:
            fragment = names.get(needs) if needs else None
            out.append(body + b"}}" if fragment is None else body + fragment + b"}}")
        return out

    def _encode(self, rec: _Rec, trace_hex: bytes) -> tuple[bytes, str | None, int]:
        """One span as span v2 JSON without its last two braces, its segment name when it is a
        segment, and the segment id whose name it still needs (0: none).

        The attributes are spliced from encoded fragments: the static ones once per processor,
        Sentry's derived ones per op and segment name, the user's per (key, value) through a
        bounded memo (:meth:`_attributes_json`), so a span of a known route, host or widget
        operation costs lookups rather than scrubbing, typing and encoding."""
        span, segment = rec
        ctx = span._context
        parent = span._parent
        name = span._name
        kind = span._kind
        code = span._status._status_code
        attrs = span._attributes
        links = span._links
        start = span._start_time or 0
        end = span._end_time or 0
        sid = ctx[1]
        is_segment = parent is None or parent[2]
        attributes = getattr(attrs, "_dict", attrs) or {}
        keys = tuple(attributes)
        op, description, _status, segment_name, source = classify(
            name, kind, code, attributes, keys
        )
        needs = 0
        text = self._scrubber.text_cached  # names and descriptions are free text
        if is_segment:
            segment_name = text(segment_name)
            display = segment_name
            segment_json = self._segment_json(segment_name, source)
            names = self._root_names
            if len(names) >= MAX_OPEN:
                names.clear()
            names[sid] = segment_json[0]
            derived = b"%b,%b,%b,%b" % (
                self._op_json(op),
                _PLATFORM_JSON,
                _SEGMENT_ID % sid,
                segment_json[1],
            )
        else:
            display = text(description)
            # Unknown (its parent started before this processor was added): the parent.
            needs = segment or parent[1]
            derived = b"%b,%b" % (self._op_json(op), _SEGMENT_ID % needs)
        if not attributes:
            attributes_json = b"{%b,%b" % (self._static_inner, derived)
        else:
            clash = self._shapes.get(keys)
            if clash is None:
                clash = any(k in self._static or k in _DERIVED for k in keys)
                if len(self._shapes) < 4096:
                    self._shapes[keys] = clash
            if clash:  # the user's value wins, as in the SDK (its attributes are set last)
                extra = orjson.loads(b"{" + derived + b"}")
                user = self._typed_attributes(attributes, keys)
                attributes_json = dumps({**self._static, **extra, **user})[:-1]
            else:
                attributes_json = b"{%b,%b,%b" % (
                    self._static_inner,
                    self._attributes_json(attributes),
                    derived,
                )
        head = (
            b'{"trace_id":"%b","span_id":"%016x","name":%b,"status":"%b","is_segment":%b,'
            b'"start_timestamp":%d.%09d,"end_timestamp":%d.%09d'
            % (
                trace_hex,
                sid,
                self._name_json(display),
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
            head += b',"links":' + dumps([self._link(link) for link in links])
        return (
            head + b',"attributes":' + attributes_json,
            segment_name if is_segment else None,
            needs,
        )

    def _attributes_json(self, attributes: Mapping[str, Any]) -> bytes:
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
                out.append(dumps(self._typed_attributes({key: value}, (key,)))[1:-1])
                continue
            if fragment is None:
                fragment = dumps(self._typed_attributes({key: value}, (key,)))[1:-1]
                if len(fragments) >= _FRAGMENTS_MAX:  # values vary without bound: start over
                    fragments.clear()
                fragments[memo] = fragment
            out.append(fragment)
        return b",".join(out)

    def _op_json(self, op: str) -> bytes:
        hit = self._ops.get(op)
        if hit is None:
            hit = b'"sentry.op":' + dumps(typed(op))
            if len(self._ops) < 4096:
                self._ops[op] = hit
        return hit

    def _name_json(self, name: str) -> bytes:
        hit = self._names_json.get(name)
        if hit is None:
            hit = dumps(name)
            if len(self._names_json) >= _FRAGMENTS_MAX:
                self._names_json.clear()
            self._names_json[name] = hit
        return hit

    def _segment_json(self, name: str, source: str) -> tuple[bytes, bytes]:
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

    def _typed_attributes(
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

    def _link(self, link: Any) -> dict[str, Any]:
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

    def _dsc_base_for(self, client: Any) -> dict[str, str]:
        dsn = getattr(client, "parsed_dsn", None)
        dsc: dict[str, str] = {"sampled": "true"}
        if dsn is not None:
            dsc["public_key"] = dsn.public_key
        if self._release:
            dsc["release"] = self._release
        if self._environment:
            dsc["environment"] = self._environment
        return dsc

    # --- sending (the SDK client's own path) -------------------------------------------------

    def _capture(self, envelope: Envelope, spotlight: Any, transport: Any) -> None:
        """To Spotlight and the client's transport, as the SDK's ``_capture_envelope`` does."""
        if spotlight is not None:
            with internal_errors("stream.spotlight"):
                spotlight.capture_envelope(envelope)
        if transport is not None:
            self._wait_for_room(transport, envelope)
            transport.capture_envelope(envelope)

    def _wait_for_room(self, transport: Any, envelope: Envelope) -> None:
        """Back-pressure: a full transport queue makes this thread wait (up to
        BACKPRESSURE_WAIT_S), so a burst backs up into the span queue, where an overflow is
        counted, instead of the transport dropping whole envelopes. The HTTP delivery waits
        only while its destination is healthy (``wait_for_room``); the local log's queue and
        the SDK's worker are polled."""
        if transport is not self._checks_for:
            self._checks_for = transport
            self._checks = []
            self._waits = []
            for holder in (transport, getattr(transport, "inner", None)):
                if holder is None:
                    continue
                wait = getattr(holder, "wait_for_room", None)
                if callable(wait):
                    self._waits.append(wait)
                    continue
                check = getattr(holder, "queue_full", None)
                if check is None:
                    check = getattr(getattr(holder, "_worker", None), "full", None)
                if callable(check):
                    self._checks.append(check)
        for wait in self._waits:
            wait(envelope, BACKPRESSURE_WAIT_S)
        checks = self._checks
        if not checks or not any(full() for full in checks):
            return
        deadline = time.monotonic() + BACKPRESSURE_WAIT_S
        while any(full() for full in checks):
            if time.monotonic() >= deadline or self._stopped:
                return  # the SDK drops and counts it (client report queue_overflow)
            time.sleep(0.002)

    def _record_lost_kw(self, **kwargs: Any) -> None:
        with internal_errors("stream.record_lost"):
            transport = self._get_client().transport
            if transport is not None:
                transport.record_lost_event(**kwargs)

    def _report_dropped(self) -> None:
        if self._lost_full:
            full, self._lost_full = self._lost_full, 0
            self._record_lost_kw(reason="queue_overflow", data_category="span", quantity=full)
        if not self._dropped:
            return
        with self._drop_lock:
            dropped, self._dropped = self._dropped, 0
        self._record_lost_kw(reason="queue_overflow", data_category="span", quantity=dropped)
        if not self._warned:
            self._warned = True
            logger.warning(
                "widgettrace: the span stream queue (WIDGETTRACE_QUEUE_SIZE) was full; %d spans "
                "dropped (counted in Sentry client reports as queue_overflow)",
                dropped,
            )
