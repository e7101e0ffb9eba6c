"""The example platform's world: the model hub's catalogue, widget configs and Git repositories.

Everything is deterministic so two runs leave comparable telemetry. The deliberate faults live
here, named, so the rest of the code is ordinary platform code:

* :data:`SLOW_REPOSITORY` is a repository whose upstream lookup on the hub hangs (the hub
  answers after :data:`SLOW_UPSTREAM_SECONDS`, the scanner gives up first);
* :data:`WIDGET_CONFIGS` holds one config that is not valid JSON (a trailing comma) and one that
  re-publishes an existing name and version (the registry's UNIQUE constraint rejects it);
* the ``legacy-tokenizer`` model's config uses a field the linter widget has removed.

Usage::

    from demo_data import create_repositories
    paths = create_repositories(Path(tmp) / "repos")
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any, Final

__all__ = [
    "HUB_MODELS",
    "REPOSITORIES",
    "SLOW_REPOSITORY",
    "SLOW_UPSTREAM_SECONDS",
    "WIDGET_CONFIGS",
    "create_repositories",
]

#: The stand-in model hub's catalogue (what a search can return).
HUB_MODELS: Final[list[dict[str, Any]]] = [
    {
        "id": "acme/sentiment-widget",
        "pipeline": "text-classification",
        "downloads": 48_210,
        "config": {
            "name": "sentiment-widget",
            "version": "1.2.0",
            "type": "classifier",
            "inputs": ["text"],
            "labels": ["negative", "neutral", "positive"],
        },
    },
    {
        "id": "acme/summarizer-widget",
        "pipeline": "summarization",
        "downloads": 31_877,
        "config": {
            "name": "summarizer-widget",
            "version": "0.9.1",
            "type": "generator",
            "inputs": ["text"],
            "max_tokens": 256,
        },
    },
    {
        "id": "nordlab/lang-detect",
        "pipeline": "text-classification",
        "downloads": 12_044,
        "config": {
            "name": "lang-detect",
            "version": "2.0.0",
            "type": "classifier",
            "inputs": ["text"],
            "labels": ["de", "en", "fr", "sv"],
        },
    },
    {
        "id": "nordlab/legacy-tokenizer",
        "pipeline": "token-classification",
        "downloads": 903,
        "config": {
            "name": "legacy-tokenizer",
            "version": "0.3.0",
            "type": "tokenizer",
            "inputs": ["text"],
            "legacy_runtime": True,
        },
    },
    {
        "id": "vizco/chart-describer",
        "pipeline": "image-to-text",
        "downloads": 7_512,
        "config": {
            "name": "chart-describer",
            "version": "1.0.0",
            "type": "captioner",
            "inputs": ["image"],
        },
    },
]

#: Local Git repositories the discovery service scans: name -> widget.json content.
REPOSITORIES: Final[dict[str, dict[str, Any]]] = {
    "widget-weather": {
        "name": "weather-card",
        "version": "1.4.0",
        "type": "card",
        "inputs": ["location"],
    },
    "widget-stock-ticker": {
        "name": "stock-ticker",
        "version": "0.7.2",
        "type": "card",
        "inputs": ["symbol"],
    },
    "widget-translate": {
        "name": "translate",
        "version": "3.1.0",
        "type": "generator",
        "inputs": ["text", "target_language"],
    },
    "vendored-models": {
        "name": "vendored-models",
        "version": "2024.11.0",
        "type": "bundle",
        "inputs": [],
    },
}

#: The repository whose upstream lookup hangs (the scan times out on it).
SLOW_REPOSITORY: Final = "vendored-models"
#: How long the hub takes to answer for it (the scanner's timeout is well below).
SLOW_UPSTREAM_SECONDS: Final = 3.0

_valid = [model["config"] for model in HUB_MODELS[:3]]

#: Raw widget configs submitted for conversion, in order. Index 3 is not JSON (trailing comma),
#: index 4 re-publishes sentiment-widget 1.2.0 under a new id (UNIQUE(name, version) fails).
WIDGET_CONFIGS: Final[list[tuple[str, str]]] = [
    ("w-sentiment", json.dumps(_valid[0])),
    ("w-summarizer", json.dumps(_valid[1])),
    ("w-lang-detect", json.dumps(_valid[2])),
    (
        "w-chart-describer",
        '{"name": "chart-describer", "version": "1.0.0", "type": "captioner",'
        ' "inputs": ["image"],}',
    ),
    ("w-sentiment-fork", json.dumps({**_valid[0], "inputs": ["text", "locale"]})),
]

_GIT_ENV: Final = {
    "GIT_AUTHOR_NAME": "Widget Bot",
    "GIT_AUTHOR_EMAIL": "bot@widgets.invalid",
    "GIT_COMMITTER_NAME": "Widget Bot",
    "GIT_COMMITTER_EMAIL": "bot@widgets.invalid",
    "GIT_AUTHOR_DATE": "2026-11-01T12:00:00Z",
    "GIT_COMMITTER_DATE": "2026-11-01T12:00:00Z",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def _git(repo: Path, *args: str) -> None:
    env = {**os.environ, **_GIT_ENV, "HOME": str(repo.parent)}
    subprocess.run(
        ["git", "-C", str(repo), *args], check=True, env=env, capture_output=True, timeout=30
    )


def create_repositories(base: Path) -> list[Path]:
    """Create the demo repositories under ``base`` (``git init`` and two commits each)."""
    base.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for name, manifest in REPOSITORIES.items():
        repo = base / name
        repo.mkdir()
        _git(repo, "init", "-q", "-b", "main")
        (repo / "README.md").write_text(f"# {name}\n")
        _git(repo, "add", "README.md")
        _git(repo, "commit", "-q", "-m", "Initial commit")
        (repo / "widget.json").write_text(json.dumps(manifest, indent=2) + "\n")
        _git(repo, "add", "widget.json")
        _git(repo, "commit", "-q", "-m", f"Add widget manifest for {manifest['name']}")
        paths.append(repo)
    return paths
