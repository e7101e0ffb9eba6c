"""Build hook: ship ``widgettrace-startup.pth`` at the top of site-packages.

Everything else is in pyproject.toml. The ``.pth`` file runs
:mod:`widgettrace.instrumentation._startup` at interpreter start-up (only when
``OTEL_PROPAGATORS`` is set), before ``opentelemetry-instrument`` imports the OpenTelemetry API,
which raises on an unknown propagator name. Wheels and editable installs both get it.
"""

from __future__ import annotations

import os

from setuptools import setup
from setuptools.command.build_py import build_py

PTH = "widgettrace-startup.pth"


class BuildPyWithStartupHook(build_py):
    """``build_py`` that also places the ``.pth`` file beside the packages."""

    def run(self) -> None:
        super().run()
        target = self.build_lib
        if getattr(self, "editable_mode", False):
            # Editable wheels are built from the install directory, not from build_lib.
            target = self.get_finalized_command("install").install_lib
        self.copy_file(PTH, os.path.join(target, PTH))


setup(cmdclass={"build_py": BuildPyWithStartupHook})
