"""Local issues equal Bugsink's: same groups, same counts, same events, for the example's run.

The example platform runs once under ``opentelemetry-instrument`` with ``SENTRY_DSN`` pointing at
a project of a real Bugsink (127.0.0.1) AND the local log on: the transport is a tee, so both
sides receive the same error events. Bugsink groups them its way (server side); the reading side
groups the local log's copy. Errors only, as in test_e2e_bugsink (Bugsink refuses transactions).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from receivers.bugsink import BugsinkServer
from receivers.example import DESIGNED_ERRORS, run_example

from widgettrace.insights import issues, open_store, releases


def test_local_issues_are_bugsinks_issues(
    bugsink: BugsinkServer, tmp_path: Path
) -> None:
    project = bugsink.create_project(f"insights-{uuid.uuid4().hex[:6]}")
    release = f"widget-platform@insights-{uuid.uuid4().hex[:6]}"
    log = tmp_path / "sentry.log"
    run = run_example(
        tmp_path,
        SENTRY_DSN=project.dsn,
        SENTRY_RELEASE=release,
        SENTRY_ENVIRONMENT="e2e",
        SENTRY_TRACES_SAMPLE_RATE="0",
        WIDGETTRACE_LOG_PATH=str(log),
    )
    assert run.result.returncode == 0, run.describe()
    expected = sum(DESIGNED_ERRORS.values())
    try:
        theirs = bugsink.wait_for_issues(
            project.id,
            lambda found: sum(i["digested_event_count"] for i in found) >= expected,
            timeout=30,
        )
    except TimeoutError as exc:
        pytest.fail(f"{exc}\n{run.describe()}\nBugsink log:\n{bugsink.log_tail()}")
    bugsink_groups = {
        frozenset(bugsink.event(e["id"])["data"]["event_id"] for e in bugsink.events(i["id"]))
        for i in theirs
    }
    with open_store(log) as store:
        ours = issues.list_issues(store)
        local_groups = {
            frozenset(
                r["event_id"].replace("-", "")
                for r in store.rows("SELECT event_id FROM errors WHERE group_key = ?",
                                    [i["group_key"]])
            )
            for i in ours
        }
        (rel,) = releases.list_releases(store)
    assert local_groups == {frozenset(g.replace("-", "") for g in s) for s in bugsink_groups}
    assert sorted((i["type"], i["count"]) for i in ours) == sorted(
        (i["calculated_type"], i["digested_event_count"]) for i in theirs
    )
    assert {i["type"]: i["count"] for i in ours} == DESIGNED_ERRORS
    assert all(i["status"] == "new" and i["releases"] == [release] for i in ours)
    assert rel["release"] == release and len(rel["new_issues"]) == len(DESIGNED_ERRORS)
