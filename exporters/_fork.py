"""One thing every exporter with a thread, a lock or a queue needs after ``fork()``.

A forked worker (gunicorn, multiprocessing) inherits the parent's queues and locks but not its
threads: each such object re-creates them in the child. The hook holds the object weakly, so an
object already gone is neither kept alive nor touched.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable
from typing import TypeVar

__all__ = ["after_fork_in_child"]

_T = TypeVar("_T")


def after_fork_in_child(obj: _T, reset: Callable[[_T], None]) -> None:
    """Call ``reset(obj)`` in every child forked from now on, while ``obj`` is alive."""
    if not hasattr(os, "register_at_fork"):
        return
    ref = weakref.ref(obj)

    def in_child() -> None:
        alive = ref()
        if alive is not None:
            reset(alive)

    os.register_at_fork(after_in_child=in_child)
