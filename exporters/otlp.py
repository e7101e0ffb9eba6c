"""``WIDGETTRACE_SENTRY_MODE=otlp``: spans to Sentry's OTLP endpoint, errors as Sentry events.

For Sentry servers that ingest OpenTelemetry traces natively. Spans leave through the standard
OTLP/HTTP (protobuf) exporter on a ``BatchSpanProcessor`` in widgettrace's own
``TracerProvider``, to the endpoint derived from ``SENTRY_DSN``
(``<scheme>://<host>/api/<project>/integration/otlp/v1/traces/``, authenticated with the DSN's
``X-Sentry-Auth`` header), exactly as sentry-sdk's ``OTLPIntegration`` would send them. Errors
stay Sentry error events (envelopes through the SDK's transport, the local log tee included),
produced by widgettrace's exactly-once capture: every exception escaping an instrumented span,
and every ``widgettrace.instrumentation.scope.capture_exception``, becomes one event linked to
the trace and the span where it was raised.

Sentry's ``OTLPIntegration`` is used for what it does well, trace linking of anything the SDK
itself captures (it registers the current OTel span as the SDK's external propagation context),
and switched off where it would fight widgettrace:

* ``setup_otlp_traces_exporter=False``: it would attach its exporter to the *global* provider at
  ``sentry_sdk.init`` time, which is before the configurator has created ours (it would create
  and install a second provider, losing our sampler and resource);
* ``setup_propagator=False``: it would replace the global propagator with one that writes only
  ``sentry-trace`` (no W3C ``traceparent``); widgettrace's composite stays;
* ``capture_exceptions=False``: it would report every ``Span.record_exception`` call, i.e. once
  per span the exception passes through; widgettrace reports each exception once.

Without a DSN there is no OTLP endpoint, and without ``opentelemetry-exporter-otlp-proto-http``
(the ``otlp`` extra) no exporter: either way one warning names the problem and the default span
processor mode (with the local log) is used instead.

Usage (what the configurator does)::

    processors = configure_otlp_mode(get_settings(), resource)
    for processor in processors:
        tracer_provider.add_span_processor(processor)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor

from widgettrace.instrumentation import semconv
from widgettrace.instrumentation._guard import logger

__all__ = ["OTLP_TRACES_PATH", "configure_otlp_mode", "otlp_integration", "otlp_traces_target"]

#: Path of Sentry's OTLP traces endpoint under ``/api/<project>/`` (sentry-sdk's
#: ``EndpointType.OTLP_TRACES``).
OTLP_TRACES_PATH: Final = "integration/otlp/v1/traces"

_MAX_TAG_LENGTH: Final = 200


def otlp_traces_target(dsn: str) -> tuple[str, dict[str, str]]:
    """The OTLP/HTTP traces URL and the auth headers for a Sentry DSN (as OTLPIntegration)."""
    from sentry_sdk.consts import VERSION, EndpointType
    from sentry_sdk.utils import Dsn

    auth = Dsn(dsn).to_auth(f"sentry.python/{VERSION}")
    return auth.get_api_url(EndpointType.OTLP_TRACES), {"X-Sentry-Auth": auth.to_header()}


def otlp_integration() -> Any:
    """Sentry's ``OTLPIntegration`` configured so it leaves spans, propagation and errors to us."""
    from sentry_sdk.integrations.otlp import OTLPIntegration

    return OTLPIntegration(
        setup_otlp_traces_exporter=False,
        setup_propagator=False,
        capture_exceptions=False,
    )


def _resource_tags(resource: Resource | None) -> dict[str, str]:
    if resource is None:
        return {}
    attributes: Mapping[str, Any] = resource.attributes
    return {
        key: str(attributes[key])[:_MAX_TAG_LENGTH]
        for key in (semconv.SERVICE_NAME, semconv.SERVICE_VERSION)
        if key in attributes
    }


def _fallback(settings: Any, resource: Resource | None) -> list[SpanProcessor]:
    from widgettrace.exporters.sentry import configure_sentry

    processor = configure_sentry(settings, resource)
    return [] if processor is None else [processor]


def configure_otlp_mode(settings: Any, resource: Resource | None) -> list[SpanProcessor]:
    """Initialise ``sentry_sdk`` for errors and return the OTLP span processor to add.

    ``settings`` is :func:`widgettrace.instrumentation._config.get_settings`'s result.
    """
    dsn = settings.sentry_dsn
    if not dsn:
        logger.warning(
            "widgettrace: WIDGETTRACE_SENTRY_MODE=otlp needs SENTRY_DSN (the OTLP endpoint comes "
            "from it); using the default span processor mode instead"
        )
        return _fallback(settings, resource)

    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        logger.warning(
            "widgettrace: WIDGETTRACE_SENTRY_MODE=otlp needs "
            "opentelemetry-exporter-otlp-proto-http (pip install 'widgettrace[otlp]'); "
            "using the default span processor mode instead"
        )
        return _fallback(settings, resource)

    import sentry_sdk
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    from widgettrace.exporters import _sentry_errors
    from widgettrace.exporters._scrub import scrubber_for
    from widgettrace.exporters._scrub_spans import ScrubbingSpanExporter
    from widgettrace.exporters.locallog import make_transport
    from widgettrace.exporters.sentry import _ErrorSink, sentry_init_options
    from widgettrace.instrumentation import logcrumbs, scope

    # The same SDK options as the processor mode (integrations chosen so nothing is reported
    # twice, no stdlib header injection, scrubbing, release/environment), plus OTLPIntegration.
    options = sentry_init_options(settings, resource)
    options["integrations"] = [*options.get("integrations", []), otlp_integration()]
    if settings.log_path:
        transport = make_transport(options, settings)
        if transport is not None:
            options["transport"] = transport
    sentry_sdk.init(**options)
    client = sentry_sdk.get_client()
    if client.options is not None:
        # Spotlight makes the SDK turn PII on; ours is WIDGETTRACE_SEND_DEFAULT_PII.
        client.options["send_default_pii"] = bool(settings.send_default_pii)

    _sentry_errors.install()
    logcrumbs.install()  # log records as per-trace breadcrumbs (the SDK's are off)
    scrubber = scrubber_for(settings)
    scope.set_error_sink(
        _ErrorSink(_resource_tags(resource), bool(settings.send_default_pii), scrubber)
    )

    endpoint, headers = otlp_traces_target(dsn)
    # The exporter's own HTTP requests run with instrumentation suppressed (BatchSpanProcessor
    # does that), so they neither become spans nor carry trace headers.
    # Scrubbed on the batch processor's thread before the OTLP exporter sees them.
    processor = BatchSpanProcessor(
        ScrubbingSpanExporter(OTLPSpanExporter(endpoint=endpoint, headers=headers), scrubber)
    )
    logger.debug("widgettrace: spans go over OTLP to %s", endpoint)
    return [processor]
