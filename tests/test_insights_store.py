"""Ingestion of the local log into DuckDB: incremental, torn lines, rotation, corrupt lines."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from gen_log import error_event, generate, transaction, write_lines

from widgettrace.insights import InsightsError, open_store, store_path

T0 = 1_796_000_000.0


def _count(log: Path) -> tuple[int, int]:
    with open_store(log) as store:
        return (
            int(store.scalar("SELECT count(*) FROM errors")),
            int(store.scalar("SELECT count(*) FROM transactions")),
        )


def test_second_run_reads_only_what_was_appended(tmp_path: Path) -> None:
    log = tmp_path / "sentry.log"
    generate(log, 500, seed=3, end=T0)
    with open_store(log) as store:
        assert store.new_lines == 500
        first = store.scalar("SELECT count(*) FROM errors") + store.scalar(
            "SELECT count(*) FROM transactions"
        )
    assert first == 500
    assert store_path(log).exists()
    with open_store(log) as store:
        assert store.new_lines == 0  # nothing appended: nothing parsed
    generate(log, 50, seed=4, end=T0 + 10, append=True)
    with open_store(log) as store:
        assert store.new_lines == 50
        total = store.scalar("SELECT count(*) FROM errors") + store.scalar(
            "SELECT count(*) FROM transactions"
        )
    assert total == 550


def test_torn_last_line_is_left_for_the_next_run(tmp_path: Path) -> None:
    log = tmp_path / "sentry.log"
    line = json.dumps(error_event(T0, "KeyError", "m", "f")).encode()
    log.write_bytes(line + b"\n" + line[:40])
    assert _count(log) == (1, 0)
    with log.open("ab") as fh:
        fh.write(line[40:] + b"\n")
    with open_store(log) as store:
        assert store.scalar("SELECT count(*) FROM errors") == 2
        assert store.corrupt_lines == 0


def test_corrupt_lines_are_counted_not_fatal(tmp_path: Path) -> None:
    log = tmp_path / "sentry.log"
    good = json.dumps(error_event(T0, "KeyError", "m", "f"))
    log.write_text(f"{good}\nnot json\n[1, 2]\n{good}\n{{\"unterminated\": \n")
    with open_store(log) as store:
        assert store.scalar("SELECT count(*) FROM errors") == 2
        assert store.corrupt_lines == 3
        assert store.total_lines == 5


def test_rotation_is_recognised_and_nothing_counted_twice(tmp_path: Path) -> None:
    log = tmp_path / "sentry.log"
    write_lines(log, [error_event(T0 + i, "KeyError", "m", "f") for i in range(3)])
    assert _count(log) == (3, 0)
    # The writer rotates: sentry.log -> sentry.log.1 (same inode), then a new sentry.log.
    write_lines(log, [error_event(T0 + 3, "KeyError", "m", "f")])
    os.replace(log, log.with_name("sentry.log.1"))
    write_lines(log, [transaction(T0 + 4, "GET /", 5.0)])
    assert _count(log) == (4, 1)
    # Rotated again: .1 -> .2, current -> .1; the oldest content is still known by inode.
    os.replace(log.with_name("sentry.log.1"), log.with_name("sentry.log.2"))
    os.replace(log, log.with_name("sentry.log.1"))
    write_lines(log, [transaction(T0 + 5, "GET /", 5.0)])
    assert _count(log) == (4, 2)


def test_replaced_file_is_read_from_its_start(tmp_path: Path) -> None:
    log = tmp_path / "sentry.log"
    write_lines(log, [error_event(T0 + i, "KeyError", "m", "f") for i in range(5)])
    assert _count(log) == (5, 0)
    log.unlink()
    write_lines(log, [transaction(T0 + 9, "GET /other", 5.0)])
    assert _count(log) == (5, 1)


def test_first_run_on_rotated_files_reads_them_all(tmp_path: Path) -> None:
    log = tmp_path / "sentry.log"
    write_lines(log.with_name("sentry.log.2"), [error_event(T0, "A", "m", "f")])
    write_lines(log.with_name("sentry.log.1"), [error_event(T0 + 1, "B", "m", "f")])
    write_lines(log, [error_event(T0 + 2, "C", "m", "f")])
    with open_store(log) as store:
        types = [r["exc_type"] for r in store.rows("SELECT exc_type FROM errors ORDER BY ts")]
    assert types == ["A", "B", "C"]


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_bad_paths_raise_one_clear_error(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "nope.log" if kind == "missing" else tmp_path
    with pytest.raises(InsightsError, match=r"no local log|is a directory"):
        open_store(path)


def test_a_store_from_an_older_schema_is_rebuilt(tmp_path: Path) -> None:
    log = tmp_path / "sentry.log"
    write_lines(log, [error_event(T0, "KeyError", "m", "f")])
    with open_store(log) as store:
        store.con.execute("UPDATE meta SET value = 'old' WHERE key = 'schema'")
    assert _count(log) == (1, 0)


def test_a_store_locked_by_another_process_falls_back_to_memory(tmp_path: Path) -> None:
    import subprocess
    import time

    log = tmp_path / "sentry.log"
    write_lines(log, [error_event(T0 + i, "KeyError", "m", "f") for i in range(4)])
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\nfrom widgettrace.insights import open_store\n"
         f"s = open_store({str(log)!r})\nprint('open', flush=True)\ntime.sleep(30)"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        started = time.monotonic()
        with open_store(log) as store:
            assert not store.persistent  # DuckDB's file lock is held: built in memory
            assert store.scalar("SELECT count(*) FROM errors") == 4
        assert time.monotonic() - started < 20
    finally:
        holder.terminate()
        holder.wait(10)
    with open_store(log) as store:
        assert store.persistent
