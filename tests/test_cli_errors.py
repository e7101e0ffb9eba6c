"""The CLI's failure paths: one clear line and the right exit code, corrupt lines counted.

Each case runs the real command in a subprocess (``python -m widgettrace``).
"""

from __future__ import annotations

import json
from pathlib import Path

from test_cli import run_cli, timed_transaction

from widgettrace.cli import read_records, summarize, summary_data

ERROR = {
    "level": "error",
    "exception": {"values": [{"type": "ValueError", "value": "bad widget"}]},
}


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_a_directory_is_one_line_and_exit_2(tmp_path: Path) -> None:
    for command in ("tail", "summary"):
        proc = run_cli(command, str(tmp_path))
        assert proc.returncode == 2, proc.stderr
        line = _one_line(proc.stderr)
        assert "is a directory" in line and str(tmp_path) in line
        assert proc.stdout == ""


def test_negative_line_count_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "sentry.log"
    path.write_text(json.dumps(ERROR) + "\n")
    proc = run_cli("tail", "-n", "-3", str(path))
    assert proc.returncode == 2
    line = _one_line(proc.stderr)
    assert "-3" in line and "0 or more" in line
    assert proc.stdout == ""


def _mixed_log(tmp_path: Path) -> Path:
    path = tmp_path / "sentry.log"
    path.write_text(
        "\n".join(
            [
                json.dumps(ERROR),
                "not json at all",
                '{"torn": "li',
                json.dumps({"unrelated": 1}),  # an object, but no event
                json.dumps([1, 2, 3]),  # JSON, not an object
                json.dumps(timed_transaction("GET /x", 5)),
                json.dumps({"message": "registry slow", "level": "warning"}),
            ]
        )
        + "\n"
    )
    return path


def test_summary_does_not_count_malformed_objects_as_errors(tmp_path: Path) -> None:
    data = summary_data(_mixed_log(tmp_path))
    assert data["errors"] == {"ValueError": 1, "message": 1}
    assert data["error_count"] == 2
    assert data["transaction_count"] == 1
    assert data["unreadable_lines"] == 3  # not JSON, torn, not an object
    assert data["not_events"] == 1


def test_summary_reports_unparseable_lines(tmp_path: Path) -> None:
    path = _mixed_log(tmp_path)
    text = summarize(path)
    assert "2 errors, 1 transactions" in text
    assert "4 lines skipped (3 unreadable, 1 not an event)" in text
    proc = run_cli("summary", str(path))
    assert proc.returncode == 0
    assert proc.stdout == text


def test_read_records_counts_what_it_skips(tmp_path: Path) -> None:
    skipped: dict[str, int] = {}
    records = list(read_records(_mixed_log(tmp_path), skipped=skipped))
    assert len(records) == 4  # every JSON object; the summary decides what is an event
    assert skipped == {"unreadable": 3}


def test_tail_reports_corrupt_lines(tmp_path: Path) -> None:
    proc = run_cli("tail", str(_mixed_log(tmp_path)))
    assert proc.returncode == 0
    assert "? not json at all" in proc.stdout.splitlines()
    assert "4 of the 7 lines shown are not events" in _one_line(proc.stderr)
    assert "? " + json.dumps({"unrelated": 1}) in proc.stdout.splitlines()
