"""Findings importers, fed by the real tools run on small fixtures.

mypy (``--output json``) on a file with a type error, ruff (``--output-format sarif`` and
``json``) on a file with lint errors, picklescan on a pickle whose ``__reduce__`` runs
``os.system``. ``widgettrace findings`` runs as a real subprocess; every event it writes is
checked by sentry-relay, and one run goes to our Sentry-protocol receiver.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from receivers.relay import normalize
from receivers.sentry_receiver import SentryReceiver

from widgettrace.instrumentation.findings import parse

BIN = Path(sys.executable).parent


class _Evil:
    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, ("echo pwned",))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "typed.py").write_text("def name(n: int) -> str:\n    return n\n")
    (root / "lint.py").write_text("import os\nimport sys\n\nprint(sys.argv)\n")
    models = root / "models"
    models.mkdir()
    (models / "model.pkl").write_bytes(pickle.dumps({"weights": [0.5], "hook": _Evil()}))
    (models / "clean.pkl").write_bytes(pickle.dumps({"weights": [0.5]}))
    return root


def _tool(project: Path, *cmd: str) -> str:
    result = subprocess.run(
        [str(BIN / cmd[0]), *cmd[1:]],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr  # each fixture has a finding
    return result.stdout + result.stderr


def _reports(project: Path) -> dict[str, str]:
    return {
        "mypy": _tool(project, "mypy", "--output", "json", "--no-incremental", "typed.py"),
        "sarif": _tool(project, "ruff", "check", "--no-cache", "--output-format", "sarif", "."),
        "ruff": _tool(project, "ruff", "check", "--no-cache", "--output-format", "json", "."),
        "picklescan": _tool(project, "picklescan", "-p", "models"),
    }


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SENTRY_", "WIDGETTRACE_", "OTEL_", "GITHUB_", "GITLAB")) and k != "CI"
    }
    env["WIDGETTRACE_LOG_PATH"] = str(tmp_path / "sentry.log")
    env.update(extra)
    return env


def _import(project: Path, env: dict[str, str], fmt: str, report: str) -> str:
    result = subprocess.run(
        [str(BIN / "widgettrace"), "findings", "-", "--format", fmt],
        cwd=project,
        env=env,
        input=report,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _log(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "sentry.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_parsers_on_real_tool_output(project: Path) -> None:
    reports = _reports(project)
    mypy = parse(reports["mypy"], "mypy", project)
    assert [(f.rule, f.level, f.file, f.line) for f in mypy] == [
        ("return-value", "error", "typed.py", 2)
    ]
    assert 'got "int", expected "str"' in mypy[0].message
    for fmt in ("sarif", "ruff"):
        lint = parse(reports[fmt], fmt, project)
        assert ("F401", "lint.py", 1) in [(f.rule, f.file, f.line) for f in lint], fmt
        assert {f.tool for f in lint} == {"ruff"}
    pickles = parse(reports["picklescan"], "picklescan", project)
    assert [(f.rule, f.level, f.file) for f in pickles] == [
        ("dangerous-import", "error", "models/model.pkl")
    ]
    assert pickles[0].details["global"] in {"posix.system", "os.system", "nt.system"}


def test_sarif_rule_index_base_ids_and_levels(tmp_path: Path) -> None:
    doc = {
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "CodeQL",
                        "rules": [
                            {
                                "id": "py/sql-injection",
                                "defaultConfiguration": {"level": "error"},
                                "properties": {"security-severity": "8.8"},
                                "helpUri": "https://codeql.github.com/",
                            }
                        ],
                    }
                },
                "originalUriBaseIds": {"SRC": {"uri": "file:///repo/src/"}},
                "results": [
                    {
                        "ruleIndex": 0,
                        "message": {"text": "query built from user input"},
                        "locations": [
                            {
                                "physicalLocation": {
                                    "artifactLocation": {"uri": "db.py", "uriBaseId": "SRC"},
                                    "region": {"startLine": 7, "startColumn": 3},
                                }
                            }
                        ],
                    },
                    {"ruleId": "py/sql-injection", "kind": "pass", "message": {"text": "ok"}},
                    {"ruleId": "style", "level": "note", "message": {"text": "consider"}},
                ],
            }
        ],
    }
    found = parse(json.dumps(doc), "sarif", tmp_path)
    assert [(f.tool, f.rule, f.level, f.file, f.line) for f in found] == [
        ("codeql", "py/sql-injection", "error", "/repo/src/db.py", 7),
        ("codeql", "style", "info", "", None),
    ]
    assert found[0].details["security_severity"] == "8.8"


def test_import_to_local_log_is_idempotent(project: Path, tmp_path: Path) -> None:
    reports = _reports(project)
    env = _env(tmp_path)
    for fmt, report in reports.items():
        out = _import(project, env, fmt, report)
        assert "sent, 0 already imported" in out, out
    records = _log(tmp_path)
    for record in records:
        assert normalize(record)[1] == []
    by_tool: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_tool.setdefault(record["tags"]["tool"], []).append(record)
    assert set(by_tool) == {"mypy", "ruff", "picklescan"}
    (mypy_event,) = by_tool["mypy"]
    assert mypy_event["level"] == "error"
    assert mypy_event["fingerprint"] == ["finding", "mypy", "return-value", "typed.py", "2"]
    assert mypy_event["tags"]["rule"] == "return-value"
    assert mypy_event["tags"]["file"] == "typed.py"
    assert mypy_event["message"].startswith("mypy return-value: Incompatible return value type")
    assert mypy_event["message"].endswith("(typed.py:2)")
    (pickle_event,) = by_tool["picklescan"]
    assert pickle_event["level"] == "error"
    assert pickle_event["tags"]["file"] == "models/model.pkl"
    assert pickle_event["contexts"]["finding"]["global"].endswith(".system")
    # ruff twice (SARIF and JSON of the same check): same fingerprints, different runs.
    ruff_prints = sorted(tuple(r["fingerprint"]) for r in by_tool["ruff"])
    assert ruff_prints[0::2] == ruff_prints[1::2]
    assert len({r["event_id"] for r in records}) == len(records)

    # The same run again: nothing new in the log.
    for fmt, report in reports.items():
        out = _import(project, env, fmt, report)
        assert " 0 sent, " in out, out
    assert len(_log(tmp_path)) == len(records)


def test_import_to_sentry_has_stable_event_ids(
    project: Path, tmp_path: Path, sentry_receiver: SentryReceiver
) -> None:
    report = _reports(project)["picklescan"]
    env = _env(tmp_path, SENTRY_DSN=sentry_receiver.dsn, WIDGETTRACE_LOG_PATH="off")
    env["GITHUB_ACTIONS"] = "true"
    env["GITHUB_RUN_ID"] = "77"
    env["GITHUB_SHA"] = "feedface"
    _import(project, env, "picklescan", report)
    _import(project, env, "picklescan", report)
    sentry_receiver.wait_for(lambda r: len(r.events()) >= 2, timeout=10)
    first, second = sentry_receiver.events()
    assert first["event_id"] == second["event_id"]  # Sentry keeps one
    assert first["tags"]["vcs.ref.head.revision"] == "feedface"
    assert first["contexts"]["finding"]["run_id"] == "77"
    assert sentry_receiver.normalization_errors() == []
    # A later CI run of the same scan is a new event of the same issue.
    env["GITHUB_RUN_ID"] = "78"
    _import(project, env, "picklescan", report)
    sentry_receiver.wait_for(lambda r: len(r.events()) >= 3, timeout=10)
    third = sentry_receiver.events()[2]
    assert third["event_id"] != first["event_id"]
    assert third["fingerprint"] == first["fingerprint"]


def test_bad_report_is_one_clear_line(project: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [str(BIN / "widgettrace"), "findings", "-", "--format", "sarif"],
        cwd=project,
        env=_env(tmp_path),
        input="not json",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "cannot read - as sarif" in result.stdout
    assert not (tmp_path / "sentry.log").exists()
