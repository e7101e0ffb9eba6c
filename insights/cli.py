"""The insights subcommands of ``widgettrace`` (registered by ``widgettrace/cli.py``).

::

    widgettrace issues    [PATH] [--since 24h] [--service S] [--release R] [--format F]
    widgettrace releases  [PATH] [--format F]
    widgettrace perf      [PATH] [--since 24h] [--service S] [--format F]
    widgettrace journeys  [PATH] [--user U | --sessions | --session SID] [--since 24h] [--format F]
    widgettrace standup   [PATH] [--since 24h] [--service/--block NAME] [--format F]
    widgettrace deploy    RELEASE [--environment E] [--log PATH]
    widgettrace report    --html FILE [PATH]
    widgettrace watch     [PATH] [--webhook URL]

``F`` is ``text`` (default), ``markdown`` or ``json``. A missing, empty, directory or corrupt log
gives one line on stderr and exit status 1, never a traceback. DuckDB is imported only when one of
these commands runs, so ``widgettrace tail`` stays quick to start.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from widgettrace.insights._store import Store

__all__ = ["add_commands", "parse_since"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(text: str) -> float:
    """``24h``/``30m``/``7d`` ago, epoch seconds, or an ISO 8601 time -> epoch seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if match:
        return time.time() - float(match.group(1)) * _UNITS[match.group(2)]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a duration (24h, 30m, 7d), epoch seconds or ISO 8601: {text!r}"
        ) from None
    return moment.timestamp()


def _log_path(arg: str | None) -> Path:
    from widgettrace.cli import default_log_path
    from widgettrace.insights._store import InsightsError

    if arg:
        return Path(arg)
    path = default_log_path()
    if path is None:
        raise InsightsError("the local log is off (WIDGETTRACE_LOG_PATH); name a log file")
    return path


def _open(args: argparse.Namespace) -> Store:
    from widgettrace.insights._store import InsightsError, open_store

    path = _log_path(args.path)
    store = open_store(path)
    total, corrupt = store.total_lines, store.corrupt_lines
    if total in (0, corrupt):
        store.close()
        if total == 0:
            raise InsightsError(f"the local log {path} is empty")
        raise InsightsError(f"{path} holds no events: all {total} lines are corrupt (not JSON)")
    if corrupt:
        print(f"widgettrace: note: skipped {corrupt} corrupt lines in {path}", file=sys.stderr)
    return store


def _window(args: argparse.Namespace) -> Any:
    from widgettrace.insights._query import Window

    return Window(
        since=getattr(args, "since", None),
        service=getattr(args, "service", None),
        release=getattr(args, "release", None),
        environment=getattr(args, "environment", None),
    )


def _cmd_view(args: argparse.Namespace, out: TextIO) -> int:
    from widgettrace.insights import issues, journeys, performance, releases, standup
    from widgettrace.insights.render import render

    with _open(args) as store:
        view = args.view
        data: Any
        if view == "issues":
            data = issues.list_issues(store, _window(args), status=args.status)
        elif view == "releases":
            data = releases.list_releases(store)
        elif view == "performance":
            window = _window(args)
            data = {
                "endpoints": performance.endpoints(store, window),
                "breakdown": performance.breakdown(store, window),
            }
        elif view == "journeys":
            if args.sessions or args.session:
                data = journeys.session_journeys(
                    store, _window(args), session=args.session, last_n=args.last
                )
            else:
                data = journeys.journeys(store, _window(args), user=args.user, last_n=args.last)
        else:
            data = standup.standup(store, since=args.since, service=args.service)
        out.write(render(view, data, args.format))
    return 0


def _cmd_deploy(args: argparse.Namespace, out: TextIO) -> int:
    from widgettrace.insights import sentry_api
    from widgettrace.insights.releases import record_deploy

    path = _log_path(args.log)
    record = record_deploy(path, args.release, args.environment)
    out.write(f"deploy of {args.release} to {args.environment} recorded in {path}\n")
    settings = sentry_api.api_settings()
    if settings is not None:
        sentry_api.create_release_and_deploy(
            args.release, args.environment, settings, timestamp=record["timestamp"]
        )
        out.write(
            f"release {args.release} and its deploy created in Sentry "
            f"({settings['org']}/{settings['project']})\n"
        )
    return 0


def _cmd_report(args: argparse.Namespace, out: TextIO) -> int:
    from widgettrace.insights.html import report_html

    with _open(args) as store:
        document = report_html(store)
    Path(args.html).write_text(document, encoding="utf-8")
    out.write(f"report written to {args.html}\n")
    return 0


def _parent_alive(pid: int | None) -> bool:
    if pid is None:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _cmd_watch(args: argparse.Namespace, out: TextIO) -> int:
    from widgettrace.insights.alerts import Rules, Watcher, WebhookSender, slack_payload
    from widgettrace.insights.background import hold_watch_lock

    path = _log_path(args.path)
    webhook = args.webhook or os.environ.get("WIDGETTRACE_ALERT_WEBHOOK") or None
    rules = Rules(
        first_seen=not args.no_first_seen,
        regression=not args.no_regression,
        spike_factor=args.spike_factor or None,
        spike_min=args.spike_min,
        error_rate_per_min=args.error_rate_per_min,
        p95_ms=args.p95_ms,
        window_s=args.window_s,
    )
    with hold_watch_lock(path) as mine:
        if not mine:
            if not args.background:
                print(f"widgettrace: another watcher follows {path}", file=sys.stderr)
            return 0 if args.background else 1
        # The app may start us before it has written its first line.
        while not path.exists():
            if not _parent_alive(args.parent_pid):
                return 0
            time.sleep(args.interval)
        watcher = Watcher(path, rules)
        sender = WebhookSender(webhook) if webhook else None
        if not args.background:
            print(f"widgettrace: watching {path}" + (f", alerts to {webhook}" if webhook else ""),
                  file=sys.stderr, flush=True)
        try:
            while _parent_alive(args.parent_pid):
                for alert in watcher.poll():
                    if sender is not None:
                        sender.send(alert)
                    else:
                        out.write(json.dumps(slack_payload(alert)) + "\n")
                        out.flush()
                if args.once:
                    break
                time.sleep(args.interval)
        except KeyboardInterrupt:
            pass
        finally:
            watcher.close()
            if sender is not None:
                sender.close()
    return 0


def _common(parser: argparse.ArgumentParser, *, since: bool = True) -> None:
    parser.add_argument("path", nargs="?", metavar="PATH", help="log file (default: configured)")
    parser.add_argument(
        "--format", choices=("text", "markdown", "json"), default="text", help="output format"
    )
    if since:
        parser.add_argument(
            "--since", type=parse_since, default=None, metavar="TIME",
            help="24h, 30m, 7d, epoch seconds or ISO 8601",
        )
        parser.add_argument(
            "--service", "--block", dest="service", default=None, metavar="NAME",
            help="one service (service.name) or agent block",
        )


def add_commands(commands: Any) -> None:
    """Add the insights subcommands to ``widgettrace``'s subparsers."""
    p = commands.add_parser("issues", help="errors grouped into issues")
    _common(p)
    p.add_argument("--release", default=None)
    p.add_argument("--status", choices=("new", "ongoing", "regressed", "resolved"), default=None)
    p.set_defaults(run=_guarded(_cmd_view), view="issues")

    p = commands.add_parser("releases", help="per release: new, fixed, regressed, health")
    _common(p, since=False)
    p.set_defaults(run=_guarded(_cmd_view), view="releases")

    p = commands.add_parser("perf", help="latency percentiles per transaction, time breakdown")
    _common(p)
    p.set_defaults(run=_guarded(_cmd_view), view="performance")

    p = commands.add_parser("journeys", help="what each user did, errors in place")
    _common(p)
    p.add_argument("--user", default=None)
    p.add_argument("--last", type=int, default=5, metavar="N", help="actions before an error")
    p.add_argument("--sessions", action="store_true", help="one journey per session")
    p.add_argument("--session", default=None, metavar="SID", help="the journey of one session")
    p.set_defaults(run=_guarded(_cmd_view), view="journeys")

    p = commands.add_parser("standup", help="the daily standup section")
    _common(p)
    p.set_defaults(run=_guarded(_cmd_view), view="standup")

    p = commands.add_parser("deploy", help="record a deploy (and tell Sentry when configured)")
    p.add_argument("release", metavar="RELEASE")
    p.add_argument("--environment", "-e", default="production")
    p.add_argument("--log", default=None, metavar="PATH", help="log file (default: configured)")
    p.set_defaults(run=_guarded(_cmd_deploy))

    p = commands.add_parser("report", help="a self-contained HTML report with plots")
    p.add_argument("path", nargs="?", metavar="PATH", help="log file (default: configured)")
    p.add_argument("--html", required=True, metavar="FILE", help="where to write the report")
    p.set_defaults(run=_guarded(_cmd_report))

    p = commands.add_parser("watch", help="follow the log, POST alerts to a webhook")
    p.add_argument("path", nargs="?", metavar="PATH", help="log file (default: configured)")
    p.add_argument("--webhook", default=None, metavar="URL",
                   help="Slack-compatible webhook (default: WIDGETTRACE_ALERT_WEBHOOK; "
                        "without one, alerts are printed as JSON lines)")
    p.add_argument("--interval", type=float, default=0.5, metavar="S", help="poll every S s")
    p.add_argument("--no-first-seen", action="store_true", help="no alert for new issues")
    p.add_argument("--no-regression", action="store_true", help="no alert for regressions")
    p.add_argument("--spike-factor", type=float, default=3.0, metavar="X",
                   help="alert when an issue's last minute is X times its hourly rate (0: off)")
    p.add_argument("--spike-min", type=int, default=10, metavar="N")
    p.add_argument("--error-rate-per-min", type=float, default=None, metavar="N")
    p.add_argument("--p95-ms", type=float, default=None, metavar="MS")
    p.add_argument("--window-s", type=float, default=300.0, metavar="S",
                   help="at most one alert per rule and issue in S seconds")
    p.add_argument("--once", action="store_true", help="one poll, then exit")
    p.add_argument("--parent-pid", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--background", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(run=_guarded(_cmd_watch))


def _guarded(run: Any) -> Any:
    """Bad input and engine errors become one line and exit status 1."""

    def wrapper(args: argparse.Namespace, out: TextIO) -> int:
        import duckdb

        from widgettrace.insights._store import InsightsError
        from widgettrace.insights.sentry_api import SentryApiError

        try:
            return int(run(args, out))
        except (InsightsError, SentryApiError) as exc:
            print(f"widgettrace: {exc}", file=sys.stderr)
        except duckdb.Error as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            print(f"widgettrace: cannot read the log: {first}", file=sys.stderr)
        except OSError as exc:
            print(f"widgettrace: {exc.strerror or exc}: {exc.filename or ''}", file=sys.stderr)
        return 1

    return wrapper
