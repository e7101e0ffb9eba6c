"""The local log's records as a person reads them: one line per event or transaction
(``widgettrace tail``) and the totals of ``widgettrace summary``.

Standard library only: the ``widgettrace`` command must start fast.
"""

from __future__ import annotations

import os
import statistics
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from widgettrace._logread import _parse, default_log_path, read_records
from widgettrace._wire_lines import WIRE_TYPES, format_wire_record

__all__ = ["format_record", "summarize", "summary_data", "top_in_app_frame"]

_MESSAGE_WIDTH = 200


# --- formatting --------------------------------------------------------------------------------

_RESET = "\x1b[0m"
_STYLES = {
    "fatal": "\x1b[1;31m",
    "error": "\x1b[31m",
    "warning": "\x1b[33m",
    "info": "\x1b[34m",
    "debug": "\x1b[2m",
    "bold": "\x1b[1m",
    "dim": "\x1b[2m",
    "txn": "\x1b[36m",
    "slow": "\x1b[33m",
}


def _paint(text: str, style: str, color: bool) -> str:
    return f"{_STYLES[style]}{text}{_RESET}" if color and style in _STYLES else text


def _timestamp(value: Any) -> float | None:
    """Seconds since the epoch from Sentry's float or ISO 8601 timestamps."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        text = value.strip().replace("Z", "+00:00")
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return moment.timestamp()
    return None


def _format_time(seconds: float | None) -> str:
    if seconds is None:
        return "-" * 24
    moment = datetime.fromtimestamp(seconds, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _one_line(text: str, width: int = _MESSAGE_WIDTH) -> str:
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first if len(first) <= width else first[: width - 3] + "..."


def _is_transaction(record: dict[str, Any]) -> bool:
    return record.get("type") == "transaction"


def _exception_values(record: dict[str, Any]) -> list[dict[str, Any]]:
    exception = record.get("exception")
    values = exception.get("values") if isinstance(exception, dict) else exception
    return [v for v in values if isinstance(v, dict)] if isinstance(values, list) else []


def _is_event(record: dict[str, Any]) -> bool:
    """A transaction, an exception or a message: what Sentry accepts as an event here; or a
    streamed span, a log or a session (``_wire_lines``)."""
    if _is_transaction(record) or _exception_values(record) or record.get("type") in WIRE_TYPES:
        return True
    return bool(record.get("logentry") or record.get("message"))


def _error_type_and_message(record: dict[str, Any]) -> tuple[str, str]:
    values = _exception_values(record)
    if values:
        # Sentry lists chained exceptions cause first: the last value is the one raised.
        top = values[-1]
        return str(top.get("type") or "Exception"), str(top.get("value") or "")
    logentry = record.get("logentry")
    if isinstance(logentry, dict):
        text = logentry.get("formatted") or logentry.get("message") or ""
        return "message", str(text)
    message = record.get("message")
    if isinstance(message, dict):
        message = message.get("formatted") or message.get("message")
    return "message", str(message or "")


def _frames(record: dict[str, Any]) -> list[dict[str, Any]]:
    values = _exception_values(record)
    stacktrace = values[-1].get("stacktrace") if values else None
    if not isinstance(stacktrace, dict):
        threads = record.get("threads")
        thread_values = threads.get("values") if isinstance(threads, dict) else None
        for thread in thread_values or []:
            if isinstance(thread, dict) and isinstance(thread.get("stacktrace"), dict):
                stacktrace = thread["stacktrace"]
                break
    frames = stacktrace.get("frames") if isinstance(stacktrace, dict) else None
    return [f for f in frames if isinstance(f, dict)] if isinstance(frames, list) else []


def top_in_app_frame(record: dict[str, Any]) -> str | None:
    """``file:line function`` of the innermost in-app frame (else the innermost frame)."""
    frames = _frames(record)
    if not frames:
        return None
    # Frames are ordered outermost first; the crash site is the last one.
    frame = next((f for f in reversed(frames) if f.get("in_app")), frames[-1])
    filename = frame.get("filename") or frame.get("abs_path") or frame.get("module") or "?"
    where = f"{filename}:{frame.get('lineno', '?')}"
    function = frame.get("function")
    return f"{where} {function}" if function else where


def _duration_ms(record: dict[str, Any]) -> float | None:
    start = _timestamp(record.get("start_timestamp"))
    end = _timestamp(record.get("timestamp"))
    if start is None or end is None:
        return None
    return max(0.0, (end - start) * 1000.0)


def _trace_context(record: dict[str, Any]) -> dict[str, Any]:
    contexts = record.get("contexts")
    trace = contexts.get("trace") if isinstance(contexts, dict) else None
    return trace if isinstance(trace, dict) else {}


def _format_ms(ms: float) -> str:
    return f"{ms:.1f} ms" if ms < 10_000 else f"{ms / 1000:.2f} s"


def format_record(record: dict[str, Any], *, color: bool = False) -> str:
    """One human line for an error event, a transaction, a span, a log or a session."""
    if record.get("type") in WIRE_TYPES:
        moment = record.get("timestamp") or record.get("start_timestamp")
        if record.get("type") == "sessions":
            moment = (record.get("aggregates") or [{}])[0].get("started")
        when = _format_time(_timestamp(moment))
        return format_wire_record(record, color=color, paint=_paint, when=when)
    when = _format_time(_timestamp(record.get("timestamp")))
    trace_id = str(_trace_context(record).get("trace_id") or "")
    trace = f"  trace={trace_id[:8]}" if trace_id else ""
    if _is_transaction(record):
        name = str(record.get("transaction") or "<unnamed>")
        duration = _duration_ms(record)
        spans = record.get("spans")
        span_count = len(spans) if isinstance(spans, list) else 0
        context = _trace_context(record)
        parts = [
            when,
            _paint(f"{'TXN':<7}", "txn", color),
            _paint(name, "bold", color),
            _paint(_format_ms(duration), "slow", color and duration > 1000)
            if duration is not None
            else "? ms",
            f"{span_count} span{'s' if span_count != 1 else ''}",
        ]
        extras = [str(context[k]) for k in ("op", "status") if context.get(k)]
        if extras:
            parts.append(_paint(" ".join(extras), "dim", color))
        return "  ".join(parts) + _paint(trace, "dim", color)
    level = str(record.get("level") or "error").lower()
    error_type, message = _error_type_and_message(record)
    headline = f"{_paint(error_type, 'bold', color)}: {_one_line(message)}"
    parts = [when, _paint(f"{level.upper():<7}", level, color), headline]
    frame = top_in_app_frame(record)
    if frame:
        parts.append(_paint(f"at {frame}", "dim", color))
    release = record.get("release")
    if release:
        parts.append(_paint(f"release={release}", "dim", color))
    return "  ".join(parts) + _paint(trace, "dim", color)


def _format_line(line: bytes, *, as_json: bool, color: bool) -> str:
    text = line.decode("utf-8", "replace")
    if as_json:
        return text
    record = _parse(line)
    if record is None or not _is_event(record):
        return _paint(f"? {_one_line(text)}", "dim", color)
    return format_record(record, color=color)


# --- summary -----------------------------------------------------------------------------------


def summary_data(path: str | os.PathLike[str], *, since: float | None = None) -> dict[str, Any]:
    """Errors by type and transactions by name (count, p50 and max ms) from the local log.

    Reads the rotated files too. ``since`` (seconds since the epoch) keeps only newer records.
    Lines that are not JSON objects are counted in ``unreadable_lines``, objects that are no
    event (neither a transaction, an exception nor a message) in ``not_events``.
    """
    log = Path(path)
    errors: Counter[str] = Counter()
    durations: dict[str, list[float]] = {}
    endpoints: set[str] = set()
    skipped: dict[str, int] = {}
    not_events = 0
    for record in read_records(log, skipped=skipped):
        if not _is_event(record):
            not_events += 1
            continue
        if since is not None:
            moment = _timestamp(record.get("timestamp"))
            if moment is None or moment < since:
                continue
        if record.get("type") in WIRE_TYPES:
            continue  # spans, logs and sessions are not errors (tail shows them)
        if _is_transaction(record):
            name = str(record.get("transaction") or "<unnamed>")
            durations.setdefault(name, []).append(_duration_ms(record) or 0.0)
            if _trace_context(record).get("op") == "http.server":
                endpoints.add(name)
        else:
            errors[_error_type_and_message(record)[0]] += 1
    transactions = {
        name: {
            "count": len(values),
            "p50_ms": statistics.median(values),
            "max_ms": max(values),
            "endpoint": name in endpoints,
        }
        for name, values in durations.items()
    }
    candidates = {n: t for n, t in transactions.items() if t["endpoint"]} or transactions
    slowest = (
        max(candidates, key=lambda n: (candidates[n]["p50_ms"], candidates[n]["max_ms"]))
        if candidates
        else None
    )
    return {
        "path": str(log),
        "errors": dict(errors.most_common()),
        "error_count": sum(errors.values()),
        "transactions": dict(sorted(transactions.items(), key=lambda kv: -kv[1]["count"])),
        "transaction_count": sum(len(v) for v in durations.values()),
        "slowest": slowest,
        "slowest_is_endpoint": bool(endpoints) and bool(candidates),
        "unreadable_lines": skipped.get("unreadable", 0),
        "not_events": not_events,
    }


def summarize(path: str | os.PathLike[str] | None = None, *, since: float | None = None) -> str:
    """The summary as text: errors by type, transactions by name, the slowest endpoint."""
    log = Path(path) if path is not None else default_log_path()
    if log is None:
        return "The local log is off (WIDGETTRACE_LOG_PATH=off).\n"
    if not log.exists():
        return f"No local log at {log}.\n"
    data = summary_data(log, since=since)
    lines = [
        f"Local log {data['path']}: {data['error_count']} errors, "
        f"{data['transaction_count']} transactions"
    ]
    unreadable, not_events = data["unreadable_lines"], data["not_events"]
    if unreadable or not_events:
        lines.append(
            f"{unreadable + not_events} lines skipped ({unreadable} unreadable, "
            f"{not_events} not an event)"
        )
    if data["errors"]:
        lines.append("Errors by type:")
        lines += [f"  {count:>5}  {name}" for name, count in data["errors"].items()]
    txns: dict[str, dict[str, Any]] = data["transactions"]
    if txns:
        lines.append("Transactions by name:")
        lines.append(f"  {'count':>5}  {'p50':>10}  {'max':>10}  name")
        lines += [
            f"  {t['count']:>5}  {_format_ms(t['p50_ms']):>10}  {_format_ms(t['max_ms']):>10}  {n}"
            for n, t in txns.items()
        ]
    if data["slowest"] is not None:
        name = data["slowest"]
        label = "Slowest endpoint" if data["slowest_is_endpoint"] else "Slowest transaction"
        lines.append(
            f"{label}: {name} (p50 {_format_ms(txns[name]['p50_ms'])}, "
            f"max {_format_ms(txns[name]['max_ms'])})"
        )
    return "\n".join(lines) + "\n"
