"""Where this process's telemetry goes, as the running configuration sees it.

For reports such as the example's "telemetry went to:": built from what widgettrace actually
set up (the validated settings, the live Sentry client and its transport), never from the raw
environment, so a rejected ``SENTRY_DSN`` is not shown, the DSN keeps its port (never its key),
and the local log shows the file really written, the fallback one included::

    from widgettrace.exporters.destinations import describe
    for where in describe():
        print(where)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from opentelemetry import trace

from widgettrace.instrumentation._config import get_settings

__all__ = ["describe", "local_log_path"]


def _dsn_text(dsn: Any) -> str:
    # Never the key: scheme, host, port and project only.
    port = "" if dsn.port == (443 if dsn.scheme == "https" else 80) else f":{dsn.port}"
    return f"{dsn.scheme}://{dsn.host}{port}{dsn.path}{dsn.project_id}"


def _sentry_client() -> Any:
    try:
        import sentry_sdk
    except ImportError:  # pragma: no cover - a dependency
        return None
    client = sentry_sdk.get_client()
    return client if client.is_active() else None


def local_log_path() -> Path | None:
    """The local log file this process writes (after any fallback), or None."""
    client = _sentry_client()
    writer = getattr(client.transport, "writer", None) if client is not None else None
    return Path(writer.path) if writer is not None else None


def describe() -> list[str]:
    """One line per destination (``nowhere: <why>`` when there is none)."""
    settings = get_settings()
    if settings.sdk_disabled:
        return ["nowhere: OTEL_SDK_DISABLED=true"]
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return ["nowhere: not run under opentelemetry-instrument (no tracer provider)"]
    out: list[str] = []
    client = _sentry_client() if settings.sentry_mode != "off" else None
    if client is not None:
        transport = client.transport
        dsn = getattr(transport, "parsed_dsn", None)
        if dsn is not None:
            out.append(f"Sentry ({settings.sentry_mode}): {_dsn_text(dsn)}")
        spotlight = getattr(client, "spotlight", None)
        if spotlight is not None:
            out.append(f"Spotlight: {spotlight.url}")
        log = local_log_path()
        if log is not None:
            out.append(f"local log: {log}  (read it with: widgettrace tail)")
    if settings.traces_exporter and "otlp" in settings.traces_exporter:
        endpoint = settings.otlp_endpoint or "http://localhost:4318"
        out.append(f"OTLP collector: {endpoint}")
    return out or ["nowhere: WIDGETTRACE_SENTRY_MODE=off and no other exporter"]
