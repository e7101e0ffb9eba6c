"""Alerts in the background: what ``WIDGETTRACE_ALERT_WEBHOOK`` starts next to the app.

When the setting names a webhook and the local log is on, the app's Sentry set-up calls
:func:`start_watcher`, which starts ``widgettrace watch LOG --webhook URL --parent-pid PID`` as a
separate process (its own session, output discarded) and returns at once. Keeping the DuckDB work
out of the app's process is what keeps it from slowing or breaking the app: the app only pays a
``fork``/``exec`` once. The watcher:

* takes an exclusive ``flock`` on ``<log>.watch.lock``, so the services of one platform writing one
  log start one watcher between them (the others exit at once);
* exits when the process that started it is gone;
* runs with ``OTEL_SDK_DISABLED`` and without the setting, so it is never instrumented itself and
  never starts another watcher.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

__all__ = ["hold_watch_lock", "start_watcher"]

_started: set[str] = set()


def start_watcher(log: str | os.PathLike[str], webhook: str) -> subprocess.Popen[bytes] | None:
    """Start the background watcher for ``log`` (once per process and log); never raises."""
    path = os.path.abspath(os.fspath(log))
    if path in _started:
        return None
    _started.add(path)
    env = {k: v for k, v in os.environ.items() if k not in (
        "WIDGETTRACE_ALERT_WEBHOOK", "OTEL_WIDGETTRACE_ALERT_WEBHOOK", "PYTHONPATH")}
    env["OTEL_SDK_DISABLED"] = "true"
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "widgettrace", "watch", path, "--webhook", webhook,
             "--parent-pid", str(os.getpid()), "--background"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
            close_fds=True,
        )
    except OSError:
        return None


@contextlib.contextmanager
def hold_watch_lock(log: Path) -> Iterator[bool]:
    """Yields whether this process holds ``<log>.watch.lock`` (only one watcher per log)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no lock, every watcher runs
        yield True
        return
    log.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log.with_name(log.name + ".watch.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
            return
        yield True
    finally:
        os.close(fd)
