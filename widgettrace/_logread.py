"""Reading the local log: where it is (configured path, per-user fallback, rotated files), its
lines as records (unreadable ones counted), and following it like ``tail -f`` across rotation.

Standard library only: the ``widgettrace`` command must start fast.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from widgettrace.exporters._logfile import LOG_PATH_ENV, fallback_log_path, rotated_paths

__all__ = ["Follower", "default_log_path", "read_records"]

_MAX_BACKUPS_SCANNED = 100


# --- where the log is --------------------------------------------------------------------------


def _configured_log_path() -> str | None:
    """``WIDGETTRACE_LOG_PATH`` as the app reads it (``None`` when it is off)."""
    from widgettrace.instrumentation._config import DEFAULT_LOG_PATH

    raw = os.environ.get("OTEL_" + LOG_PATH_ENV)
    if raw is None:
        raw = os.environ.get(LOG_PATH_ENV)
    if raw is None:
        return DEFAULT_LOG_PATH
    value = raw.strip()
    if value.lower() in {"", "off", "none", "false", "0"}:
        return None
    return value


def default_log_path() -> Path | None:
    """The file the app writes by default, or ``None`` when the local log is turned off.

    Like the app, falls back to the per-user file when the configured one is missing but the
    fallback exists.
    """
    configured = _configured_log_path()
    if configured is None:
        return None
    path = Path(os.path.expanduser(configured))
    if not path.exists():
        fallback = fallback_log_path()
        if fallback.exists():
            print(
                f"widgettrace: {path} does not exist; reading the fallback log {fallback}",
                file=sys.stderr,
            )
            return fallback
    return path


def _existing_backups(path: Path) -> list[Path]:
    """Rotated files that exist, newest (``.1``) first."""
    found = []
    for backup in rotated_paths(path, _MAX_BACKUPS_SCANNED):
        if not backup.exists():
            break
        found.append(backup)
    return found


# --- reading -----------------------------------------------------------------------------------


def _iter_lines(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        for raw in f:
            line = raw.rstrip(b"\r\n")
            if line:
                yield line


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def read_records(
    path: Path, *, include_rotated: bool = True, skipped: dict[str, int] | None = None
) -> Iterator[dict[str, Any]]:
    """Every JSON object, oldest first (rotated files ``.N`` ... ``.1`` before ``path``).

    Lines that are not a JSON object (a torn write, garbage) are skipped and, when ``skipped``
    is given, counted in ``skipped["unreadable"]``.
    """
    files = [*reversed(_existing_backups(path)), path] if include_rotated else [path]
    for file in files:
        try:
            for line in _iter_lines(file):
                record = _parse(line)
                if record is not None:
                    yield record
                elif skipped is not None:
                    skipped["unreadable"] = skipped.get("unreadable", 0) + 1
        except FileNotFoundError:
            continue  # rotated away while we were reading the previous one


def _open_or_none(path: Path) -> IO[bytes] | None:
    try:
        return open(path, "rb")  # the caller hands it on or closes it
    except FileNotFoundError:
        return None


def _last_lines(path: Path, n: int) -> tuple[list[bytes], IO[bytes] | None]:
    """The last ``n`` lines across ``path`` and its backups, and ``path`` opened at its end."""
    f = _open_or_none(path)
    if n <= 0:
        if f is not None:
            f.seek(0, os.SEEK_END)
        return [], f
    lines: deque[bytes] = deque(maxlen=n)
    if f is not None:
        for raw in f:
            if raw.endswith(b"\n"):
                lines.append(raw.rstrip(b"\r\n"))
            else:  # a line still being written: the follower reads it whole later
                f.seek(-len(raw), os.SEEK_CUR)
                break
    for backup in _existing_backups(path):
        if len(lines) >= n:
            break
        try:
            older = list(_iter_lines(backup))
        except FileNotFoundError:
            break
        lines.extendleft(reversed(older[-(n - len(lines)) :]))
    return [line for line in lines if line], f


# --- following ---------------------------------------------------------------------------------


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_ino, a.st_dev) == (b.st_ino, b.st_dev)


@dataclass
class Follower:
    """Follows a log by name, like ``tail -F``, without losing lines across rotation.

    :meth:`poll` returns the complete lines that appeared since the last call. When the path
    names a new file (rotation), the old file is read to its end, the files rotated in between
    (``.k-1`` ... ``.1``) are read whole, and the new file is read from its start; the old file
    stays open a little longer to catch a last line from a writer that had not yet noticed.
    """

    path: Path
    file: IO[bytes] | None = None
    grace_s: float = 2.0
    _buffer: bytes = b""
    _previous: list[tuple[IO[bytes], float]] = field(default_factory=list)

    def poll(self) -> list[bytes]:
        """New complete lines (without the newline), oldest first."""
        out: list[bytes] = []
        self._drain_previous(out)
        if self.file is None:
            try:
                self.file = open(self.path, "rb")  # noqa: SIM115 - kept open across polls
            except FileNotFoundError:
                return out
        self._read_available(out)
        try:
            on_disk = os.stat(self.path)
        except FileNotFoundError:
            return out  # between a rename and the next create: keep the old one for now
        mine = os.fstat(self.file.fileno())
        if not _same_file(on_disk, mine):
            self._switch(mine, out)
        elif on_disk.st_size < self.file.tell():  # truncated in place
            self.file.seek(0)
            self._buffer = b""
        return out

    def close(self) -> None:
        """Close every file this follower holds."""
        for f, _ in self._previous:
            f.close()
        self._previous.clear()
        if self.file is not None:
            self.file.close()
            self.file = None

    def _read_available(self, out: list[bytes]) -> None:
        assert self.file is not None
        while chunk := self.file.read(1 << 16):
            self._buffer += chunk
            *lines, self._buffer = self._buffer.split(b"\n")
            out.extend(line.rstrip(b"\r") for line in lines if line.strip())

    def _switch(self, old: os.stat_result, out: list[bytes]) -> None:
        assert self.file is not None
        try:
            new_file = open(self.path, "rb")  # noqa: SIM115 - kept open across polls
        except FileNotFoundError:
            return
        new = os.fstat(new_file.fileno())
        # The files rotated between the one we had and the one we just opened, oldest first.
        backups = _existing_backups(self.path)
        between: list[Path] = []
        for backup in backups:
            try:
                info = os.stat(backup)
            except FileNotFoundError:
                break
            if _same_file(info, old):
                break
            if not _same_file(info, new):
                between.append(backup)
        for backup in reversed(between):
            try:
                out.extend(_iter_lines(backup))
            except FileNotFoundError:
                continue
        if self._buffer:
            out.append(self._buffer)  # the old file's last line never got its newline
            self._buffer = b""
        self._previous.append((self.file, time.monotonic() + self.grace_s))
        self.file = new_file
        self._read_available(out)

    def _drain_previous(self, out: list[bytes]) -> None:
        now = time.monotonic()
        keep = []
        for f, until in self._previous:
            for raw in f:
                line = raw.rstrip(b"\r\n")
                if line:
                    out.append(line)
            if now < until:
                keep.append((f, until))
            else:
                f.close()
        self._previous = keep
