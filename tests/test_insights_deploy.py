"""``widgettrace deploy``: a deploy marker in the local log, and the release + deploy in Sentry.

Sentry's REST API is the one boundary not reachable here, so a local double on 127.0.0.1 speaks
its wire protocol: the two endpoints sentry-cli calls (``releases new`` and ``releases deploys
new``), bearer-token auth, JSON bodies, Sentry's status codes and reply shapes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from widgettrace.insights import open_store, releases

TOKEN = "sntrys_test_token"


class _SentryApi(BaseHTTPRequestHandler):
    calls: list[tuple[str, dict[str, Any]]]
    releases: dict[str, dict[str, Any]]

    def log_message(self, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self._reply(401, {"detail": "Invalid token"})
            return
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.calls.append((self.path, body))
        parts = self.path.strip("/").split("/")
        # api/0/organizations/{org}/releases/  and  .../releases/{version}/deploys/
        if parts[:3] != ["api", "0", "organizations"] or parts[4] != "releases":
            self._reply(404, {"detail": "Not found"})
        elif len(parts) == 5:
            if not body.get("version") or not body.get("projects"):
                self._reply(400, {"version": ["This field is required."]})
                return
            existed = body["version"] in self.releases
            self.releases[body["version"]] = {"version": body["version"], "projects": [
                {"slug": p} for p in body["projects"]]}
            self._reply(208 if existed else 201, self.releases[body["version"]])
        elif len(parts) == 7 and parts[6] == "deploys":
            from urllib.parse import unquote

            if unquote(parts[5]) not in self.releases:
                self._reply(404, {"detail": "Release not found"})
                return
            self._reply(201, {"id": "1", "environment": body["environment"],
                              "dateFinished": body.get("dateFinished"), "name": None})
        else:
            self._reply(404, {"detail": "Not found"})


@pytest.fixture
def sentry_api() -> Iterator[tuple[str, type[_SentryApi]]]:
    handler = type("Handler", (_SentryApi,), {"calls": [], "releases": {}})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", handler
    server.shutdown()
    server.server_close()


def _deploy(log: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    import os

    full = {k: v for k, v in os.environ.items() if not k.startswith("SENTRY_")}
    full.update(env)
    return subprocess.run(
        [sys.executable, "-m", "widgettrace", "deploy", *args, "--log", str(log)],
        capture_output=True, text=True, env=full, check=False,
    )


def test_deploy_marker_without_sentry_settings(tmp_path: Path) -> None:
    log = tmp_path / "sentry.log"
    result = _deploy(log, "app@2.0", "--environment", "staging")
    assert result.returncode == 0, result.stderr
    (line,) = log.read_text().splitlines()
    record = json.loads(line)
    assert record["type"] == "deploy" and record["release"] == "app@2.0"
    assert record["environment"] == "staging"
    with open_store(log) as store:
        (rel,) = releases.list_releases(store)
    assert (rel["release"], rel["source"]) == ("app@2.0", "deploy marker")


def test_deploy_creates_release_and_deploy_through_sentrys_api(
    tmp_path: Path, sentry_api: tuple[str, type[_SentryApi]]
) -> None:
    url, handler = sentry_api
    env = {"SENTRY_AUTH_TOKEN": TOKEN, "SENTRY_ORG": "acme", "SENTRY_PROJECT": "widgets",
           "SENTRY_URL": url}
    log = tmp_path / "sentry.log"
    result = _deploy(log, "app@2.0 beta", "-e", "prod", **env)
    assert result.returncode == 0, result.stderr
    assert "created in Sentry (acme/widgets)" in result.stdout
    (release_call, deploy_call) = handler.calls
    assert release_call == ("/api/0/organizations/acme/releases/",
                            {"version": "app@2.0 beta", "projects": ["widgets"]})
    assert deploy_call[0] == "/api/0/organizations/acme/releases/app%402.0%20beta/deploys/"
    assert deploy_call[1]["environment"] == "prod"
    assert deploy_call[1]["dateFinished"].endswith("Z")
    # A second deploy of the same release: Sentry answers 208 for the release, still fine.
    assert _deploy(log, "app@2.0 beta", "-e", "prod", **env).returncode == 0
    assert len(log.read_text().splitlines()) == 2


def test_a_rejected_token_is_one_clear_line(
    tmp_path: Path, sentry_api: tuple[str, type[_SentryApi]]
) -> None:
    url, _ = sentry_api
    result = _deploy(tmp_path / "sentry.log", "app@1", SENTRY_AUTH_TOKEN="wrong",
                     SENTRY_ORG="acme", SENTRY_PROJECT="widgets", SENTRY_URL=url)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and "HTTP 401" in result.stderr
