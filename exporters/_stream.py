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

Batching and delivery are the SDK's: :class:`sentry_sdk._span_batcher.SpanBatcher` buckets
spans per trace (an envelope carries one trace's sampling context), sends a bucket when its
segment ends or it reaches 1000 spans or 5 MB, and drops (counting ``queue_overflow``, category
``span``) beyond 2000 spans waiting in one trace; we only shorten its deadline for stragglers
from 5 s to :data:`FLUSH_INTERVAL_S`. Envelopes go to the client's transport and Spotlight the
way the SDK's own ``_capture_envelope`` sends them, so rate limits, retries and client reports
stay the SDK's. Errors never wait behind spans: they are sent by the SDK's ``capture_event``
directly, not through this queue.

On the application's thread ``on_start`` remembers the span's local root (one dict entry while
the span is open) and ``on_end`` appends a tuple of references to a bounded deque; a daemon
thread turns them into span JSON (scrubbed like every other payload) and hands them to the
batcher.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

import sentry_sdk
from opentelemetry import context as context_api
from opentelemetry import trace as trace_api
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.trace import SpanKind, StatusCode
from sentry_sdk._span_batcher import SpanBatcher
from sentry_sdk.envelope import Envelope
from sentry_sdk.utils import format_attribute, serialize_attribute

from widgettrace.exporters._sentry_convert import Scrubber, classify
from widgettrace.instrumentation import semconv as sc
from widgettrace.instrumentation._guard import internal_errors, logger

__all__ = [
    "FLUSH_INTERVAL_S",
    "SPAN_CONTENT_TYPE",
    "StreamSpanProcessor",
    "WidgetSpanBatcher",
    "typed",
    "wants_stream",
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
#: Open spans whose local root is remembered; beyond it a span's segment is left unnamed.
MAX_OPEN = 100_000

_SDK_NAME = "sentry.python.widgettrace"


class WidgetSpanBatcher(SpanBatcher):
    """The SDK's span batcher with a short deadline; our spans arrive typed already."""

    FLUSH_WAIT_TIME = FLUSH_INTERVAL_S

    @staticmethod
    def _to_transport_format(item: Any) -> Any:
        # Attributes were typed (serialize_attribute's format) on our export thread.
        return {k: v for k, v in item.items() if k != "_segment_span"}


class _Segment:
    """What the batcher reads from a span's segment: its dynamic sampling context."""

    __slots__ = ("dsc",)

    def __init__(self, dsc: dict[str, str]) -> None:
        self.dsc = dsc

    def _dynamic_sampling_context(self) -> dict[str, str]:
        return self.dsc


def typed(value: Any) -> dict[str, Any]:
    """An attribute value in the span v2 wire format, exactly as the SDK types it."""
    cls = type(value)
    if cls is str:
        return {"value": value, "type": "string"}
    if cls is int:
        return {"value": value, "type": "integer"}
    if cls is bool:
        return {"value": value, "type": "boolean"}
    return serialize_attribute(format_attribute(value))  # type: ignore[return-value]


def wants_stream(setting: str, dsn: str | None, spotlight: Any) -> bool:
    """Whether ``WIDGETTRACE_SENTRY_SPANS`` (``auto`` / ``transactions`` / ``stream``) streams.

    ``auto`` streams to sentry.io (its ingest hosts), which takes span v2 items. Self-hosted
    Sentry (its version, so whether it ingests span items, is unknown here), Bugsink (errors
    only), Spotlight (4.11 relays span items but its UI reads only event, transaction, profile
    and log items: ``tests/test_wire_spotlight.py``) and the local log alone (whose
    readers, ``widgettrace summary`` and the insights layer, count transactions) get
    transactions. With sentry.io and the local log, the local log gets one line per span.
    """
    if setting in ("stream", "transactions"):
        return setting == "stream"
    if spotlight or not dsn:
        return False
    host = dsn.split("@", 1)[-1].split("/", 1)[0].split(":", 1)[0].lower()
    return host == "sentry.io" or host.endswith(".sentry.io")


# (context, parent context, name, kind, status code, attributes, start ns, end ns, links,
#  local root span or None)
_Rec = tuple[Any, Any, str, SpanKind, StatusCode, Any, int, int, Any, Any]


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
    ) -> None:
        self._release = release
        self._environment = environment
        self._scrubber = Scrubber(send_default_pii)
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
        self._segment_static = {
            "sentry.platform": typed("python"),
        }
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
        self._batcher = WidgetSpanBatcher(self._capture, self._record_lost_kw)
        self._dsc_for: Any = None
        self._dsc_base: dict[str, str] = {}
        self._thread = threading.Thread(
            target=self._run, name="widgettrace-sentry-stream", daemon=True
        )
        self._thread.start()

    # --- application thread ------------------------------------------------------------------

    def on_start(self, span: Any, parent_context: context_api.Context | None = None) -> None:
        """Remember the span's local root (its segment), if it has a local parent."""
        try:
            parent = trace_api.get_current_span(parent_context)
            pctx = parent.get_span_context()
            if not pctx.is_valid or pctx.is_remote or len(self._roots) >= MAX_OPEN:
                return
            roots = self._roots
            root = roots.get(pctx.span_id, parent)
            roots[span._context[1]] = root
        except Exception:
            with internal_errors("stream.on_start"):
                raise

    def on_end(self, span: ReadableSpan) -> None:
        """Queue the span's fields (O(1)); count it if the queue is full."""
        try:
            ctx: Any = span._context
            root = self._roots.pop(ctx[1], None) if self._roots else None
            if not ctx[3] & 1 or self._stopped:
                return
            queued = len(self._queue)
            if queued >= self._queue_size:
                with self._drop_lock:
                    self._dropped += 1
                return
            record: _Rec = (
                ctx,
                span._parent,
                span._name,
                span._kind,
                span._status._status_code,
                span._attributes,
                span._start_time or 0,
                span._end_time or 0,
                span._links,
                root,
            )
        except Exception:
            with internal_errors("stream.on_end"):
                raise
            return
        self._queue.append(record)
        if queued == WAKE_AT_QUEUED:
            self._wake.set()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Convert what is queued, send every bucket, then flush the SDK transport."""
        return self._flush(timeout_millis / 1000)

    def shutdown(self) -> None:
        """Send everything queued, stop the thread."""
        if self._stopped:
            return
        self._flush(5.0)
        self._stopped = True
        self._wake.set()
        self._thread.join(timeout=5.0)
        with internal_errors("stream.shutdown"):
            self._batcher.kill()

    def _flush(self, timeout: float) -> bool:
        if not self._thread.is_alive():
            return False
        done = threading.Event()
        with self._requests_lock:
            self._flush_requests.append(done)
        self._wake.set()
        if not done.wait(timeout):
            return False
        with internal_errors("stream.flush_transport"):
            client = self._get_client()
            if client.transport is not None:
                client.transport.flush(timeout)
        return True

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
                self._drain()
                if requests:
                    self._batcher.flush()
                self._report_dropped()
            for done in requests:
                done.set()
            if self._stopped:
                return

    def _drain(self) -> None:
        queue = self._queue
        if not queue:
            return
        client = self._get_client()
        if client is not self._dsc_for:
            self._dsc_for = client
            self._dsc_base = self._dsc_base_for(client)
        add = self._batcher.add
        popleft = queue.popleft
        while queue:
            rec = popleft()
            try:
                span = self._span_json(rec)
            except Exception as exc:
                with internal_errors("stream.build_span"):
                    raise exc
                continue
            add(span)  # type: ignore[arg-type]

    def _span_json(self, rec: _Rec) -> dict[str, Any]:
        """One span in the span v2 format (attributes typed), with its ``_segment_span``."""
        ctx, parent, name, kind, code, attrs, start, end, links, root = rec
        trace_hex = format(ctx[0], "032x")
        span_hex = format(ctx[1], "016x")
        is_segment = parent is None or parent.is_remote
        attributes = attrs._dict if hasattr(attrs, "_dict") else (attrs or {})
        keys = tuple(attributes)
        op, description, _status, segment_name, source = classify(
            name, kind, code, attributes, keys
        )
        out: dict[str, Any] = dict(self._static)
        if attributes:
            for key, value in self._scrubber.data(attributes).items():
                out[key] = typed(value)
        out["sentry.op"] = typed(op)
        if is_segment:
            out.update(self._segment_static)
            out["sentry.segment.id"] = typed(span_hex)
            out["sentry.segment.name"] = typed(segment_name)
            out["sentry.segment.name.source"] = typed(source)
            display = segment_name
        else:
            display = description
            if root is not None:
                out["sentry.segment.id"] = typed(format(root.get_span_context().span_id, "016x"))
                out["sentry.segment.name"] = typed(self._root_name(root))
        span: dict[str, Any] = {
            "trace_id": trace_hex,
            "span_id": span_hex,
            "name": display,
            "status": "error" if code is StatusCode.ERROR else "ok",
            "is_segment": is_segment,
            "start_timestamp": start / 1e9,
            "end_timestamp": end / 1e9,
        }
        if parent is not None:
            span["parent_span_id"] = format(parent.span_id, "016x")
        if links:
            span["links"] = [self._link(link) for link in links]
        span["attributes"] = out
        dsc = dict(self._dsc_base)
        dsc["trace_id"] = trace_hex
        if is_segment:
            dsc["transaction"] = segment_name
        span["_segment_span"] = _Segment(dsc)
        return span

    def _root_name(self, root: Any) -> str:
        # The root may still be open on another thread: copy its attributes (one C-level copy
        # under the GIL) before reading them.
        raw = getattr(root, "_attributes", None)
        attrs = dict(getattr(raw, "_dict", raw) or {})
        return classify(root.name, root.kind, root.status.status_code, attrs, tuple(attrs))[3]

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

    def _capture(self, envelope: Envelope) -> None:
        client = self._get_client()
        spotlight = getattr(client, "spotlight", None)
        if spotlight is not None:
            with internal_errors("stream.spotlight"):
                spotlight.capture_envelope(envelope)
        if client.transport is not None:
            client.transport.capture_envelope(envelope)

    def _record_lost_kw(self, **kwargs: Any) -> None:
        with internal_errors("stream.record_lost"):
            transport = self._get_client().transport
            if transport is not None:
                transport.record_lost_event(**kwargs)

    def _report_dropped(self) -> None:
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


def stream_processor_options(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The subset of the transaction processor's options the stream processor takes."""
    keep = ("resource", "release", "environment", "send_default_pii", "queue_size", "get_client")
    return {key: kwargs[key] for key in keep if key in kwargs}
