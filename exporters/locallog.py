"""The local log: every Sentry error event and transaction as one JSON line in a file.

This is widgettrace's embedded default. With no ``SENTRY_DSN`` nothing leaves the machine: each
error event and each transaction the Sentry SDK would send is appended to the local log instead
(default ``.claude/logs/sentry.log``, relative to the process's working directory at start-up).
With a DSN, the same lines are written *and* the envelopes are sent: a tee of the SDK's own
``HttpTransport`` and the local log. Read it back with ``widgettrace tail`` (``-f`` to follow)
or ``widgettrace summary``.

A line is exactly the item payload Sentry would receive: the event or transaction JSON, as the
SDK serialised it. Streamed spans, Sentry Logs and release-health sessions are written one line
per span / log record / session (the element plus a ``"type"`` key, see ``_itemlines``). Other
envelope items (client reports, attachments, profiles, check-ins, metrics) are not written.

Configuration (see the configuration table, ``widgettrace config``):

* ``WIDGETTRACE_LOG_PATH``: the file, or ``off``. A path that cannot be written (missing
  permission, a file where a directory should be, a directory where the file should be) gives ONE
  warning naming the variable, the value and what is used instead: the per-user
  ``<tmp>/widgettrace-<uid>/sentry.log``, or off if that fails too. The app keeps running.
* ``WIDGETTRACE_LOG_MAX_BYTES`` and ``WIDGETTRACE_LOG_BACKUPS``: size-capped rotation to
  ``sentry.log.1``, ``.2``, ... shared safely by several processes (see ``_logfile``).

The transport never blocks or raises into the caller: lines are written by a background worker
from a bounded queue (in envelopes and bytes); when the queue is full the event is dropped,
counted (:meth:`LocalLogTransport.lost_events`, reason ``queue_overflow``) and one warning is
logged.

In a tee the local log never depends on the remote side: the writer thread takes each envelope
(in the order they arrived), runs it through
:func:`~widgettrace.exporters._envelopes.filter_envelope` (the one place every envelope passes),
writes its lines, and only then hands it to the HTTP half, whose queue never blocks (a slow,
stalled or dead Sentry costs the HTTP half's envelopes, counted, never a local line). At exit the
client report of what the HTTP half could not deliver is written as a ``client_report`` line.

Usage (what ``widgettrace.exporters.sentry.configure_sentry`` does)::

    transport = make_transport(options, get_settings())
    sentry_sdk.init(**options, transport=transport)  # None: the SDK's default
"""

from __future__ import annotations

import json
import os
import threading
import time
import weakref
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sentry_sdk.transport
from sentry_sdk.consts import DEFAULT_OPTIONS
from sentry_sdk.envelope import Envelope, Item
from sentry_sdk.transport import Transport
from sentry_sdk.worker import BackgroundWorker

from widgettrace.exporters._batching import BatchedSubmit
from widgettrace.exporters._delivery import http_transport_class
from widgettrace.exporters._envelopes import (
    HIGH,
    envelope_priority,
    envelope_size,
    filter_envelope,
)
from widgettrace.exporters._itemlines import BATCH_ITEM_TYPES, item_lines
from widgettrace.exporters._logfile import (
    LOG_PATH_ENV,
    LogFileWriter,
    fallback_log_path,
    probe_writable,
)
from widgettrace.instrumentation._guard import internal_errors, logger

if TYPE_CHECKING:
    from sentry_sdk._types import EventDataCategory

    from widgettrace.instrumentation._config import Settings

__all__ = [
    "DEFAULT_QUEUE_SIZE",
    "LOGGED_ITEM_TYPES",
    "LocalLogTransport",
    "make_transport",
    "resolve_log_path",
]

#: Envelope item types that become lines in the local log (span, log, session and sessions
#: items: one line per element, see ``_itemlines``).
LOGGED_ITEM_TYPES = frozenset({"event", "transaction"}) | BATCH_ITEM_TYPES

#: At kill, how long the writer may take for the lines still queued (normally microseconds).
KILL_FLUSH_S = 1.0

#: Bytes of envelopes waiting for the writer thread at most.
DEFAULT_QUEUE_BYTES = 32 << 20

#: Envelopes waiting for the writer thread. Local writes take microseconds, so this only fills
#: when the disk stalls; it is larger than the SDK's HTTP queue (100) because bursts of errors
#: in a loop are exactly when a developer wants the local log complete.
DEFAULT_QUEUE_SIZE = 1000

_DEFAULT_MAX_BYTES = 10 * 1024 * 1024
_DEFAULT_BACKUPS = 3


def _reason(exc: OSError) -> str:
    return f"{type(exc).__name__}: {exc.strerror or exc}"


def resolve_log_path(value: str | os.PathLike[str] | None) -> Path | None:
    """Turn a ``WIDGETTRACE_LOG_PATH`` value into a writable file, or ``None`` for off.

    Relative paths are resolved against the current working directory *now*, so a later
    ``os.chdir`` does not move the log. An unwritable path logs one warning and falls back to
    :func:`~widgettrace.exporters._logfile.fallback_log_path`, or to off if that fails too.
    """
    if value is None or str(value).strip().lower() in {"", "off", "none", "false", "0"}:
        return None
    path = Path(os.path.abspath(os.path.expanduser(os.fspath(value))))
    try:
        probe_writable(path)
        return path
    except OSError as exc:
        problem = _reason(exc)
    fallback = fallback_log_path()
    if fallback != path:
        try:
            probe_writable(fallback, private_dir=True)
        except OSError as exc:
            problem += f"; fallback {fallback}: {_reason(exc)}"
        else:
            logger.warning(
                "widgettrace: %s=%r is not writable (%s); using %s instead",
                LOG_PATH_ENV,
                os.fspath(value),
                problem,
                fallback,
            )
            return fallback
    logger.warning(
        "widgettrace: %s=%r is not writable (%s); using off instead (no local log)",
        LOG_PATH_ENV,
        os.fspath(value),
        problem,
    )
    return None


def _one_line(payload: bytes) -> bytes:
    """The payload itself when it is already one line (the SDK's compact JSON always is)."""
    if b"\n" not in payload and b"\r" not in payload:
        return payload
    # A hand-built item with pretty-printed JSON: same JSON value, compact, so it stays one line.
    return json.dumps(json.loads(payload), separators=(",", ":"), allow_nan=False).encode()


class LocalLogTransport(Transport):
    """A Sentry transport that appends each event and transaction to the local log.

    With ``inner`` (the SDK's HTTP transport) it is a tee: every envelope goes to ``inner``
    unchanged and its events and transactions are also written locally. ``flush``, ``kill``,
    ``record_lost_event`` and ``is_healthy`` cover both halves.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_bytes: int = _DEFAULT_MAX_BYTES,
        backups: int = _DEFAULT_BACKUPS,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        inner: Transport | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        # Not Transport.__init__(options): that would parse options["dsn"], but only the HTTP
        # half has a DSN, and the client takes its parsed DSN (baggage public_key) from us.
        super().__init__(None)
        self.options = dict(inner.options or {}) if inner is not None else dict(options or {})
        self.parsed_dsn = inner.parsed_dsn if inner is not None else None
        self.inner = inner
        self.writer = LogFileWriter(path, max_bytes=max_bytes, backups=backups)
        self.queue_size = queue_size
        self._worker = BackgroundWorker(queue_size=queue_size)
        # One worker job per burst of envelopes, not per envelope (see _batching). Lines keep
        # the order envelopes arrived in; priorities are the HTTP half's business.
        self._batch: BatchedSubmit[Envelope] = BatchedSubmit(
            self._worker,
            self._write_envelopes,
            max_pending=queue_size,
            size=envelope_size,
            max_bytes=DEFAULT_QUEUE_BYTES,
        )
        if inner is not None and hasattr(inner, "filtering"):
            inner.filtering = False  # filter_envelope runs here, once, for both halves
        self._lost: Counter[tuple[str, str]] = Counter()
        self._lost_lock = threading.Lock()
        self._warned: set[str] = set()
        self.lines_written = 0
        _reset_locks_after_fork(self)

    @property
    def path(self) -> Path:
        """The absolute path of the local log."""
        return self.writer.path

    # --- Transport interface ------------------------------------------------------------------

    def capture_envelope(self, envelope: Envelope) -> None:
        """Queue the envelope for the writer thread, which writes its lines, then forwards it."""
        with internal_errors("locallog.capture_envelope"):
            # Errors, sessions and logs may use a reserve beyond the bound that makes the span
            # processor wait: a queue full of transactions must not refuse an error.
            if self._batch.submit(envelope, reserve=envelope_priority(envelope) == HIGH):
                return
            for item in envelope.items:
                self._count("queue_overflow", item=item)
                if self.inner is not None:
                    self.inner.record_lost_event("queue_overflow", item=item)
            self._warn_once(
                "queue_overflow",
                "widgettrace: local log queue is full (%d envelopes); dropping events "
                "(counted as queue_overflow)",
                self.queue_size,
            )

    def flush(self, timeout: float, callback: Any | None = None) -> None:
        """Wait up to ``timeout`` seconds for queued lines (and the HTTP half) to go out."""
        deadline = time.monotonic() + timeout
        with internal_errors("locallog.flush"):
            self._worker.flush(timeout, callback)
        if self.inner is not None:
            with internal_errors("locallog.inner_flush"):
                self.inner.flush(max(0.0, deadline - time.monotonic()), callback)

    def kill(self) -> None:
        """Stop the HTTP half, write its last client report here, stop the writer thread."""
        if self.inner is not None:
            with internal_errors("locallog.inner_kill"):
                self.inner.kill()
                final = getattr(self.inner, "final_client_report", None)
                report = final() if callable(final) else None
                if report is not None:
                    self._worker.submit(lambda: self._write_client_report(report))
        with internal_errors("locallog.kill"):
            self._worker.submit(self.writer.close)
            # Local writes take microseconds: let the last lines (and the report) reach the file.
            self._worker.flush(KILL_FLUSH_S)
            self._worker.kill()

    def record_lost_event(
        self,
        reason: str,
        data_category: EventDataCategory | None = None,
        item: Item | None = None,
        *,
        quantity: int = 1,
    ) -> None:
        """Count an event the SDK dropped, and pass it on to ``inner`` for Sentry's client reports.

        The local log's own drops (queue overflow, write errors) are only counted here: in a
        tee the HTTP half may well have delivered the event, so telling Sentry it was lost
        would be wrong.
        """
        with internal_errors("locallog.record_lost_event"):
            self._count(reason, data_category, item, quantity)
        if self.inner is not None:
            with internal_errors("locallog.inner_record_lost_event"):
                self.inner.record_lost_event(reason, data_category, item, quantity=quantity)

    def is_healthy(self) -> bool:
        """Healthy while the local queue has room and the HTTP half (if any) is healthy."""
        if self._batch.full():
            return False
        return self.inner is None or self.inner.is_healthy()

    def queue_full(self) -> bool:
        """Whether lines would be dropped now (the span processor waits instead)."""
        return self._batch.full()

    def pending_envelopes(self) -> int:
        """Envelopes not yet written (and, in a tee, not yet sent)."""
        queued: int = self._worker._queue.qsize()  # type: ignore[no-untyped-call]
        pending = self._batch.pending() + queued
        inner_pending = getattr(self.inner, "pending_envelopes", None)
        if callable(inner_pending):
            pending += int(inner_pending())
        return pending

    # --- introspection ------------------------------------------------------------------------

    def lost_events(self) -> dict[tuple[str, str], int]:
        """``{(data_category, reason): count}`` of everything this transport counted as lost."""
        with self._lost_lock:
            return dict(self._lost)

    # --- internals ----------------------------------------------------------------------------

    def _count(
        self,
        reason: str,
        data_category: EventDataCategory | str | None = None,
        item: Item | None = None,
        quantity: int = 1,
    ) -> None:
        category = item.data_category if item is not None else (data_category or "default")
        with self._lost_lock:
            self._lost[category, reason] += quantity

    def _warn_once(self, key: str, message: str, *args: object) -> None:
        if key not in self._warned:
            self._warned.add(key)
            logger.warning(message, *args)

    def _write_envelopes(self, envelopes: list[Envelope]) -> None:
        """Runs on the worker thread, per batch: filter, one line per logged item (a span, log
        record or session each: ``_itemlines``), every line in as few writes as possible
        (:meth:`LogFileWriter.write_lines`), then the HTTP half, envelope by envelope."""
        lines: list[bytes] = []
        items: list[Item] = []
        forward: list[Envelope] = []
        for envelope in envelopes:
            with internal_errors("locallog.write_envelope"):
                filtered = filter_envelope(envelope)
                if filtered is None:
                    continue
                for item in filtered.items:
                    if item.type in BATCH_ITEM_TYPES:
                        payloads = item_lines(item)
                    elif item.type in LOGGED_ITEM_TYPES:
                        payloads = [item.get_bytes()]
                    else:
                        continue
                    for payload in payloads:
                        try:
                            lines.append(_one_line(payload))
                        except ValueError as exc:  # not JSON: counted, as a failed write is
                            self._count("local_log_error", None, item)
                            self._write_failed(exc)
                            continue
                        items.append(item)
                forward.append(filtered)
        if lines:
            try:
                self.lines_written += self.writer.write_lines(lines)
            except OSError as exc:
                written = self.writer.written_before_error
                self.lines_written += written
                for item in items[written:]:
                    self._count("local_log_error", None, item)
                self._write_failed(exc)
        if self.inner is not None:
            for envelope in forward:
                with internal_errors("locallog.inner_capture_envelope"):
                    self.inner.capture_envelope(envelope)

    def _write_client_report(self, report: dict[str, Any]) -> None:
        self._write_line(json.dumps({"type": "client_report", **report}).encode(), None)

    def _write_line(self, payload: bytes, item: Item | None) -> None:
        """One line; failures are counted, never raised."""
        try:
            self.writer.write_line(_one_line(payload))
            self.lines_written += 1
        except (OSError, ValueError) as exc:
            self._count("local_log_error", "default" if item is None else None, item)
            self._write_failed(exc)

    def _write_failed(self, exc: Exception) -> None:
        self.writer.close()  # reopen (and recreate the directory) on the next line
        self._warn_once(
            "write_error",
            "widgettrace: cannot write the local log %s (%s); dropping its lines until "
            "it works again",
            self.writer.path,
            exc,
        )


def _reset_locks_after_fork(transport: LocalLogTransport) -> None:
    """A fork while the writer thread holds a lock would leave the child's copy locked forever."""
    ref = weakref.ref(transport)

    def after_in_child() -> None:
        alive = ref()
        if alive is not None:
            alive._lost_lock = threading.Lock()
            alive.writer._lock = threading.Lock()

    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=after_in_child)


def make_transport(options: Mapping[str, Any], settings: Settings) -> Transport | None:
    """The transport to pass to ``sentry_sdk.init(transport=...)``.

    * no DSN, log on: a :class:`LocalLogTransport` (nothing leaves the machine);
    * DSN, log on: a tee, the SDK's HTTP transport (``sentry_sdk.transport.make_transport``,
      handed envelopes in batches: :mod:`widgettrace.exporters._batching`) plus the local log;
    * log off (or unwritable everywhere): ``None``, i.e. the SDK's default (HTTP with a DSN,
      nothing without).

    The DSN is ``options["dsn"]`` when set, else ``settings.sentry_dsn``. ``options`` are
    ``sentry_sdk.init`` keyword arguments; the SDK's defaults fill in the rest for the HTTP half.
    """
    dsn = options.get("dsn") or settings.sentry_dsn
    path = resolve_log_path(settings.log_path)
    if path is None:
        return None
    inner: Transport | None = None
    if dsn:
        http_options: dict[str, Any] = dict(DEFAULT_OPTIONS)
        http_options.update(options)
        http_options["dsn"] = dsn
        # The SDK's HTTP transport (batched), not us again: the caller's transport is us.
        http_options["transport"] = None
        http_options["transport"] = http_transport_class(http_options)
        inner = sentry_sdk.transport.make_transport(http_options)
    # At least as deep as the HTTP queue: the local copy should not drop what Sentry keeps.
    queue_size = max(DEFAULT_QUEUE_SIZE, int(options.get("transport_queue_size") or 0))
    return LocalLogTransport(
        path,
        max_bytes=settings.log_max_bytes,
        backups=settings.log_backups,
        queue_size=queue_size,
        inner=inner,
        options=options,
    )
