"""Tell Sentry about a release and its deploy, through its REST API, as ``sentry-cli`` does.

``sentry-cli releases new VERSION`` then ``sentry-cli releases deploys VERSION new -e ENV`` make
two calls, which :func:`create_release_and_deploy` makes too:

* ``POST {url}/api/0/organizations/{org}/releases/`` with ``{"version", "projects": [project]}``
  (201 created, 208 already exists: both fine);
* ``POST {url}/api/0/organizations/{org}/releases/{version}/deploys/`` with
  ``{"environment", "dateStarted", "dateFinished"}``.

Configured by sentry-cli's own variables: ``SENTRY_AUTH_TOKEN``, ``SENTRY_ORG``,
``SENTRY_PROJECT``, and ``SENTRY_URL`` (default ``https://sentry.io/``). Standard library only.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

__all__ = ["SentryApiError", "api_settings", "create_release_and_deploy"]

_TIMEOUT_S = 15.0


class SentryApiError(Exception):
    """Sentry answered with an error (the message says which call and what it said)."""


def api_settings(env: Mapping[str, str] | None = None) -> dict[str, str] | None:
    """``{"token", "org", "project", "url"}`` when all of sentry-cli's variables are set."""
    env = os.environ if env is None else env
    token, org, project = (env.get(k, "").strip() for k in (
        "SENTRY_AUTH_TOKEN", "SENTRY_ORG", "SENTRY_PROJECT"))
    if not (token and org and project):
        return None
    url = (env.get("SENTRY_URL") or "https://sentry.io/").strip()
    return {"token": token, "org": org, "project": project, "url": url.rstrip("/")}


def _post(url: str, token: str, body: dict[str, Any]) -> tuple[int, Any]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "User-Agent": "widgettrace-deploy",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:300]
        raise SentryApiError(f"POST {url}: HTTP {exc.code}: {detail}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SentryApiError(f"POST {url}: {reason}") from exc


def create_release_and_deploy(
    release: str,
    environment: str,
    settings: Mapping[str, str],
    *,
    timestamp: float,
) -> dict[str, Any]:
    """Create ``release`` (if new) and a deploy of it to ``environment``; returns both replies."""
    org = urllib.parse.quote(settings["org"], safe="")
    base = f"{settings['url']}/api/0/organizations/{org}/releases/"
    _, created = _post(
        base, settings["token"], {"version": release, "projects": [settings["project"]]}
    )
    when = datetime.fromtimestamp(timestamp, timezone.utc).isoformat().replace("+00:00", "Z")
    _, deploy = _post(
        f"{base}{urllib.parse.quote(release, safe='')}/deploys/",
        settings["token"],
        {"environment": environment, "dateStarted": when, "dateFinished": when},
    )
    return {"release": created, "deploy": deploy}
