"""The pytest plugin, on a real pytest run of a small project (subprocess, real plugins).

The project has a passing, a failing, an erroring (fixture), a flaky (fails once, passes on the
pytest-rerunfailures rerun) and a parametrised test. Each run writes the local log; one run also
sends to our Sentry-protocol receiver, and every event and transaction is checked by
sentry-relay. pytest-xdist runs show the workers joined to the controller's trace.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from receivers.relay import normalize
from receivers.sentry_receiver import SentryReceiver

PROJECT = {
    "test_app.py": """
        import os
        from pathlib import Path

        import pytest


        def add(a, b):
            return a + b


        @pytest.fixture
        def broken():
            raise RuntimeError("fixture broke")


        def test_passes():
            assert add(1, 2) == 3


        def test_fails():
            assert add(1, 2) == 4


        def test_errors(broken):
            pass


        def test_flaky():
            marker = Path(os.environ["FLAKY_MARKER"])
            if not marker.exists():
                marker.write_text("failed once")
                raise ConnectionError("first attempt fails")


        @pytest.mark.parametrize("n", [1, 2], ids=["one", "two"])
        def test_param(n):
            assert n > 0
        """,
}

SHA = "0123456789abcdef0123456789abcdef01234567"

CI_ENV = {
    "GITHUB_ACTIONS": "true",
    "GITHUB_SHA": SHA,
    "GITHUB_REF_NAME": "main",
    "GITHUB_REPOSITORY": "acme/widgets",
    "GITHUB_RUN_ID": "42",
    "GITHUB_WORKFLOW": "tests",
    "GITHUB_SERVER_URL": "https://github.com",
}


def _project(root: Path, ini: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, text in PROJECT.items():
        (root / name).write_text(textwrap.dedent(text))
    (root / "pytest.ini").write_text("[pytest]\naddopts = -p no:cacheprovider\n" + ini)
    return root


def _clean_env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SENTRY_", "WIDGETTRACE_", "OTEL_", "PYTEST_", "GITHUB_", "GITLAB"))
        and key not in {"CI", "PYTHONPATH"}
    }
    env["WIDGETTRACE_LOG_PATH"] = str(tmp / "sentry.log")
    env["FLAKY_MARKER"] = str(tmp / "flaky.marker")
    env.update(extra)
    return env


def _run(project: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _log(tmp: Path) -> list[dict[str, Any]]:
    path = tmp / "sentry.log"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _split(records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    transactions = [r for r in records if r.get("type") == "transaction"]
    events = [r for r in records if r.get("type") != "transaction"]
    return transactions, events


def _by_test(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["tags"]["test.nodeid"]: e for e in events}


def _check_run(records: list[dict[str, Any]]) -> None:
    """What one non-xdist run with --reruns 1 must produce."""
    for record in records:
        _, errors = normalize(record)
        assert errors == [], (record.get("type"), errors)
    transactions, events = _split(records)
    assert [t["transaction"] for t in transactions] == ["pytest session"]
    session = transactions[0]
    trace_id = session["contexts"]["trace"]["trace_id"]
    assert session["contexts"]["trace"]["op"] == "test.session"
    assert session["contexts"]["trace"]["status"] != "ok"  # the run failed
    spans = {s["description"]: s for s in session["spans"]}
    assert set(spans) == {
        "test_app.py::test_passes",
        "test_app.py::test_fails",
        "test_app.py::test_errors",
        "test_app.py::test_flaky",
        "test_app.py::test_param[one]",
        "test_app.py::test_param[two]",
    }
    assert {s["op"] for s in spans.values()} == {"test"}
    outcome = {name: s["data"]["widget.test.outcome"] for name, s in spans.items()}
    assert outcome == {
        "test_app.py::test_passes": "passed",
        "test_app.py::test_fails": "failed",
        "test_app.py::test_errors": "error",
        "test_app.py::test_flaky": "passed",
        "test_app.py::test_param[one]": "passed",
        "test_app.py::test_param[two]": "passed",
    }
    assert spans["test_app.py::test_flaky"]["data"]["widget.test.flaky"] is True
    assert spans["test_app.py::test_flaky"]["data"]["widget.test.reruns"] == 1
    assert spans["test_app.py::test_passes"]["data"]["widget.test.flaky"] is False
    assert spans["test_app.py::test_param[two]"]["data"]["widget.test.parameters"] == "two"
    assert spans["test_app.py::test_param[two]"]["data"]["widget.test.param.n"] == "2"
    assert spans["test_app.py::test_fails"]["status"] != "ok"
    assert spans["test_app.py::test_passes"]["status"] == "ok"
    for span in spans.values():
        assert span["timestamp"] > span["start_timestamp"]  # a duration

    by_test = _by_test(events)
    assert set(by_test) == {
        "test_app.py::test_fails",
        "test_app.py::test_errors",
        "test_app.py::test_flaky",
    }
    fails = by_test["test_app.py::test_fails"]
    assert fails["level"] == "error"
    assert fails["fingerprint"] == [
        "test_app.py::test_fails",
        "AssertionError",
        "test_app.py:test_fails",
    ]
    assert "assert 3 == 4" in fails["message"]
    assert "where 3 = add(1, 2)" in fails["message"]  # pytest's explanation, not only the text
    assert fails["exception"]["values"][-1]["type"] == "AssertionError"
    assert fails["tags"]["test.outcome"] == "failed"
    assert fails["tags"]["test.phase"] == "call"
    assert fails["tags"]["test.reruns"] == "1"
    errors = by_test["test_app.py::test_errors"]
    assert errors["fingerprint"] == [
        "test_app.py::test_errors",
        "RuntimeError",
        "test_app.py:broken",
    ]
    assert errors["tags"]["test.outcome"] == "error"
    assert errors["tags"]["test.phase"] == "setup"
    flaky = by_test["test_app.py::test_flaky"]
    assert flaky["level"] == "warning"
    assert flaky["tags"]["test.flaky"] == "true"
    assert flaky["message"].startswith("flaky: ")
    assert flaky["fingerprint"][1] == "ConnectionError"
    for event in events:
        assert event["contexts"]["trace"]["trace_id"] == trace_id
        assert (
            event["contexts"]["trace"]["span_id"] == spans[event["tags"]["test.nodeid"]]["span_id"]
        )
        assert event["release"] == SHA
        assert event["tags"]["widget.ci.provider"] == "github"
        assert event["tags"]["vcs.ref.head.revision"] == SHA
        assert event["tags"]["cicd.pipeline.run.url.full"] == (
            "https://github.com/acme/widgets/actions/runs/42"
        )


def test_run_to_local_log_without_dsn(tmp_path: Path) -> None:
    project = _project(tmp_path / "proj")
    result = _run(project, _clean_env(tmp_path, **CI_ENV), "-p", "widgettrace", "--reruns", "1")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 failed, 4 passed" in result.stdout and "1 error" in result.stdout
    _check_run(_log(tmp_path))


def test_run_to_sentry_receiver(tmp_path: Path, sentry_receiver: SentryReceiver) -> None:
    project = _project(tmp_path / "proj")
    env = _clean_env(tmp_path, SENTRY_DSN=sentry_receiver.dsn, **CI_ENV)
    result = _run(project, env, "-p", "widgettrace", "--reruns", "1")
    assert result.returncode == 1, result.stdout + result.stderr
    sentry_receiver.wait_for(lambda r: len(r.events()) >= 3 and r.transactions(), timeout=10)
    _check_run(sentry_receiver.events() + sentry_receiver.transactions())
    assert sentry_receiver.normalization_errors() == []
    # The local log holds the same records (a tee).
    local = {r["event_id"] for r in _log(tmp_path)}
    received = {r["event_id"] for r in sentry_receiver.events() + sentry_receiver.transactions()}
    assert local == received


@pytest.mark.parametrize(
    ("how", "ini", "args", "extra"),
    [
        ("env", "", (), {"WIDGETTRACE_PYTEST": "1"}),
        ("ini", "widgettrace = true\n", (), {}),
        ("addopts", "", (), {"PYTEST_ADDOPTS": "-p widgettrace"}),
    ],
)
def test_enabled_by_env_ini_or_addopts(
    tmp_path: Path, how: str, ini: str, args: tuple[str, ...], extra: dict[str, str]
) -> None:
    project = _project(tmp_path / "proj", ini)
    result = _run(project, _clean_env(tmp_path, **extra), "-k", "passes or fails", *args)
    assert result.returncode == 1, result.stdout + result.stderr
    transactions, events = _split(_log(tmp_path))
    assert len(transactions) == 1, how
    assert [e["tags"]["test.nodeid"] for e in events] == ["test_app.py::test_fails"]
    assert "widget.ci.provider" not in events[0]["tags"]  # not on CI here


def test_off_unless_asked(tmp_path: Path) -> None:
    project = _project(tmp_path / "proj")
    result = _run(project, _clean_env(tmp_path), "--reruns", "1")
    assert result.returncode == 1, result.stdout + result.stderr
    assert not (tmp_path / "sentry.log").exists()
    # Explicitly off wins over the environment variable too.
    result = _run(project, _clean_env(tmp_path, WIDGETTRACE_PYTEST="1"), "-p", "no:widgettrace")
    assert result.returncode == 1
    assert not (tmp_path / "sentry.log").exists()
    # Telemetry switched off as a whole: the plugin stays out of the way.
    env = _clean_env(tmp_path, OTEL_SDK_DISABLED="true")
    result = _run(project, env, "-p", "widgettrace", "--reruns", "1")
    assert result.returncode == 1
    assert "1 failed, 4 passed" in result.stdout
    assert not (tmp_path / "sentry.log").exists()


def test_inactive_in_our_own_suite(pytestconfig: pytest.Config) -> None:
    # The entry point is loaded (installing widgettrace registers it) but nothing records.
    assert pytestconfig.pluginmanager.get_plugin("widgettrace") is not None
    assert pytestconfig.pluginmanager.get_plugin("widgettrace-recorder") is None


def test_xdist_workers_join_one_trace(tmp_path: Path) -> None:
    project = _project(tmp_path / "proj")
    result = _run(project, _clean_env(tmp_path), "-p", "widgettrace", "-n", "2", "-k", "not flaky")
    assert result.returncode == 1, result.stdout + result.stderr
    transactions, events = _split(_log(tmp_path))
    names = sorted(t["transaction"] for t in transactions)
    assert names == ["pytest gw0", "pytest gw1", "pytest session"]
    traces = {t["contexts"]["trace"]["trace_id"] for t in transactions}
    assert len(traces) == 1
    controller = next(t for t in transactions if t["transaction"] == "pytest session")
    root_span = controller["contexts"]["trace"]["span_id"]
    workers = [t for t in transactions if t["transaction"] != "pytest session"]
    assert {w["contexts"]["trace"]["parent_span_id"] for w in workers} == {root_span}
    tests = [s["description"] for w in workers for s in w["spans"]]
    assert sorted(tests) == sorted(
        [
            "test_app.py::test_passes",
            "test_app.py::test_fails",
            "test_app.py::test_errors",
            "test_app.py::test_param[one]",
            "test_app.py::test_param[two]",
        ]
    )
    assert sorted(e["tags"]["test.nodeid"] for e in events) == [
        "test_app.py::test_errors",
        "test_app.py::test_fails",
    ]
    assert {e["contexts"]["trace"]["trace_id"] for e in events} == traces
    assert all(e["tags"]["test.worker"] in {"gw0", "gw1"} for e in events)


def test_ci_attributes_from_gitlab_and_generic_ci() -> None:
    from widgettrace.instrumentation._ci import ci_attributes

    gitlab = ci_attributes(
        {
            "GITLAB_CI": "true",
            "CI": "true",
            "CI_COMMIT_SHA": SHA,
            "CI_COMMIT_REF_NAME": "feature/x",
            "CI_PIPELINE_ID": "991",
            "CI_PIPELINE_URL": "https://gitlab.example/acme/widgets/-/pipelines/991",
            "CI_PROJECT_URL": "https://gitlab.example/acme/widgets",
            "CI_JOB_NAME": "pytest",
        }
    )
    assert gitlab == {
        "widget.ci.provider": "gitlab",
        "cicd.pipeline.name": "pytest",
        "cicd.pipeline.run.id": "991",
        "cicd.pipeline.run.url.full": "https://gitlab.example/acme/widgets/-/pipelines/991",
        "vcs.ref.head.name": "feature/x",
        "vcs.ref.head.revision": SHA,
        "vcs.repository.url.full": "https://gitlab.example/acme/widgets",
    }
    generic = ci_attributes({"CI": "1", "GIT_COMMIT": "abc123", "BUILD_NUMBER": "7"})
    assert generic == {
        "widget.ci.provider": "generic",
        "cicd.pipeline.run.id": "7",
        "vcs.ref.head.revision": "abc123",
    }
    assert ci_attributes({"GIT_COMMIT": "abc123"}) == {}  # not on CI: nothing claimed
