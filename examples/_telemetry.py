"""The one place the example platform gets its tracing helpers from.

Every other example module imports ``span``, ``discovery_span``, ``llm_call_span``, ... from
here, never from widgettrace's modules directly, so the examples depend on exactly one public
surface::

    from _telemetry import discovery_span, record_llm_usage, submit_in_context

Where the names come from: ``widgettrace``'s public API; when widgettrace is not installed, a
small fallback on the plain OpenTelemetry API (same names and span names, the main attributes,
no cost, no roll-ups, no Sentry scope), so the examples still run against any OpenTelemetry
setup.

:data:`TELEMETRY_API` says which one was used. :func:`submit_in_context` is the example's
helper for thread pools: ``ThreadPoolExecutor`` does not carry ``contextvars`` into its worker
threads, so the current OpenTelemetry context is attached in the worker explicitly (asyncio
tasks and ``asyncio.to_thread`` copy the context by themselves).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from opentelemetry import context as otel_context

__all__ = [
    "TELEMETRY_API",
    "add_breadcrumb",
    "agent_block_span",
    "conversion_span",
    "discovery_span",
    "iteration_span",
    "llm_call_span",
    "record_llm_usage",
    "registry_span",
    "set_tag",
    "set_user",
    "span",
    "submit_in_context",
    "tool_span",
]

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _fallback_api() -> tuple[Any, ...]:
    """Plain OpenTelemetry stand-ins for the widgettrace API (same names, fewer attributes)."""
    import contextlib
    from collections.abc import Iterator

    from opentelemetry import trace
    from opentelemetry.trace import SpanKind

    tracer = trace.get_tracer("widgettrace.examples")

    @contextlib.contextmanager
    def _span(
        name: str, attrs: dict[str, Any], kind: SpanKind = SpanKind.INTERNAL
    ) -> Iterator[Any]:
        clean = {k: v for k, v in attrs.items() if v is not None}
        with tracer.start_as_current_span(name, kind=kind, attributes=clean) as current:
            yield current

    def span(name: str | None = None, **kw: Any) -> Any:
        return _span(name or "span", dict(kw.get("attributes") or {}))

    def discovery_span(
        source: str,
        *,
        query: str | None = None,
        repositories_scanned: int | None = None,
        widgets_found: int | None = None,
        name: str | None = None,
    ) -> Any:
        return _span(
            name or f"discover {source}",
            {
                "widget.discovery.source": source,
                "widget.discovery.query": query,
                "widget.discovery.repositories_scanned": repositories_scanned,
                "widget.discovery.widgets_found": widgets_found,
            },
        )

    def conversion_span(
        widget_id: str | None = None,
        *,
        widget_type: str | None = None,
        stage: str | None = None,
        name: str | None = None,
    ) -> Any:
        attrs = {"widget.id": widget_id, "widget.type": widget_type}
        return _span(name or (f"convert {stage}" if stage else "convert"), attrs)

    def registry_span(
        operation: str,
        *,
        registry: str | None = None,
        widget_id: str | None = None,
        widget_type: str | None = None,
        name: str | None = None,
    ) -> Any:
        attrs = {
            "widget.registry.operation": operation,
            "widget.registry.name": registry,
            "widget.id": widget_id,
            "widget.type": widget_type,
        }
        return _span(name or f"registry {operation}", attrs)

    def iteration_span(number: int, *, cascade: str | None = None, name: str | None = None) -> Any:
        attrs = {"widget.iteration.number": number, "widget.cascade.name": cascade}
        return _span(name or f"iteration {number}", attrs)

    def agent_block_span(block: str, **kw: Any) -> Any:
        return _span(f"invoke_agent {block}", {"gen_ai.agent.name": block})

    def llm_call_span(model: str, **kw: Any) -> Any:
        attrs = {"gen_ai.request.model": model, "gen_ai.provider.name": kw.get("provider")}
        return _span(f"chat {model}", attrs, SpanKind.CLIENT)

    def tool_span(tool: str, **kw: Any) -> Any:
        return _span(f"execute_tool {tool}", {"gen_ai.tool.name": tool})

    def record_llm_usage(
        input_tokens: int | None = None, output_tokens: int | None = None, **kw: Any
    ) -> None:
        current = trace.get_current_span()
        current.set_attribute("gen_ai.usage.input_tokens", input_tokens or 0)
        current.set_attribute("gen_ai.usage.output_tokens", output_tokens or 0)
        # No price table here: a call without a known price has no cost (not a cost of 0).

    def set_user(id: str | None = None, **kw: Any) -> None:
        trace.get_current_span().set_attribute("user.id", str(id))

    def set_tag(key: str, value: Any) -> None:
        trace.get_current_span().set_attribute(f"widget.tag.{key}", str(value))

    def add_breadcrumb(message: str | None = None, **kw: Any) -> None:
        trace.get_current_span().add_event("breadcrumb", {"message": message or ""})

    return (
        add_breadcrumb,
        agent_block_span,
        conversion_span,
        discovery_span,
        iteration_span,
        llm_call_span,
        record_llm_usage,
        registry_span,
        set_tag,
        set_user,
        span,
        tool_span,
    )


if TYPE_CHECKING:
    # Type-check the examples against the real API's signatures.
    from widgettrace import (
        add_breadcrumb,
        agent_block_span,
        conversion_span,
        discovery_span,
        iteration_span,
        llm_call_span,
        record_llm_usage,
        registry_span,
        set_tag,
        set_user,
        span,
        tool_span,
    )

    TELEMETRY_API: str
else:
    try:
        from widgettrace import (
            add_breadcrumb,
            agent_block_span,
            conversion_span,
            discovery_span,
            iteration_span,
            llm_call_span,
            record_llm_usage,
            registry_span,
            set_tag,
            set_user,
            span,
            tool_span,
        )

        TELEMETRY_API = "widgettrace"
    except ImportError:
        (
            add_breadcrumb,
            agent_block_span,
            conversion_span,
            discovery_span,
            iteration_span,
            llm_call_span,
            record_llm_usage,
            registry_span,
            set_tag,
            set_user,
            span,
            tool_span,
        ) = _fallback_api()
        TELEMETRY_API = "opentelemetry (fallback)"


def submit_in_context(
    executor: Executor, fn: Callable[_P, _R], /, *args: _P.args, **kwargs: _P.kwargs
) -> Future[_R]:
    """``executor.submit(fn, ...)`` with the caller's OpenTelemetry context active in the worker.

    Spans the worker starts become children of the caller's current span, so one request's
    repository scans stay in the request's trace.
    """
    ctx = otel_context.get_current()

    @functools.wraps(fn)
    def run_attached(*a: Any, **kw: Any) -> _R:
        token = otel_context.attach(ctx)
        try:
            return fn(*a, **kw)
        finally:
            otel_context.detach(token)

    return executor.submit(run_attached, *args, **kwargs)
