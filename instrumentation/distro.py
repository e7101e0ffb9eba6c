"""The ``opentelemetry_distro`` entry point: how ``opentelemetry-instrument`` loads widgettrace.

``opentelemetry-instrument python app.py`` picks this distro (see
:mod:`widgettrace.instrumentation.environment_variables` for how it wins over other distros),
then our configurator (:mod:`widgettrace.instrumentation.configurator`), then every
``opentelemetry_instrumentor`` entry point through :meth:`WidgetTraceDistro.load_instrumentor`,
which differs from upstream in three ways:

* ``OTEL_SDK_DISABLED=true`` loads no instrumentor at all: nothing is patched.
* FastAPI is instrumented without the per-message ASGI ``http send``/``http receive`` spans
  (about 40% of its tracing cost) unless ``WIDGETTRACE_ASGI_MESSAGE_SPANS=true``.
* One failing instrumentor is logged and skipped; upstream re-raises, which aborts every
  instrumentor after it and leaves the application silently half-instrumented.
* Each instrumentor's own ``instrumentation_dependencies()`` decides whether it loads. The
  loader checks only the distribution's ``instruments`` extra, one verdict for every
  instrumentor of that distribution; widgettrace declares none, so the MCP instrumentor's
  ``mcp`` range never keeps ``widgettrace_functions`` (which needs nothing) from loading.
"""

from __future__ import annotations

from typing import Any

# Upstream marks distro.py `# type: ignore` as a whole, so mypy sees no names in it.
from opentelemetry.instrumentation.dependencies import DependencyConflictError
from opentelemetry.instrumentation.distro import BaseDistro  # type: ignore[attr-defined]

from widgettrace.instrumentation._config import get_settings
from widgettrace.instrumentation._guard import logger
from widgettrace.instrumentation._sdk_env import check_sdk_environment

__all__ = ["WidgetTraceDistro", "check_setup"]

_FASTAPI = "fastapi"


class WidgetTraceDistro(BaseDistro):  # type: ignore[misc]
    """widgettrace's distro: defaults for the SDK and a careful instrumentor loader."""

    def _configure(self, **kwargs: Any) -> None:
        # Before the configurator imports the SDK, which raises on some bad values.
        check_sdk_environment()
        # Parse (and log bad values) once, before anything else reads the settings.
        get_settings()

    def load_instrumentor(self, entry_point: Any, **kwargs: Any) -> None:
        settings = get_settings()
        if settings.sdk_disabled:
            logger.debug("widgettrace: OTEL_SDK_DISABLED, not loading %s", entry_point.name)
            return
        if entry_point.name == _FASTAPI and not settings.asgi_message_spans:
            kwargs.setdefault("exclude_spans", ["send", "receive"])
        # The loader skipped the check (skip_dep_check=True) after reading the distribution's
        # extra; run the instrumentor's own, raising the conflict the loader logs and skips.
        kwargs.pop("skip_dep_check", None)
        kwargs["raise_exception_on_conflict"] = True
        try:
            instrumentor = entry_point.load()
            instrumentor().instrument(**kwargs)
        except DependencyConflictError:
            raise  # the loader logs "skipping instrumentation ..." with the conflict
        except ModuleNotFoundError:
            raise  # upstream skips a missing library quietly; keep that behaviour
        except Exception:
            logger.exception(
                "widgettrace: instrumenting %s failed; skipping it, the rest still loads",
                entry_point.name,
            )


def check_setup() -> None:
    """``opentelemetry_post_instrument`` hook: never a silent run without widgettrace.

    If another distro's configurator set up the SDK instead of ours (several are installed and
    the first entry point found won), nothing would reach Sentry or the local log and nobody
    would know. Say so in one line, with what to set.
    """
    try:
        from widgettrace.instrumentation.configurator import was_attempted

        if get_settings().sdk_disabled or was_attempted():
            return
        logger.warning(
            "widgettrace: another OpenTelemetry configurator set up this process, so nothing "
            "reaches Sentry or the local log; set OTEL_PYTHON_DISTRO=widgettrace and "
            "OTEL_PYTHON_CONFIGURATOR=widgettrace to use widgettrace"
        )
    except Exception:  # a check must never break start-up
        logger.debug("widgettrace: setup check failed", exc_info=True)
