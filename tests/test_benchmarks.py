"""The benchmark harness and the e2e sink count what they claim (no timing is asserted)."""

from __future__ import annotations

import gzip
import importlib.util
import json
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest
from sentry_sdk.envelope import Envelope, Item, PayloadRef

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


harness = _load("_harness", BENCH / "_harness.py")
sink = _load("bench_sink", BENCH / "e2e" / "sink.py")


def test_interleaved_runs_cases_in_abab_order_and_reports_seconds_per_call() -> None:
    order: list[str] = []
    cases = {"a": lambda: order.append("a"), "b": lambda: order.append("b")}
    stats = harness.interleaved(cases, rounds=3, number=2, warmup=1)
    assert order == ["a", "a", "b", "b"] * 4
    assert set(stats) == {"a", "b"}
    assert all(len(s.samples) == 3 and s.min <= s.median <= s.max for s in stats.values())


def test_wall_clock_and_finish_are_inside_the_timing() -> None:
    stats = harness.interleaved(
        {"sleep": lambda: None},
        rounds=2,
        number=2,
        clock="wall",
        finish={"sleep": lambda: time.sleep(0.02)},
    )
    assert stats["sleep"].min >= 0.009  # 20 ms spread over 2 calls


def test_ratio_rows_and_write_result(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(harness, "RESULTS_DIR", tmp_path)
    stats = {"base": harness.stats_of([1.0, 2.0, 3.0]), "ours": harness.stats_of([4.0, 4.0])}
    rows = harness.ratio_rows(
        stats, unit="us/x", baseline="base", scale=1e6, extra={"ours": {"k": 1}}
    )
    assert rows[1]["ratio"] == 2.0
    assert rows[1]["median"] == 4e6
    assert rows[1]["k"] == 1
    path = harness.write_result("t", rows, "cmd")
    doc = json.loads(path.read_text())
    assert doc["name"] == "t"
    assert doc["command"] == "cmd"
    assert doc["rows"] == rows
    assert doc["machine"]["python"]
    assert doc["machine"]["cores"]


def test_sink_counts_transactions_and_client_reports_in_a_real_envelope() -> None:
    env = Envelope(headers={"event_id": "a" * 32})
    env.add_transaction({"type": "transaction", "transaction": "GET /", "spans": []})
    env.add_item(
        Item(
            payload=PayloadRef(
                json={
                    "discarded_events": [
                        {"reason": "queue_overflow", "category": "transaction", "quantity": 3}
                    ]
                }
            ),
            type="client_report",
        )
    )
    env.add_item(Item(payload=PayloadRef(bytes=b"x\ny"), type="attachment"))  # length-prefixed
    counts = sink.Counts()
    sink.count_envelope(gzip.decompress(gzip.compress(env.serialize())), counts)
    snap = counts.snapshot()
    assert snap["transactions"] == 1
    assert snap["items"] == {"transaction": 1, "client_report": 1, "attachment": 1}
    assert snap["discarded"] == {"transaction:queue_overflow": 3}


def test_msgpack_array_len() -> None:
    assert sink.msgpack_array_len(bytes([0x93])) == 3
    assert sink.msgpack_array_len(b"\xdc\x01\x00") == 256
    assert sink.msgpack_array_len(b"\xdd\x00\x01\x00\x00") == 65536
    assert sink.msgpack_array_len(b"\x01") is None
