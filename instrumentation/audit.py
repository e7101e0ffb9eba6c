"""Security and audit events: a vendor-neutral API, automatic events for denials, a trail.

::

    from widgettrace import audit_event

    audit_event("registry.compact", "success", actor="tenant-7", resource="registry")
    audit_event("widget.upload", "denied", actor=tenant, resource=widget_id,
                reason="quota exceeded", category="security", quota=10)

Each call (never sampled away: it does not depend on the trace's sampling decision) produces:

* one Sentry event (local log and/or DSN): message ``audit: registry.compact success`` (or
  ``security: ...``), level ``info`` for ``success``/``allowed`` and ``warning`` otherwise, tags
  ``category`` (``audit`` | ``security``), ``audit.action``, ``audit.outcome``, ``audit.actor``,
  ``audit.resource``, an ``audit`` context with every field plus the trail's ``seq``/``hash``,
  fingerprint ``["audit", category, action, outcome]`` and logger ``widgettrace.audit``;
* one line in the hash-chained audit file (:mod:`widgettrace.exporters.audit_log`;
  ``widgettrace audit verify`` detects removed or edited lines);
* an ``audit`` event on the current span when it is recording (for any OTel backend);
* a record on the ``widgettrace.audit`` logger (INFO for success, WARNING otherwise) that does
  not propagate to the app's handlers (its output is unchanged) but that Sentry's logging
  integration sees: with Sentry logs on, audit events are Sentry logs too.

Automatic events for a FastAPI/Starlette app: :func:`instrument_app` (one line) records every
401/403 response (category ``security``, outcome ``denied``) and every exception of the
classes in ``WIDGETTRACE_AUDIT_EXCEPTIONS`` (default ``PermissionError`` and FastAPI's
``RequestValidationError``; outcome ``failure``), whether the app handles it or not.
Attribute values are scrubbed like span attributes (secrets by key, emails unless PII is on).
"""

from __future__ import annotations

import datetime as _dt
import importlib
import inspect
import logging
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from widgettrace.instrumentation._guard import internal_errors, logger

__all__ = [
    "AUDIT",
    "SECURITY",
    "AuditMiddleware",
    "audit_event",
    "audit_exception_classes",
    "instrument_app",
]

AUDIT = "audit"
SECURITY = "security"
_OK_OUTCOMES = frozenset({"success", "allowed", "granted"})

# Seen by Sentry's logging integration (it hooks every logger), never by the app's handlers.
audit_logger = logging.getLogger("widgettrace.audit")
audit_logger.addHandler(logging.NullHandler())
audit_logger.propagate = False

_log_lock = threading.Lock()
_log: Any = None
_log_path: str | None = None


def _audit_log() -> Any:
    """The process's audit file writer (None when WIDGETTRACE_AUDIT_PATH is off)."""
    global _log, _log_path
    from widgettrace.instrumentation._config import get_settings

    path = get_settings().audit_path
    with _log_lock:
        if path != _log_path:
            from widgettrace.exporters.audit_log import AuditLog

            _log, _log_path = (AuditLog(path) if path else None), path
        return _log


def _scrubbed(attributes: dict[str, Any]) -> dict[str, Any]:
    """Attribute values as span attributes are scrubbed (secrets by key, PII by content)."""
    from widgettrace.exporters._scrub import get_scrubber

    plain = {
        k: v if isinstance(v, (str, int, float, bool)) else str(v) for k, v in attributes.items()
    }
    return get_scrubber().data(plain)


def audit_event(
    action: str,
    outcome: str,
    *,
    actor: str | None = None,
    resource: str | None = None,
    reason: str | None = None,
    category: str = AUDIT,
    **attributes: Any,
) -> None:
    """Record one audit/security event (see the module docstring). Never raises."""
    with internal_errors("audit.audit_event"):
        from opentelemetry import trace

        from widgettrace.instrumentation import _events
        from widgettrace.instrumentation import scope as wscope

        span = trace.get_current_span()
        ctx = span.get_span_context()
        if actor is None and ctx.is_valid:
            actor = wscope.scope_for_trace(ctx.trace_id).user.get("id")
        record: dict[str, Any] = {
            "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds"),
            "category": category,
            "action": action,
            "outcome": outcome,
            "actor": actor,
            "resource": resource,
            "reason": reason,
            "attributes": _scrubbed(attributes),
        }
        if ctx.is_valid:
            record["trace_id"] = format(ctx.trace_id, "032x")
            record["span_id"] = format(ctx.span_id, "016x")
        written: dict[str, Any] = {}
        log = _audit_log()
        if log is not None:
            try:
                written = log.append(record)
            except OSError as exc:
                logger.warning("widgettrace: audit file %s not writable: %s", log.path, exc)
        if span.is_recording():
            span.add_event(
                "audit",
                {
                    f"audit.{k}": str(v)
                    for k, v in record.items()
                    if k in {"category", "action", "outcome", "actor", "resource", "reason"}
                    and v is not None
                },
            )
        tags = {"category": category, "audit.action": action, "audit.outcome": outcome}
        if actor:
            tags["audit.actor"] = actor
        if resource:
            tags["audit.resource"] = resource
        context = {k: v for k, v in record.items() if v not in (None, {})}
        if written:
            context["seq"], context["hash"] = written["seq"], written["hash"]
        summary = f"{category}: {action} {outcome}"
        if reason:
            summary += f" ({reason})"
        ok = outcome in _OK_OUTCOMES
        _events.send_event(
            level="info" if ok else "warning",
            message=summary,
            span=span,
            fields={
                "fingerprint": ["audit", category, action, outcome],
                "logger": audit_logger.name,
                "tags": {k: _events.tag_value(v) for k, v in tags.items()},
                "contexts": {"audit": context},
            },
        )
        audit_logger.log(logging.INFO if ok else logging.WARNING, summary, extra={"audit": tags})


def audit_exception_classes(spec: str | None = None) -> tuple[type[BaseException], ...]:
    """The classes named in ``WIDGETTRACE_AUDIT_EXCEPTIONS`` that can be imported."""
    from widgettrace.instrumentation._config import get_settings

    names = spec if spec is not None else (get_settings().audit_exceptions or "")
    found: list[type[BaseException]] = []
    for name in (n.strip() for n in names.split(",")):
        module, _, attr = name.rpartition(".")
        if not module:
            continue
        try:
            cls = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError):
            logger.info("widgettrace: WIDGETTRACE_AUDIT_EXCEPTIONS: %s not importable", name)
            continue
        if isinstance(cls, type) and issubclass(cls, BaseException):
            found.append(cls)
    return tuple(found)


# --- automatic events for an ASGI app -------------------------------------------------------

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[
    [Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]
]

_STATUS_REASONS = {401: "401 Unauthorized", 403: "403 Forbidden"}


def _attrs(values: dict[str, Any]) -> dict[str, Any]:
    """Dotted attribute names (not valid keywords) for ``audit_event(**...)``."""
    return values


def _action(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None) or scope.get("path", "")
    return f"{scope.get('method', '')} {path}".strip()


def _audit_exception(scope: Scope, exc: BaseException) -> None:
    if getattr(exc, "__widgettrace_audited__", False):
        return
    with internal_errors("audit.exception"):
        exc.__widgettrace_audited__ = True  # type: ignore[attr-defined]
    audit_event(
        _action(scope),
        "failure",
        resource=scope.get("path"),
        reason=f"{type(exc).__name__}: {str(exc)[:200]}",
        category=SECURITY,
        **_attrs({"error.type": type(exc).__qualname__}),
    )


class AuditMiddleware:
    """ASGI middleware: audit events for 401/403 answers and the configured exceptions."""

    def __init__(self, app: ASGIApp, exceptions: tuple[type[BaseException], ...] = ()) -> None:
        self.app = app
        self.exceptions = exceptions

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return

        async def watch(message: Message) -> None:
            if message.get("type") == "http.response.start":
                status = int(message.get("status", 0))
                if status in _STATUS_REASONS:
                    audit_event(
                        _action(scope),
                        "denied",
                        resource=scope.get("path"),
                        reason=_STATUS_REASONS[status],
                        category=SECURITY,
                        **_attrs({"http.response.status_code": status}),
                    )
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception as exc:
            if self.exceptions and isinstance(exc, self.exceptions):
                _audit_exception(scope, exc)
            raise


def instrument_app(app: Any, exceptions: tuple[type[BaseException], ...] | None = None) -> None:
    """Add :class:`AuditMiddleware` to a Starlette/FastAPI ``app`` and audit handled exceptions.

    Exceptions the app turns into responses itself (FastAPI answers ``RequestValidationError``
    with 422) never reach a middleware: their handlers are wrapped to record the event first.
    """
    classes = audit_exception_classes() if exceptions is None else exceptions
    app.add_middleware(AuditMiddleware, exceptions=classes)
    handlers: dict[Any, Any] = getattr(app, "exception_handlers", {})
    for cls in classes:
        original = handlers.get(cls)
        if original is None:
            continue

        async def wrapped(request: Any, exc: BaseException, _original: Any = original) -> Any:
            _audit_exception(request.scope, exc)
            response = _original(request, exc)
            return await response if inspect.isawaitable(response) else response

        app.add_exception_handler(cls, wrapped)


def _run_verify(args: Any, out: Any) -> int:
    from pathlib import Path

    from widgettrace.exporters.audit_log import verify
    from widgettrace.instrumentation._config import get_settings

    path = Path(args.path or get_settings().audit_path or "")
    if not path.is_file():
        print(f"widgettrace audit: no audit file at {path}", file=out)
        return 2
    result = verify(path)
    for problem in result.problems:
        print(problem, file=out)
    state = "intact" if result.ok else "BROKEN"
    print(
        f"{path}: {result.lines} line(s), chain {state}; head seq {result.head_seq} "
        f"hash {result.head_hash}",
        file=out,
    )
    return 0 if result.ok else 1


def add_command(commands: Any) -> None:
    """Register ``widgettrace audit verify`` on the CLI's subparsers."""
    audit = commands.add_parser("audit", help="the hash-chained audit file")
    sub = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    check = sub.add_parser("verify", help="detect removed or edited lines")
    check.add_argument("path", nargs="?", help="audit file (default: WIDGETTRACE_AUDIT_PATH)")
    check.set_defaults(run=_run_verify)
