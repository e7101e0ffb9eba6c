"""Interpreter start-up check, run from ``widgettrace-startup.pth`` before any other import.

``OTEL_PROPAGATORS`` is read when ``opentelemetry.propagate`` is first imported, and upstream
raises ``ValueError`` for a name with no installed ``opentelemetry_propagator`` entry point
(``b3`` without the b3 package, a typo): ``opentelemetry-instrument`` itself, or any program that
imports the API, then stops with a traceback before widgettrace's distro could say anything.
A bad value must never stop the application, so this runs first (``.pth`` files run at
interpreter start-up) and, only when the variable is set and names something unknown, logs one
line and rewrites it to the names that are installed (or removes it when none is: the default).

Kept to the standard library and cheap: every Python process of the environment runs the
``.pth`` line, which imports this module only when ``OTEL_PROPAGATORS`` is set.
"""

from __future__ import annotations

import logging
import os

__all__ = ["check_propagators"]


def check_propagators() -> None:
    """Drop unknown names from ``OTEL_PROPAGATORS`` with one warning (never raises)."""
    raw = os.environ.get("OTEL_PROPAGATORS")
    if not raw:
        return
    try:
        from importlib.metadata import entry_points

        installed = {ep.name for ep in entry_points(group="opentelemetry_propagator")}
        names = [n.strip() for n in raw.split(",") if n.strip()]
        if any(n.lower() == "none" for n in names):
            return  # upstream's "no propagation"; other names do not matter then
        unknown = [n for n in names if n not in installed]
        if not unknown:
            return
        kept = ",".join(n for n in names if n in installed)
        if kept:
            os.environ["OTEL_PROPAGATORS"] = kept
        else:  # unset is the default (widgettrace's: tracecontext, baggage and sentry-trace)
            del os.environ["OTEL_PROPAGATORS"]
        logging.getLogger("widgettrace").warning(
            "widgettrace: OTEL_PROPAGATORS=%r names propagators that are not installed (%s); "
            "using %s instead",
            raw,
            ", ".join(unknown),
            kept or "the default",
        )
    except Exception:  # start-up must never fail because of us
        return


check_propagators()
