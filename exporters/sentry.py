"""Spans and errors to Sentry: widgettrace's span processor and Sentry SDK set-up.

The lead's configurator calls :func:`configure_sentry` with the settings and the OTel resource; it
initialises ``sentry_sdk`` (transport: the SDK's HTTP one with a DSN, the local log without, a tee
of both, plus Spotlight when asked) and returns a :class:`WidgetTraceSpanProcessor` to add to the
``TracerProvider`` (or None when there is nowhere to send).

How spans travel (why it is cheap for the application):

1. ``on_end`` on the application's thread only appends the ended span to a bounded deque
   (``WIDGETTRACE_QUEUE_SIZE``). Full: the span is counted, never waited for.
2. A daemon thread groups spans by *local root* (no parent, or a remote parent): a short grace
   after the root ends, the root and every buffered descendant become one Sentry transaction
   event, serialised there and handed to the SDK client's transport (rate limits, retries, the
   worker queue and client reports stay the SDK's). If the transport's queue is full the thread
   waits (up to 2 s) instead of dropping, so bursts back up into our larger queue.
3. A span that ends after its transaction was sent (a late child, or one started after the root
   ended) is sent as its own transaction in the same trace with its real ``parent_span_id``.
   Spans whose parent never ends are held at most ``WIDGETTRACE_OPEN_SPAN_TIMEOUT_S`` and at most
   ``WIDGETTRACE_BUFFER_MAX_SPANS`` in total (beyond it the oldest traces are sent early).
4. A transaction carries at most ``WIDGETTRACE_MAX_SPANS_PER_TRANSACTION`` child spans (Sentry's
   limit is 1000); the rest are counted as lost (client report ``buffer_overflow``, category
   ``span``) with one log line. Queue overflow is counted the same way (``queue_overflow``).

Only sampled spans are sent: the OTel sampler decides once (parent-based, from
``SENTRY_TRACES_SAMPLE_RATE``); this processor never samples again.

Errors: :mod:`widgettrace.exporters._sentry_errors` reports every exception escaping the outermost
instrumented span (sampled or not) exactly once, through
:func:`widgettrace.instrumentation.scope.set_error_sink`; this module turns each report into a
Sentry error event linked to the trace and the span where it was raised. Sentry's own integrations
are chosen so nothing is reported twice: no Starlette/FastAPI or other auto-enabling integrations,
no stdlib header injection (propagation is OTel's), logging for breadcrumbs only, and the
excepthook/threading integrations only for crashes outside any span (a ``before_send`` drops what
widgettrace already reported).
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import sentry_sdk
from opentelemetry import context as context_api
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.trace import SpanKind
from sentry_sdk.envelope import Envelope, Item, PayloadRef
from sentry_sdk.scrubber import DEFAULT_DENYLIST, DEFAULT_PII_DENYLIST, EventScrubber
from sentry_sdk.utils import event_from_exception, format_timestamp

from widgettrace.exporters import _sentry_errors
from widgettrace.exporters._sentry_convert import (
    Scrubber,
    attributes_of,
    breadcrumbs_from,
    description_for,
    encode,
    events_json,
    op_for,
    span_json,
    status_for,
    transaction_name,
)
from widgettrace.instrumentation import scope as wscope
from widgettrace.instrumentation import semconv as sc
from widgettrace.instrumentation._guard import internal_errors, logger

__all__ = [
    "WidgetTraceSpanProcessor",
    "configure_sentry",
    "sentry_init_options",
]

#: How long shutdown waits for the transport to deliver what is queued before it gives up
#: (and logs how much was left).
SHUTDOWN_FLUSH_S = 10.0
#: Time after a root ends before its transaction is sent, so children ending just after it
#: (async cleanup, response streaming) are included.
DEFAULT_GRACE_S = 0.1
#: How often the export thread looks at its queue when nothing wakes it.
DEFAULT_TICK_S = 0.05
#: Span ids of sent transactions are remembered this long to recognise late children quickly
#: (after that a late child still goes out, when the open-span timeout expires).
SENT_RETENTION_S = 30.0
#: How long the export thread waits for room in a full transport queue before letting the SDK
#: drop (and count) a transaction.
BACKPRESSURE_WAIT_S = 2.0
#: The SDK's HTTP queue (envelopes, one transaction each). Its default (100) silently loses
#: transactions at about 1,000 per second.
TRANSPORT_QUEUE_SIZE = 10000
#: gzip level for HTTP bodies: the SDK's 9 costs several times level 1 for a few percent.
TRANSPORT_COMPRESSION_LEVEL = 1

_getrandbits = random.Random().getrandbits
_SDK_INFO = {"name": "sentry.python.widgettrace", "version": sentry_sdk.VERSION}
_MAX_TAG_LENGTH = 200
_RESOURCE_TAGS = (sc.SERVICE_NAME, sc.SERVICE_VERSION)


@dataclass
class _Trace:
    """Ended spans of one trace waiting for their transaction, and what was already sent."""

    first: float
    #: span id -> (span, local parent span id or 0 for a local root)
    spans: dict[int, tuple[ReadableSpan, int]] = field(default_factory=dict)
    due: float | None = None
    sent: set[int] | None = None
    last_sent: float = 0.0


@dataclass
class _FlushRequest:
    expire: bool
    done: threading.Event = field(default_factory=threading.Event)


class _RateLimitedLog:
    """One warning per reason per minute, with the counts since the last one."""

    def __init__(self, interval: float = 60.0) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}
        self._pending: dict[str, int] = {}

    def add(self, reason: str, count: int, message: str) -> None:
        self._pending[reason] = self._pending.get(reason, 0) + count
        now = time.monotonic()
        if now - self._last.get(reason, -1e9) >= self.interval:
            self._last[reason] = now
            logger.warning(message, self._pending.pop(reason))


def _dsn_host(client: Any) -> str | None:
    dsn = getattr(client, "parsed_dsn", None)
    return getattr(dsn, "netloc", None) if dsn is not None else None


class WidgetTraceSpanProcessor(SpanProcessor):
    """Turns each local trace tree into Sentry transactions, off the application's thread."""

    def __init__(
        self,
        *,
        resource: Resource | None = None,
        release: str | None = None,
        environment: str | None = None,
        send_default_pii: bool = False,
        max_spans_per_transaction: int = 1000,
        buffer_max_spans: int = 100_000,
        open_span_timeout_s: float = 300.0,
        queue_size: int = 20_000,
        grace_s: float = DEFAULT_GRACE_S,
        tick_s: float = DEFAULT_TICK_S,
        get_client: Callable[[], Any] = sentry_sdk.get_client,
    ) -> None:
        self._release = release
        self._environment = environment
        self._scrubber = Scrubber(send_default_pii)
        self._max_spans = max_spans_per_transaction
        self._buffer_max = buffer_max_spans
        self._timeout = open_span_timeout_s
        self._queue_size = queue_size
        self._grace = grace_s
        self._tick = tick_s
        self._get_client = get_client
        res = dict(resource.attributes) if resource is not None else {}
        self._resource_tags = {
            key: str(res[key])[:_MAX_TAG_LENGTH] for key in _RESOURCE_TAGS if key in res
        }
        self._log = _RateLimitedLog()
        self._setup()
        if hasattr(os, "register_at_fork"):
            # A forked worker (gunicorn, multiprocessing) needs its own thread and queue; a weak
            # reference so processors already shut down stay down (and can be collected).
            ref = weakref.ref(self)

            def restart_in_child() -> None:
                processor = ref()
                if processor is not None and not processor._stopped:
                    processor._setup()

            os.register_at_fork(after_in_child=restart_in_child)

    def _setup(self) -> None:
        self._queue: deque[ReadableSpan] = deque()
        self._sent_at = format_timestamp(datetime.now(timezone.utc))
        self._client: Any = self._get_client()
        self._static = ""
        self._static_for: Any = None
        self._dsc: dict[str, str] | None = None
        self._dsc_for: Any = None
        self._workers: list[Any] = []
        self._workers_for: Any = None
        self._dropped = 0
        self._drop_lock = threading.Lock()
        # Every trace seen recently; _open only those with ended spans waiting (the scans
        # below must not walk the recently sent ones, kept only to recognise late children).
        self._traces: dict[int, _Trace] = {}
        self._open: dict[int, _Trace] = {}
        self._forget: deque[tuple[float, int]] = deque()
        self._due: deque[tuple[float, int]] = deque()
        self._buffered = 0
        self._next_expiry_scan = 0.0
        self._requests: list[_FlushRequest] = []
        self._requests_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = False
        self._thread = threading.Thread(
            target=self._run, name="widgettrace-sentry-export", daemon=True
        )
        self._thread.start()

    # --- application thread: record only -----------------------------------------------------

    def on_start(self, span: Any, parent_context: context_api.Context | None = None) -> None:
        """Nothing to do: all work happens when the span ends, in the background."""

    def on_end(self, span: ReadableSpan) -> None:
        """Queue the ended span (O(1)); count it if the queue is full."""
        if not span.context.trace_flags & 1 or self._stopped:
            return
        if len(self._queue) >= self._queue_size:
            with self._drop_lock:
                self._dropped += 1
            return
        self._queue.append(span)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Send every transaction whose root has ended, then flush the SDK transport."""
        return self._flush(expire=False, timeout=timeout_millis / 1000)

    def shutdown(self) -> None:
        """Send everything still held (also incomplete trees), stop the thread, flush."""
        if self._stopped:
            return
        self._flush(expire=True, timeout=SHUTDOWN_FLUSH_S)
        self._stopped = True
        self._wake.set()
        self._thread.join(timeout=5.0)
        with internal_errors("sentry.shutdown_count"):
            self._log_undelivered()

    def _log_undelivered(self) -> None:
        # At exit the SDK kills its workers and what they still hold is gone without a client
        # report (none can be sent any more): say so, so a backlog is never lost silently.
        client = self._get_client()
        pending = _pending_envelopes(client.transport) + len(self._queue)
        if pending:
            logger.warning(
                "widgettrace: exiting with %d Sentry envelope(s)/span(s) not delivered after "
                "%.0f s (the transport could not keep up); they are lost",
                pending,
                SHUTDOWN_FLUSH_S,
            )

    def _flush(self, *, expire: bool, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        if not self._thread.is_alive():
            return False
        request = _FlushRequest(expire)
        with self._requests_lock:
            self._requests.append(request)
        self._wake.set()
        if not request.done.wait(timeout):
            return False
        client = self._get_client()
        remaining = max(0.0, deadline - time.monotonic())
        with internal_errors("sentry.flush_transport"):
            if client.transport is not None and remaining > 0:
                client.transport.flush(remaining)
        return time.monotonic() < deadline

    # --- export thread -------------------------------------------------------------------------

    def _run(self) -> None:
        # HTTP requests made from this thread (Spotlight) must not become spans themselves.
        context_api.attach(context_api.set_value(_SUPPRESS_INSTRUMENTATION_KEY, True))
        while True:
            self._wake.wait(self._tick)
            self._wake.clear()
            with self._requests_lock:
                requests, self._requests = self._requests, []
            with internal_errors("sentry.export"):
                now = time.monotonic()
                self._drain(now)
                if requests:
                    self._flush_all(now, expire=any(r.expire for r in requests))
                else:
                    self._send_due(now)
                if now >= self._next_expiry_scan:
                    self._next_expiry_scan = now + 1.0
                    self._expire(now)
                self._report_dropped()
            for request in requests:
                request.done.set()
            if self._stopped:
                return

    def _drain(self, now: float) -> None:
        # Once per batch, not per envelope: both are measurable at thousands a second.
        self._sent_at = format_timestamp(datetime.now(timezone.utc))
        self._client = self._get_client()
        queue = self._queue
        traces = self._traces
        open_ = self._open
        due = now + self._grace
        popleft = queue.popleft
        count = 0
        while queue:
            span = popleft()
            # Private attributes: the public properties cost a call each, per span.
            ctx = span._context
            parent = span._parent
            tid = ctx.trace_id  # type: ignore[union-attr]
            buf = traces.get(tid)
            if buf is None:
                buf = traces[tid] = open_[tid] = _Trace(now)
            elif not buf.spans:
                buf.first = now
                open_[tid] = buf
            # parent id 0: a local root (no parent, or a remote one).
            psid = 0 if parent is None or parent.is_remote else parent.span_id
            buf.spans[ctx.span_id] = (span, psid)  # type: ignore[union-attr]
            count += 1
            if buf.due is None and (not psid or (buf.sent is not None and psid in buf.sent)):
                buf.due = due
                self._due.append((due, tid))
        self._buffered += count
        if self._buffered > self._buffer_max:
            self._shed(now)

    def _send_due(self, now: float) -> None:
        pending = self._due
        while pending and pending[0][0] <= now:
            _, tid = pending.popleft()
            buf = self._traces.get(tid)
            if buf is not None and buf.due is not None and buf.due <= now:
                self._flush_trace(tid, buf, now, force=False)

    def _flush_all(self, now: float, *, expire: bool) -> None:
        self._due.clear()
        for tid, buf in list(self._open.items()):
            self._flush_trace(tid, buf, now, force=expire)

    def _expire(self, now: float) -> None:
        limit = now - self._timeout
        forget = now - SENT_RETENTION_S
        for tid, buf in list(self._open.items()):
            if buf.first <= limit:
                self._flush_trace(tid, buf, now, force=True)
        pending = self._forget
        while pending and pending[0][0] <= forget:
            _, tid = pending.popleft()
            sent_only = self._traces.get(tid)
            if sent_only is not None and not sent_only.spans and sent_only.last_sent <= forget:
                del self._traces[tid]

    def _shed(self, now: float) -> None:
        """Too many ended spans held: send the oldest traces as they are."""
        for tid, buf in list(self._open.items()):
            if self._buffered <= self._buffer_max * 0.9:
                break
            self._flush_trace(tid, buf, now, force=True)
        self._log.add(
            "buffer_full",
            1,
            "widgettrace: more than WIDGETTRACE_BUFFER_MAX_SPANS ended spans were waiting for "
            "their transactions; sent the oldest traces incomplete (%d times)",
        )

    def _flush_trace(self, tid: int, buf: _Trace, now: float, *, force: bool) -> None:
        spans = buf.spans
        buf.due = None
        children: dict[int, list[tuple[int, ReadableSpan, int]]] = {}
        tops: list[tuple[int, ReadableSpan, int]] = []
        for sid, (span, psid) in spans.items():
            if psid and psid in spans:
                entry = (sid, span, psid)
                kids = children.get(psid)
                if kids is None:
                    children[psid] = [entry]
                else:
                    kids.append(entry)
            else:
                tops.append((sid, span, psid))
        sent = buf.sent
        for top in tops:
            top_sid, root, psid = top
            if psid and not force and (sent is None or psid not in sent):
                continue  # its parent is still open: wait for it (or the timeout)
            members: list[tuple[int, ReadableSpan, int]] = []
            stack = [top_sid]
            while stack:
                kids = children.get(stack.pop())
                if kids:
                    members.extend(kids)
                    stack.extend(k[0] for k in kids)
            del spans[top_sid]
            for member in members:
                del spans[member[0]]
            self._buffered -= len(members) + 1
            if sent is None:
                sent = buf.sent = set()
            sent.add(top_sid)
            sent.update(m[0] for m in members)
            if buf.last_sent != now:
                buf.last_sent = now
                self._forget.append((now, tid))
            try:
                self._send_transaction(tid, root, members)
            except Exception as exc:
                # One broken transaction must not stop the batch; the guard's context manager
                # costs a few microseconds, so it is only entered on failure.
                with internal_errors("sentry.build_transaction"):
                    raise exc
        if not spans:
            self._open.pop(tid, None)

    # --- building and sending --------------------------------------------------------------

    def _static_suffix(self, client: Any) -> str:
        """``,"platform":...,"release":...}``: the JSON tail shared by every transaction."""
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
        self._static = "," + encode(fields)[1:]
        self._static_for = client
        return self._static

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

    def _send_transaction(
        self, tid: int, root: ReadableSpan, members: list[tuple[int, ReadableSpan, int]]
    ) -> None:
        client = self._client
        transport = client.transport
        spotlight = getattr(client, "spotlight", None)
        if transport is None and spotlight is None:
            return
        if root.parent is None and root.kind is SpanKind.CLIENT:
            # The SDK's own HTTP requests to Sentry, if urllib3 is instrumented: never loop.
            host = _dsn_host(client)
            url = attributes_of(root).get(sc.URL_FULL) or attributes_of(root).get(sc.HTTP_URL_OLD)
            if host and url and host in str(url):
                return
        event, spans = self._transaction_event(tid, root, members)
        # Spans arrive as JSON fragments and the fields every transaction shares are encoded
        # once (_static_suffix): only the rest of the event goes through the encoder here.
        payload = (
            f'{encode(event)[:-1]},"spans":[{",".join(spans)}]{self._static_suffix(client)}'
        ).encode()
        # The SDK reads payload.json only to count the spans of a dropped transaction.
        event["spans"] = spans
        headers: dict[str, Any] = {"event_id": event["event_id"], "sent_at": self._sent_at}
        dsc_base = self._dsc_base(client)
        if dsc_base is not None:
            headers["trace"] = {
                **dsc_base,
                "trace_id": event["contexts"]["trace"]["trace_id"],
                "transaction": event["transaction"],
            }
        envelope = Envelope(
            headers=headers,
            items=[Item(payload=PayloadRef(bytes=payload, json=event), type="transaction")],
        )
        if spotlight is not None:
            with internal_errors("sentry.spotlight"):
                spotlight.capture_envelope(envelope)
        if transport is not None:
            self._wait_for_room(transport)
            transport.capture_envelope(envelope)

    def _wait_for_room(self, transport: Any) -> None:
        if transport is not self._workers_for:
            self._workers_for = transport
            # The SDK's HTTP transport and the local log (and its inner HTTP half) queue
            # envelopes on BackgroundWorkers; their full() tells us to wait.
            self._workers = [
                w
                for w in (
                    getattr(transport, "_worker", None),
                    getattr(getattr(transport, "inner", None), "_worker", None),
                )
                if w is not None and callable(getattr(w, "full", None))
            ]
        workers = self._workers
        if not workers or not any(w.full() for w in workers):
            return
        deadline = time.monotonic() + BACKPRESSURE_WAIT_S
        while any(w.full() for w in workers):
            if time.monotonic() >= deadline or self._stopped:
                self._log.add(
                    "transport_full",
                    1,
                    "widgettrace: the Sentry transport cannot keep up; transactions dropped "
                    "(counted in Sentry client reports as queue_overflow; %d times)",
                )
                return
            time.sleep(0.002)

    def _transaction_event(
        self,
        tid: int,
        root: ReadableSpan,
        members: list[tuple[int, ReadableSpan, int]],
    ) -> tuple[dict[str, Any], list[str]]:
        """The transaction event without its spans, and the spans as JSON fragments."""
        scrubber = self._scrubber
        trace_hex = format(tid, "032x")
        dropped = len(members) - self._max_spans
        if dropped > 0:
            members = sorted(members, key=lambda m: m[1].start_time or 0)[: self._max_spans]
            self._record_lost("buffer_overflow", dropped)
            self._log.add(
                "max_spans",
                dropped,
                "widgettrace: a transaction had more than WIDGETTRACE_MAX_SPANS_PER_TRANSACTION "
                "spans; %d spans dropped (counted in Sentry client reports as buffer_overflow)",
            )
        scope_items: list[tuple[str, Any]] = []
        spans_json = [
            span_json(span, sid, psid, trace_hex, scrubber, scope_items)
            for sid, span, psid in members
        ]
        has_events = False
        for _, span, _ in members:
            if span._events:
                has_events = True
                break

        attrs = attributes_of(root)
        kind = root.kind
        name, source = transaction_name(root.name, kind, attrs)
        data = scrubber.data(attrs, scope_items)
        if root._events:
            data["otel.events"] = events_json(root, scrubber)
        trace_context: dict[str, Any] = {
            "trace_id": trace_hex,
            "span_id": format(root.context.span_id, "016x"),
            "op": op_for(kind, attrs),
            "status": status_for(root.status.status_code, attrs),
            "origin": "auto.otel",
            "data": data,
        }
        description = description_for(root.name, kind, attrs)
        if description != name:
            trace_context["description"] = description
        if root.parent is not None:
            trace_context["parent_span_id"] = format(root.parent.span_id, "016x")
        contexts: dict[str, Any] = {"trace": trace_context}

        tags = self._resource_tags
        user: dict[str, Any] = {}
        if scope_items:
            tags = dict(tags)
            self._scope_from_items(scope_items, tags, user, contexts)

        event: dict[str, Any] = {
            "type": "transaction",
            # Unique, not secret: no system call per transaction.
            "event_id": f"{_getrandbits(128):032x}",
            "transaction": name,
            "transaction_info": {"source": source},
            "start_timestamp": root.start_time / 1e9,  # type: ignore[operator]
            "timestamp": root.end_time / 1e9,  # type: ignore[operator]
            "contexts": contexts,
        }
        if tags:
            event["tags"] = tags
        if user:
            event["user"] = user
        crumbs = (
            breadcrumbs_from([root, *(m[1] for m in members)], scrubber)
            if has_events or root._events
            else []
        )
        if crumbs:
            event["breadcrumbs"] = {"values": crumbs}
        return event, spans_json

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
                    tags[tag[:_MAX_TAG_LENGTH]] = str(value)[:_MAX_TAG_LENGTH]
            elif key.startswith(sc.WIDGET_CONTEXT_PREFIX):
                rest = key[len(sc.WIDGET_CONTEXT_PREFIX) :]
                ctx_name, _, ctx_field = rest.partition(".")
                if ctx_name and ctx_field and ctx_name != "trace":
                    scrubbed = self._scrubber.data({ctx_field: value})
                    contexts.setdefault(ctx_name, {}).update(scrubbed)

    def _record_lost(self, reason: str, quantity: int) -> None:
        with internal_errors("sentry.record_lost"):
            transport = self._client.transport
            if transport is not None and quantity > 0:
                transport.record_lost_event(reason, data_category="span", quantity=quantity)

    def _report_dropped(self) -> None:
        if not self._dropped:
            return
        with self._drop_lock:
            dropped, self._dropped = self._dropped, 0
        self._record_lost("queue_overflow", dropped)
        self._log.add(
            "queue_full",
            dropped,
            "widgettrace: the span export queue (WIDGETTRACE_QUEUE_SIZE) was full; %d spans "
            "dropped (counted in Sentry client reports as queue_overflow)",
        )


_USER_ATTRS = {
    sc.USER_ID: "id",
    sc.USER_EMAIL: "email",
    sc.USER_NAME: "username",
    sc.USER_FULL_NAME: "name",
    sc.USER_ROLES: "roles",
}


# --- errors ------------------------------------------------------------------------------------


class _ErrorSink:
    """Turns :class:`widgettrace.instrumentation.scope.ErrorReport` into Sentry error events."""

    def __init__(self, resource_tags: Mapping[str, str], send_default_pii: bool) -> None:
        self.resource_tags = dict(resource_tags)
        self.scrubber = Scrubber(send_default_pii)

    def __call__(self, report: wscope.ErrorReport) -> None:
        client = sentry_sdk.get_client()
        # A plain dict: the SDK's Event TypedDict wants a datetime timestamp, JSON takes a float.
        event: dict[str, Any]
        hint: dict[str, Any]
        if report.exception is not None:
            exc = report.exception
            event, hint = event_from_exception(  # type: ignore[assignment]
                (type(exc), exc, report.traceback or exc.__traceback__),
                client_options=client.options,
                mechanism={"type": "widgettrace", "handled": report.handled},
            )
        else:
            event = {"message": self.scrubber.value(report.message or "")}
            hint = {}
        event["level"] = report.level
        event["timestamp"] = report.timestamp
        if report.trace_id:
            event["contexts"] = {
                "trace": {
                    "trace_id": format(report.trace_id, "032x"),
                    "span_id": format(report.span_id, "016x"),
                    "origin": "auto.otel",
                }
            }
        if report.transaction:
            event["transaction"] = report.transaction
        data = report.scope
        tags = {**self.resource_tags, **{k: v[:_MAX_TAG_LENGTH] for k, v in data.tags.items()}}
        if tags:
            event["tags"] = tags
        user = dict(data.user)
        if not self.scrubber.send_default_pii:
            user.pop("email", None)
            user.pop("ip_address", None)
        if "full_name" in user:
            user["name"] = user.pop("full_name")
        if user:
            event["user"] = user
        if data.contexts:
            contexts = event.setdefault("contexts", {})
            for name, values in data.contexts.items():
                if name != "trace":
                    contexts[name] = self.scrubber.data(values)
        if data.breadcrumbs:
            event["breadcrumbs"] = {"values": list(data.breadcrumbs)}
        hint["widgettrace"] = True
        sentry_sdk.capture_event(event, hint=hint)  # type: ignore[arg-type]


def _before_send(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any] | None:
    """Drop what Sentry's own integrations (excepthook, threading) capture that we reported."""
    if hint.get("widgettrace"):
        return event
    exc_info = hint.get("exc_info")
    exc = exc_info[1] if exc_info else None
    if isinstance(exc, BaseException) and not wscope.mark_reported(exc):
        return None
    return event


# --- set-up ------------------------------------------------------------------------------------


def _resource_value(resource: Resource | None, *keys: str) -> str | None:
    if resource is None:
        return None
    for key in keys:
        value = resource.attributes.get(key)
        if value:
            return str(value)
    return None


def sentry_init_options(settings: Any, resource: Resource | None) -> dict[str, Any]:
    """The ``sentry_sdk.init`` keyword arguments widgettrace uses (without the transport)."""
    from sentry_sdk.integrations.argv import ArgvIntegration
    from sentry_sdk.integrations.atexit import AtexitIntegration
    from sentry_sdk.integrations.dedupe import DedupeIntegration
    from sentry_sdk.integrations.excepthook import ExcepthookIntegration
    from sentry_sdk.integrations.logging import LoggingIntegration
    from sentry_sdk.integrations.modules import ModulesIntegration
    from sentry_sdk.integrations.threading import ThreadingIntegration

    pii_keys = [*DEFAULT_PII_DENYLIST, "email", "user.email", "ip_address", "client.address"]
    release = settings.sentry_release or _resource_value(resource, sc.SERVICE_VERSION)
    environment = settings.sentry_environment or _resource_value(
        resource, sc.DEPLOYMENT_ENVIRONMENT_NAME, sc.DEPLOYMENT_ENVIRONMENT_OLD
    )
    spotlight = settings.sentry_spotlight or None
    options: dict[str, Any] = {
        "dsn": settings.sentry_dsn,
        "debug": bool(settings.sentry_debug),
        # Tracing is OTel's: Sentry must not start its own transactions or sample.
        "traces_sample_rate": None,
        # Deliberate integration list (see the module docstring): nothing that would report an
        # error twice, no stdlib patch injecting sentry-trace headers.
        "default_integrations": False,
        "auto_enabling_integrations": False,
        "integrations": [
            LoggingIntegration(level=logging.INFO, event_level=None),
            ExcepthookIntegration(always_run=False),
            ThreadingIntegration(propagate_scope=True),
            DedupeIntegration(),
            ModulesIntegration(),
            ArgvIntegration(),
            AtexitIntegration(callback=lambda pending, timeout: None),
        ],
        "trace_propagation_targets": [],
        "propagate_traces": False,
        "in_app_exclude": ["widgettrace", "opentelemetry", "sentry_sdk"],
        "event_scrubber": EventScrubber(
            denylist=[*DEFAULT_DENYLIST, "access_token", "refresh_token", "client_secret"],
            pii_denylist=pii_keys,
            recursive=True,
        ),
        "before_send": _before_send,
        "transport_queue_size": TRANSPORT_QUEUE_SIZE,
        "_experiments": {"transport_compression_level": TRANSPORT_COMPRESSION_LEVEL},
    }
    if settings.send_default_pii:
        # Only when opted in: the SDK warns that the option is deprecated whenever it is set.
        options["send_default_pii"] = True
    if release:
        options["release"] = release
    if environment:
        options["environment"] = environment
    if spotlight is not None:
        options["spotlight"] = spotlight
    return options


def _pending_envelopes(transport: Any) -> int:
    """Envelopes still queued in the SDK transport's background worker(s)."""
    pending = 0
    for holder in (transport, getattr(transport, "inner", None)):
        queue = getattr(getattr(holder, "_worker", None), "_queue", None)
        if queue is not None:
            pending += queue.qsize()
    return pending


def _local_transport(options: dict[str, Any], settings: Any) -> Any:
    try:
        from widgettrace.exporters.locallog import make_transport
    except ImportError:  # the local log is optional at this layer
        return None
    return make_transport(options, settings)


def configure_sentry(
    settings: Any,
    resource: Resource | None,
    *,
    transport: Any = None,
    **processor_options: Any,
) -> SpanProcessor | None:
    """Initialise ``sentry_sdk`` and return the span processor (None: nowhere to send).

    ``settings`` is :func:`widgettrace.instrumentation._config.get_settings`'s result (any object
    with the same attribute names works). ``transport`` replaces the local-log/HTTP choice (tests
    pass a capturing one); ``processor_options`` go to :class:`WidgetTraceSpanProcessor`.
    """
    if getattr(settings, "sentry_mode", "processor") == "off":
        return None
    options = sentry_init_options(settings, resource)
    if transport is None and settings.log_path:
        transport = _local_transport(options, settings)
    if transport is not None:
        options["transport"] = transport
    if not settings.sentry_dsn and transport is None and "spotlight" not in options:
        logger.info("widgettrace: no SENTRY_DSN, local log off and no Spotlight: Sentry is off")
        return None
    sentry_sdk.init(**options)
    client = sentry_sdk.get_client()
    if client.options is not None:
        # Spotlight without a DSN makes the SDK turn PII on; ours is WIDGETTRACE_SEND_DEFAULT_PII.
        client.options["send_default_pii"] = bool(settings.send_default_pii)
    _sentry_errors.install()
    kwargs: dict[str, Any] = {
        "resource": resource,
        "release": options.get("release"),
        "environment": options.get("environment") or client.options.get("environment"),
        "send_default_pii": bool(settings.send_default_pii),
        "max_spans_per_transaction": settings.max_spans_per_transaction,
        "buffer_max_spans": settings.buffer_max_spans,
        "open_span_timeout_s": settings.open_span_timeout_s,
        "queue_size": getattr(settings, "queue_size", 20_000),
    }
    kwargs.update(processor_options)
    processor = WidgetTraceSpanProcessor(**kwargs)
    wscope.set_error_sink(_ErrorSink(processor._resource_tags, bool(settings.send_default_pii)))
    return processor
