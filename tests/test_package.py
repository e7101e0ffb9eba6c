"""Packaging: one import package, `widgettrace`, and a small public API."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import widgettrace

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_holds_one_import_package(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(ROOT)],
        check=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("widgettrace-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    # Never top-level `instrumentation` or `exporters`: an unrelated `exporters` is on PyPI.
    # The one other file: the start-up hook that checks OTEL_PROPAGATORS (no package).
    assert top_level == {"widgettrace", "widgettrace-startup.pth"}
    for expected in (
        "widgettrace/__init__.py",
        "widgettrace/py.typed",
        "widgettrace/instrumentation/configurator.py",
        "widgettrace/instrumentation/distro.py",
        "widgettrace/instrumentation/_config.py",
        "widgettrace/exporters/__init__.py",
    ):
        assert expected in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    for group in (
        "[opentelemetry_distro]",
        "[opentelemetry_configurator]",
        "[opentelemetry_environment_variables]",
        "[opentelemetry_instrumentor]",
        "[opentelemetry_post_instrument]",
        "[opentelemetry_propagator]",
        "[console_scripts]",
    ):
        assert group in text


def test_public_api_is_exactly_the_intended_names() -> None:
    assert sorted(widgettrace.__all__) == widgettrace.__all__
    for name in widgettrace.__all__:
        assert hasattr(widgettrace, name), name
    public = {n for n in dir(widgettrace) if not n.startswith("_")}
    # Submodules are reachable as attributes once imported; they are not API names.
    public -= {"instrumentation", "exporters", "cli"}
    assert public == set(widgettrace.__all__)


def test_every_exported_name_resolves_lazily() -> None:
    import importlib

    fresh = importlib.reload(widgettrace)
    for name in fresh.__all__:
        assert callable(getattr(fresh, name)), name
