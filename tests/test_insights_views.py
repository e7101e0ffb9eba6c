"""Issues (grouping, status), releases, performance, journeys, standup and the CLI on small logs."""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from gen_log import error_event, span, transaction, write_lines

from widgettrace.insights import issues as issues_view
from widgettrace.insights import (
    journeys,
    open_store,
    performance,
    releases,
    standup,
)
from widgettrace.insights._grouping import normalise_message
from widgettrace.insights._query import Window
from widgettrace.insights.render import render

T0 = 1_796_000_000.0
CLI = [sys.executable, "-m", "widgettrace"]


def _issues(tmp_path: Path, records: list[dict[str, Any]], **kw: Any) -> list[dict[str, Any]]:
    log = tmp_path / "sentry.log"
    write_lines(log, records)
    with open_store(log) as store:
        return issues_view.list_issues(store, now=T0 + 10**6, **kw)


def test_grouping_ignores_line_numbers_values_and_ids(tmp_path: Path) -> None:
    found = _issues(tmp_path, [
        error_event(T0, "ReadTimeout", "discovery", "scan", lineno=10, value="id 1 timed out"),
        error_event(T0 + 1, "ReadTimeout", "discovery", "scan", lineno=99, value="id 2 other"),
        error_event(T0 + 2, "ReadTimeout", "discovery", "fetch", lineno=10),
        error_event(T0 + 3, "KeyError", "discovery", "scan"),
        # Library frames do not split an issue when in-app frames exist.
        error_event(T0 + 4, "ReadTimeout", "discovery", "scan",
                    extra_frames=[("urllib3.connection", "getresponse", False)]),
    ])
    counts = sorted((i["title"], i["count"]) for i in found)
    assert counts == [
        ("KeyError in scan (discovery)", 1),
        ("ReadTimeout in fetch (discovery)", 1),
        ("ReadTimeout in scan (discovery)", 3),
    ]


def test_messages_are_grouped_with_numbers_uuids_hex_and_paths_normalised(
    tmp_path: Path,
) -> None:
    assert normalise_message(
        "user 42 failed on /srv/app/data.json id 3f2a9c1e7b6d4a55 "
        "req 123e4567-e89b-12d3-a456-426614174000 ptr 0xdeadbeef"
    ) == "user <int> failed on <path> id <hex> req <uuid> ptr <hex>"
    found = _issues(tmp_path, [
        error_event(T0, "", "", "", message="user 42 failed on /srv/a/b.json"),
        error_event(T0 + 1, "", "", "", message="user 43 failed on /srv/c/d.json"),
        error_event(T0 + 2, "", "", "", message="cache warm"),
    ])
    assert sorted(i["count"] for i in found) == [1, 2]


def test_custom_fingerprints_are_honoured(tmp_path: Path) -> None:
    found = _issues(tmp_path, [
        # Different code, one fingerprint: one issue.
        error_event(T0, "ReadTimeout", "discovery", "scan", fingerprint=["hub-down"]),
        error_event(T0 + 1, "KeyError", "registry", "insert", fingerprint=["hub-down"]),
        # Same code split by a fingerprint that extends the default.
        error_event(T0 + 2, "ValueError", "m", "f", fingerprint=["{{ default }}", "tenant-a"]),
        error_event(T0 + 3, "ValueError", "m", "f", fingerprint=["{{ default }}", "tenant-b"]),
        error_event(T0 + 4, "ValueError", "m", "f", fingerprint=["{{ default }}", "tenant-b"]),
    ])
    assert sorted(i["count"] for i in found) == [1, 2, 2]


def test_issue_status_across_releases(tmp_path: Path) -> None:
    def txn(ts: float, rel: str) -> dict[str, Any]:
        return transaction(ts, "GET /", 5.0, release=rel)

    records = [
        txn(T0, "r1"), txn(T0 + 100, "r2"), txn(T0 + 200, "r3"),
        error_event(T0 + 1, "Gone", "m", "gone", release="r1"),
        error_event(T0 + 2, "Again", "m", "again", release="r1"),
        error_event(T0 + 201, "Again", "m", "again", release="r3"),
        error_event(T0 + 101, "Steady", "m", "steady", release="r2"),
        error_event(T0 + 202, "Steady", "m", "steady", release="r3"),
        error_event(T0 + 203, "Fresh", "m", "fresh", release="r3"),
    ]
    status = {i["type"]: i["status"] for i in _issues(tmp_path, records)}
    assert status == {
        "Gone": "resolved", "Again": "regressed", "Steady": "ongoing", "Fresh": "new",
    }


def test_issue_fields(tmp_path: Path) -> None:
    records = [
        error_event(T0, "KeyError", "m", "f", user="a", release="r1", level="warning"),
        error_event(T0 + 5, "KeyError", "m", "f", user="b", release="r2", level="fatal"),
        error_event(T0 + 9, "KeyError", "m", "f", user="a", release="r2"),
    ]
    (issue,) = _issues(tmp_path, records)
    assert issue["count"] == 3 and issue["users"] == 2 and issue["sessions"] == 2
    assert (issue["first_seen"], issue["last_seen"]) == (T0, T0 + 9)
    assert (issue["first_release"], issue["last_release"]) == ("r1", "r2")
    assert issue["level"] == "fatal"


def _release_log(tmp_path: Path) -> Path:
    log = tmp_path / "sentry.log"
    records: list[dict[str, Any]] = []
    for i in range(10):
        records.append(transaction(T0 + i, "GET /", 5.0, release="app@1"))
        records.append(transaction(T0 + 1000 + i, "GET /", 5.0, release="app@2"))
    records += [
        error_event(T0 + 1, "Old", "m", "old", release="app@1"),
        error_event(T0 + 2, "Old", "m", "old", release="app@1"),
        error_event(T0 + 3, "Kept", "m", "kept", release="app@1"),
        error_event(T0 + 1001, "Kept", "m", "kept", release="app@2"),
    ]
    records.sort(key=lambda r: r.get("start_timestamp", r["timestamp"]))
    write_lines(log, records)
    releases.record_deploy(log, "app@2", "staging", timestamp=T0 + 999)
    return log


def test_releases_new_fixed_and_health(tmp_path: Path) -> None:
    log = _release_log(tmp_path)
    with open_store(log) as store:
        rels = releases.list_releases(store)
    assert [r["release"] for r in rels] == ["app@1", "app@2"]
    first, second = rels
    assert first["source"] == "first event" and first["deployed_at"] == T0
    assert second["source"] == "deploy marker" and second["deployed_at"] == T0 + 999
    assert second["environment"] == "staging"
    assert [i["title"] for i in second["fixed_issues"]] == ["Old in old (m)"]
    assert second["new_issues"] == [] and len(first["new_issues"]) == 2
    assert first["error_rate"] == pytest.approx(0.3) and second["error_rate"] == pytest.approx(0.1)
    assert second["health"] == "improving"
    assert second["change_pct"] == pytest.approx(-66.67, abs=0.01)
    block = releases.release_block(second)
    assert block.startswith("app@2 deployed at ")
    assert "0 new errors introduced, 1 fixed (was appearing in app@1)" in block
    assert "overall health improving, 67% fewer errors" in block


def test_performance_percentiles_and_self_time_breakdown(tmp_path: Path) -> None:
    log = tmp_path / "sentry.log"
    durations = [10.0 * (i + 1) for i in range(20)]
    records = []
    for i, d in enumerate(durations):
        children = [
            # infer 50% of the time, inside it a db call of 20%: self time infer = 30%.
            span("widget.conversion", "infer", T0 + i, d * 0.5, span_id=f"a{i}", parent=f"r{i}"),
            span("db", "INSERT", T0 + i, d * 0.2, span_id=f"b{i}", parent=f"a{i}"),
        ]
        records.append(transaction(T0 + i, "POST /convert", d, spans=children, span_id=f"r{i}",
                                   status="ok" if i % 4 else "internal_error"))
    write_lines(log, records)
    with open_store(log) as store:
        (row,) = performance.endpoints(store)
        (entry,) = performance.breakdown(store)
    assert row["count"] == 20
    assert row["avg_ms"] == pytest.approx(statistics.mean(durations))
    assert row["p50_ms"] == pytest.approx(statistics.median(durations))
    assert row["p95_ms"] == pytest.approx(statistics.quantiles(durations, n=20,
                                                                method="inclusive")[-1])
    assert row["error_rate"] == pytest.approx(0.25)
    shares = {p["op"]: round(p["share"], 2) for p in entry["parts"]}
    assert shares == {"http.server": 0.5, "widget.conversion": 0.3, "db": 0.2}
    assert performance.breakdown_line(entry) == (
        "POST /convert: 50% http.server POST /convert, 30% widget.conversion infer, 20% db INSERT"
    )


def test_breakdown_of_a_window_counts_the_spans_ending_in_the_minutes_it_touches(
    tmp_path: Path,
) -> None:
    # The breakdown reads the per-minute roll-up: its sums must be the spans' own over every
    # minute the window touches (first and last whole), whatever the window's edges.
    log = tmp_path / "sentry.log"
    records = []
    for i in range(300):  # one transaction every 7 s over 35 minutes, flat and nested
        start = T0 + 7 * i
        children = [span("db", "SELECT", start, 10.0 + i % 5, span_id=f"c{i}", parent=f"r{i}")]
        if i % 3 == 0:
            children.append(span("http.client", "GET 127.0.0.1:8080/x", start, 2.0,
                                 span_id=f"d{i}", parent=f"c{i}"))
        records.append(transaction(start, "GET /w", 40.0, spans=children, span_id=f"r{i}"))
    write_lines(log, records)
    with open_store(log) as store:
        rows = store.rows("SELECT op, ts, self_ms FROM spans")
        for since, until in [(None, None), (T0 + 61.5, T0 + 1500.25), (T0 + 3.2, T0 + 50.0),
                             (T0 + 125.0, None), (None, T0 + 999.9), (T0 + 120.0, T0 + 600.0)]:
            (entry,) = performance.breakdown(store, Window(since=since, until=until),
                                             names=["GET /w"])
            got = {p["op"]: p["self_ms"] for p in entry["parts"]}
            want: dict[str, float] = {}
            for r in rows:
                minute = math.floor(r["ts"] / 60) * 60
                if (since is None or minute >= math.floor(since / 60) * 60) and (
                    until is None or minute < until
                ):
                    want[r["op"]] = want.get(r["op"], 0.0) + r["self_ms"]
            assert got == pytest.approx(want), (since, until)
    assert "<host>" in performance.breakdown_line(entry)


def test_span_times_written_as_text_are_read(tmp_path: Path) -> None:
    # Our processor writes epoch seconds (read as numbers); an RFC 3339 string is read as well.
    log = tmp_path / "sentry.log"
    record = transaction(T0, "GET /t", 100.0, span_id="r0", spans=[
        span("db", "SELECT", T0, 40.0, span_id="s0", parent="r0")])
    record["spans"][0]["start_timestamp"] = "2026-12-01T00:00:00Z"
    record["spans"][0]["timestamp"] = "2026-12-01T00:00:00.040Z"
    write_lines(log, [transaction(T0, "GET /n", 10.0), record])
    with open_store(log) as store:
        (ms,) = store.scalar("SELECT duration_ms FROM spans WHERE op = 'db'"),
    assert ms == pytest.approx(40.0)


def test_journey_orders_actions_marks_errors_and_retries(tmp_path: Path) -> None:
    log = tmp_path / "sentry.log"
    write_lines(log, [
        transaction(T0, "POST /discover", 5.0, user="qa", status="internal_error"),
        error_event(T0 + 1, "ReadTimeout", "discovery", "scan", user="qa"),
        transaction(T0 + 2, "POST /discover", 5.0, user="qa"),
        transaction(T0 + 3, "POST /convert", 5.0, user="qa"),
        transaction(T0 + 4, "GET /other", 5.0, user="someone-else"),
    ])
    with open_store(log) as store:
        (journey,) = journeys.journeys(store, user="qa", last_n=1)
    kinds = [(a["kind"], a["text"].split(":")[0], a["retry"]) for a in journey["actions"]]
    assert kinds == [
        ("transaction", "POST /discover", False),
        ("error", "ReadTimeout in scan (discovery)", False),
        ("transaction", "POST /discover", True),
        ("transaction", "POST /convert", False),
    ]
    assert journey["duration_s"] == pytest.approx(3 + 0.005)
    (ctx,) = journey["error_contexts"]
    assert [a["text"] for a in ctx["before"]] == ["POST /discover"]


def test_standup_compares_periods(tmp_path: Path) -> None:
    log = tmp_path / "sentry.log"
    day = 86400.0
    now = T0 + 2 * day
    records: list[dict[str, Any]] = []
    for i in range(4):  # yesterday: Old (fixed since), Flaky x4
        records.append(error_event(T0 + 100 + i, "Flaky", "m", "flaky", user=f"u{i}"))
    records.append(error_event(T0 + 200, "Old", "m", "old", user="u1"))
    for i in range(10):
        records.append(transaction(T0 + day + 100 + i, "GET /", 100.0 + i, user=f"u{i}"))
    records.append(error_event(T0 + day + 300, "Flaky", "m", "flaky", user="u1"))
    records.append(error_event(T0 + day + 400, "Boom", "m", "boom", user="u2", level="fatal"))
    write_lines(log, records)
    with open_store(log) as store:
        data = standup.standup(store, now=now)
    h = data["highlights"]
    assert [i["title"] for i in h["new"]] == ["Boom in boom (m)"]
    assert [i["title"] for i in h["fixed"]] == ["Old in old (m)"]
    assert [i["title"] for i in h["monitoring"]] == ["Flaky in flaky (m)"]
    assert data["figures"]["critical_errors"] == 2  # fatal Boom + unhandled Flaky
    assert data["figures"]["errors"] == 2 and data["previous"]["errors"] == 5
    assert data["recommendations"][0]["action"] == "Fix Boom in boom (m)"
    assert data["user_impact"] == {
        "users_with_errors": 2, "users_active": 10, "sessions_with_errors": 2}
    text = render("standup", data, "markdown")
    assert "- New: Boom in boom (m) (1 events)" in text
    json.loads(render("standup", data, "json"))


def test_window_filters_by_service(tmp_path: Path) -> None:
    log = tmp_path / "sentry.log"
    write_lines(log, [
        error_event(T0, "A", "m", "a", service="svc-a"),
        error_event(T0, "B", "m", "b", service="svc-b"),
    ])
    with open_store(log) as store:
        found = issues_view.list_issues(store, Window(service="svc-b"))
    assert [i["type"] for i in found] == ["B"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no local log at"),
        ("", "is empty"),
        ("garbage\n{{{\n", "all 2 lines are corrupt"),
        ("dir", "is a directory"),
    ],
)
def test_cli_bad_input_is_one_line_and_nonzero(
    tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "sentry.log"
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_text(content)
    for command in ("issues", "standup", "releases", "perf", "journeys"):
        result = subprocess.run([*CLI, command, str(path)], capture_output=True, text=True,
                                check=False)
        assert result.returncode == 1, result
        assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


@pytest.mark.parametrize("fmt", ["text", "markdown", "json"])
def test_cli_views_in_every_format(tmp_path: Path, fmt: str) -> None:
    log = _release_log(tmp_path)
    for command in ("issues", "releases", "perf", "journeys", "standup"):
        result = subprocess.run(
            [*CLI, command, str(log), "--format", fmt, *(["--since", "30000d"] if command in {
                "issues", "standup", "perf", "journeys"} else [])],
            capture_output=True, text=True, check=False,
        )
        assert result.returncode == 0, result.stderr
        if fmt == "json":
            json.loads(result.stdout)
        elif command == "releases":
            assert "app@2 deployed at" in result.stdout
        elif command == "issues" and fmt == "markdown":
            assert "| Kept in kept (m) | ongoing |" in result.stdout


def _attrs(**values: Any) -> dict[str, Any]:
    return {k.replace("_", "."): {"value": v, "type": "string"} for k, v in values.items()}


def test_span_v2_log_and_session_lines_are_ingested(tmp_path: Path) -> None:
    """The `wire` line formats (span streaming, logs, sessions) feed the same views."""
    log = tmp_path / "sentry.log"
    seg = {"sentry_op": "http.server", "sentry_release": "app@3", "service_name": "svc"}
    write_lines(log, [
        {"type": "span", "trace_id": "a" * 32, "span_id": "1" * 16, "name": "GET /v2",
         "status": "ok", "is_segment": True, "start_timestamp": T0, "end_timestamp": T0 + 0.1,
         "attributes": _attrs(**seg)},
        {"type": "span", "trace_id": "a" * 32, "span_id": "2" * 16, "parent_span_id": "1" * 16,
         "name": "SELECT", "status": "ok", "is_segment": False, "start_timestamp": T0,
         "end_timestamp": T0 + 0.075,
         "attributes": _attrs(sentry_op="db", sentry_segment_id="1" * 16,
                              sentry_segment_name="GET /v2")},
        {"type": "log", "timestamp": T0, "level": "warn", "body": "slow", "trace_id": "a" * 32,
         "attributes": _attrs(sentry_release="app@3")},
        {"type": "session", "sid": "s1", "did": "u1", "init": True,
         "started": "2026-12-01T00:00:00Z", "timestamp": "2026-12-01T00:01:00Z",
         "status": "errored", "errors": 1, "attrs": {"release": "app@3"}},
        # A server's request sessions, as the SDK aggregates them per minute.
        {"type": "sessions", "attrs": {"release": "app@3", "environment": "production"},
         "aggregates": [{"started": "2026-12-01T00:00:00Z", "exited": 7, "errored": 1,
                         "crashed": 2}]},
        error_event(T0 + 1, "Audit", "", "", message="auth: login denied") | {
            "logger": "widgettrace.audit", "tags": {"category": "security"}},
    ])
    with open_store(log) as store:
        (row,) = performance.endpoints(store)
        (entry,) = performance.breakdown(store)
        assert store.scalar("SELECT count(*) FROM logs WHERE release = 'app@3'") == 1
        (rel,) = releases.list_releases(store)
        data = standup.standup(store, now=T0 + 100)
    assert (row["name"], row["op"], row["count"]) == ("GET /v2", "http.server", 1)
    assert {p["op"]: round(p["share"], 2) for p in entry["parts"]} == {"db": 0.75,
                                                                       "http.server": 0.25}
    # One explicit session (errored) and ten request sessions (three with errors).
    assert rel["sessions"] == 11 and rel["session_error_rate"] == 4 / 11
    assert "11 sessions, 36.4% with errors" in releases.release_block(rel)
    assert data["findings"] == {"audit security": 1}


def test_sessions_affected_come_from_release_health_sessions(tmp_path: Path) -> None:
    log = tmp_path / "sentry.log"

    def session(sid: str, did: str, start: float, end: float) -> dict[str, Any]:
        return {"type": "session", "sid": sid, "did": did, "started": start, "timestamp": end,
                "status": "exited", "errors": 0, "attrs": {"release": "r"}}

    write_lines(log, [
        session("s1", "u1", T0, T0 + 100), session("s2", "u1", T0 + 200, T0 + 300),
        session("s3", "u2", T0, T0 + 300),
        error_event(T0 + 50, "E", "m", "f", user="u1"),
        error_event(T0 + 250, "E", "m", "f", user="u1"),
        error_event(T0 + 260, "E", "m", "f", user="u1"),
    ])
    with open_store(log) as store:
        (issue,) = issues_view.list_issues(store)
    assert (issue["users"], issue["sessions"], issue["count"]) == (1, 2, 3)


def test_session_journey_is_its_users_actions_between_its_start_and_end(tmp_path: Path) -> None:
    log = tmp_path / "sentry.log"
    sess = {"type": "session", "sid": "s-qa", "did": "qa", "name": "Block 5 QA agent",
            "started": T0 + 10, "timestamp": T0 + 10 + 23 * 60, "status": "errored",
            "errors": 1, "attrs": {"release": "r"}}
    write_lines(log, [
        transaction(T0, "POST /before", 5.0, user="qa"),  # before the session: not in it
        {**sess, "status": "ok", "timestamp": T0 + 10},  # the session's first update
        transaction(T0 + 20, "POST /discover", 5.0, user="qa"),
        transaction(T0 + 30, "GET /other-user", 5.0, user="someone-else"),
        error_event(T0 + 40, "ReadTimeout", "discovery", "scan", user="qa"),
        transaction(T0 + 50, "POST /discover", 5.0, user="qa"),
        sess,
        transaction(T0 + 24 * 60, "POST /after", 5.0, user="qa"),  # after its end
        {**sess, "sid": "s-anon", "did": None, "name": "no user"},  # nothing ties events to it
    ])
    with open_store(log) as store:
        (journey,) = journeys.session_journeys(store)
        assert journeys.session_journeys(store, session="s-qa") == [journey]
        assert journeys.session_journeys(store, Window(since=T0 + 30 * 60)) == []
    assert (journey["name"], journey["status"], journey["user"]) == (
        "Block 5 QA agent", "errored", "qa")
    assert journey["duration_s"] == pytest.approx(23 * 60)
    assert [(a["kind"], a["text"].split(":")[0], a["retry"]) for a in journey["actions"]] == [
        ("transaction", "POST /discover", False),
        ("error", "ReadTimeout in scan (discovery)", False),
        ("transaction", "POST /discover", True),
    ]
    out = subprocess.run(
        [sys.executable, "-m", "widgettrace", "journeys", str(log), "--sessions"],
        capture_output=True, text=True, check=True,
    ).stdout
    assert "Session for Block 5 QA agent (qa, errored): 23 min, 1 errors" in out
    assert "ERROR ReadTimeout in scan (discovery)" in out and "retry: POST /discover" in out
