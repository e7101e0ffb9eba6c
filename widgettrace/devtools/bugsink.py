"""Start and stop a real Bugsink (self-hosted, Sentry-compatible error tracker) on 127.0.0.1.

Used by ``widgettrace dev --bugsink`` and by the test suite's receiver
(``tests/receivers/bugsink.py``).
Bugsink lives in its own virtual environment, ``.venv-bugsink`` (made by
``scripts/setup-receivers.sh``, or by the commands :func:`install_hint` prints), because it pulls in
Django, which would switch on sentry-sdk's Django integration in the application's environment.
This module needs only the standard library (the setup script runs it with a bare ``python3``).

``BugsinkServer(workdir).start()``:

1. writes ``bugsink_conf.py`` (Django settings module; Bugsink's ``bugsink-manage`` and
   ``bugsink.wsgi`` default ``DJANGO_SETTINGS_MODULE`` to ``bugsink_conf``) into ``workdir``,
   based on ``bugsink.settings.default`` like Bugsink's own ``local`` template: SQLite databases in
   ``workdir``, ``SNAPPEA = {"TASK_ALWAYS_EAGER": True}`` (events are digested inside the ingest
   request, no worker process), ``PHONEHOME: False``, a per-instance ``INGEST_STORE_BASE_DIR``,
   quotas raised so a test suite never hits them;
2. copies the pre-migrated databases (with one full-access API token) that the setup script
   leaves in ``.venv-bugsink/widgettrace-template/``, or, without them, runs
   ``bugsink-manage migrate``, ``migrate --database=snappea`` and ``create_auth_token``;
3. starts gunicorn on a socket it bound itself to ``127.0.0.1:0`` (passed as ``fd://N``, so no port
   race), in its own process group, and waits for ``/health/ready``;
4. creates a team through the REST API under ``/api/canonical/0/``.

Then ``create_project(name)`` returns a ``BugsinkProject`` with its DSN, and ``issues()``,
``events()``, ``event()``, ``releases()`` read back through the same API. ``stop()`` ends the
gunicorn master (and its worker) by PID.

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

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "TEMPLATE_DIRNAME",
    "BugsinkProject",
    "BugsinkServer",
    "BugsinkUnavailable",
    "bugsink_venv",
    "build_template",
    "install_hint",
    "settings_module",
]

#: The checkout this module sits in (``widgettrace/devtools/`` -> the repository root).
REPO_ROOT = Path(__file__).resolve().parents[2]
BUGSINK_SPEC = "bugsink==2.6.2"
TEMPLATE_DIRNAME = "widgettrace-template"
_API = "/api/canonical/0"


class BugsinkUnavailable(RuntimeError):
    """Bugsink could not be started (not installed, migrations failed, server did not answer)."""


@dataclass(frozen=True)
class BugsinkProject:
    id: int
    name: str
    slug: str
    dsn: str


def bugsink_venv() -> Path:
    """``.venv-bugsink`` in the current directory if there is one, else beside the checkout."""
    here = Path.cwd() / ".venv-bugsink"
    return here if here.is_dir() else REPO_ROOT / ".venv-bugsink"


def install_hint(venv: Path | None = None) -> str:
    """The exact commands that make Bugsink startable with ``venv``."""
    venv = venv or bugsink_venv()
    return (
        f"`python3 -m venv {venv} && {venv}/bin/pip install '{BUGSINK_SPEC}'` "
        "(or, in a widgettrace checkout, scripts/setup-receivers.sh)"
    )


def settings_module(workdir: Path, base_url: str) -> str:
    """The text of ``bugsink_conf.py`` for an instance whose files live in ``workdir``."""
    return f'''"""Bugsink settings for one local instance (see widgettrace/devtools/bugsink.py)."""

from bugsink.settings.default import *  # noqa: F403

SECRET_KEY = "widgettrace-tests-not-secret-{"x" * 40}"
DATABASES["default"]["NAME"] = {str(workdir / "db.sqlite3")!r}  # noqa: F405
DATABASES["snappea"]["NAME"] = {str(workdir / "snappea.sqlite3")!r}  # noqa: F405
TIME_ZONE = "UTC"
# Digest each event inside its ingest request: no separate snappea worker to start or wait for.
SNAPPEA = {{"TASK_ALWAYS_EAGER": True}}
EMAIL_BACKEND = "bugsink.email_backends.QuietConsoleEmailBackend"

_QUOTA = 10_000_000
BUGSINK = {{
    "BASE_URL": {base_url!r},
    "SINGLE_USER": True,
    "SINGLE_TEAM": True,
    "PHONEHOME": False,
    "INGEST_STORE_BASE_DIR": {str(workdir / "ingestion")!r},
    "MAX_EVENTS_PER_PROJECT_PER_5_MINUTES": _QUOTA,
    "MAX_EVENTS_PER_PROJECT_PER_HOUR": _QUOTA,
    "MAX_EVENTS_PER_PROJECT_PER_MONTH": _QUOTA,
    "MAX_EVENTS_PER_5_MINUTES": _QUOTA,
    "MAX_EVENTS_PER_HOUR": _QUOTA,
    "MAX_EVENTS_PER_MONTH": _QUOTA,
}}
'''


class BugsinkServer:
    """One Bugsink instance (see the module docstring)."""

    def __init__(self, workdir: Path, *, venv: Path | None = None) -> None:
        self.workdir = Path(workdir)
        self.venv = venv or bugsink_venv()
        self.token = ""
        self.team_id = ""
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_path = self.workdir / "gunicorn.log"

    # -- lifecycle ---------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _env(self) -> dict[str, str]:
        # The instance must not inherit the test run's telemetry or Python path settings.
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("SENTRY_", "OTEL_", "WIDGETTRACE_", "DJANGO_"))
            and k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
        }
        env["DJANGO_SETTINGS_MODULE"] = "bugsink_conf"
        env["PYTHONPATH"] = str(self.workdir)
        return env

    def _manage(self, *args: str, timeout: float = 120) -> str:
        result = subprocess.run(
            [str(self.venv / "bin" / "bugsink-manage"), *args],
            cwd=self.workdir,
            env=self._env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise BugsinkUnavailable(
                f"bugsink-manage {' '.join(args)} failed ({result.returncode}): "
                f"{result.stderr[-2000:]}"
            )
        return result.stdout

    def _manage_into(self, errors: list[BaseException], *args: str) -> None:
        try:
            self._manage(*args)
        except BaseException as exc:  # handed to the starting thread, which raises it
            errors.append(exc)

    def start(self, timeout: float = 60.0) -> BugsinkServer:
        if self._proc is not None:
            return self
        gunicorn = self.venv / "bin" / "gunicorn"
        if not gunicorn.exists():
            raise BugsinkUnavailable(
                f"no Bugsink virtual environment at {self.venv}: {install_hint(self.venv)}"
            )
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "ingestion").mkdir(exist_ok=True)

        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.bind(("127.0.0.1", 0))
            listener.listen(128)
            self.port = int(listener.getsockname()[1])
            (self.workdir / "bugsink_conf.py").write_text(
                settings_module(self.workdir, self.url), encoding="utf-8"
            )
            self._prepare_databases()
            log = self._log_path.open("ab")
            try:
                self._proc = subprocess.Popen(
                    [
                        str(gunicorn),
                        "--bind",
                        f"fd://{listener.fileno()}",
                        "--workers",
                        "1",
                        "--threads",
                        "4",
                        "--timeout",
                        "60",
                        "--no-control-socket",
                        "bugsink.wsgi",
                    ],
                    cwd=self.workdir,
                    env=self._env(),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    pass_fds=(listener.fileno(),),
                    start_new_session=True,  # own process group: stop() ends master and worker
                )
            finally:
                log.close()
        finally:
            listener.close()  # gunicorn holds its own copy of the socket
        try:
            self._wait_ready(timeout)
            self.team_id = self._ensure_team()
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _prepare_databases(self) -> None:
        template = self.venv / TEMPLATE_DIRNAME
        token_file = template / "token"
        stamp = template / "version"
        if (
            token_file.exists()
            and stamp.exists()
            and stamp.read_text(encoding="utf-8").strip() == _installed_version(self.venv)
        ):
            shutil.copyfile(template / "db.sqlite3", self.workdir / "db.sqlite3")
            shutil.copyfile(template / "snappea.sqlite3", self.workdir / "snappea.sqlite3")
            self.token = token_file.read_text(encoding="utf-8").strip()
            return
        self._migrate_and_make_token()

    def _migrate_and_make_token(self) -> None:
        # The two databases are separate SQLite files: migrate them side by side.
        errors: list[BaseException] = []
        snappea = threading.Thread(
            target=self._manage_into,
            args=(errors, "migrate", "--database=snappea", "--verbosity=0"),
        )
        snappea.start()
        try:
            self._manage("migrate", "--verbosity=0")
        finally:
            snappea.join()
        if errors:
            raise errors[0]
        self.token = self._manage("create_auth_token").strip().splitlines()[-1]

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise BugsinkUnavailable(
                    f"gunicorn exited with {self._proc.returncode}: {self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/health/ready", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError) as exc:
                last = repr(exc)
            time.sleep(0.2)
        raise BugsinkUnavailable(f"no answer on {self.url} within {timeout}s ({last})")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            # The process group is the one start() created for this gunicorn: master and worker.
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)

    def __enter__(self) -> BugsinkServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self._log_path.read_text(encoding="utf-8", errors="replace")[-chars:]
        except OSError:
            return ""

    # -- REST API ----------------------------------------------------------------------------
    def api(self, method: str, path: str, body: Any = None, **query: Any) -> Any:
        """Call ``/api/canonical/0/<path>`` with the instance's token; return the decoded JSON."""
        url = f"{self.url}{_API}/{path.lstrip('/')}"
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            url,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:2000].decode(errors="replace")
            raise RuntimeError(f"Bugsink API {method} {url} -> {exc.code}: {detail}") from exc
        return json.loads(raw) if raw else None

    def _list(self, path: str, **query: Any) -> list[dict[str, Any]]:
        """Every result of a paginated list endpoint (follows ``next`` cursors)."""
        page = self.api("GET", path, **query)
        results: list[dict[str, Any]] = list(page.get("results", []))
        while page.get("next"):
            next_url = urllib.parse.urlsplit(page["next"])
            next_query = dict(urllib.parse.parse_qsl(next_url.query))
            page = self.api("GET", path, **next_query)
            results.extend(page.get("results", []))
        return results

    def _ensure_team(self) -> str:
        teams = self._list("teams/")
        if teams:
            return str(teams[0]["id"])
        team = self.api("POST", "teams/", {"name": "widgettrace"})
        return str(team["id"])

    def create_project(self, name: str) -> BugsinkProject:
        """Create a project; its DSN points at this instance (Bugsink builds it from BASE_URL)."""
        created = self.api("POST", "projects/", {"name": name, "team": self.team_id})
        detail = self.api("GET", f"projects/{created['id']}/")
        return BugsinkProject(
            id=int(detail["id"]), name=detail["name"], slug=detail["slug"], dsn=detail["dsn"]
        )

    def projects(self) -> list[dict[str, Any]]:
        return self._list("projects/")

    def issues(self, project_id: int) -> list[dict[str, Any]]:
        """Issues of a project (``calculated_type``, ``calculated_value``, ``digested_event_count``,
        ``events_at`` = releases seen, ``friendly_id``...)."""
        return self._list("issues/", project=project_id, order="asc")

    def events(self, issue_id: str) -> list[dict[str, Any]]:
        """Events of an issue (list view: ids and timestamps, no payload), oldest first."""
        return self._list("events/", issue=issue_id, order="asc")

    def event(self, event_uuid: str) -> dict[str, Any]:
        """One event in full: ``data`` is the stored Sentry event payload."""
        result: dict[str, Any] = self.api("GET", f"events/{event_uuid}/")
        return result

    def releases(self, project_id: int) -> list[dict[str, Any]]:
        return self._list("releases/", project=project_id)

    def wait_for_issues(
        self,
        project_id: int,
        predicate: Callable[[list[dict[str, Any]]], bool],
        timeout: float = 20.0,
    ) -> list[dict[str, Any]]:
        """Poll the project's issues (every 0.25 s) until ``predicate(issues)`` holds."""
        deadline = time.monotonic() + timeout
        issues = self.issues(project_id)
        while not predicate(issues):
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"Bugsink issues of project {project_id} never matched: "
                    f"{[(i['calculated_type'], i['digested_event_count']) for i in issues]}"
                )
            time.sleep(0.25)
            issues = self.issues(project_id)
        return issues


def build_template(venv: Path | None = None) -> Path:
    """Migrate both databases once and make a full-access token, in ``<venv>/widgettrace-template``.

    Each ``BugsinkServer`` then copies these files instead of migrating (about 12 s saved per
    start). Rebuilt when the installed Bugsink version changes.
    """
    import tempfile

    venv = venv or bugsink_venv()
    template = venv / TEMPLATE_DIRNAME
    version = _installed_version(venv)
    stamp = template / "version"
    if (template / "token").exists() and stamp.exists() and stamp.read_text().strip() == version:
        return template
    with tempfile.TemporaryDirectory(prefix="bugsink-template-") as tmp:
        server = BugsinkServer(Path(tmp), venv=venv)
        (server.workdir / "bugsink_conf.py").write_text(
            settings_module(server.workdir, "http://127.0.0.1:8000"), encoding="utf-8"
        )
        server._migrate_and_make_token()
        staging = venv / f"{TEMPLATE_DIRNAME}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        for name in ("db.sqlite3", "snappea.sqlite3"):
            shutil.copyfile(server.workdir / name, staging / name)
        (staging / "token").write_text(server.token + "\n", encoding="utf-8")
        (staging / "version").write_text(version + "\n", encoding="utf-8")
        shutil.rmtree(template, ignore_errors=True)
        staging.rename(template)
    return template


def _installed_version(venv: Path) -> str:
    found = sorted(venv.glob("lib/python*/site-packages/bugsink-*.dist-info"))
    return found[-1].name.removeprefix("bugsink-").removesuffix(".dist-info") if found else ""


if __name__ == "__main__":
    # scripts/setup-receivers.sh: python3 widgettrace/devtools/bugsink.py --build-template
    import sys

    if sys.argv[1:] != ["--build-template"]:
        raise SystemExit("usage: bugsink.py --build-template")
    print(build_template())
