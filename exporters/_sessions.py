"""Release-health sessions: request aggregates for servers, explicit sessions for agents and jobs.

Sentry counts "users and sessions affected" and crash-free rates from sessions, which no span
or error carries. Both kinds are the SDK's own :class:`sentry_sdk.session.Session`, handed to
``client.capture_session``, so serialisation, per-minute aggregation and sending are the SDK's
(``SessionFlusher``: every 60 s and when the client flushes or closes; a session needs a
release, as Sentry requires, so without ``SENTRY_RELEASE`` / ``service.version`` none is sent
and one line says so):

* servers (``WIDGETTRACE_SESSIONS=auto`` or ``blocks``): :class:`SessionProcessor` sees every
  local-root SERVER span end and records one request-mode session: ``crashed`` when an
  exception escaped the handler (an exception event on a span whose status is ERROR),
  ``errored`` for any other error (status ERROR or HTTP 5xx), else ``exited``. The SDK sends
  them as ``sessions`` items: per minute, counts of exited / errored / crashed.
* agents and jobs: :func:`session` (``widgettrace.session``) is one application-mode session
  from start to end, sent as a ``session`` item: ``exited``, ``errored`` when widgettrace
  reported an error inside it, ``crashed`` when an exception escaped it, ``abnormal`` when it was
  interrupted (KeyboardInterrupt, SystemExit, cancellation) or still open at shutdown. With
  ``WIDGETTRACE_SESSIONS=blocks`` every cascade block (``agent_block_span``) is one too
  (:class:`SessionProcessor`, no change to the block's own code).

The session's ``name`` is not part of Sentry's session schema, so it never leaves the process:
the local log adds it to its line (:func:`local_name`).
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from typing import Any

import sentry_sdk
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.trace import SpanKind, StatusCode
from sentry_sdk.session import Session

from widgettrace.instrumentation import semconv as sc
from widgettrace.instrumentation._guard import internal_errors, logger

__all__ = [
    "SessionProcessor",
    "configure_sessions",
    "end_open_sessions",
    "local_name",
    "note_error",
    "session",
    "sessions_mode",
]

_current: contextvars.ContextVar[Session | None] = contextvars.ContextVar(
    "widgettrace_session", default=None
)
_names: OrderedDict[str, str] = OrderedDict()
_names_lock = threading.Lock()
_open: weakref.WeakSet[Session] = weakref.WeakSet()
_MAX_NAMES = 10_000
_REQUEST_SID = uuid.UUID(int=0)
_state: dict[str, Any] = {"mode": "off", "release": None, "environment": None, "warned": False}


def sessions_mode() -> str:
    """``auto``, ``blocks`` or ``off``: what :func:`configure_sessions` was given."""
    return str(_state["mode"])


def configure_sessions(mode: str, release: str | None, environment: str | None) -> None:
    """Remember the settings (called once by ``configure_sentry``)."""
    _state.update(mode=mode, release=release, environment=environment, warned=False)


def _capture(sess: Session) -> None:
    client = sentry_sdk.get_client()
    if not client.is_active():
        return
    if not sess.release:
        if not _state["warned"]:
            _warn_no_release()
        return
    client.capture_session(sess)


def _warn_no_release() -> None:
    _state["warned"] = True
    # INFO, not WARNING: an app without a release is normal (dev, scripts).
    logger.info(
        "widgettrace: release-health sessions need a release (SENTRY_RELEASE or "
        "OTEL_RESOURCE_ATTRIBUTES service.version); none are sent"
    )


def note_error(handled: bool) -> None:
    """An error was reported inside the current explicit session (if any): count it."""
    sess = _current.get()
    if sess is not None:
        sess.update(errors=sess.errors + 1)


def local_name(sid: str) -> str | None:
    """The name given to the explicit session ``sid`` (for the local log only)."""
    with _names_lock:
        return _names.get(sid)


def _user_fields(user: str | Mapping[str, Any] | None) -> dict[str, Any]:
    if user is None:
        return {}
    if isinstance(user, str):
        return {"did": user}
    # The SDK takes did from id, email or username; an email is PII and would need opting in.
    ident = user.get("id") or user.get("username")
    return {"did": str(ident)} if ident else {}


@contextlib.contextmanager
def session(
    user: str | Mapping[str, Any] | None = None,
    name: str | None = None,
) -> Iterator[Session | None]:
    """One release-health session around a block of work (an agent run, a job).

    ``user`` is a user id (or a mapping with ``id``/``username``): Sentry counts distinct users
    from it. ``name`` labels the session in the local log. The status follows what happens in
    the block: see the module docstring. Yields the SDK ``Session`` (None when sessions are off).
    """
    sess: Session | None = None
    token = None
    with internal_errors("sessions.start"):
        if _state["mode"] != "off" and sentry_sdk.get_client().is_active():
            sess = Session(
                release=_state["release"],
                environment=_state["environment"],
                session_mode="application",
                **_user_fields(user),
            )
            if name:
                with _names_lock:
                    _names[str(sess.sid)] = name
                    while len(_names) > _MAX_NAMES:
                        _names.popitem(last=False)
            _open.add(sess)
            token = _current.set(sess)
    if sess is None:
        yield None
        return
    status = None
    try:
        yield sess
    except Exception:
        status = "crashed"
        raise
    except BaseException:
        status = "abnormal"
        raise
    finally:
        with internal_errors("sessions.end"):
            if token is not None:
                _current.reset(token)
            _end(sess, status)


def _end(sess: Session, status: str | None) -> None:
    _open.discard(sess)
    if status is None:
        status = "errored" if sess.errors else "exited"
    elif status in ("crashed", "errored"):
        sess.update(errors=max(1, sess.errors))
    now = datetime.now(timezone.utc)
    sess.update(status=status, timestamp=now, duration=(now - sess.started).total_seconds())  # type: ignore[arg-type]
    _capture(sess)


def end_open_sessions() -> None:
    """Sessions still open at shutdown end ``abnormal``."""
    for sess in list(_open):
        with internal_errors("sessions.abnormal"):
            _end(sess, "abnormal")


def _span_status(span: ReadableSpan) -> tuple[str, int]:
    """(session status, errors) for a span that ended: crashed / errored / exited."""
    if span._status._status_code is StatusCode.ERROR:
        if any(e.name == "exception" for e in span._events):
            return "crashed", 1
        return "errored", 1
    code = (span._attributes or {}).get(sc.HTTP_RESPONSE_STATUS_CODE)
    if isinstance(code, int) and code >= 500:
        return "errored", 1
    return "exited", 0


class SessionProcessor(SpanProcessor):
    """Request sessions for local-root SERVER spans; a session per cascade block (``blocks``).

    A block is a span with ``gen_ai.operation.name = invoke_agent`` (``agent_block_span``; its
    attributes are set after it starts, so blocks are recognised when they end). Its session
    starts and ends with the span: ``crashed`` when an exception escaped it, ``errored`` when it
    or any span under it ended with an error, else ``exited``; ``did`` is its ``user.id``.
    """

    def __init__(self, release: str | None, environment: str | None, *, blocks: bool) -> None:
        self._release = release
        self._environment = environment
        self._blocks = blocks
        #: span id -> errors in its finished descendants (bubbled up as spans end)
        self._errors_below: dict[int, int] = {}

    def on_end(self, span: ReadableSpan) -> None:
        try:
            if self._blocks:
                self._block(span)
            if span._kind is not SpanKind.SERVER:
                return
            if not self._release:
                if not _state["warned"]:
                    _warn_no_release()
                return  # no session without a release: build none
            parent = span._parent
            if parent is not None and not parent.is_remote:
                return
            status, errors = _span_status(span)
            start = span._start_time or 0
            sess = Session(
                # Aggregated per minute and never sent one by one: one id for all of them
                # saves a uuid4 (an os.urandom call) per request on the application's thread.
                sid=_REQUEST_SID,
                started=datetime.fromtimestamp(start / 1e9, timezone.utc),
                release=self._release,
                environment=self._environment,
                session_mode="request",
                errors=errors,
                status=status,  # type: ignore[arg-type]
            )
            _capture(sess)
        except Exception:
            with internal_errors("sessions.on_end"):
                raise

    def _block(self, span: ReadableSpan) -> None:
        below = self._errors_below
        sid = span._context.span_id  # type: ignore[union-attr]
        errors = below.pop(sid, 0) if below else 0
        status, own = _span_status(span)
        errors += own
        parent = span._parent
        if errors and parent is not None and not parent.is_remote:
            if len(below) >= _MAX_NAMES:
                below.clear()  # parents that never end: forget rather than grow
            below[parent.span_id] = below.get(parent.span_id, 0) + errors
        attrs = span._attributes or {}
        if attrs.get(sc.GEN_AI_OPERATION_NAME) != "invoke_agent":
            return
        start = datetime.fromtimestamp((span._start_time or 0) / 1e9, timezone.utc)
        end = datetime.fromtimestamp((span._end_time or 0) / 1e9, timezone.utc)
        user = attrs.get(sc.USER_ID)
        sess = Session(
            started=start,
            release=self._release,
            environment=self._environment,
            session_mode="application",
            did=str(user) if user is not None else None,
            errors=errors,
        )
        name = attrs.get(sc.GEN_AI_AGENT_NAME)
        if name:
            with _names_lock:
                _names[str(sess.sid)] = str(name)
        if status == "exited" and errors:
            status = "errored"
        sess.update(
            status=status,  # type: ignore[arg-type]
            timestamp=end,
            duration=(end - start).total_seconds(),
        )
        _capture(sess)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        with internal_errors("sessions.flush"):
            sentry_sdk.get_client().session_flusher.flush()  # type: ignore[attr-defined]
        return True

    def shutdown(self) -> None:
        end_open_sessions()
        self.force_flush()
