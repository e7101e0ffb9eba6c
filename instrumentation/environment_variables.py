"""widgettrace's environment variables, as the ``opentelemetry_environment_variables`` entry point.

``opentelemetry-instrument`` loads this module in its launcher process to build its command-line
flags: it turns every module attribute named ``OTEL_*`` into a flag (``--widgettrace_log_path``)
that sets the environment variable of the same name. So each of our ``WIDGETTRACE_*`` settings
appears here twice: under its own name, and as ``OTEL_WIDGETTRACE_*``, the spelling the flag
sets and which :mod:`widgettrace.instrumentation._config` reads first. The full table, with
types, defaults and docs, is :data:`widgettrace.instrumentation._config.SETTINGS`.

Importing this module in the launcher has one deliberate side effect: when another distro
(such as ``opentelemetry-distro``) is installed beside ours and the user chose none, it sets
``OTEL_PYTHON_DISTRO`` and ``OTEL_PYTHON_CONFIGURATOR`` to ``widgettrace`` for the program
about to be exec'd. Otherwise the first entry point found would win at random and
``opentelemetry-distro`` (which defaults to an OTLP exporter that may not be installed) would
fail auto-instrumentation silently.
"""

from __future__ import annotations

import logging
import os

from widgettrace.instrumentation._config import SETTINGS

__all__ = [s.env for s in SETTINGS if s.origin == "widgettrace"] + [
    "OTEL_" + s.env for s in SETTINGS if s.origin == "widgettrace"
]

for _setting in SETTINGS:
    if _setting.origin == "widgettrace":
        globals()[_setting.env] = _setting.env
        globals()["OTEL_" + _setting.env] = "OTEL_" + _setting.env

_DISTRO = "widgettrace"


def _claim_distro() -> None:
    """Make our distro and configurator win when another one is installed too."""
    if "OTEL_PYTHON_DISTRO" in os.environ and "OTEL_PYTHON_CONFIGURATOR" in os.environ:
        return
    from importlib.metadata import entry_points

    others = sorted(
        {ep.name for ep in entry_points(group="opentelemetry_distro")}
        | {ep.name for ep in entry_points(group="opentelemetry_configurator")}
    )
    others = [name for name in others if name != _DISTRO]
    if not others:
        return
    chosen = os.environ.get("OTEL_PYTHON_DISTRO")
    if chosen is not None and chosen != _DISTRO:
        return  # the user picked another distro on purpose
    os.environ.setdefault("OTEL_PYTHON_DISTRO", _DISTRO)
    os.environ.setdefault("OTEL_PYTHON_CONFIGURATOR", _DISTRO)
    logging.getLogger("widgettrace").info(
        "widgettrace: other OpenTelemetry distros are installed (%s); using widgettrace "
        "(set OTEL_PYTHON_DISTRO/OTEL_PYTHON_CONFIGURATOR to choose another)",
        ", ".join(others),
    )


try:
    _claim_distro()
except Exception:  # never break the launcher over a convenience
    logging.getLogger("widgettrace").debug("widgettrace: could not check distros", exc_info=True)
