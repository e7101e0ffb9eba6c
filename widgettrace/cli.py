"""The ``widgettrace`` command (also ``python -m widgettrace``): read the local log back.

The local log (see :mod:`widgettrace.exporters.locallog`) holds one JSON line per Sentry error
event or transaction. This command turns it into something a person reads::

    widgettrace tail                 # the last 10 events, pretty-printed
    widgettrace tail -n 50 -f        # the last 50, then follow like `tail -f` (across rotation)
    widgettrace tail --json PATH     # raw lines, e.g. to pipe into jq
    widgettrace summary              # errors by type, transactions by name, slowest endpoint
    widgettrace config --markdown    # the configuration table (the README's is generated from it)

``PATH`` defaults to ``WIDGETTRACE_LOG_PATH`` (else ``.claude/logs/sentry.log``); when that file
does not exist but the per-user fallback does (the app could not write the configured path), the
fallback is read and a note says so. Colour is used only when stdout is a terminal (and
``NO_COLOR`` is unset), or with ``--color always``.

Failures are one line on stderr, never a traceback: a directory or a bad option exits 2, a
missing or unreadable file 1. ``tail -f`` on a file that does not exist yet says it is waiting
for it and then follows it once it appears. Lines that are not events (a torn write, garbage, a
JSON object that is no event) are counted and reported by every reader: ``tail`` shows them as
``? ...`` and says how many, ``summary`` lists them as skipped (``unreadable_lines`` and
``not_events`` in ``--json``), :func:`read_records` counts them in its ``skipped`` mapping.

Programs can call :func:`summarize` (``summarize(path) -> str``) or :func:`summary_data`.

Start-up stays fast: only the standard library and widgettrace's stdlib-only modules are imported
(never ``sentry_sdk`` or the OpenTelemetry SDK).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, NoReturn, TextIO

from widgettrace._wire_lines import WIRE_TYPES, format_wire_record
from widgettrace.exporters._logfile import LOG_PATH_ENV, fallback_log_path, rotated_paths

__all__ = [
    "Follower",
    "default_log_path",
    "format_record",
    "main",
    "read_records",
    "summarize",
    "summary_data",
]

_MAX_BACKUPS_SCANNED = 100
_MESSAGE_WIDTH = 200


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


# --- config ------------------------------------------------------------------------------------


def _config_text(markdown: bool) -> str:
    from widgettrace.instrumentation import _config

    if markdown:
        table: Callable[[], str] | None = getattr(_config, "markdown_table", None)
        if table is not None:
            return table()
        rows = ["| Variable | Type | Default | What it does |", "| --- | --- | --- | --- |"]
        for s in _config.SETTINGS:
            cells = (s.type_name, s.default_repr)
            esc = [c.replace("|", "\\|") for c in cells]
            rows.append(f"| `{s.env}` | {esc[0]} | `{esc[1]}` | {s.doc} |")
        return "\n".join(rows) + "\n"
    out = []
    for s in _config.SETTINGS:
        current = os.environ.get(s.env)
        value = "(unset)" if current is None else repr(current)
        out.append(f"{s.env} = {value}   [{s.type_name}, default {s.default_repr}]")
        out.append(f"    {s.doc}")
    return "\n".join(out) + "\n"


# --- command line ------------------------------------------------------------------------------


def _use_color(choice: str, stream: TextIO) -> bool:
    if choice != "auto":
        return choice == "always"
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    return stream.isatty()


def _resolve_path(arg: str | None) -> Path | None:
    """The log to read, or None after one line saying why not (exit status 2)."""
    path = Path(arg) if arg is not None else default_log_path()
    if path is None:
        print(
            f"widgettrace: the local log is off ({LOG_PATH_ENV}=off); pass a PATH",
            file=sys.stderr,
        )
    elif path.is_dir():
        print(f"widgettrace: {path} is a directory, not a log file", file=sys.stderr)
        return None
    return path


def _emit(lines: Iterable[bytes], out: TextIO, *, as_json: bool, color: bool) -> int:
    """Print the lines; returns how many of them are not events (shown as ``? ...``)."""
    corrupt = 0
    for line in lines:
        text = _format_line(line, as_json=as_json, color=color)
        if as_json:
            record = _parse(line)
            corrupt += record is None or not _is_event(record)
        else:
            corrupt += text.startswith(("? ", "\x1b[2m? "))
        out.write(text + "\n")
    out.flush()
    return corrupt


def _cmd_tail(args: argparse.Namespace, out: TextIO) -> int:
    path = _resolve_path(args.path)
    if path is None:
        return 2
    color = _use_color(args.color, out)
    lines, opened = _last_lines(path, args.lines)
    if opened is None and not args.follow and not lines:
        print(f"widgettrace: no local log at {path}", file=sys.stderr)
        return 1
    corrupt = _emit(lines, out, as_json=args.json, color=color)
    if corrupt:
        print(
            f"widgettrace: {corrupt} of the {len(lines)} lines shown are not events "
            "(torn or foreign lines, shown as '? ...')",
            file=sys.stderr,
        )
    if not args.follow:
        if opened is not None:
            opened.close()
        return 0
    if opened is None:
        print(f"widgettrace: waiting for {path} to appear (Ctrl-C to stop)", file=sys.stderr)
    follower = Follower(path, file=opened)
    # `kill PID` (how scripts stop a follower) ends it like Ctrl-C: quietly, output flushed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while True:
            _emit(follower.poll(), out, as_json=args.json, color=color)
            time.sleep(args.sleep_interval)
    except KeyboardInterrupt:
        return 130
    finally:
        follower.close()


def _parse_since(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    moment = _timestamp(text)
    if moment is None:
        raise argparse.ArgumentTypeError(f"not seconds since the epoch nor ISO 8601: {text!r}")
    return moment


def _cmd_summary(args: argparse.Namespace, out: TextIO) -> int:
    path = _resolve_path(args.path)
    if path is None:
        return 2
    if not path.exists():
        print(f"widgettrace: no local log at {path}", file=sys.stderr)
        return 1
    if args.json:
        out.write(json.dumps(summary_data(path, since=args.since), indent=2) + "\n")
    else:
        out.write(summarize(path, since=args.since))
    return 0


def _cmd_config(args: argparse.Namespace, out: TextIO) -> int:
    out.write(_config_text(args.markdown))
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse with a usage error on one line (the usage itself is one ``--help`` away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _line_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="widgettrace",
        description="Read widgettrace's local log of Sentry events and transactions.",
    )
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )

    tail = commands.add_parser("tail", help="pretty-print the last events (and follow)")
    tail.add_argument("path", nargs="?", metavar="PATH", help="log file (default: configured)")
    tail.add_argument(
        "-n", "--lines", type=_line_count, default=10, metavar="N", help="last N (10)"
    )
    tail.add_argument("-f", "--follow", action="store_true", help="keep printing new events")
    tail.add_argument("--json", action="store_true", help="print the raw JSON lines")
    tail.add_argument(
        "-s",
        "--sleep-interval",
        type=float,
        default=0.25,
        metavar="S",
        help="seconds between checks when following (0.25)",
    )
    tail.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    tail.set_defaults(run=_cmd_tail)

    summary = commands.add_parser("summary", help="errors by type, transactions by name")
    summary.add_argument("path", nargs="?", metavar="PATH", help="log file (default: configured)")
    summary.add_argument(
        "--since",
        type=_parse_since,
        default=None,
        metavar="TIME",
        help="only records at or after TIME (epoch seconds or ISO 8601)",
    )
    summary.add_argument("--json", action="store_true", help="machine-readable output")
    summary.set_defaults(run=_cmd_summary)

    config = commands.add_parser("config", help="the configuration table")
    config.add_argument("--markdown", action="store_true", help="as the README's Markdown table")
    config.set_defaults(run=_cmd_config)
    from widgettrace.instrumentation import audit, findings  # light until a command runs

    findings.add_command(commands)
    audit.add_command(commands)

    # The reading side (issues, releases, perf, journeys, standup, deploy, report, watch).
    from widgettrace.insights.cli import add_commands

    add_commands(commands)

    from widgettrace.devtools.dev import add_parser as add_dev
    from widgettrace.mcp_server import add_parser as add_mcp

    add_dev(commands)
    add_mcp(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    run: Callable[[argparse.Namespace, TextIO], int] = args.run
    try:
        return run(args, sys.stdout)
    except IsADirectoryError as exc:
        print(f"widgettrace: {exc.filename} is a directory, not a log file", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # `widgettrace tail | head`: the reader left; say nothing more (and not at exit either).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except OSError as exc:  # unreadable file, vanished directory, ...: one line, no traceback
        where = f" {exc.filename}" if exc.filename else ""
        print(f"widgettrace: cannot read{where}: {exc.strerror or exc}", file=sys.stderr)
        return 1
