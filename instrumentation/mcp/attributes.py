"""Span names, attributes and outcomes of MCP messages (the OTel MCP conventions)."""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Final

from opentelemetry import context as context_api
from opentelemetry.metrics import Histogram
from opentelemetry.trace import Span, Status, StatusCode
from opentelemetry.util.types import AttributeValue

from widgettrace.instrumentation import semconv as sc
from widgettrace.instrumentation._guard import guarded
from widgettrace.instrumentation.mcp._common import (
    _CANCELLED,
    _EXECUTE_TOOL,
    _INVALID_PARAMS_CODE,
    _PROTOCOL_VERSION_META_KEY,
    _REQUEST_TIMEOUT_CODE,
    _RESOURCE_METHODS,
    _TIMEOUT,
    _TOOL_ERROR,
    _is_cancellation,
    _is_map,
    _Peer,
    _State,
    _str_or_none,
)
from widgettrace.instrumentation.mcp.redaction import _payload, _tool_result_payload


def _method_attrs(method: str, params: Any, attrs: dict[str, AttributeValue]) -> str | None:
    """Low-cardinality attributes from the method and params; returns the span-name target."""
    attrs[sc.MCP_METHOD_NAME] = method
    if not _is_map(params):
        return None
    if method == "tools/call":
        attrs[sc.GEN_AI_OPERATION_NAME] = _EXECUTE_TOOL
        name = _str_or_none(params.get("name"))
        if name is not None:
            attrs[sc.GEN_AI_TOOL_NAME] = name
        return name
    if method == "prompts/get":
        name = _str_or_none(params.get("name"))
        if name is not None:
            attrs[sc.GEN_AI_PROMPT_NAME] = name
        return name
    return None


def _span_name(method: str, target: str | None) -> str:
    return f"{method} {target}" if target else method


def _resource_uri(method: str, params: Any) -> str | None:
    if method in _RESOURCE_METHODS and _is_map(params):
        return _str_or_none(params.get("uri"))
    return None


def _meta_version(params: Any) -> str | None:
    if _is_map(params):
        meta = params.get("_meta")
        if _is_map(meta):
            return _str_or_none(meta.get(_PROTOCOL_VERSION_META_KEY))
    return None


# --- spans -------------------------------------------------------------------------------------


def _error_of(exc: BaseException) -> tuple[str, str | None, str | None]:
    """(error.type, rpc.response.status_code or None, status description) for an exception."""
    if _is_cancellation(exc):
        return _CANCELLED, None, None
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None)
    if isinstance(code, int) and _is_mcp_error(exc):
        message = _str_or_none(getattr(error, "message", None))
        if code == _REQUEST_TIMEOUT_CODE:
            return _TIMEOUT, None, message
        return str(code), str(code), message
    if type(exc).__name__ == "ValidationError":
        # What mcp writes on the wire for it.
        return str(_INVALID_PARAMS_CODE), str(_INVALID_PARAMS_CODE), "Invalid request parameters"
    return type(exc).__qualname__, None, str(exc) or None


def _is_mcp_error(exc: BaseException) -> bool:
    from mcp.shared.exceptions import MCPError

    return isinstance(exc, MCPError)


@dataclasses.dataclass
class _Call:
    """One traced message: its span, clock and low-cardinality (metric) attributes."""

    span: Span
    start: float
    method: str
    attrs: dict[str, AttributeValue]
    histogram: Histogram
    state: _State
    peer: _Peer | None = None
    version_holder: Any = None
    version_attr: str = ""
    context: context_api.Context | None = None

    def finish(
        self, result: Any = None, error: BaseException | None = None, record: bool = True
    ) -> None:
        span = self.span
        attrs = self.attrs
        # Only what is learned at the end goes onto the span: the rest was given at start.
        late: dict[str, AttributeValue] = {}
        if self.version_attr and sc.MCP_PROTOCOL_VERSION not in attrs:
            version = _str_or_none(getattr(self.version_holder, self.version_attr, None))
            if version is not None:
                late[sc.MCP_PROTOCOL_VERSION] = version
        status_message: str | None = None
        failed = False
        if error is not None:
            failed = True
            etype, code, status_message = _error_of(error)
            late[sc.ERROR_TYPE] = etype
            if code is not None:
                late[sc.RPC_RESPONSE_STATUS_CODE] = code
            elif record and etype not in (_CANCELLED, _TIMEOUT) and span.is_recording():
                span.record_exception(error)
        elif _is_map(result):
            if self.method == "tools/call" and result.get("isError") is True:
                failed = True
                late[sc.ERROR_TYPE] = _TOOL_ERROR
            elif self.method == "initialize" and sc.MCP_PROTOCOL_VERSION not in attrs:
                version = _str_or_none(result.get("protocolVersion"))
                if version is not None:
                    late[sc.MCP_PROTOCOL_VERSION] = version
            if self.state.capture_payloads and self.method == "tools/call" and span.is_recording():
                span.set_attribute(
                    sc.GEN_AI_TOOL_CALL_RESULT,
                    _payload(_tool_result_payload(result), self.state.payload_max_bytes),
                )
        if late:
            attrs.update(late)
            if span.is_recording():
                span.set_attributes(late)
        if failed and span.is_recording():
            span.set_status(Status(StatusCode.ERROR, status_message))
        span.end()
        self.histogram.record(time.perf_counter() - self.start, attributes=attrs)


# The hot path guards with ``guarded`` (a plain try/except) rather than ``internal_errors`` (a
# generator context manager, a few microseconds per use, several uses per round trip).
@guarded("mcp.finish", None)
def _fail(call: _Call, exc: BaseException, record: bool = True) -> None:
    call.finish(error=exc, record=record)


@guarded("mcp.finish", None)
def _succeed(call: _Call, result: Any) -> None:
    call.finish(result=result)


def _progress_event(span: Span, progress: Any, total: Any, message: Any) -> None:
    if not span.is_recording():
        return
    attrs: dict[str, AttributeValue] = {}
    if isinstance(progress, int | float) and not isinstance(progress, bool):
        attrs[sc.MCP_PROGRESS_VALUE] = float(progress)
    if isinstance(total, int | float) and not isinstance(total, bool):
        attrs[sc.MCP_PROGRESS_TOTAL] = float(total)
    if isinstance(message, str):
        attrs[sc.MCP_PROGRESS_MESSAGE] = message[:256]
    span.add_event(sc.MCP_PROGRESS_EVENT, attrs)


# Sentry's names (getsentry/sentry-conventions) ---------------------------------------------------

# Notifications only one side sends (MCP spec); cancelled can go either way.
_CLIENT_TO_SERVER: Final = frozenset(
    {"notifications/initialized", "notifications/roots/list_changed"}
)


def _sentry_names(
    start_attrs: dict[str, AttributeValue], method: str, sender_is_server: bool | None
) -> None:
    """Sentry's aliases of the OTel names, and its op for a notification, in ``start_attrs``."""
    for otel, sentry in sc.SENTRY_MCP_ALIASES:
        value = start_attrs.get(otel)
        if value is not None:
            start_attrs[sentry] = value
    if not method.startswith("notifications/"):
        return
    if sender_is_server is None:
        if method == "notifications/cancelled":
            return  # either way; who sent it is unknown here
        sender_is_server = method not in _CLIENT_TO_SERVER
    start_attrs[sc.SENTRY_OP] = (
        sc.OP_MCP_NOTIFICATION_SERVER_TO_CLIENT
        if sender_is_server
        else sc.OP_MCP_NOTIFICATION_CLIENT_TO_SERVER
    )
