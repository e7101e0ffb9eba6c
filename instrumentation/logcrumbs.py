"""Log records as breadcrumbs of the request (the trace) that logged them.

Sentry's logging integration puts every log record on the SDK's isolation scope, which nothing
forks per request here (widgettrace does not use Sentry's web framework integrations), so an
error in one request carried the log lines of every other request, tokens included. This
hook, installed by the Sentry exporter (see :func:`install`), keeps each record (INFO and above)
with :func:`widgettrace.instrumentation.scope.remember_breadcrumb` instead: inside a span it
belongs to that span's trace and reaches only that trace's error events; outside any span it is
process-wide, like a value set with the scope API outside a span.

The message is formatted here (the record's arguments may change after the call returns) and cut
to :data:`MAX_MESSAGE`; it is scrubbed when an event carries it, on the way out.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from widgettrace.instrumentation import scope

__all__ = ["MAX_MESSAGE", "LogBreadcrumbHandler", "install", "installed", "uninstall"]

#: Characters of a log message kept in a breadcrumb.
MAX_MESSAGE = 512
#: Loggers whose records are never breadcrumbs (the SDK's own and its HTTP client's, as Sentry's
#: integration does, and widgettrace's).
_IGNORED = ("sentry_sdk", "urllib3.connectionpool", "urllib3.connection", "widgettrace")
_LEVELS = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warning",
    logging.ERROR: "error",
    logging.CRITICAL: "fatal",
}


class LogBreadcrumbHandler(logging.Handler):
    """Turns log records into per-trace breadcrumbs (see the module docstring)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            name = record.name
            if name.startswith(_IGNORED):
                return
            message = record.getMessage()
            if len(message) > MAX_MESSAGE:
                message = message[: MAX_MESSAGE - 1] + "…"
            scope.remember_breadcrumb(
                {
                    "type": "log",
                    "level": _LEVELS.get(record.levelno, record.levelname.lower()),
                    "category": name,
                    "message": message,
                    "timestamp": record.created,
                }
            )
        except Exception:  # never raise into the application's logging call
            return


_lock = threading.Lock()
_handler: LogBreadcrumbHandler | None = None
_original: Any = None


def installed() -> bool:
    """Whether log records are being kept as breadcrumbs."""
    return _handler is not None


def install(level: int = logging.INFO) -> None:
    """Keep every record of ``level`` and above as a breadcrumb (idempotent).

    Not a handler on the root logger: an application that never configured logging relies on
    Python printing its warnings to stderr when no handler exists (``logging.lastResort``), and
    telemetry must not change that. Like Sentry's integration, this wraps
    ``Logger.callHandlers``, which every record that passes its logger's level goes through.
    """
    global _handler, _original
    with _lock:
        if _handler is not None:
            return
        handler = LogBreadcrumbHandler(level)
        original = logging.Logger.callHandlers

        def call_handlers(self: logging.Logger, record: logging.LogRecord) -> None:
            try:
                original(self, record)
            finally:
                if record.levelno >= handler.level:
                    handler.emit(record)

        _handler, _original = handler, original
        logging.Logger.callHandlers = call_handlers  # type: ignore[method-assign]


def uninstall() -> None:
    """Stop keeping log records (restores ``Logger.callHandlers``)."""
    global _handler, _original
    with _lock:
        if _handler is not None:
            logging.Logger.callHandlers = _original  # type: ignore[method-assign]
            _handler, _original = None, None
