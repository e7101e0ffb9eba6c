"""Interpreter start-up check, run from ``widgettrace-startup.pth`` before any other import.

Some OpenTelemetry variables name entry points and are resolved the moment the API is imported,
which ``opentelemetry-instrument`` does before any distro runs: ``OTEL_PROPAGATORS`` (an unknown
name raises ``ValueError`` at ``import opentelemetry.propagate``: the program stops with exit
code 1), ``OTEL_PYTHON_CONTEXT`` (a traceback at ``import opentelemetry.context``) and
``OTEL_PYTHON_ID_GENERATOR`` (the SDK set-up raises, the app runs uninstrumented). A bad value must
never stop or spoil the application, so this runs first (``.pth`` files run at interpreter
start-up) and, only when such a variable is set and names something not installed, logs one
line and keeps the names that are installed, or removes the variable (its default) when none is.

Kept to the standard library and cheap: every Python process of the environment runs the
``.pth`` line, which imports this module only when one of :data:`CHECKED` is set.
"""

from __future__ import annotations

import logging
import os

__all__ = ["CHECKED", "check_entry_point_variables"]

#: Variable -> (its entry-point group, whether it holds a comma-separated list).
CHECKED: dict[str, tuple[str, bool]] = {
    "OTEL_PROPAGATORS": ("opentelemetry_propagator", True),
    "OTEL_PYTHON_CONTEXT": ("opentelemetry_context", False),
    "OTEL_PYTHON_ID_GENERATOR": ("opentelemetry_id_generator", False),
}


def _check(name: str, group: str, is_list: bool) -> None:
    raw = os.environ.get(name)
    if not raw or not raw.strip():
        return
    from importlib.metadata import entry_points

    installed = {ep.name for ep in entry_points(group=group)}
    names = [n.strip() for n in raw.split(",")] if is_list else [raw.strip()]
    names = [n for n in names if n]
    if is_list and any(n.lower() == "none" for n in names):
        return  # upstream's "none": no propagation; other names do not matter then
    unknown = [n for n in names if n not in installed]
    if not unknown:
        return
    kept = ",".join(n for n in names if n in installed)
    if kept:
        os.environ[name] = kept
    else:  # unset is the default (for OTEL_PROPAGATORS widgettrace's: tracecontext,baggage,sentry)
        del os.environ[name]
    logging.getLogger("widgettrace").warning(
        "widgettrace: %s=%r names what is not installed (%s); using %s instead",
        name,
        raw[:80],
        ", ".join(unknown),
        kept or "the default",
    )


def check_entry_point_variables() -> None:
    """Drop names no entry point provides from each of :data:`CHECKED` (never raises)."""
    for name, (group, is_list) in CHECKED.items():
        try:
            _check(name, group, is_list)
        except Exception:  # start-up must never fail because of us
            continue


check_entry_point_variables()
