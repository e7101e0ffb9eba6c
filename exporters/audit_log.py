"""The audit file: append-only JSON lines, each chained to the one before by a SHA-256 hash.

Every :func:`widgettrace.audit_event` is appended here (``WIDGETTRACE_AUDIT_PATH``, default
``.claude/logs/audit.log``; ``off`` disables it) as one line::

    {"seq": 3, "time": "2026-12-05T20:31:07.412Z", "category": "security",
     "action": "POST /api/admin/registry/compact", "outcome": "denied", "actor": "tenant-7",
     "resource": "registry", "reason": "403 Forbidden", "attributes": {...},
     "trace_id": "<32 hex>", "span_id": "<16 hex>",
     "prev": "<hash of line 2>", "hash": "<sha256 of this line without its hash, after prev>"}

``hash = sha256(prev + canonical JSON of the line without "hash")``, the first line's ``prev``
is 64 zeros. An edited line no longer matches its hash; a removed or reordered line breaks the
``prev`` link and the ``seq`` count. ``widgettrace audit verify [PATH]`` checks the whole chain
(:func:`verify`). Removing lines at the END leaves a valid but shorter chain: compare the
``seq``/``hash`` that verify prints with an anchor kept elsewhere -- every audit event sent to
Sentry carries its ``seq`` and ``hash`` in the ``audit`` context for that reason.

Several processes may append to one file: each append takes an ``fcntl.flock`` on the file,
reads the last line's hash and writes the new line in one ``os.write``. Audit events are rare
(denials, admin actions), so the append is synchronous and no line is ever lost in a queue.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no cross-process lock, same format
    fcntl = None  # type: ignore[assignment]

__all__ = ["GENESIS", "AuditLog", "VerifyResult", "verify"]

GENESIS = "0" * 64
_TAIL_BYTES = 64 * 1024


def _digest(prev: str, record: Mapping[str, Any]) -> str:
    body = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((prev + body).encode()).hexdigest()


def _last_line(fd: int) -> bytes | None:
    size = os.fstat(fd).st_size
    if size == 0:
        return None
    start = max(0, size - _TAIL_BYTES)
    data = os.pread(fd, size - start, start).rstrip(b"\n")
    return data.rsplit(b"\n", 1)[-1] if data else None


class AuditLog:
    """Appends hash-chained records to one file (thread- and process-safe)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(os.path.abspath(os.fspath(path)))
        self._lock = threading.Lock()

    @contextmanager
    def _locked(self) -> Iterator[int]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            yield fd
        finally:
            os.close(fd)  # releases the flock

    def append(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Append ``record`` (seq, prev and hash added); returns the line as written."""
        with self._lock, self._locked() as fd:
            last = _last_line(fd)
            prev, seq = GENESIS, 1
            if last:
                try:
                    previous = json.loads(last)
                    prev, seq = str(previous["hash"]), int(previous["seq"]) + 1
                except (ValueError, KeyError, TypeError):
                    # A damaged tail: chain on from its raw bytes so verify shows the damage.
                    prev = hashlib.sha256(last).hexdigest()
            line = {"seq": seq, **record, "prev": prev}
            line["hash"] = _digest(prev, line)
            data = json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
            os.write(fd, data)
            return line


@dataclass
class VerifyResult:
    """What :func:`verify` found."""

    ok: bool
    lines: int
    head_seq: int
    head_hash: str
    problems: list[str]


def verify(path: str | os.PathLike[str]) -> VerifyResult:
    """Check every line's hash and link; the first problems found are listed (up to 20)."""
    problems: list[str] = []
    prev, expected_seq, count = GENESIS, 1, 0
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            count = number
            text = raw.rstrip(b"\n")
            try:
                line = json.loads(text)
                claimed = str(line.pop("hash"))
                seq = int(line["seq"])
                link = str(line["prev"])
            except (ValueError, KeyError, TypeError, AttributeError):
                problems.append(f"line {number}: not an audit record (damaged)")
                prev = hashlib.sha256(text).hexdigest()
                expected_seq += 1
                continue
            if seq != expected_seq:
                gap = "removed" if seq > expected_seq else "repeated or reordered"
                problems.append(
                    f"line {number}: seq {seq}, expected {expected_seq} (lines {gap} before it)"
                )
            if link != prev:
                problems.append(f"line {number}: prev does not match the line before (removed?)")
            if _digest(link, line) != claimed:
                problems.append(f"line {number}: hash mismatch (the line was edited)")
            prev, expected_seq = claimed, seq + 1
            if len(problems) >= 20:
                break
    return VerifyResult(not problems, count, expected_seq - 1, prev, problems)
