"""``widgettrace tail`` lines for the local log's span, log, session and sessions records.

The local log keeps one record per streamed span, Sentry log, explicit session and per-minute
session aggregate (``exporters/_itemlines.py``); :func:`format_wire_record` makes each one human
line, in the same columns as errors and transactions: time, kind, what, details, trace.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["WIRE_TYPES", "format_wire_record"]

WIRE_TYPES = frozenset({"span", "log", "session", "sessions"})

_Paint = Callable[[str, str, bool], str]


def _attr(record: dict[str, Any], key: str) -> Any:
    attrs = record.get("attributes")
    value = attrs.get(key) if isinstance(attrs, dict) else None
    return value.get("value") if isinstance(value, dict) else None


def format_wire_record(
    record: dict[str, Any],
    *,
    color: bool,
    paint: _Paint,
    when: str,
) -> str:
    """One human line for a span / log / session / sessions record."""
    kind = record.get("type")
    trace_id = str(record.get("trace_id") or "")
    trace = paint(f"  trace={trace_id[:8]}", "dim", color) if trace_id else ""
    if kind == "span":
        start = record.get("start_timestamp")
        end = record.get("end_timestamp")
        ms = (end - start) * 1000 if isinstance(start, float) and isinstance(end, float) else None
        details = [str(_attr(record, "sentry.op") or ""), str(record.get("status") or "")]
        if record.get("is_segment"):
            details.append("segment")
        parts = [
            when,
            paint(f"{'SPAN':<7}", "txn", color),
            paint(str(record.get("name") or "<unnamed>"), "bold", color),
            f"{ms:.1f} ms" if ms is not None else "? ms",
            paint(" ".join(d for d in details if d), "dim", color),
        ]
        return "  ".join(parts) + trace
    if kind == "log":
        level = str(record.get("level") or "info").lower()
        style = {"warn": "warning", "fatal": "fatal"}.get(level, level)
        logger_name = _attr(record, "logger.name")
        parts = [
            when,
            paint(f"{'LOG ' + level.upper():<7}", style, color),
            str(record.get("body") or ""),
        ]
        if logger_name:
            parts.append(paint(f"logger={logger_name}", "dim", color))
        return "  ".join(parts) + trace
    raw_attrs = record.get("attrs")
    attrs: dict[str, Any] = raw_attrs if isinstance(raw_attrs, dict) else {}
    release = paint(f"release={attrs.get('release')}", "dim", color) if attrs.get("release") else ""
    if kind == "session":
        duration = record.get("duration")
        parts = [
            when,
            paint(f"{'SESSION':<7}", "txn", color),
            paint(str(record.get("name") or record.get("sid") or ""), "bold", color),
            str(record.get("status") or ""),
        ]
        if isinstance(duration, (int, float)):
            parts.append(f"{duration:.1f} s")
        if record.get("did"):
            parts.append(f"user={record['did']}")
        if record.get("errors"):
            parts.append(f"errors={record['errors']}")
        return "  ".join([*parts, release]).rstrip()
    totals: dict[str, int] = {}
    for bucket in record.get("aggregates") or ():
        for key in ("exited", "errored", "crashed", "abnormal"):
            totals[key] = totals.get(key, 0) + int(bucket.get(key) or 0)
    counts = " ".join(f"{k}={v}" for k, v in totals.items() if v) or "none"
    return "  ".join([when, paint(f"{'SESSNS':<7}", "txn", color), counts, release]).rstrip()
