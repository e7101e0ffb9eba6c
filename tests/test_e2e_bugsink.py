"""End to end against a real Bugsink: the example's errors become the expected issues and release.

The example platform runs under ``opentelemetry-instrument`` with ``SENTRY_DSN`` pointing at a
project of the session's Bugsink (127.0.0.1) and ``SENTRY_RELEASE`` set. Errors only: Bugsink does
not store transactions and answers them with a rate-limit header (``86400:transaction;span``), so
the run sets ``SENTRY_TRACES_SAMPLE_RATE=0`` -- which also checks that errors are reported when
their spans are not sampled. Bugsink then groups the designed failures into one issue per
exception type, each with the run's release, each event with its traceback and trace id.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from receivers.bugsink import BugsinkProject, BugsinkServer
from receivers.example import DESIGNED_ERRORS, ExampleRun, run_example

RELEASE = f"widget-platform@e2e-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def bugsink_run(
    bugsink: BugsinkServer, tmp_path_factory: pytest.TempPathFactory
) -> tuple[BugsinkProject, ExampleRun, list[dict[str, Any]]]:
    project = bugsink.create_project(f"widget-platform-{uuid.uuid4().hex[:6]}")
    run = run_example(
        tmp_path_factory.mktemp("e2e-bugsink"),
        SENTRY_DSN=project.dsn,
        SENTRY_RELEASE=RELEASE,
        SENTRY_ENVIRONMENT="e2e",
        SENTRY_TRACES_SAMPLE_RATE="0",
        WIDGETTRACE_LOG_PATH="off",
    )
    assert run.result.returncode == 0, run.describe()
    expected_events = sum(DESIGNED_ERRORS.values())
    try:
        issues = bugsink.wait_for_issues(
            project.id,
            lambda issues: sum(i["digested_event_count"] for i in issues) >= expected_events,
            timeout=30,
        )
    except TimeoutError as exc:
        pytest.fail(f"{exc}\n{run.describe()}\nBugsink log:\n{bugsink.log_tail()}")
    return project, run, issues


def test_errors_grouped_into_one_issue_per_designed_failure(
    bugsink_run: tuple[BugsinkProject, ExampleRun, list[dict[str, Any]]],
) -> None:
    _, _, issues = bugsink_run
    counts = {i["calculated_type"]: i["digested_event_count"] for i in issues}
    assert counts == DESIGNED_ERRORS


def test_issues_and_release_carry_the_runs_release(
    bugsink: BugsinkServer,
    bugsink_run: tuple[BugsinkProject, ExampleRun, list[dict[str, Any]]],
) -> None:
    project, _, issues = bugsink_run
    for issue in issues:
        assert issue["events_at"] == [RELEASE], issue
    assert [r["version"] for r in bugsink.releases(project.id)] == [RELEASE]


def test_each_event_has_traceback_trace_and_environment(
    bugsink: BugsinkServer,
    bugsink_run: tuple[BugsinkProject, ExampleRun, list[dict[str, Any]]],
) -> None:
    _, _, issues = bugsink_run
    raised_in = {
        "ReadTimeout": "discovery.py",
        "JSONDecodeError": "conversion.py",
        "IntegrityError": "registry.py",
        "ValueError": "widget_linter.py",
    }
    missing: list[str] = []
    for issue in issues:
        for listed in bugsink.events(issue["id"]):
            data = bugsink.event(listed["id"])["data"]
            assert data["release"] == RELEASE
            assert data["environment"] == "e2e"
            trace = data["contexts"]["trace"]
            assert len(trace["trace_id"]) == 32
            assert len(trace["span_id"]) == 16
            # The traceback reaches the example's own code, where the failure happened.
            frames = data["exception"]["values"][-1]["stacktrace"]["frames"]
            files = [str(f.get("abs_path") or f.get("filename")) for f in frames]
            wanted = raised_in[issue["calculated_type"]]
            in_app = any(f.get("in_app") for f in frames)
            if not in_app or not any(name.endswith(wanted) for name in files):
                missing.append(f"{issue['calculated_type']}: no in-app {wanted} frame in {files}")
    assert not missing, "\n".join(missing)
