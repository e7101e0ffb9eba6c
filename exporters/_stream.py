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
the span is open) and ``on_end`` appends the span's fields and that root to a bounded deque
(:func:`._span_v2.record`: a tuple of references, so the span object is freed on the thread that
wrote it, where its memory is hot, instead of on the export thread), at the CPU the SDK's
``BatchSpanProcessor`` spends appending the span (``benchmarks/bench_spans.py``); a daemon
thread turns them into span JSON (names and attributes scrubbed like every other payload,
encoded fragments remembered), builds the envelopes, and
waits for room in the HTTP delivery queue when it is full and Sentry is healthy (back-pressure:
spans are then dropped, and counted, only at the deque).
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import sentry_sdk
from opentelemetry import context as context_api
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from sentry_sdk._span_batcher import SpanBatcher
from sentry_sdk.envelope import Envelope
from sentry_sdk.utils import format_timestamp

from widgettrace.exporters._export_thread import ExportThreadProcessor
from widgettrace.exporters._scrub import Scrubber
from widgettrace.exporters._span_v2 import (
    MAX_OPEN,
    SPAN_CONTENT_TYPE,
    Rec,
    SpanEncoder,
    record,
    span_envelope,
    typed,
)
from widgettrace.instrumentation import semconv as sc
from widgettrace.instrumentation._guard import internal_errors, logger

__all__ = [
    "FLUSH_INTERVAL_S",
    "SPAN_CONTENT_TYPE",
    "StreamSpanProcessor",
    "span_envelope",
    "typed",
]

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

_SDK_NAME = "sentry.python.widgettrace"


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


class StreamSpanProcessor(ExportThreadProcessor):
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
        self._setup()
        if hasattr(os, "register_at_fork"):
            ref = weakref.ref(self)

            def restart_in_child() -> None:
                processor = ref()
                if processor is not None and not processor._stopped:
                    processor._setup()

            os.register_at_fork(after_in_child=restart_in_child)

    def _setup(self) -> None:
        self._queue: deque[Rec] = deque()
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
        self._encoder = SpanEncoder(self._static, self._scrubber)
        self._dsc_for: Any = None
        self._dsc_base: dict[str, str] = {}
        self._checks_for: Any = None
        self._checks: list[Callable[[], bool]] = []
        self._waits: list[Callable[[Envelope, float], bool]] = []
        self._reset_outbox()
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
            queue.append(record(span, root))
            if queued == WAKE_AT_QUEUED:
                self._wake.set()
        except Exception:
            with internal_errors("stream.on_end"):
                raise

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Convert what is queued, send every bucket, then flush the SDK transport."""
        return self._flush(timeout_millis / 1000)

    def _final_flush(self, timeout: float) -> None:
        self._flush(timeout)

    def _flush(self, timeout: float) -> bool:
        done = threading.Event()
        with self._requests_lock:
            self._flush_requests.append(done)
        return self._flush_after(done, timeout, "stream.flush_transport")

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
        encode = self._encoder.encode
        for _ in range(DRAIN_BATCH):
            if not queue:
                return False
            rec = popleft()
            tid = rec[0][0]
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
            spans = self._encoder.close(bucket.spans)
            step = SpanBatcher.MAX_ENVELOPE_SIZE
            for start in range(0, len(spans), step):
                envelope = span_envelope(sent_at, dsc, spans[start : start + step])
                try:
                    self._capture(envelope, spotlight, transport)
                except Exception as exc:
                    with internal_errors("stream.send"):
                        raise exc
        self._ship()

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
            self._send_out(transport, envelope)

    def _enqueue(self, transport: Any, envelope: Envelope) -> None:
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
