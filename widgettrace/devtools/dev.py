"""``widgettrace dev``: start the local UIs, run the app pointed at them, stop them afterwards.

::

    widgettrace dev -- opentelemetry-instrument python run.py      # Spotlight only
    widgettrace dev --bugsink -- opentelemetry-instrument python run.py
    widgettrace dev --bugsink                                       # just the UIs, until Ctrl-C

Spotlight (traces and errors, :mod:`widgettrace.devtools.spotlight`) is always started; Bugsink
(errors grouped into issues, releases; :mod:`widgettrace.devtools.bugsink`) with ``--bugsink``.
Both bind 127.0.0.1. The command after ``--`` runs with ``SENTRY_SPOTLIGHT`` set to Spotlight's
stream URL and, with ``--bugsink``, ``SENTRY_DSN`` set to a fresh Bugsink project's DSN (the rest
of the environment is passed through unchanged). The URLs are printed to stderr before the command
starts. When the command exits, or on Ctrl-C / SIGTERM, the servers this command started are
stopped by their PIDs, and the command's exit status is returned.

Where Node.js, Spotlight's npm packages or Bugsink's virtual environment are missing, the command
stops before starting anything else and prints exactly what to install.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:  # imported when `dev` runs: every other command's start-up stays light
    from widgettrace.devtools.spotlight import Spotlight

__all__ = ["add_parser", "run_dev"]


class _Stop(Exception):
    """Raised from the SIGTERM handler so ``finally`` blocks stop the servers."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise _Stop


def _child_env(spotlight: Spotlight, dsn: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env["SENTRY_SPOTLIGHT"] = spotlight.url
    if dsn is not None:
        env["SENTRY_DSN"] = dsn
    return env


def _status(code: int) -> int:
    """A shell's exit status for a child's return code (killed by signal N: 128 + N)."""
    return 128 - code if code < 0 else code


def _run_child(command: Sequence[str], env: dict[str, str], err: TextIO) -> int:
    try:
        child = subprocess.Popen(list(command), env=env)
    except OSError as exc:
        print(f"widgettrace dev: cannot run {command[0]!r}: {exc}", file=err)
        return 127
    try:
        return _status(child.wait())
    except (KeyboardInterrupt, _Stop):
        # Ctrl-C reached the child too (same process group); SIGTERM did not: pass it on.
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
        try:
            return _status(child.wait(timeout=15))
        except subprocess.TimeoutExpired:
            child.kill()
            return _status(child.wait())


def run_dev(
    command: Sequence[str],
    *,
    bugsink: bool = False,
    workdir: Path | None = None,
    project: str = "widgettrace-dev",
    bugsink_venv_dir: Path | None = None,
    spotlight_port: int = 0,
    spotlight_dir: Path | None = None,
    err: TextIO = sys.stderr,
) -> int:
    """Start the UIs, run ``command`` (or wait for Ctrl-C when empty), stop them; exit status."""
    from widgettrace.devtools.bugsink import BugsinkServer, BugsinkUnavailable, bugsink_venv
    from widgettrace.devtools.spotlight import Spotlight, SpotlightUnavailable

    workdir = workdir or Path(tempfile.mkdtemp(prefix="widgettrace-dev-"))
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    spotlight = Spotlight(workdir / "spotlight", port=spotlight_port, node_dir=spotlight_dir)
    sink: BugsinkServer | None = None
    try:
        try:
            spotlight.start()
            dsn = None
            if bugsink:
                sink = BugsinkServer(workdir / "bugsink", venv=bugsink_venv_dir or bugsink_venv())
                sink.start()
                dsn = sink.create_project(project).dsn
        except (SpotlightUnavailable, BugsinkUnavailable) as exc:
            print(f"widgettrace dev: {exc}", file=err)
            return 3
        print(
            f"widgettrace dev: Spotlight UI  {spotlight.base_url}  (pid {spotlight.pid})", file=err
        )
        print(f"  SENTRY_SPOTLIGHT={spotlight.url}", file=err)
        if sink is not None:
            print(f"widgettrace dev: Bugsink       {sink.url}  (pid {sink.pid})", file=err)
            print(f"  SENTRY_DSN={dsn}", file=err)
            print(f"  API: {sink.url}/api/canonical/0/ (token: {sink.token})", file=err)
        print(f"  files: {workdir}", file=err)
        err.flush()
        if command:
            return _run_child(command, _child_env(spotlight, dsn), err)
        print("widgettrace dev: running until Ctrl-C", file=err)
        err.flush()
        try:
            while spotlight.running() and (sink is None or sink.running()):
                time.sleep(0.5)
        except (KeyboardInterrupt, _Stop):
            return 0
        print("widgettrace dev: a server exited on its own; stopping", file=err)
        return 1
    except KeyboardInterrupt:
        return 130
    except _Stop:
        return 143
    finally:
        if sink is not None:
            sink.stop()
        spotlight.stop()
        signal.signal(signal.SIGTERM, previous)
        print("widgettrace dev: stopped Spotlight" + (" and Bugsink" if sink else ""), file=err)


def _cmd_dev(args: argparse.Namespace, out: TextIO) -> int:
    command = list(args.cmd)
    if command[:1] == ["--"]:
        command = command[1:]
    return run_dev(
        command,
        bugsink=args.bugsink,
        workdir=args.workdir,
        project=args.project,
        bugsink_venv_dir=args.bugsink_venv,
        spotlight_port=args.spotlight_port,
        spotlight_dir=args.spotlight_dir,
    )


def add_parser(commands: Any) -> None:
    """Register ``dev`` on the ``widgettrace`` command line."""
    dev = commands.add_parser(
        "dev",
        help="start Spotlight (and Bugsink) on 127.0.0.1 and run a command pointed at them",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    dev.add_argument("--bugsink", action="store_true", help="also start Bugsink (errors, issues)")
    dev.add_argument("--spotlight-port", type=int, default=0, metavar="PORT", help="(any free)")
    dev.add_argument(
        "--spotlight-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="Spotlight's serve.mjs and node_modules (default: the package's spotlight_node/)",
    )
    dev.add_argument("--project", default="widgettrace-dev", help="Bugsink project name")
    dev.add_argument(
        "--bugsink-venv",
        type=Path,
        default=None,
        metavar="DIR",
        help="Bugsink's virtual environment (default: .venv-bugsink)",
    )
    dev.add_argument(
        "--workdir",
        type=Path,
        default=None,
        metavar="DIR",
        help="where the servers keep their files (default: a new temporary dir)",
    )
    dev.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- COMMAND ...")
    dev.set_defaults(run=_cmd_dev)
