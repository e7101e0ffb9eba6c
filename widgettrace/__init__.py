"""widgettrace: OpenTelemetry-based observability for widget platforms built on agents and MCP.

Zero-code: ``opentelemetry-instrument python app.py`` traces FastAPI, ``requests``, MCP and the
functions named in ``WIDGETTRACE_TRACE_FUNCTIONS``, and sends errors and transactions to Sentry
(``SENTRY_DSN``) or, with no DSN, to the local log that ``widgettrace tail`` reads back.

This module is the whole public API, vendor-neutral (application code never imports
``sentry_sdk``):

* spans for hot paths: :func:`span` (decorator and context manager) and the typed helpers
  :func:`discovery_span`, :func:`conversion_span`, :func:`registry_span`,
  :func:`iteration_span`, :func:`agent_block_span`, :func:`llm_call_span`, :func:`tool_span`,
  :func:`record_llm_usage`;
* security and audit events: :func:`audit_event` (Sentry event + hash-chained audit file);
* what Sentry users reach for: :func:`set_user`, :func:`set_tag`, :func:`set_context`,
  :func:`add_breadcrumb`, :func:`capture_message`, :func:`capture_exception`,
  :func:`set_fingerprint`;
* :func:`configure` for programs not started by ``opentelemetry-instrument``.

Names are imported on first use, so ``import widgettrace`` (and the CLI) stays fast.
"""

import os as _os
from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"


def _add_source_checkout_parts() -> None:
    # Imported straight from a source checkout (the repo root on sys.path, as with `python -m
    # widgettrace` run there): instrumentation/ and exporters/ are this folder's siblings, which
    # setuptools' package-dir maps in when installed. Only our own checkout qualifies, never a
    # site-packages that happens to hold unrelated `instrumentation`/`exporters` packages.
    here = _os.path.dirname(_os.path.abspath(__file__))
    root = _os.path.dirname(here)
    if _os.path.isdir(_os.path.join(here, "instrumentation")):
        return  # installed: the parts are inside
    marker = _os.path.join(root, "instrumentation", "_config.py")
    if _os.path.isfile(marker) and _os.path.isfile(_os.path.join(root, "pyproject.toml")):
        __path__.append(root)


_add_source_checkout_parts()

_EXPORTS = {
    "add_breadcrumb": "widgettrace.instrumentation.scope",
    "agent_block_span": "widgettrace.instrumentation.api",
    "audit_event": "widgettrace.instrumentation.audit",
    "capture_exception": "widgettrace.instrumentation.scope",
    "capture_message": "widgettrace.instrumentation.scope",
    "configure": "widgettrace.instrumentation.configurator",
    "conversion_span": "widgettrace.instrumentation.api",
    "discovery_span": "widgettrace.instrumentation.api",
    "iteration_span": "widgettrace.instrumentation.api",
    "llm_call_span": "widgettrace.instrumentation.api",
    "record_llm_usage": "widgettrace.instrumentation.api",
    "registry_span": "widgettrace.instrumentation.api",
    "session": "widgettrace.exporters._sessions",
    "set_context": "widgettrace.instrumentation.scope",
    "set_fingerprint": "widgettrace.instrumentation.scope",
    "set_tag": "widgettrace.instrumentation.scope",
    "set_user": "widgettrace.instrumentation.scope",
    "span": "widgettrace.instrumentation.api",
    "tool_span": "widgettrace.instrumentation.api",
}

__all__ = [
    "add_breadcrumb",
    "agent_block_span",
    "audit_event",
    "capture_exception",
    "capture_message",
    "configure",
    "conversion_span",
    "discovery_span",
    "iteration_span",
    "llm_call_span",
    "record_llm_usage",
    "registry_span",
    "session",
    "set_context",
    "set_fingerprint",
    "set_tag",
    "set_user",
    "span",
    "tool_span",
]

if TYPE_CHECKING:
    from widgettrace.exporters._sessions import session
    from widgettrace.instrumentation.api import (
        agent_block_span,
        conversion_span,
        discovery_span,
        iteration_span,
        llm_call_span,
        record_llm_usage,
        registry_span,
        span,
        tool_span,
    )
    from widgettrace.instrumentation.audit import audit_event
    from widgettrace.instrumentation.configurator import configure
    from widgettrace.instrumentation.scope import (
        add_breadcrumb,
        capture_exception,
        capture_message,
        set_context,
        set_fingerprint,
        set_tag,
        set_user,
    )


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'widgettrace' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*__all__, "__version__"})
