"""Run the example platform (examples/run.py) under ``opentelemetry-instrument`` for e2e tests.

``run_example(tmp, **env)`` starts ``opentelemetry-instrument python examples/run.py --workdir
<tmp>/world`` from the repository root with a clean environment (the developer's ``SENTRY_*``,
``OTEL_*`` and ``WIDGETTRACE_*`` removed) plus ``env``, and returns the finished process and the
records of its local log (when ``WIDGETTRACE_LOG_PATH`` points at one).

The example's designed failures (see examples/run.py and tests/test_example.py): ``ReadTimeout``
(discover), ``JSONDecodeError`` and ``IntegrityError`` (convert), and the linter widget's
``ValueError`` for ``legacy-tokenizer`` (iterations 2 and 3).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["DESIGNED_ERRORS", "ExampleRun", "clean_env", "run_example"]

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

#: Exception type -> how many error events one run produces.
DESIGNED_ERRORS = {"ReadTimeout": 1, "JSONDecodeError": 1, "IntegrityError": 1, "ValueError": 2}


@dataclass
class ExampleRun:
    result: subprocess.CompletedProcess[str]
    records: list[dict[str, Any]]
    workdir: Path

    def describe(self) -> str:
        logs = "".join(
            f"\n--- {p.name}:\n{p.read_text(errors='replace')[-2000:]}"
            for p in sorted(self.workdir.glob("*.log"))
        )
        return (
            f"exit {self.result.returncode}\nstdout:\n{self.result.stdout[-4000:]}\n"
            f"stderr:\n{self.result.stderr[-4000:]}{logs}"
        )

    @property
    def transactions(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("type") == "transaction"]

    @property
    def errors(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("type") != "transaction" and "exception" in r]


def clean_env(**env: str) -> dict[str, str]:
    """This environment without the developer's telemetry settings, the test venv first on
    ``PATH``, plus ``env``."""
    full_env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SENTRY_", "OTEL_", "WIDGETTRACE_")) and k != "PYTHONPATH"
    }
    full_env["PATH"] = f"{BIN}{os.pathsep}{full_env.get('PATH', '')}"
    full_env.update(env)
    return full_env


def run_example(tmp: Path, timeout: float = 240, **env: str) -> ExampleRun:
    """Run the example once; ``env`` adds settings (``SENTRY_DSN=...``, ``SENTRY_SPOTLIGHT=``)."""
    full_env = clean_env(**env)
    workdir = tmp / "world"
    result = subprocess.run(
        [
            str(BIN / "opentelemetry-instrument"),
            "python",
            "examples/run.py",
            "--workdir",
            str(workdir),
        ],
        cwd=REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    records: list[dict[str, Any]] = []
    log_path = env.get("WIDGETTRACE_LOG_PATH")
    if log_path and Path(log_path).exists():
        records = [json.loads(line) for line in Path(log_path).read_text().splitlines() if line]
    return ExampleRun(result, records, workdir)
