"""The one guard for telemetry code that runs on the application's path.

Everything widgettrace does inside a user's call (wrappers, span processors, user hooks,
propagators) runs under :func:`internal_errors`, used as a context manager or decorator.
A failure inside it is logged once per location ("the application keeps running") and swallowed,
so telemetry can never break the app it watches. Tests install a hook with
:func:`set_internal_error_hook` that collects swallowed errors, so a bug cannot hide behind the
guard: the suite's autouse fixture fails any test that left one behind.

Never wrap the user's own call in the guard: the user's exceptions must pass through unchanged.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

__all__ = [
    "guarded",
    "internal_errors",
    "logger",
    "set_internal_error_hook",
]

logger = logging.getLogger("widgettrace")

_P = ParamSpec("_P")
_R = TypeVar("_R")

_hook: Callable[[BaseException], None] | None = None
_seen: set[str] = set()
_seen_lock = threading.Lock()


def set_internal_error_hook(hook: Callable[[BaseException], None] | None) -> None:
    """Call ``hook`` with every internal error the guard swallows (tests use this)."""
    global _hook
    _hook = hook


def _report(where: str, exc: BaseException) -> None:
    hook = _hook
    if hook is not None:
        # A broken test hook must not break the app either.
        with contextlib.suppress(Exception):
            hook(exc)
    with _seen_lock:
        first = where not in _seen
        _seen.add(where)
    # Once per location: a failing hook on a hot path must not flood the log.
    if first:
        logger.warning(
            "widgettrace: internal error in %s (telemetry only; the application keeps running)",
            where,
            exc_info=exc,
        )
    else:
        logger.debug("widgettrace: internal error in %s", where, exc_info=exc)


@contextmanager
def internal_errors(where: str) -> Iterator[None]:
    """Swallow and report any exception raised by telemetry code inside the block."""
    try:
        yield
    except Exception as exc:
        _report(where, exc)


def guarded(where: str, default: _R) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]:
    """Decorate telemetry-only functions: on an internal error, report it and return ``default``."""

    def decorate(func: Callable[_P, _R]) -> Callable[_P, _R]:
        @functools.wraps(func)
        def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            try:
                return func(*args, **kwargs)
            except Exception as exc:
                _report(where, exc)
                return default

        return wrapper

    return decorate
