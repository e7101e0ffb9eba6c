"""What applications do with ``sentry_sdk`` today, on OpenTelemetry and without importing it.

Application code calls these instead of ``sentry_sdk.set_user`` & co.; the data lands on the
current OTel span as attributes and events (so any OTel backend sees it) and, when widgettrace
exports to Sentry, the span processor maps it onto Sentry's user, tags, contexts, breadcrumbs and
message events::

    from widgettrace.instrumentation import scope

    scope.set_user(id="u-42", email="a@example.org")   # user.id / user.email attributes
    scope.set_tag("widget.kind", "converter")            # widget.tag.widget.kind
    scope.set_context("job", {"id": 7, "queue": "hi"})   # widget.context.job.id, ...queue
    scope.add_breadcrumb("parsed manifest", category="convert", data={"files": 3})
    scope.capture_message("registry slow", level="warning")
    try:
        risky()
    except ValueError as exc:
        scope.capture_exception(exc)                      # reported once, even if re-raised

Where the values go:

* inside a span: set on that span (attributes / span events named ``breadcrumb``, ``message``,
  ``exception``) AND remembered for the span's trace, so an error event raised later in the same
  trace carries them even when the trace is not sampled (non-recording spans drop attributes);
* outside any span: process-wide (like Sentry's global scope): they apply to every later event.

Errors and messages are forwarded to the *error sink* the exporter registers with
:func:`set_error_sink` (the Sentry exporter turns them into Sentry events). Each exception object
is forwarded at most once, whichever of :func:`capture_exception` or the automatic capture of
exceptions escaping a span sees it first.

No ``sentry_sdk`` import here: this module is the vendor-neutral half.
"""

from __future__ import annotations

import sys
import threading
import time
import weakref
from asyncio import current_task
from asyncio.events import _get_running_loop
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType, TracebackType
from typing import Any

from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.trace import Span, SpanContext, SpanKind

from widgettrace.instrumentation import semconv
from widgettrace.instrumentation._guard import internal_errors

__all__ = [
    "SPAN_OWNER_KEY",
    "ErrorReport",
    "ScopeData",
    "add_breadcrumb",
    "capture_exception",
    "capture_message",
    "clear",
    "exception_escaped",
    "get_error_sink",
    "mark_reported",
    "remember_breadcrumb",
    "remember_origin",
    "report_escaped",
    "scope_for_trace",
    "set_context",
    "set_error_sink",
    "set_fingerprint",
    "set_tag",
    "set_user",
    "span_owner",
    "was_reported",
]

AttributeValue = (
    str | bool | int | float | Sequence[str] | Sequence[bool] | Sequence[int] | Sequence[float]
)

#: Breadcrumbs kept per trace (and process-wide), like Sentry's default max_breadcrumbs.
MAX_BREADCRUMBS = 100
#: Traces whose scope data is remembered; the oldest are forgotten first.
MAX_TRACES = 4096

_USER_FIELDS = {
    "id": semconv.USER_ID,
    "email": semconv.USER_EMAIL,
    "username": semconv.USER_NAME,
    "full_name": semconv.USER_FULL_NAME,
    "roles": semconv.USER_ROLES,
    "ip_address": semconv.CLIENT_ADDRESS,
}


@dataclass
class ScopeData:
    """User, tags, contexts and breadcrumbs gathered for one trace (or process-wide)."""

    user: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    contexts: dict[str, dict[str, Any]] = field(default_factory=dict)
    breadcrumbs: deque[dict[str, Any]] = field(
        default_factory=lambda: deque(maxlen=MAX_BREADCRUMBS)
    )
    #: Sentry's grouping override for this trace's errors (:func:`set_fingerprint`).
    fingerprint: list[str] | None = None

    def merged_over(self, base: ScopeData) -> ScopeData:
        """A copy of ``base`` overridden by this one (trace values win over process values)."""
        crumbs: deque[dict[str, Any]] = deque(base.breadcrumbs, maxlen=MAX_BREADCRUMBS)
        crumbs.extend(self.breadcrumbs)
        contexts = {k: dict(v) for k, v in base.contexts.items()}
        for name, values in self.contexts.items():
            contexts.setdefault(name, {}).update(values)
        return ScopeData(
            user={**base.user, **self.user},
            tags={**base.tags, **self.tags},
            contexts=contexts,
            breadcrumbs=crumbs,
            fingerprint=self.fingerprint or base.fingerprint,
        )


@dataclass
class ErrorReport:
    """One exception or message for the error sink, with everything needed to link it."""

    exception: BaseException | None
    message: str | None
    level: str
    #: The trace and the span where the exception was raised (0 when outside any span).
    trace_id: int
    span_id: int
    #: Whether the application caught it (explicit capture) or it escaped the outermost span.
    handled: bool
    #: Name of the outermost span the exception escaped (the transaction), when known.
    transaction: str | None
    scope: ScopeData
    timestamp: float = field(default_factory=time.time)
    #: The traceback to report when it differs from ``exception.__traceback__`` (extended
    #: with the frames above, when the outermost span could not be told for sure).
    traceback: TracebackType | None = None
    #: Event fields set as given (``fingerprint``, ``event_id``, ``logentry``, ...); ``tags`` and
    #: ``contexts`` are merged over the scope's. For custom events (tests, findings, audit).
    fields: dict[str, Any] = field(default_factory=dict)
    #: Sentry's grouping override (``fingerprint=`` of the capture call), else the scope's.
    fingerprint: list[str] | None = None


ErrorSink = Callable[[ErrorReport], None]

_lock = threading.Lock()
_global = ScopeData()
_traces: OrderedDict[int, ScopeData] = OrderedDict()
_sink: ErrorSink | None = None

# Exceptions are marked in place: cheap, and it follows the object across threads and re-raises.
_REPORTED_ATTR = "__widgettrace_reported__"
_SPAN_ATTR = "__widgettrace_span__"
# For the rare exception object that refuses attributes.
_reported_ids: OrderedDict[int, None] = OrderedDict()


def set_error_sink(sink: ErrorSink | None) -> None:
    """Register the callable that receives every :class:`ErrorReport` (None to remove it)."""
    global _sink
    _sink = sink


def get_error_sink() -> ErrorSink | None:
    """The registered error sink, if any."""
    return _sink


def clear() -> None:
    """Forget all process-wide and per-trace scope data (tests, or between jobs)."""
    global _global
    with _lock:
        _global = ScopeData()
        _traces.clear()


def _bag_for(ctx: SpanContext) -> ScopeData:
    # Called with _lock held.
    if not ctx.is_valid:
        return _global
    bag = _traces.get(ctx.trace_id)
    if bag is None:
        bag = _traces[ctx.trace_id] = ScopeData()
        if len(_traces) > MAX_TRACES:
            _traces.popitem(last=False)
    else:
        _traces.move_to_end(ctx.trace_id)
    return bag


def scope_for_trace(trace_id: int) -> ScopeData:
    """Process-wide scope data merged with what was set inside trace ``trace_id``."""
    with _lock:
        bag = _traces.get(trace_id) if trace_id else None
        if bag is None:
            return ScopeData().merged_over(_global)
        return bag.merged_over(_global)


def _attr_value(value: Any) -> AttributeValue:
    if isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return tuple(value)
    return str(value)


def set_user(
    id: str | int | None = None,
    *,
    email: str | None = None,
    username: str | None = None,
    full_name: str | None = None,
    roles: Sequence[str] | None = None,
    ip_address: str | None = None,
) -> None:
    """Who the current trace is for (semconv ``user.*`` attributes; ``client.address`` for IP).

    Email and IP are only sent to Sentry when ``WIDGETTRACE_SEND_DEFAULT_PII`` is true.
    """
    with internal_errors("scope.set_user"):
        values = {
            "id": None if id is None else str(id),
            "email": email,
            "username": username,
            "full_name": full_name,
            "roles": None if roles is None else tuple(roles),
            "ip_address": ip_address,
        }
        values = {k: v for k, v in values.items() if v is not None}
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attributes({_USER_FIELDS[k]: _attr_value(v) for k, v in values.items()})
        with _lock:
            bag = _bag_for(span.get_span_context())
            bag.user.update({k: list(v) if isinstance(v, tuple) else v for k, v in values.items()})


def set_tag(key: str, value: str | int | float | bool) -> None:
    """A searchable tag (attribute ``widget.tag.<key>``)."""
    with internal_errors("scope.set_tag"):
        span = trace.get_current_span()
        if span.is_recording():
            span.set_attribute(semconv.WIDGET_TAG_PREFIX + key, _attr_value(value))
        with _lock:
            _bag_for(span.get_span_context()).tags[key] = str(value)


def set_fingerprint(fingerprint: Sequence[str] | None) -> None:
    """Group the errors of the current span's trace (or, outside spans, all) under ``fingerprint``.

    Sent as the Sentry event's ``fingerprint``; ``"{{ default }}"`` stands for Sentry's own
    grouping, so ``["{{ default }}", tenant]`` splits an issue per tenant. ``None`` clears it.
    """
    with internal_errors("scope.set_fingerprint"):
        span = trace.get_current_span()
        with _lock:
            _bag_for(span.get_span_context()).fingerprint = (
                [str(part) for part in fingerprint] if fingerprint else None
            )


def set_context(name: str, values: Mapping[str, Any]) -> None:
    """Structured context (attributes ``widget.context.<name>.<field>``); ``name`` has no dot."""
    with internal_errors("scope.set_context"):
        name = name.replace(".", "_")
        span = trace.get_current_span()
        if span.is_recording():
            prefix = f"{semconv.WIDGET_CONTEXT_PREFIX}{name}."
            span.set_attributes({prefix + str(k): _attr_value(v) for k, v in values.items()})
        with _lock:
            _bag_for(span.get_span_context()).contexts.setdefault(name, {}).update(values)


def add_breadcrumb(
    message: str | None = None,
    *,
    category: str | None = None,
    level: str = "info",
    type: str | None = None,
    data: Mapping[str, Any] | None = None,
) -> None:
    """A step on the way to a possible error (span event ``breadcrumb``)."""
    with internal_errors("scope.add_breadcrumb"):
        now = time.time()
        span = trace.get_current_span()
        if span.is_recording():
            attributes: dict[str, AttributeValue] = {semconv.BREADCRUMB_LEVEL: level}
            if message is not None:
                attributes[semconv.BREADCRUMB_MESSAGE] = message
            if category is not None:
                attributes[semconv.BREADCRUMB_CATEGORY] = category
            if type is not None:
                attributes[semconv.BREADCRUMB_TYPE] = type
            for k, v in (data or {}).items():
                attributes[semconv.BREADCRUMB_DATA_PREFIX + str(k)] = _attr_value(v)
            span.add_event(semconv.BREADCRUMB_EVENT, attributes, timestamp=int(now * 1e9))
        crumb: dict[str, Any] = {"timestamp": now, "level": level}
        if message is not None:
            crumb["message"] = message
        if category is not None:
            crumb["category"] = category
        if type is not None:
            crumb["type"] = type
        if data:
            crumb["data"] = dict(data)
        with _lock:
            _bag_for(span.get_span_context()).breadcrumbs.append(crumb)


def remember_breadcrumb(crumb: dict[str, Any]) -> None:
    """Keep ``crumb`` for the current trace (process-wide outside any span), without a span
    event: for breadcrumbs recorded in bulk, such as log records (``logcrumbs``)."""
    ctx = trace.get_current_span().get_span_context()
    with _lock:
        _bag_for(ctx).breadcrumbs.append(crumb)


def _forward(report: ErrorReport) -> None:
    sink = _sink
    if sink is not None:
        with internal_errors("scope.error_sink"):
            sink(report)


def capture_message(
    message: str,
    level: str = "info",
    *,
    span: Span | None = None,
    fingerprint: Sequence[str] | None = None,
) -> None:
    """A message event (span event ``message``), sent to the error sink right away.

    ``fingerprint`` overrides Sentry's grouping for this event (see :func:`set_fingerprint`).
    """
    with internal_errors("scope.capture_message"):
        target = span if span is not None else trace.get_current_span()
        if target.is_recording():
            target.add_event(
                semconv.MESSAGE_EVENT,
                {semconv.MESSAGE_TEXT: message, semconv.MESSAGE_LEVEL: level},
            )
        ctx = target.get_span_context()
        _forward(
            ErrorReport(
                exception=None,
                message=message,
                level=level,
                trace_id=ctx.trace_id if ctx.is_valid else 0,
                span_id=ctx.span_id if ctx.is_valid else 0,
                handled=True,
                transaction=None,
                scope=scope_for_trace(ctx.trace_id if ctx.is_valid else 0),
                fingerprint=[str(p) for p in fingerprint] if fingerprint else None,
            )
        )


def was_reported(exc: BaseException) -> bool:
    """Whether ``exc`` was already forwarded to the error sink."""
    if getattr(exc, _REPORTED_ATTR, False):
        return True
    # The id set is only for exceptions that refuse the mark: for any other, an id found there
    # belonged to an earlier, freed exception at the same address (it would hide a new error).
    return _refuses_mark(exc) and id(exc) in _reported_ids


def _refuses_mark(exc: BaseException) -> bool:
    return type(exc).__setattr__ is not BaseException.__setattr__ or not hasattr(exc, "__dict__")


def mark_reported(exc: BaseException) -> bool:
    """Mark ``exc`` as forwarded; False if it already was (the caller must not report it)."""
    if was_reported(exc):
        return False
    try:
        setattr(exc, _REPORTED_ATTR, True)
    except Exception:
        with _lock:
            _reported_ids[id(exc)] = None
            if len(_reported_ids) > 1024:
                _reported_ids.popitem(last=False)
    return True


def remember_origin(exc: BaseException, ctx: SpanContext) -> SpanContext:
    """Record the innermost span ``exc`` escaped (first call wins); returns the recorded one."""
    origin = getattr(exc, _SPAN_ATTR, None)
    if isinstance(origin, SpanContext):
        return origin
    try:
        setattr(exc, _SPAN_ATTR, ctx)
    except Exception:
        return ctx
    return ctx


#: Context key holding who activated the current span (see :func:`span_owner`). Span context
#: managers that attach their own context (``use_span``, widgettrace's API) set it so
#: :func:`exception_escaped` can tell whether an exception can still reach the parent span.
SPAN_OWNER_KEY = context_api.create_key("widgettrace-span-owner")
_BOUNDARY_KINDS = (SpanKind.SERVER, SpanKind.CONSUMER)
_get_ident = threading.get_ident
_weakref = weakref.ref


def span_owner() -> object:
    """Who runs this code: a weak reference to the asyncio task, else the thread's id.

    Weak, because the value lands in OTel contexts that applications keep (FastAPI's request
    telemetry, a saved ``context.get_current()``): a Task held there keeps its own context alive,
    and with it whatever the request left in contextvars (sentry-sdk Dedupe's last exception,
    its traceback, frames and the Request). Two weak references to one live task compare equal.
    """
    loop = _get_running_loop()
    if loop is not None:
        task = current_task(loop)
        if task is not None:
            return _weakref(task)
    return _get_ident()


def exception_escaped(exc: BaseException, span: Span) -> None:
    """``exc`` left ``span``'s block; call after detaching the span's context.

    Remembers the innermost span it escaped and reports it (once) when ``span`` is the outermost
    span that will see it: no local parent in the current context, a SERVER or CONSUMER span,
    or a parent activated by another thread or asyncio task. Otherwise the exception propagates
    into the parent's block, which decides; if the application catches it first, nothing is
    reported.
    """
    if not isinstance(exc, Exception):
        return  # GeneratorExit, KeyboardInterrupt, SystemExit are not errors
    ctx = span.get_span_context()
    if not ctx.is_valid or was_reported(exc):
        return
    remember_origin(exc, ctx)
    pctx = trace.get_current_span().get_span_context()
    tb = None
    if pctx.is_valid and not pctx.is_remote:
        if (
            getattr(span, "kind", None) not in _BOUNDARY_KINDS
            and context_api.get_value(SPAN_OWNER_KEY) == span_owner()
        ):
            return
        # A local parent this exception will not reach (another thread or task), or one we
        # cannot place because its activation did not mark its owner (a plain context.attach,
        # whose span may enclose this one in the same thread): report now, never lose it, with
        # the frames above so the traceback still reaches the code that started the work.
        tb = _traceback_with_callers(exc)
    report_escaped(exc, span, getattr(span, "name", None), traceback=tb)


_MAX_CALLER_FRAMES = 64


def _traceback_with_callers(exc: BaseException) -> TracebackType | None:
    """``exc``'s traceback preceded by the frames that called its outermost frame so far."""
    tb = exc.__traceback__
    if tb is None:
        return None
    in_tb = set()
    node: TracebackType | None = tb
    while node is not None:
        in_tb.add(node.tb_frame)
        node = node.tb_next
    # The highest frame on the current stack that the traceback already holds.
    anchor: FrameType | None = None
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        if frame in in_tb:
            anchor = frame
        frame = frame.f_back
    if anchor is None:
        return tb
    callers: list[FrameType] = []
    frame = anchor.f_back
    while frame is not None and len(callers) < _MAX_CALLER_FRAMES:
        callers.append(frame)
        frame = frame.f_back
    for caller in callers:  # innermost first: each new entry goes in front
        tb = TracebackType(tb, caller, caller.f_lasti, caller.f_lineno)
    return tb


def report_escaped(
    exc: BaseException,
    span: Span,
    transaction: str | None,
    *,
    traceback: TracebackType | None = None,
) -> None:
    """Forward an exception that escaped the outermost span ``span`` (exactly once)."""
    ctx = remember_origin(exc, span.get_span_context())
    if not mark_reported(exc):
        return
    _forward(
        ErrorReport(
            exception=exc,
            message=None,
            level="error",
            trace_id=ctx.trace_id,
            span_id=ctx.span_id,
            handled=False,
            transaction=transaction,
            scope=scope_for_trace(ctx.trace_id),
            traceback=traceback,
        )
    )


def capture_exception(
    exc: BaseException | None = None,
    *,
    span: Span | None = None,
    fingerprint: Sequence[str] | None = None,
) -> None:
    """Report an exception the application handles (or is about to turn into a result).

    Recorded on the current (or given) span when it is recording, and forwarded to the error
    sink exactly once per exception object, also when the trace is not sampled. Without
    ``exc``, the exception being handled (``sys.exception()``) is used. ``fingerprint``
    overrides Sentry's grouping for this event (see :func:`set_fingerprint`).
    """
    with internal_errors("scope.capture_exception"):
        if exc is None:
            import sys

            exc = sys.exc_info()[1]
            if exc is None:
                return
        target = span if span is not None else trace.get_current_span()
        if target.is_recording():
            target.record_exception(exc)
        ctx = remember_origin(exc, target.get_span_context())
        if not mark_reported(exc):
            return
        valid = ctx.is_valid
        _forward(
            ErrorReport(
                exception=exc,
                message=None,
                level="error",
                trace_id=ctx.trace_id if valid else 0,
                span_id=ctx.span_id if valid else 0,
                handled=True,
                transaction=None,
                scope=scope_for_trace(ctx.trace_id if valid else 0),
                fingerprint=[str(p) for p in fingerprint] if fingerprint else None,
            )
        )
