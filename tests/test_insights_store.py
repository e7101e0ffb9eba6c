"""Ingestion of the local log into DuckDB: incremental, torn lines, rotation, corrupt lines."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from gen_log import error_event, generate, span, transaction, write_lines

from widgettrace.insights import InsightsError, Store, open_store, performance, store_path
from widgettrace.insights import standup as standup_view

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


def _traced(start: float, i: int, *, nested: bool, agent: str | None = None) -> dict[str, object]:
    """A transaction with two children: flat (both under the root) or nested (db inside infer),
    the first an agent block's span when ``agent`` is given."""
    data = {"gen_ai.agent.name": agent, "widget.outcome": "failure"} if agent else {}
    children = [
        span("gen_ai.invoke_agent" if agent else "widget.conversion", "infer", start, 50.0,
             span_id=f"a{i}", parent=f"r{i}", data=data),
        span("db", "INSERT", start, 20.0, span_id=f"b{i}", parent=f"a{i}" if nested else f"r{i}"),
    ]
    return transaction(start, "POST /convert", 100.0, spans=children, span_id=f"r{i}")


def _physical_spans(store: Store) -> int:
    # Straight through the connection: Store.rows would write the deferred rows first.
    return int(store.con.execute("SELECT count(*) FROM spans").fetchone()[0])  # type: ignore[index]


def test_span_rows_are_written_when_first_read_and_the_standup_needs_none(tmp_path: Path) -> None:
    log = tmp_path / "sentry.log"
    write_lines(log, [_traced(T0 + i, i, nested=i % 2 == 1, agent="qa" if i == 0 else None)
                      for i in range(6)])
    with open_store(log) as store:
        report = standup_view.standup(store, now=T0 + 100)
        assert _physical_spans(store) == 0  # the standup read only the roll-ups
        assert {b["block"]: b["errors"] for b in report["blocks"]}["qa"] == 1
        (entry,) = performance.breakdown(store, names=["POST /convert"])
        # Self times: flat: root 30 + infer 50 + db 20; nested: root 50 + infer 30 + db 20.
        assert {p["op"]: round(p["self_ms"]) for p in entry["parts"]} == {
            "http.server": 3 * 30 + 3 * 50, "widget.conversion": 2 * 50 + 3 * 30,
            "gen_ai.invoke_agent": 50, "db": 6 * 20,
        }
        rows = store.rows("SELECT span_id, self_ms FROM spans ORDER BY span_id")
        assert _physical_spans(store) == 18  # 6 roots + 12 children, on the first read
        # The rows agree with the roll-up they were not built from.
        by_id = {r["span_id"]: r["self_ms"] for r in rows}
        assert by_id["r0"] == pytest.approx(30.0) and by_id["r1"] == pytest.approx(50.0)
        assert by_id["a1"] == pytest.approx(30.0) and by_id["b1"] == pytest.approx(20.0)
        assert store.scalar("SELECT count(*) FROM pending_spans") == 0
    with open_store(log) as store:  # kept: nothing written twice
        assert _physical_spans(store) == 18


def test_deferred_span_rows_follow_appends_rotation_and_replacement(tmp_path: Path) -> None:
    log = tmp_path / "sentry.log"
    write_lines(log, [_traced(T0 + i, i, nested=False) for i in range(3)])
    _count(log)  # first range pending
    write_lines(log, [_traced(T0 + 10 + i, 10 + i, nested=True) for i in range(2)])
    _count(log)  # second range, appended to the first
    os.rename(log, log.with_name("sentry.log.1"))  # rotated before anything read the spans
    write_lines(log, [_traced(T0 + 20, 20, nested=False)])
    with open_store(log) as store:
        assert store.scalar("SELECT count(DISTINCT event_id) FROM spans") == 6
        assert store.scalar("SELECT count(*) FROM spans") == 18
    # A replaced file: its old ranges are not read again (their bytes are gone).
    with open_store(log) as store:
        store.scalar("SELECT count(*) FROM transactions")
    log.unlink()
    write_lines(log, [_traced(T0 + 30 + i, 30 + i, nested=False) for i in range(4)])
    with open_store(log) as store:
        assert store.scalar("SELECT count(*) FROM transactions") == 10
        assert store.scalar("SELECT count(*) FROM spans") == 18 + 4 * 3


def test_a_line_of_many_megabytes_is_read_not_counted_corrupt(tmp_path: Path) -> None:
    # The JSON reader keeps its default object size (its buffers scale with it); a huge line,
    # whatever an app put in an event, is still one event.
    log = tmp_path / "sentry.log"
    big = error_event(T0, "KeyError", "m", "f")
    big["extra"] = {"blob": "y" * (20 << 20)}
    write_lines(log, [transaction(T0, "GET /a", 5.0), big, transaction(T0 + 1, "GET /b", 5.0)])
    with open_store(log) as store:
        assert store.corrupt_lines == 0
        assert (store.scalar("SELECT count(*) FROM errors"),
                store.scalar("SELECT count(*) FROM transactions")) == (1, 2)
