"""OpenTelemetry SDK variables widgettrace passes through, checked before the SDK reads them.

The SDK reads some variables itself and does not forgive a bad value: a limit that is not a
non-negative integer (``OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT=-5``) raises ``ValueError`` when
``opentelemetry.sdk.trace`` is imported or a ``TracerProvider`` is built, so the application
would run uninstrumented after a traceback; a malformed ``OTEL_RESOURCE_ATTRIBUTES`` item is
warned about once per resource created. :func:`check_sdk_environment` runs first (from the
distro, before the configurator imports the SDK): each bad value gives one line and is removed
(or, for the resource list, the bad items are), so the SDK's own default is what is used.
``OTEL_PROPAGATORS`` is checked even earlier, at interpreter start-up
(:mod:`widgettrace.instrumentation._startup`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import MutableMapping

__all__ = ["LIMIT_VARIABLES", "check_sdk_environment"]

_logger = logging.getLogger("widgettrace")

#: The SDK's span and log-record limits (``opentelemetry.sdk.environment_variables``).
LIMIT_VARIABLES = (
    "OTEL_ATTRIBUTE_COUNT_LIMIT",
    "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
    "OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT",
    "OTEL_LINK_ATTRIBUTE_COUNT_LIMIT",
    "OTEL_LOGRECORD_ATTRIBUTE_COUNT_LIMIT",
    "OTEL_LOGRECORD_ATTRIBUTE_VALUE_LENGTH_LIMIT",
    "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT",
    "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT",
    "OTEL_SPAN_EVENT_COUNT_LIMIT",
    "OTEL_SPAN_LINK_COUNT_LIMIT",
)
_RESOURCE_ATTRIBUTES = "OTEL_RESOURCE_ATTRIBUTES"


def _is_limit(raw: str) -> bool:
    value = raw.strip()
    # Upstream: a non-negative integer, or empty / "unset" for no limit.
    return value == "" or value.lower() == "unset" or (value.isdigit() and value.isascii())


def check_sdk_environment(environ: MutableMapping[str, str] | None = None) -> None:
    """Remove (with one line each) the values the SDK would raise or warn on."""
    env = os.environ if environ is None else environ
    for name in LIMIT_VARIABLES:
        raw = env.get(name)
        if raw is not None and not _is_limit(raw):
            del env[name]
            _logger.warning(
                "widgettrace: %s=%r is invalid (not a non-negative whole number); using the "
                "SDK's default instead",
                name,
                raw[:80],
            )
    raw = env.get(_RESOURCE_ATTRIBUTES)
    if raw:
        items = [item for item in raw.split(",") if item.strip()]
        good = [item for item in items if "=" in item and item.split("=", 1)[0].strip()]
        if len(good) != len(items):
            bad = [item for item in items if item not in good]
            env[_RESOURCE_ATTRIBUTES] = ",".join(good)
            _logger.warning(
                "widgettrace: %s has items that are not key=value (%s); using the other %d",
                _RESOURCE_ATTRIBUTES,
                ", ".join(repr(item[:40]) for item in bad),
                len(good),
            )
