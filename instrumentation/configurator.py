"""Sets up the OTel SDK and the Sentry export path, from environment variables alone.

Loaded by ``opentelemetry-instrument`` as the ``opentelemetry_configurator`` entry point, or
called directly with :func:`configure` by programs that do not use the wrapper (tests,
notebooks, an app that wants tracing without ``opentelemetry-instrument``).

What it builds:

* one ``TracerProvider`` with ONE sampling decision: ``OTEL_TRACES_SAMPLER`` if set, else a
  parent-based ratio sampler at ``SENTRY_TRACES_SAMPLE_RATE`` (default 1.0). The Sentry side
  never samples again, so an upstream ``sampled=0`` is never sent and ``sampled=1`` always is;
* the Sentry export path chosen by ``WIDGETTRACE_SENTRY_MODE``: our span processor
  (``processor``, the default; with no DSN it writes the local log), Sentry's OTLP endpoint
  (``otlp``) or nothing (``off``);
* the exporters named by ``OTEL_TRACES_EXPORTER`` (``otlp`` to a collector), as upstream;
* the propagators: ``OTEL_PROPAGATORS`` if set, else W3C tracecontext + baggage + sentry-trace;
* with no metrics exporter (``OTEL_METRICS_EXPORTER=none``) every meter disabled through the
  SDK's own meter configurator: a ``MeterProvider`` without readers can never be read, yet each
  request's histogram and counter measurements cost about a tenth of the framework
  instrumentation's time on the application's thread.

A failure here is logged in one line and the application runs on without telemetry: the
configurator never raises into ``opentelemetry-instrument``.
"""

from __future__ import annotations

import os
import threading
from typing import Any, cast

from opentelemetry.sdk._configuration import _initialize_components, _OTelSDKConfigurator
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.sdk.trace.sampling import (
    _KNOWN_SAMPLERS,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)

from widgettrace.instrumentation._config import Settings, get_settings
from widgettrace.instrumentation._guard import logger

__all__ = [
    "WidgetTraceConfigurator",
    "build_sampler",
    "configure",
    "is_configured",
    "was_attempted",
]

_lock = threading.Lock()
_configured = False
_attempted = False


def is_configured() -> bool:
    """Whether widgettrace's configurator has set up this process."""
    return _configured


def was_attempted() -> bool:
    """Whether widgettrace's configurator ran at all (it may have failed, and said so)."""
    return _attempted


def build_sampler(settings: Settings) -> Sampler:
    """The one sampler: standard OTel variables first, then SENTRY_TRACES_SAMPLE_RATE."""
    if settings.traces_sampler is not None:
        # Built from the validated settings: upstream's own reader would parse
        # OTEL_TRACES_SAMPLER_ARG again and add a second line for a value we already rejected.
        known: Any = _KNOWN_SAMPLERS[settings.traces_sampler]
        if settings.traces_sampler.endswith("traceidratio"):
            rate = 1.0 if settings.traces_sampler_arg is None else settings.traces_sampler_arg
            return cast("Sampler", known(rate))  # a ratio sampler class
        return cast("Sampler", known)  # a sampler instance
    if settings.traces_sample_rate is None or settings.traces_sample_rate >= 1.0:
        return ParentBased(ALWAYS_ON)
    return ParentBased(TraceIdRatioBased(settings.traces_sample_rate))


def _export_processors(settings: Settings, resource: Resource) -> list[SpanProcessor]:
    if settings.sentry_mode == "off":
        return []
    if settings.sentry_mode == "otlp":
        from widgettrace.exporters.otlp import configure_otlp_mode

        return list(configure_otlp_mode(settings, resource))
    from widgettrace.exporters.sentry import configure_sentry

    processor = configure_sentry(settings, resource)
    # Companions: processors that ride along (release-health sessions, exporters/_wire.py).
    return [] if processor is None else [processor, *getattr(processor, "companions", ())]


_EXPORTER_VARS = {
    "OTEL_TRACES_EXPORTER": "opentelemetry_traces_exporter",
    "OTEL_METRICS_EXPORTER": "opentelemetry_metrics_exporter",
    "OTEL_LOGS_EXPORTER": "opentelemetry_logs_exporter",
}


def _check_exporters() -> None:
    """Keep only exporters that can be loaded: one missing must not switch all telemetry off.

    Upstream raises on an unknown name, which aborts auto-instrumentation entirely. ``otlp``
    (the gRPC exporter's name) falls back to ``otlp_proto_http``, what our ``otlp`` extra
    installs.
    """
    from importlib.metadata import entry_points

    for var, group in _EXPORTER_VARS.items():
        raw = os.environ.get(var)
        if not raw or raw.strip().lower() == "none":
            continue
        available = {ep.name for ep in entry_points(group=group)}
        kept: list[str] = []
        for name in (n.strip() for n in raw.split(",")):
            if not name or name.lower() == "none":
                continue
            if name in available:
                kept.append(name)
            elif name == "otlp" and "otlp_proto_http" in available:
                kept.append("otlp_proto_http")
            else:
                logger.warning(
                    "widgettrace: %s=%r names an exporter that is not installed (%s); "
                    "using %s instead (for otlp: pip install 'widgettrace[otlp]')",
                    var,
                    name,
                    ", ".join(sorted(available)) or "none installed",
                    ",".join(kept) or "none",
                )
        os.environ[var] = ",".join(dict.fromkeys(kept)) or "none"


def _install_propagator(settings: Settings) -> None:
    # Always ours, even when OTEL_PROPAGATORS is set: sentry-sdk registers an entry point named
    # `sentry` too (whose inject needs its deprecated processor), so which one the API loaded
    # depends on install order; ours also writes one merged `baggage` header.
    from opentelemetry.propagate import set_global_textmap

    from widgettrace.exporters.propagation import build_propagator

    set_global_textmap(build_propagator(settings.propagators))


def _scrubbed_exports(settings: Settings) -> dict[str, Any]:
    # Spans to a collector (OTEL_TRACES_EXPORTER) are scrubbed like every other sink
    # (docs/privacy.md), through the SDK's own hook for the processor around each exporter.
    import inspect

    if "export_span_processor" not in inspect.signature(_initialize_components).parameters:
        return {}  # an SDK without the hook: its own processor, unscrubbed (docs/privacy.md)
    from widgettrace.exporters._scrub import scrubber_for
    from widgettrace.exporters._scrub_spans import scrubbing_export_processor

    return {"export_span_processor": scrubbing_export_processor(scrubber_for(settings))}


def _meters_off() -> dict[str, Any]:
    """``meter_configurator`` disabling every meter when no metrics exporter is configured."""
    import inspect

    if os.environ.get("OTEL_PYTHON_METER_CONFIGURATOR"):
        return {}  # the user's own configurator decides
    if "meter_configurator" not in inspect.signature(_initialize_components).parameters:
        return {}
    raw = os.environ.get("OTEL_METRICS_EXPORTER", "otlp")  # upstream's default when unset
    if any(n.strip() and n.strip().lower() != "none" for n in raw.split(",")):
        return {}
    try:
        from opentelemetry.sdk.metrics._internal import _MeterConfig
    except ImportError:  # an SDK without it: measurements are recorded and never read
        return {}
    disabled = _MeterConfig(is_enabled=False)
    return {"meter_configurator": lambda _scope: disabled}


def configure(*, auto_instrumentation_version: str | None = None) -> bool:
    """Set up tracing and Sentry export for this process; returns whether it did.

    Idempotent: a second call does nothing. Never raises.
    """
    global _configured, _attempted
    with _lock:
        _attempted = True
        if _configured:
            return True
        settings = get_settings()
        if settings.sdk_disabled:
            logger.info("widgettrace: OTEL_SDK_DISABLED is true; telemetry is off")
            return False
        try:
            resource_attributes: dict[str, Any] = {}
            if auto_instrumentation_version:
                resource_attributes["telemetry.auto.version"] = auto_instrumentation_version
            resource = Resource.create(resource_attributes)
            processors = _export_processors(settings, resource)
            _check_exporters()
            _initialize_components(
                auto_instrumentation_version=auto_instrumentation_version,
                sampler=build_sampler(settings),
                resource_attributes=resource_attributes,
                span_processors=processors,
                **_scrubbed_exports(settings),
                **_meters_off(),
            )
            _install_propagator(settings)
        except Exception:
            logger.exception(
                "widgettrace: setting up telemetry failed; the application runs without it"
            )
            return False
        _configured = True
        return True


class WidgetTraceConfigurator(_OTelSDKConfigurator):
    """The ``opentelemetry_configurator`` entry point."""

    def _configure(self, **kwargs: Any) -> None:
        configure(auto_instrumentation_version=kwargs.get("auto_instrumentation_version"))
