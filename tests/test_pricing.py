"""The LLM price table: formats, model lookup, cost arithmetic and bad tables."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from widgettrace.instrumentation.pricing import (
    ModelPrice,
    PriceTable,
    load_price_table,
    parse_price_table,
)

TABLE = {
    "gpt-4o": {"input": 2.5, "output": 10.0, "cache_read": 1.25},
    "gpt-4o-mini": {"input": 0.15, "output": 0.6},
    "claude-sonnet-4-5": {"input": 3, "output": 15, "cache_read": 0.3, "cache_write": 3.75},
    "o-reasoner": {"input": 1, "output": 4, "reasoning": 8},
}


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_inline_json_file_and_models_wrapper(tmp_path: Path) -> None:
    inline = load_price_table(json.dumps(TABLE))
    path = tmp_path / "prices.json"
    path.write_text(json.dumps({"models": TABLE}))
    from_file = load_price_table(str(path))
    assert inline is not None
    assert from_file is not None
    assert len(inline) == len(from_file) == 4
    assert inline.lookup("gpt-4o") == from_file.lookup("gpt-4o") == ModelPrice(2.5, 10.0, 1.25)
    assert load_price_table(None) is None
    assert load_price_table("  ") is None


def test_lookup_exact_case_and_dated_versions() -> None:
    table = parse_price_table(TABLE)
    assert table is not None
    assert table.lookup("gpt-4o") is not None
    assert table.lookup("GPT-4o") == table.lookup("gpt-4o")
    assert table.lookup("gpt-4o-2024-08-06") == table.lookup("gpt-4o")
    assert table.lookup("gpt-4o-mini-2024-07-18") == table.lookup("gpt-4o-mini")
    assert table.lookup("claude-sonnet-4-5@20250929") == table.lookup("claude-sonnet-4-5")
    assert table.lookup("gpt-4") is None
    assert table.lookup("gpt-4omega") is None  # a prefix must end at a separator
    assert "gpt-4o-2024" in table
    assert "llama" not in table


def test_cost_arithmetic_with_cache_and_reasoning() -> None:
    table = parse_price_table(TABLE)
    assert table is not None
    plain = table.cost("gpt-4o", input_tokens=1_000_000, output_tokens=100_000)
    assert plain is not None
    assert (plain.input, plain.output, plain.total) == pytest.approx((2.5, 1.0, 3.5))
    cached = table.cost(
        "claude-sonnet-4-5",
        input_tokens=1_000_000,
        cache_read_input_tokens=500_000,
        cache_creation_input_tokens=100_000,
    )
    assert cached is not None
    # 400k uncached x 3 + 500k x 0.3 + 100k x 3.75
    assert cached.input == pytest.approx(1.2 + 0.15 + 0.375)
    assert cached.output == 0
    reasoning = table.cost("o-reasoner", output_tokens=1_000_000, reasoning_output_tokens=250_000)
    assert reasoning is not None
    assert reasoning.output == pytest.approx(0.75 * 4 + 0.25 * 8)
    # missing cache prices fall back to the input price
    mini = table.cost("gpt-4o-mini", input_tokens=1_000_000, cache_read_input_tokens=1_000_000)
    assert mini is not None
    assert mini.input == pytest.approx(0.15)
    assert table.cost("unknown-model", input_tokens=10) is None


def test_free_model_costs_zero_but_unknown_costs_nothing() -> None:
    table = PriceTable({"local": ModelPrice(0, 0)})
    free = table.cost("local", input_tokens=10, output_tokens=10)
    assert free is not None
    assert free.total == 0
    assert table.cost("remote", input_tokens=10) is None


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("{not json", "is not valid JSON"),
        ('["gpt-4o"]', "is not a JSON object of model -> prices"),
        ("/nonexistent/prices.json", "cannot read WIDGETTRACE_PRICES file"),
        ('{"models": 3}', "'models' (not an object)"),
    ],
)
def test_bad_table_logs_one_line_and_prices_nothing(
    raw: str, fragment: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="widgettrace"):
        table = load_price_table(raw)
    assert table is None or len(table) == 0
    lines = _warnings(caplog)
    assert len(lines) == 1, lines
    assert "WIDGETTRACE_PRICES" in lines[0]
    assert fragment in lines[0]


def test_bad_entries_are_skipped_with_one_line(caplog: pytest.LogCaptureFixture) -> None:
    raw = {
        "good": {"input": 1, "output": 2},
        "negative": {"input": -1, "output": 2},
        "missing": {"input": 1},
        "text": {"input": "1", "output": 2},
        "typo": {"input": 1, "output": 2, "cache_reed": 1},
        "flag": {"input": True, "output": 2},
    }
    with caplog.at_level(logging.WARNING, logger="widgettrace"):
        table = parse_price_table(raw)
    assert table is not None
    assert len(table) == 1
    assert table.lookup("good") == ModelPrice(1, 2)
    [line] = _warnings(caplog)
    for model in ("negative", "missing", "text", "typo", "flag"):
        assert repr(model) in line
