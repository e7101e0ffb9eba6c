"""The ranges in pyproject.toml are the ones CI runs: lower bounds = the lowest-versions job's pins.

scripts/test-lowest.sh installs scripts/lowest-constraints.txt and runs the suite there; the
main job runs at the newest versions. A lower bound raised or lowered in one place only fails here.
"""

from __future__ import annotations

from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def _pins() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for raw in (ROOT / "scripts" / "lowest-constraints.txt").read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.lower()] = Version(version)
    return pins


def _lower_bounds(extras: tuple[str, ...] = ("mcp", "otlp", "examples")) -> dict[str, set[Version]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in extras:
        requirements += [
            text
            for text in project["optional-dependencies"][extra]
            if not text.startswith("widgettrace")
        ]
    bounds: dict[str, set[Version]] = {}
    for text in requirements:
        req = Requirement(text)
        lows = {Version(spec.version) for spec in req.specifier if spec.operator == ">="}
        assert lows, f"{text}: no lower bound"
        bounds.setdefault(req.name.lower(), set()).update(lows)
    return bounds


def test_every_lower_bound_is_pinned_in_the_lowest_job() -> None:
    pins, bounds = _pins(), _lower_bounds()
    # Every runtime dependency is pinned at its lower bound ...
    assert set(bounds) <= set(pins), set(bounds) - set(pins)
    # ... and a test dependency pinned there (where the newest clashes with an old runtime
    # dependency) is pinned at its lower bound too.
    everything = _lower_bounds(("mcp", "otlp", "examples", "test"))
    for name, version in pins.items():
        assert name in everything, f"{name} is pinned but not a dependency"
        assert everything[name] == {version}, (name, everything[name], version)


def test_no_instruments_extra() -> None:
    # opentelemetry-instrument checks it per distribution: it would refuse every instrumentor
    # of ours when mcp is missing (the distro checks each instrumentor's own dependencies).
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "instruments" not in project["optional-dependencies"]
