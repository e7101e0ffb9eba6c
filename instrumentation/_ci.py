"""Which CI run this process belongs to, from the CI system's own environment variables.

GitHub Actions (``GITHUB_ACTIONS=true``), GitLab CI (``GITLAB_CI=true``) and any other CI that
sets ``CI=true`` (then the commit is read from ``CI_COMMIT_SHA``/``GIT_COMMIT``/``COMMIT_SHA``).
The result uses the OpenTelemetry ``cicd.*`` and ``vcs.*`` attribute names; the pytest plugin
puts them on the session span and as tags on every failure event, and the findings importers
tag their events with them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from widgettrace.instrumentation import semconv as sc

__all__ = ["ci_attributes", "commit"]


def _first(env: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        value = env.get(name, "").strip()
        if value:
            return value
    return None


def _true(env: Mapping[str, str], name: str) -> bool:
    return env.get(name, "").strip().lower() in {"1", "true", "yes"}


def ci_attributes(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The CI run's provider, pipeline, run id/url, branch, commit and repository (may be {})."""
    env = os.environ if environ is None else environ
    found: dict[str, str | None]
    if _true(env, "GITHUB_ACTIONS"):
        server = env.get("GITHUB_SERVER_URL", "https://github.com").rstrip("/")
        repo = env.get("GITHUB_REPOSITORY")
        run_id = env.get("GITHUB_RUN_ID")
        found = {
            sc.WIDGET_CI_PROVIDER: "github",
            sc.CICD_PIPELINE_NAME: env.get("GITHUB_WORKFLOW"),
            sc.CICD_PIPELINE_RUN_ID: run_id,
            sc.CICD_PIPELINE_RUN_URL_FULL: (
                f"{server}/{repo}/actions/runs/{run_id}" if repo and run_id else None
            ),
            sc.VCS_REF_HEAD_NAME: _first(env, "GITHUB_HEAD_REF", "GITHUB_REF_NAME"),
            sc.VCS_REF_HEAD_REVISION: env.get("GITHUB_SHA"),
            sc.VCS_REPOSITORY_URL_FULL: f"{server}/{repo}" if repo else None,
        }
    elif _true(env, "GITLAB_CI"):
        found = {
            sc.WIDGET_CI_PROVIDER: "gitlab",
            sc.CICD_PIPELINE_NAME: _first(env, "CI_PIPELINE_NAME", "CI_JOB_NAME"),
            sc.CICD_PIPELINE_RUN_ID: env.get("CI_PIPELINE_ID"),
            sc.CICD_PIPELINE_RUN_URL_FULL: env.get("CI_PIPELINE_URL"),
            sc.VCS_REF_HEAD_NAME: env.get("CI_COMMIT_REF_NAME"),
            sc.VCS_REF_HEAD_REVISION: env.get("CI_COMMIT_SHA"),
            sc.VCS_REPOSITORY_URL_FULL: env.get("CI_PROJECT_URL"),
        }
    elif _true(env, "CI"):
        found = {
            sc.WIDGET_CI_PROVIDER: "generic",
            sc.CICD_PIPELINE_RUN_ID: _first(env, "CI_PIPELINE_ID", "BUILD_ID", "BUILD_NUMBER"),
            sc.VCS_REF_HEAD_NAME: _first(env, "CI_COMMIT_REF_NAME", "GIT_BRANCH", "BRANCH_NAME"),
            sc.VCS_REF_HEAD_REVISION: _first(env, "CI_COMMIT_SHA", "GIT_COMMIT", "COMMIT_SHA"),
        }
    else:
        found = {}
    return {key: value for key, value in found.items() if value}


def commit(environ: Mapping[str, str] | None = None) -> str | None:
    """The commit under test, when the CI system says which."""
    return ci_attributes(environ).get(sc.VCS_REF_HEAD_REVISION)
