"""Widget discovery: search the model hub over HTTP and scan local Git repositories.

Hub searches and repository scans run through widgettrace's ``discovery_span`` (hot path);
``read_manifest`` is traced by configuration only. Repository scans run in a thread pool, with
a copy of the request's context handed to each worker (``contextvars.copy_context().run``), so
every scan is a child of the request in the same trace.

A scan runs ``git log`` and ``git show HEAD:widget.json`` in a subprocess, then asks the hub for
the repository's upstream metadata with a short timeout. For ``demo_data.SLOW_REPOSITORY`` that
lookup hangs: ``requests.exceptions.ReadTimeout`` escapes the scan's span in its worker thread
(an error event, linked to that span), and the request goes on with the other repositories and
reports the failure in its response.

Usage::

    result = discover(hub_url, repos_dir, query="text")
"""

from __future__ import annotations

import contextvars
import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from widgettrace import add_breadcrumb, discovery_span

__all__ = ["DiscoveryResult", "discover", "read_manifest", "scan_repository", "search_hub"]

#: The hub is a remote service: the scanner does not wait long for upstream metadata.
UPSTREAM_TIMEOUT_S = 0.5
GIT_TIMEOUT_S = 5.0
_SCAN_WORKERS = 3


@dataclass
class DiscoveryResult:
    """What one discovery request found, and which sources failed."""

    widgets: list[dict[str, Any]] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The response body of POST /api/widgets/discover."""
        return {"found": len(self.widgets), "widgets": self.widgets, "failed": self.failed}


def search_hub(session: requests.Session, hub_url: str, query: str) -> list[dict[str, Any]]:
    """Search the model hub for widgets matching ``query``."""
    with discovery_span("hub", query=query) as current:
        response = session.get(f"{hub_url}/api/models", params={"search": query}, timeout=5)
        response.raise_for_status()
        hits: list[dict[str, Any]] = response.json()
        current.set_attribute("widget.discovery.widgets_found", len(hits))
        return [{"source": "hub", **hit} for hit in hits]


def read_manifest(text: str) -> dict[str, Any]:
    """Parse a repository's widget.json (traced by configuration only)."""
    manifest: dict[str, Any] = json.loads(text)
    if "name" not in manifest or "version" not in manifest:
        raise ValueError("widget.json needs a name and a version")
    return manifest


def _git(repo: Path, *args: str) -> str:
    completed = subprocess.run(
        ["git", "-C", str(repo), *args],
        capture_output=True,
        text=True,
        timeout=GIT_TIMEOUT_S,
        check=True,
    )
    return completed.stdout


def scan_repository(repo: Path, hub_url: str) -> dict[str, Any]:
    """Read one repository's widget manifest, history and upstream metadata."""
    with discovery_span(
        "git", query=repo.name, repositories_scanned=1, name=f"scan {repo.name}"
    ) as current:
        commits = _git(repo, "log", "--format=%H %s", "-n", "20").splitlines()
        manifest = read_manifest(_git(repo, "show", "HEAD:widget.json"))
        # requests.get (not a shared Session): Sessions are not thread-safe.
        upstream = requests.get(f"{hub_url}/api/repos/{repo.name}", timeout=UPSTREAM_TIMEOUT_S)
        upstream.raise_for_status()
        current.set_attribute("widget.discovery.widgets_found", 1)
        return {
            "source": "git",
            "id": f"local/{repo.name}",
            "name": manifest["name"],
            "version": manifest["version"],
            "commits": len(commits),
            "upstream": upstream.json()["upstream"],
        }


def discover(hub_url: str, repos_dir: Path, query: str) -> DiscoveryResult:
    """Search the hub, then scan every repository under ``repos_dir`` in a thread pool."""
    result = DiscoveryResult()
    with requests.Session() as session:
        result.widgets.extend(search_hub(session, hub_url, query))
    add_breadcrumb("hub searched", category="discovery", data={"hits": len(result.widgets)})
    repos = sorted(p for p in repos_dir.iterdir() if (p / ".git").is_dir())
    with ThreadPoolExecutor(max_workers=_SCAN_WORKERS, thread_name_prefix="repo-scan") as pool:
        futures = {
            repo.name: pool.submit(contextvars.copy_context().run, scan_repository, repo, hub_url)
            for repo in repos
        }
        for name, future in futures.items():
            try:
                result.widgets.append(future.result())
            except (requests.RequestException, subprocess.SubprocessError, ValueError) as exc:
                # Already reported: the exception left the scan's span in its worker thread.
                result.failed[name] = f"{type(exc).__name__}: {exc}"
    return result
