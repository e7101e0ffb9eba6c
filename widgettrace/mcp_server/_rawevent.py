"""Fetch one event, whole, from the local log by its id (for ``get_issue``'s stack trace).

The insights store keeps what its views need, not every frame of every event. The latest event
of an issue is near the end of the log, so a reverse byte search (``mmap.rfind``) over the log and
then its rotated files finds its line without parsing anything else; only that line is decoded.
Read-only: files are mapped with ``ACCESS_READ``.
"""

from __future__ import annotations

import json
import mmap
from pathlib import Path
from typing import Any

from widgettrace.exporters._logfile import rotated_paths

__all__ = ["find_event", "stack_frames"]

_MAX_ROTATED = 100


def find_event(log: Path, event_id: str) -> dict[str, Any] | None:
    """The record with ``event_id`` from ``log`` or its rotated files (newest first)."""
    if not event_id or not event_id.isalnum():
        return None
    # The bare id, not '"event_id":"..."': writers differ in spacing, and one pass is enough
    # (a hit elsewhere, e.g. a link to the event, is checked and skipped).
    needle = event_id.encode()
    for path in [log, *rotated_paths(log, _MAX_ROTATED)]:
        if not path.exists():
            if path == log:
                continue
            break
        found = _search(path, needle, event_id)
        if found is not None:
            return found
    return None


def _search(path: Path, needle: bytes, event_id: str) -> dict[str, Any] | None:
    try:
        with open(path, "rb") as f:
            if f.seek(0, 2) == 0:
                return None
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
                end = len(m)
                while True:
                    at = m.rfind(needle, 0, end)
                    if at < 0:
                        return None
                    start = m.rfind(b"\n", 0, at) + 1
                    stop = m.find(b"\n", at)
                    try:
                        record = json.loads(m[start : stop if stop >= 0 else len(m)])
                    except ValueError:
                        record = None
                    if isinstance(record, dict) and record.get("event_id") == event_id:
                        return record
                    end = start  # the id was quoted inside another record: look further back
    except (OSError, ValueError):
        return None


def stack_frames(record: dict[str, Any], *, limit: int = 50) -> list[dict[str, Any]]:
    """The main exception's frames, innermost LAST (Sentry's order), at most ``limit``."""
    exception = record.get("exception")
    values = exception.get("values") if isinstance(exception, dict) else None
    if not isinstance(values, list) or not values:
        return []
    stacktrace = values[-1].get("stacktrace") if isinstance(values[-1], dict) else None
    frames = stacktrace.get("frames") if isinstance(stacktrace, dict) else None
    if not isinstance(frames, list):
        return []
    out = []
    for frame in frames[-limit:]:
        if not isinstance(frame, dict):
            continue
        out.append(
            {
                "filename": frame.get("filename") or frame.get("abs_path"),
                "function": frame.get("function"),
                "module": frame.get("module"),
                "lineno": frame.get("lineno"),
                "in_app": bool(frame.get("in_app")),
                "context_line": (frame.get("context_line") or "").strip() or None,
            }
        )
    return out
