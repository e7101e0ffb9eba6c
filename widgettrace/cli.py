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
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import NoReturn, TextIO

from widgettrace._logread import (
    Follower,
    _last_lines,
    _parse,
    default_log_path,
    read_records,
)
from widgettrace._records import (
    _format_line,
    _is_event,
    _timestamp,
    format_record,
    summarize,
    summary_data,
)
from widgettrace.exporters._logfile import LOG_PATH_ENV

__all__ = [
    "Follower",
    "default_log_path",
    "format_record",
    "main",
    "read_records",
    "summarize",
    "summary_data",
]


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
