"""A real Bugsink (self-hosted, Sentry-compatible error tracker) on 127.0.0.1, for end-to-end tests.

Starting, stopping and the REST API are the package's (:mod:`widgettrace.devtools.bugsink`, shared
with ``widgettrace dev --bugsink``); here the virtual environment can be overridden with
``WIDGETTRACE_BUGSINK_VENV`` (default ``.venv-bugsink`` at the repository root, made by
``scripts/setup-receivers.sh``).

Usage::

    server = BugsinkServer(tmp_path).start()
    project = server.create_project("checkout")
    run_app(dsn=project.dsn, release="app@1.0")
    issues = server.wait_for_issues(project.id, lambda issues: len(issues) == 2)
    server.stop()

Bugsink ignores transactions (and answers them with a rate-limit header that makes the SDK drop
transactions for a day), so send it errors only.
"""

from __future__ import annotations

import os
from pathlib import Path

from widgettrace.devtools import bugsink as _bugsink
from widgettrace.devtools.bugsink import (
    TEMPLATE_DIRNAME,
    BugsinkProject,
    BugsinkUnavailable,
    settings_module,
)

__all__ = [
    "TEMPLATE_DIRNAME",
    "BugsinkProject",
    "BugsinkServer",
    "BugsinkUnavailable",
    "bugsink_venv",
    "build_template",
    "settings_module",
]

REPO_ROOT = Path(__file__).resolve().parents[2]


def bugsink_venv() -> Path:
    return Path(os.environ.get("WIDGETTRACE_BUGSINK_VENV") or REPO_ROOT / ".venv-bugsink")


class BugsinkServer(_bugsink.BugsinkServer):
    """One Bugsink instance from the tests' virtual environment (see the module docstring)."""

    def __init__(self, workdir: Path, *, venv: Path | None = None) -> None:
        super().__init__(workdir, venv=venv or bugsink_venv())


def build_template(venv: Path | None = None) -> Path:
    """The package's :func:`~widgettrace.devtools.bugsink.build_template` for the tests' venv."""
    return _bugsink.build_template(venv or bugsink_venv())
