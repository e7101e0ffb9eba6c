"""LLM price table and per-call cost, for the ``gen_ai.cost.*`` attributes.

OpenTelemetry defines no cost attribute; Sentry's AI views read ``gen_ai.cost.input_tokens``,
``gen_ai.cost.output_tokens`` and ``gen_ai.cost.total_tokens`` (USD) from each LLM span, and
Sentry overwrites them for models it prices itself. widgettrace computes them from a price table
you provide, so costs also show up for private, fine-tuned or self-hosted models.

Configuration: ``WIDGETTRACE_PRICES`` is either inline JSON (it starts with ``{``) or the path of
a JSON file (anything else). Prices are USD per one million tokens::

    {
      "gpt-4o":            {"input": 2.50, "output": 10.00, "cache_read": 1.25},
      "claude-sonnet-4-5": {"input": 3.00, "output": 15.00,
                            "cache_read": 0.30, "cache_write": 3.75},
      "my-local-llama":    {"input": 0, "output": 0}
    }

The object may also be wrapped as ``{"models": {...}}``. ``input`` and ``output`` are required;
``cache_read`` (cached input read), ``cache_write`` (cache creation) and ``reasoning`` (reasoning
output) default to ``input``, ``input`` and ``output``. A model is found by exact name, then
case-insensitively, then by the longest table key it starts with followed by ``-``, ``@``, ``:``
or ``.`` (so ``gpt-4o-2024-08-06`` uses ``gpt-4o``, and ``gpt-4o-mini`` uses its own entry
when it has one).

Cost split, as Sentry's Relay computes it: input cost = uncached input tokens x input price +
cache-read tokens x cache_read price + cache-write tokens x cache_write price; output cost =
non-reasoning output tokens x output price + reasoning tokens x reasoning price; total = both.
``gen_ai.usage.input_tokens`` counts all input tokens, cached ones included (OTel GenAI rule).

A model missing from the table gets NO cost (not a cost of 0). A table that cannot be read or
parsed logs one line and prices nothing; a bad model entry logs one line and is skipped.

Usage::

    from widgettrace.instrumentation.pricing import get_price_table
    cost = get_price_table().cost("gpt-4o", input_tokens=1200, output_tokens=300)
    cost.total if cost else None
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from widgettrace.instrumentation._guard import logger

__all__ = [
    "Cost",
    "ModelPrice",
    "PriceTable",
    "get_price_table",
    "load_price_table",
    "parse_price_table",
    "reset_price_table",
    "set_price_table",
]

_PER_TOKEN = 1e-6  # prices are per one million tokens
_SEPARATORS = ("-", "@", ":", ".")
_FIELDS = ("input", "output", "cache_read", "cache_write", "reasoning")


@dataclass(frozen=True)
class ModelPrice:
    """USD per one million tokens for one model."""

    input: float
    output: float
    cache_read: float | None = None
    cache_write: float | None = None
    reasoning: float | None = None


@dataclass(frozen=True)
class Cost:
    """Cost of one LLM call in USD."""

    input: float
    output: float

    @property
    def total(self) -> float:
        return self.input + self.output


class PriceTable:
    """Model name -> :class:`ModelPrice`, with the lookup rules of the module docstring."""

    __slots__ = ("_by_lower", "_cache", "_prices")

    def __init__(self, prices: Mapping[str, ModelPrice]) -> None:
        self._prices = dict(prices)
        self._by_lower = {name.lower(): price for name, price in self._prices.items()}
        # Lookups repeat the same few model names; remember answers (misses too) so the
        # prefix scan runs once per model name. Bounded: cleared when it grows past 1024.
        self._cache: dict[str, ModelPrice | None] = {}

    def __len__(self) -> int:
        return len(self._prices)

    def __contains__(self, model: object) -> bool:
        return isinstance(model, str) and self.lookup(model) is not None

    def lookup(self, model: str) -> ModelPrice | None:
        """The price of ``model``, or None when the table does not know it."""
        try:
            return self._cache[model]
        except KeyError:
            pass
        found = self._prices.get(model)
        if found is None:
            lowered = model.lower()
            found = self._by_lower.get(lowered)
            if found is None:
                best = -1
                for key, price in self._by_lower.items():
                    if (
                        len(key) > best
                        and len(lowered) > len(key)
                        and lowered.startswith(key)
                        and lowered[len(key)] in _SEPARATORS
                    ):
                        best, found = len(key), price
        if len(self._cache) >= 1024:
            self._cache.clear()
        self._cache[model] = found
        return found

    def cost(
        self,
        model: str,
        *,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cache_read_input_tokens: int = 0,
        cache_creation_input_tokens: int = 0,
        reasoning_output_tokens: int = 0,
    ) -> Cost | None:
        """Cost of one call, or None when ``model`` is not in the table."""
        price = self.lookup(model)
        if price is None:
            return None
        cache_read = max(cache_read_input_tokens, 0)
        cache_write = max(cache_creation_input_tokens, 0)
        reasoning = max(reasoning_output_tokens, 0)
        uncached = max(input_tokens - cache_read - cache_write, 0)
        plain_output = max(output_tokens - reasoning, 0)
        read_price = price.input if price.cache_read is None else price.cache_read
        write_price = price.input if price.cache_write is None else price.cache_write
        reasoning_price = price.output if price.reasoning is None else price.reasoning
        input_cost = (
            uncached * price.input + cache_read * read_price + cache_write * write_price
        ) * _PER_TOKEN
        output_cost = (plain_output * price.output + reasoning * reasoning_price) * _PER_TOKEN
        return Cost(input=input_cost, output=output_cost)


def _price_field(entry: Mapping[str, Any], field: str, required: bool) -> float | None:
    value = entry.get(field)
    if value is None:
        if required:
            raise ValueError(f"missing {field!r}")
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{field!r} is not a number")
    number = float(value)
    if math.isnan(number) or math.isinf(number) or number < 0:
        raise ValueError(f"{field!r} must be a finite number >= 0")
    return number


def parse_price_table(data: Any, *, source: str = "WIDGETTRACE_PRICES") -> PriceTable | None:
    """Build a table from decoded JSON; log one line for a bad table or bad entries."""
    if isinstance(data, Mapping) and isinstance(data.get("models"), Mapping):
        data = data["models"]
    if not isinstance(data, Mapping):
        logger.warning(
            "widgettrace: %s is not a JSON object of model -> prices; no LLM costs", source
        )
        return None
    prices: dict[str, ModelPrice] = {}
    bad: list[str] = []
    for model, entry in data.items():
        if not isinstance(model, str) or not isinstance(entry, Mapping):
            bad.append(f"{model!r} (not an object)")
            continue
        unknown = sorted(set(entry) - set(_FIELDS))
        try:
            if unknown:
                raise ValueError(f"unknown field(s) {', '.join(map(repr, unknown))}")
            prices[model] = ModelPrice(
                input=_price_field(entry, "input", True) or 0.0,
                output=_price_field(entry, "output", True) or 0.0,
                cache_read=_price_field(entry, "cache_read", False),
                cache_write=_price_field(entry, "cache_write", False),
                reasoning=_price_field(entry, "reasoning", False),
            )
        except ValueError as exc:
            bad.append(f"{model!r} ({exc})")
    if bad:
        logger.warning(
            "widgettrace: %s: ignored bad price entries: %s (those models get no cost)",
            source,
            "; ".join(bad),
        )
    return PriceTable(prices)


def load_price_table(raw: str | None) -> PriceTable | None:
    """Parse ``WIDGETTRACE_PRICES``' value: inline JSON or a JSON file path. None if unset/bad."""
    if raw is None or not raw.strip():
        return None
    text = raw.strip()
    source = "WIDGETTRACE_PRICES"
    if not text.startswith(("{", "[")):
        path = Path(text).expanduser()
        source = f"WIDGETTRACE_PRICES file {str(path)!r}"
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            logger.warning("widgettrace: cannot read %s (%s); no LLM costs", source, exc)
            return None
    try:
        data = json.loads(text)
    except ValueError as exc:
        logger.warning("widgettrace: %s is not valid JSON (%s); no LLM costs", source, exc)
        return None
    return parse_price_table(data, source=source)


_EMPTY = PriceTable({})
_table: PriceTable | None = None
_lock = threading.Lock()


def get_price_table() -> PriceTable:
    """The process's price table from settings, loaded once (empty when unset or bad)."""
    table = _table
    if table is None:
        with _lock:
            table = _table
            if table is None:
                from widgettrace.instrumentation._config import get_settings

                table = load_price_table(get_settings().prices) or _EMPTY
                _set(table)
    return table


def _set(table: PriceTable | None) -> None:
    global _table
    _table = table


def set_price_table(table: PriceTable | Mapping[str, ModelPrice] | None) -> None:
    """Use ``table`` instead of ``WIDGETTRACE_PRICES`` (None: read the setting again)."""
    with _lock:
        if table is None or isinstance(table, PriceTable):
            _set(table)
        else:
            _set(PriceTable(table))


def reset_price_table() -> None:
    """Forget the loaded table; the next :func:`get_price_table` reads the settings again."""
    set_price_table(None)
