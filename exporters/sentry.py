"""Spans and errors to Sentry: widgettrace's span processor and Sentry SDK set-up.

The lead's configurator calls :func:`configure_sentry` with the settings and the OTel resource; it
initialises ``sentry_sdk`` (transport: the SDK's HTTP one with a DSN, the local log without, a tee
of both, plus Spotlight when asked) and returns a :class:`WidgetTraceSpanProcessor` to add to the
``TracerProvider`` (or None when there is nowhere to send).

How spans travel, and why that is cheap for the application: see
:mod:`widgettrace.exporters._transactions` (transactions) and :mod:`widgettrace.exporters._stream`
(span streaming).

Errors: :mod:`widgettrace.exporters._sentry_errors` reports every exception escaping the outermost
instrumented span (sampled or not) exactly once, through
:func:`widgettrace.instrumentation.scope.set_error_sink`; this module turns each report into a
Sentry error event linked to the trace and the span where it was raised. Sentry's own integrations
are chosen so nothing is reported twice: no Starlette/FastAPI or other auto-enabling integrations,
no stdlib header injection (propagation is OTel's), logging for breadcrumbs only, and the
excepthook/threading integrations only for crashes outside any span; a global event processor
drops any second capture of an exception, also one made by a client the application initialised
itself (see :func:`_one_report_per_exception`).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from typing import Any

import sentry_sdk
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor
from sentry_sdk.scope import add_global_event_processor
from sentry_sdk.scrubber import EventScrubber
from sentry_sdk.utils import event_from_exception
from sentry_sdk.utils import logger as sdk_logger

from widgettrace.exporters import _frames, _sentry_errors, _sessions, _shutdown, _wire
from widgettrace.exporters._delivery import http_transport_class
from widgettrace.exporters._scrub import FILTERED, Scrubber, scrubber_for
from widgettrace.exporters._transaction_json import MAX_TAG_LENGTH, resource_tags_of
from widgettrace.exporters._transactions import SHUTDOWN_FLUSH_S, WidgetTraceSpanProcessor
from widgettrace.instrumentation import logcrumbs
from widgettrace.instrumentation import scope as wscope
from widgettrace.instrumentation import semconv as sc
from widgettrace.instrumentation._guard import internal_errors, logger

__all__ = [
    "WidgetTraceSpanProcessor",
    "configure_sentry",
    "sentry_init_options",
]


#: The SDK's HTTP queue (envelopes, one transaction each). Its default (100) silently loses
#: transactions at about 1,000 per second.
TRANSPORT_QUEUE_SIZE = 10000

#: gzip level for HTTP bodies: the SDK's 9 costs several times level 1 for a few percent.
TRANSPORT_COMPRESSION_LEVEL = 1


# --- errors ------------------------------------------------------------------------------------


class _ErrorSink:
    """Turns :class:`widgettrace.instrumentation.scope.ErrorReport` into Sentry error events."""

    def __init__(
        self, resource_tags: Mapping[str, str], send_default_pii: bool, scrubber: Scrubber
    ) -> None:
        self.resource_tags = dict(resource_tags)
        self.scrubber = scrubber

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
            event = {"message": report.message or ""}  # scrubbed in _scrub_before_send
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
        tags = {**self.resource_tags, **{k: v[:MAX_TAG_LENGTH] for k, v in data.tags.items()}}
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
        fingerprint = report.fingerprint or data.fingerprint
        if fingerprint:
            event["fingerprint"] = list(fingerprint)
        for key, value in report.fields.items():
            if key in {"tags", "contexts"}:
                event[key] = {**event.get(key, {}), **value}
            else:
                event[key] = value
        hint["widgettrace"] = True
        _sessions.note_error(report.handled)
        sentry_sdk.capture_event(event, hint=hint)  # type: ignore[arg-type]


def _one_report_per_exception(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any] | None:
    """Each exception object becomes one error event, whoever captures it first.

    A global event processor, so it also runs for a client the application created with its
    own ``sentry_sdk.init()`` (common while migrating): its Starlette/FastAPI integrations and
    our escape detection see the same exception, and our events go to whichever client is
    current. Our sink marks an exception before sending it; any other capture of an exception
    we already sent is dropped, and one the application's integrations send first is marked so
    ours stays silent. Also drops what our own excepthook/threading integrations see again.
    """
    if hint.get("widgettrace") or wscope.get_error_sink() is None:
        return event
    exc_info = hint.get("exc_info")
    exc = exc_info[1] if exc_info else None
    if not isinstance(exc, BaseException):
        return event
    if wscope.was_reported(exc):
        return None
    # Only a client that sends takes the report over: one without a transport (no DSN) still
    # runs processors, and marking there would lose the error for everyone.
    if getattr(sentry_sdk.get_client(), "transport", None) is not None:
        wscope.mark_reported(exc)
    return event


_processor_added = False


def _add_global_dedupe() -> None:
    global _processor_added
    if not _processor_added:  # global processors cannot be removed: add it once per process
        add_global_event_processor(_one_report_per_exception)  # type: ignore[arg-type]
        _processor_added = True


def _scrub_before_send(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any] | None:
    """The SDK's ``before_send``: the last step before an error or message event is sent (after
    every event processor), so every place it carries text is scrubbed here (exception values,
    frame variables, breadcrumbs, contexts, tags, messages, request data), then the size budget
    (after scrubbing, so a secret is never cut into an unrecognisable prefix). docs/privacy.md.
    """
    kept = event  # duplicates were dropped earlier, by _one_report_per_exception
    try:
        _frames.shape(kept)
        _event_scrubber.event(kept)
        _frames.trim(kept)
    except Exception:
        with internal_errors("sentry.scrub_event"):
            raise
        return _unscrubbable(kept)
    return kept


def _unscrubbable(event: dict[str, Any]) -> dict[str, Any]:
    """What is left of an event the scrubber failed on: never the text, never nothing."""
    keep = ("event_id", "timestamp", "level", "platform", "release", "environment", "sdk")
    out = {key: event[key] for key in keep if key in event}
    trace_context = (event.get("contexts") or {}).get("trace")
    if isinstance(trace_context, dict):
        out["contexts"] = {"trace": trace_context}
    values = (event.get("exception") or {}).get("values") or []
    out["exception"] = {
        "values": [{"type": str(v.get("type", "Error")), "value": FILTERED} for v in values]
    }
    return out


_event_scrubber = Scrubber()


class _FrameBudget(EventScrubber):
    """The SDK's ``event_scrubber`` hook, which runs before it serialises the event: drops the
    frame variables the budget does not keep, so they are never serialised (scrubbing itself
    is in :func:`_scrub_before_send`, on the serialised event)."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode

    def scrub_event(self, event: Any) -> None:
        with internal_errors("sentry.frame_budget"):
            _frames.prepare(event, self.mode)


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
    from sentry_sdk.integrations.excepthook import ExcepthookIntegration
    from sentry_sdk.integrations.logging import LoggingIntegration
    from sentry_sdk.integrations.modules import ModulesIntegration
    from sentry_sdk.integrations.threading import ThreadingIntegration

    global _event_scrubber
    _event_scrubber = scrubber_for(settings)
    local_variables = getattr(settings, "local_variables", "app")
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
        # error twice, no stdlib patch injecting sentry-trace headers. No Dedupe: it keeps the
        # last exception (its frames, their locals) in a contextvar of the capturing thread for
        # that thread's whole life; _one_report_per_exception marks the exception instead.
        "default_integrations": False,
        "auto_enabling_integrations": False,
        "integrations": [
            # No breadcrumbs from the SDK: its scope is process-wide, so one request's log lines
            # ended up in another's error. widgettrace.instrumentation.logcrumbs keeps them
            # per trace instead (see configure_sentry).
            LoggingIntegration(level=None, event_level=None),
            ExcepthookIntegration(always_run=False),
            ThreadingIntegration(propagate_scope=True),
            ModulesIntegration(),
            ArgvIntegration(),
            AtexitIntegration(callback=lambda pending, timeout: None),
        ],
        "trace_propagation_targets": [],
        "propagate_traces": False,
        "in_app_exclude": ["widgettrace", "opentelemetry", "sentry_sdk"],
        # Scrubbing (widgettrace.exporters._scrub) is in before_send; this hook bounds frame
        # variables before the SDK serialises them (widgettrace.exporters._frames).
        "include_local_variables": local_variables != "off",
        "event_scrubber": _FrameBudget(local_variables),
        "before_send": _scrub_before_send,
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


def _local_transport(options: dict[str, Any], settings: Any) -> Any:
    try:
        from widgettrace.exporters.locallog import make_transport
    except ImportError:  # the local log is optional at this layer
        return None
    return make_transport(options, settings)


@contextlib.contextmanager
def _validated_sentry_env_hidden() -> Iterator[None]:
    """Hide the ``SENTRY_*`` variables we validate from the SDK while it initialises.

    The SDK reads SENTRY_DSN, SENTRY_RELEASE, SENTRY_ENVIRONMENT, SENTRY_DEBUG and
    SENTRY_SPOTLIGHT itself for every option left unset: a value our settings rejected (logged
    once, with the default used instead) would otherwise be used behind our back, e.g.
    ``SENTRY_SPOTLIGHT=maybe`` enabling Spotlight at "maybe". Our options carry the validated
    values; the SDK's own detection (git revision for the release, "production") still runs.
    The variables are back as soon as ``init`` returns (the application may read them).
    """
    from widgettrace.instrumentation._config import SETTINGS

    hidden: dict[str, str] = {}
    for setting in SETTINGS:
        if setting.origin == "sentry" and setting.env in os.environ:
            hidden[setting.env] = os.environ.pop(setting.env)
    try:
        yield
    finally:
        os.environ.update(hidden)


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
    _wire.extend_init_options(options, settings)
    if transport is None and settings.log_path:
        transport = _local_transport(options, settings)
    if transport is not None:
        options["transport"] = transport
    elif settings.sentry_dsn:
        # The SDK's HTTP transport, handed envelopes in batches (see _batching).
        transport_class = http_transport_class(options)
        if transport_class is not None:
            options["transport"] = transport_class
    if not settings.sentry_dsn and transport is None and "spotlight" not in options:
        logger.info("widgettrace: no SENTRY_DSN, local log off and no Spotlight: Sentry is off")
        return None
    with _validated_sentry_env_hidden():
        sentry_sdk.init(**options)
    # The SDK's logger sits at DEBUG and drops debug records in a filter unless debug is on:
    # every envelope sent then builds a LogRecord (and its caller lookup) for nothing, ~10 us
    # on the transport's thread. Off, the level itself says no; SENTRY_DEBUG keeps it at DEBUG.
    sdk_logger.setLevel(logging.DEBUG if options["debug"] else logging.INFO)
    client = sentry_sdk.get_client()
    if client.options is not None:
        # Spotlight without a DSN makes the SDK turn PII on; ours is WIDGETTRACE_SEND_DEFAULT_PII.
        client.options["send_default_pii"] = bool(settings.send_default_pii)
    _sentry_errors.install()
    _add_global_dedupe()
    logcrumbs.install()
    scrubber = scrubber_for(settings)
    kwargs: dict[str, Any] = {
        "resource": resource,
        # The SDK may have found one itself (SENTRY_RELEASE, a git checkout): errors carry it, so
        # transactions, spans and sessions must too.
        "release": options.get("release") or client.options.get("release"),
        "environment": options.get("environment") or client.options.get("environment"),
        "send_default_pii": bool(settings.send_default_pii),
        "max_spans_per_transaction": settings.max_spans_per_transaction,
        "buffer_max_spans": settings.buffer_max_spans,
        "open_span_timeout_s": settings.open_span_timeout_s,
        "queue_size": getattr(settings, "queue_size", 20_000),
        "scrubber": scrubber,
        "shutdown_timeout_s": getattr(settings, "shutdown_timeout_s", SHUTDOWN_FLUSH_S),
    }
    kwargs.update(processor_options)
    # Transactions or span streaming, plus companions (sessions): see _wire.
    processor = _wire.span_processor(settings, options, kwargs, WidgetTraceSpanProcessor)
    _shutdown.install(processor, kwargs["shutdown_timeout_s"])
    resource_tags = resource_tags_of(resource)
    wscope.set_error_sink(_ErrorSink(resource_tags, bool(settings.send_default_pii), scrubber))
    _start_alerts(settings, transport)
    return processor


def _start_alerts(settings: Any, transport: Any) -> None:
    """WIDGETTRACE_ALERT_WEBHOOK: a separate watcher process follows the local log."""
    webhook = getattr(settings, "alert_webhook", None)
    log = getattr(transport, "path", None)
    if not webhook or log is None:
        return
    with internal_errors("sentry.start_alerts"):
        from widgettrace.insights.background import start_watcher

        start_watcher(log, webhook)
