"""The local log file itself: where it lives, how lines are appended, how it rotates.

Standard library only, so the ``widgettrace`` CLI can share the path rules without importing
``sentry_sdk``. :class:`~widgettrace.exporters.locallog.LocalLogTransport` owns one
:class:`LogFileWriter` and calls :meth:`LogFileWriter.write_line` from its background worker.

Rules that keep every line whole when several processes (or several writers in one process)
append to the same file:

* The file is opened with ``O_APPEND`` and each line goes out in ONE ``os.write`` call, so the
  kernel places it at the end of the file in one piece.
* Rotation (``sentry.log`` -> ``sentry.log.1`` -> ``.2`` ...) happens under ``fcntl.flock`` on a
  side file ``sentry.log.lock``, and the size is re-checked under the lock, so two processes never
  both rotate. The lock file is opened per rotation (rare), never kept open, because a ``flock``
  belongs to the open file description, which a forked child would otherwise share.
* A file that does not end in a newline (a writer killed mid-line, a full disk) gets one before
  the next line, so a torn predecessor never glues onto a whole record: checked each time the
  file is (re)opened.
* Before each write the writer compares the inode behind the path with the inode of its open
  descriptor; when another process has rotated, it reopens, so it never keeps writing to a file
  that has been renamed away (and might later be deleted).

Usage::

    writer = LogFileWriter("/var/log/app/sentry.log", max_bytes=10 << 20, backups=3)
    writer.write_line(b'{"event_id": "..."}')
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

try:  # POSIX only; without it rotation still works, just without the cross-process lock.
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "LOG_PATH_ENV",
    "LogFileWriter",
    "fallback_log_path",
    "probe_writable",
    "rotated_paths",
]

#: The variable that names the local log (documented in the configuration table).
LOG_PATH_ENV = "WIDGETTRACE_LOG_PATH"

#: Most bytes :meth:`LogFileWriter.write_lines` hands to one ``os.write`` (beyond one line): the
#: size is checked again before each write, so a file another process appends to at the same
#: time ends at most one such write (or one line) past ``max_bytes``, as with one line a write.
_WRITE_CHUNK = 8192
# Read as well: the torn-line check reads the last byte of the very file we append to.
_OPEN_FLAGS = os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
_FILE_MODE = 0o644


def fallback_log_path() -> Path:
    """The per-user log used when the configured path cannot be written.

    ``<tempdir>/widgettrace-<uid>/sentry.log``: one directory per user so two users on one
    machine never share (or fight over) a file.
    """
    uid = os.getuid() if hasattr(os, "getuid") else os.getpid()
    return Path(tempfile.gettempdir()) / f"widgettrace-{uid}" / "sentry.log"


def rotated_paths(path: Path, backups: int) -> list[Path]:
    """``[path.1, path.2, ...]`` up to ``backups``, newest first."""
    return [path.with_name(f"{path.name}.{i}") for i in range(1, backups + 1)]


def _ensure_private_dir(directory: Path) -> None:
    """Create ``directory`` (0700) and refuse one that another user could have planted."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = os.lstat(directory)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise NotADirectoryError(f"{directory} is not a real directory")
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        raise PermissionError(f"{directory} belongs to another user")


def probe_writable(path: Path, *, private_dir: bool = False) -> None:
    """Create the parent directories and open ``path`` for appending; raise ``OSError`` if not."""
    if private_dir:
        _ensure_private_dir(path.parent)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, _OPEN_FLAGS, _FILE_MODE)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise IsADirectoryError(f"{path} is not a regular file")
    finally:
        os.close(fd)


def _ends_mid_line(fd: int) -> bool:
    """Whether the open file is non-empty and its last byte is not a newline (a torn line).

    Another process's line may be half copied into the file at this very moment (appends are
    whole with respect to each other, not to readers): a torn tail must still be torn a moment
    later to count, or a newline of ours would make an empty line after theirs.
    """
    for attempt in range(2):
        try:
            size = os.fstat(fd).st_size
            if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
                return False
        except OSError:
            return False
        if attempt == 0:
            time.sleep(0.01)
    return True


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    if fcntl is None:  # pragma: no cover - Windows
        yield
        return
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), _FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the only descriptor releases the lock


class LogFileWriter:
    """Appends whole lines to one size-capped, rotating file; safe across processes.

    Thread-safe as well (a lock serialises this instance's writes), but meant to be driven by
    one background worker. Raises ``OSError`` on a failed write; the caller decides what a
    failure means (the transport counts it as a lost event).
    """

    def __init__(self, path: str | os.PathLike[str], max_bytes: int, backups: int) -> None:
        self.path = Path(os.path.abspath(path))
        self.max_bytes = max_bytes
        self.backups = backups
        self._lock_path = self.path.with_name(self.path.name + ".lock")
        self._fd: int | None = None
        self._fresh_line = False  # the file did not end in a newline when opened
        self._lock = threading.Lock()
        #: How many times this writer rotated the file (for tests and diagnostics).
        self.rotations = 0
        #: Lines the last failed :meth:`write_lines` wrote before its error.
        self.written_before_error = 0

    def write_line(self, data: bytes) -> None:
        """Append ``data`` plus a newline as one line (``data`` must not contain newlines)."""
        self.write_lines([data])

    def write_lines(self, lines: list[bytes]) -> int:
        """Append several lines (none containing a newline) in as few writes as the rules allow.

        Each write takes as many lines as fit in :data:`_WRITE_CHUNK` bytes and below
        ``max_bytes``, after the same checks :meth:`write_line` makes before each line (the
        path still names our file; the size, rotating first when the next line does not fit).
        One ``O_APPEND`` write is placed whole, so every line stays whole as with one write per
        line, at a fraction of the system calls.

        Returns how many lines were written; on ``OSError`` the lines written before the failure
        are in :attr:`written_before_error`."""
        done = 0
        self.written_before_error = 0
        count = len(lines)
        max_bytes = self.max_bytes
        with self._lock:
            try:
                while done < count:
                    fd = self._current_fd()
                    first = lines[done] + b"\n"
                    size = os.fstat(fd).st_size
                    if size + len(first) > max_bytes:
                        fd = self._rotate_if_needed(len(first))
                        size = os.fstat(fd).st_size
                    if self._fresh_line:
                        first = b"\n" + first
                        self._fresh_line = False
                    chunk = [first]
                    total = len(first)
                    end = done + 1
                    while end < count:
                        grow = len(lines[end]) + 1
                        if total + grow > _WRITE_CHUNK or size + total + grow > max_bytes:
                            break
                        chunk.append(lines[end] + b"\n")
                        total += grow
                        end += 1
                    self._write_all(fd, b"".join(chunk))
                    done = end
            except OSError:
                self.written_before_error = done
                raise
        return done

    def close(self) -> None:
        """Close the descriptor; the next write reopens it."""
        with self._lock:
            self._close()

    # --- internals (called with self._lock held) ----------------------------------------------

    def _close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def _open(self) -> int:
        self._close()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = self._fd = os.open(self.path, _OPEN_FLAGS, _FILE_MODE)
        self._fresh_line = _ends_mid_line(fd)
        return fd

    def _current_fd(self) -> int:
        """Our descriptor, reopened when the path now names another file (rotated elsewhere)."""
        fd = self._fd
        if fd is None:
            return self._open()
        try:
            on_disk = os.stat(self.path)
        except FileNotFoundError:
            return self._open()
        mine = os.fstat(fd)
        if (on_disk.st_ino, on_disk.st_dev) != (mine.st_ino, mine.st_dev):
            return self._open()
        return fd

    def _rotate_if_needed(self, incoming: int) -> int:
        with _locked(self._lock_path):
            # Another process may have rotated while we waited for the lock: decide again on
            # what the path names now, not on our possibly stale descriptor.
            fd = self._current_fd()
            size = os.fstat(fd).st_size
            if size == 0 or size + incoming <= self.max_bytes:
                return fd  # empty file: a line bigger than max_bytes still has to go somewhere
            self._close()
            backups = rotated_paths(self.path, self.backups)
            if backups:
                # Oldest first, so each rename lands on a name already moved away.
                for i in range(len(backups) - 1, 0, -1):
                    with contextlib.suppress(FileNotFoundError):
                        os.replace(backups[i - 1], backups[i])
                os.replace(self.path, backups[0])
            else:
                os.unlink(self.path)
            self.rotations += 1
            return self._open()

    @staticmethod
    def _write_all(fd: int, line: bytes) -> None:
        written = os.write(fd, line)
        # A short write only happens when the disk is full or a signal interrupts a huge write;
        # finishing the line is better than leaving half of it.
        while written < len(line):
            written += os.write(fd, line[written:])
