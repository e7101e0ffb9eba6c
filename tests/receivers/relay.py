"""Sentry's own event normaliser (sentry-relay): the suite's judge of "valid by Sentry's rules".

``normalize(payload)`` runs one event or transaction payload (the JSON object that travels in an
envelope item) through ``sentry_relay.processing.StoreNormalizer(project_id=1)`` -- the same Rust
code Sentry's ingestion runs -- and returns ``(normalized, errors)``. ``errors`` is the list relay
attaches as the event's ``errors`` key (``[{"type": "invalid_data", "name": "timestamp", ...}]``);
an event Sentry accepts unchanged has none.

Usage::

    from receivers.relay import normalize, assert_valid

    normalized, errors = normalize(event)
    assert errors == []
    assert_valid(event)  # same, with a readable failure message
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["assert_valid", "normalize", "normalize_many"]

# StoreNormalizer wraps a Rust object behind cffi; one instance shared under a lock is cheaper than
# building the config per call and safe across the receiver's request threads.
_lock = threading.Lock()
_normalizer: Any = None


def _get_normalizer() -> Any:
    global _normalizer
    if _normalizer is None:
        from sentry_relay.processing import StoreNormalizer

        _normalizer = StoreNormalizer(project_id=1)
    return _normalizer


def normalize(payload: Mapping[str, Any] | bytes | str) -> tuple[dict[str, Any], list[Any]]:
    """Normalise one event/transaction payload; return ``(normalized_event, errors)``.

    ``payload`` is the decoded JSON object, or its raw bytes/str (then relay parses it itself, so
    invalid JSON surfaces as an error rather than an exception here).
    """
    with _lock:
        normalizer = _get_normalizer()
        if isinstance(payload, (bytes, str)):
            raw = payload.encode("utf-8") if isinstance(payload, str) else payload
            result: dict[str, Any] = normalizer.normalize_event(raw_event=raw)
        else:
            result = normalizer.normalize_event(dict(payload))
    errors = list(result.get("errors") or [])
    return result, errors


def normalize_many(payloads: Iterable[Mapping[str, Any]]) -> list[tuple[dict[str, Any], list[Any]]]:
    """Normalise several payloads (e.g. the local log's lines); return those with errors."""
    out: list[tuple[dict[str, Any], list[Any]]] = []
    for payload in payloads:
        _, errors = normalize(payload)
        if errors:
            out.append((dict(payload), errors))
    return out


def assert_valid(payload: Mapping[str, Any]) -> dict[str, Any]:
    """Fail with relay's errors (and the offending fields) unless ``payload`` normalises cleanly."""
    normalized, errors = normalize(payload)
    if errors:
        summary = json.dumps(errors, indent=2, default=str)[:4000]
        raise AssertionError(f"sentry-relay normalisation errors:\n{summary}")
    return normalized
