"""The encoder's fast path scrubs exactly what the value-by-value scrubber does."""

from __future__ import annotations

import json
from typing import Any

import pytest

from widgettrace.exporters._sentry_convert import FILTERED, Scrubber, dumps

CASES: list[dict[str, Any]] = [
    {"http.request.method": "GET", "url.path": "/api/widgets/7", "http.response.status_code": 200},
    {"url.full": "http://hub.local/search?q=x&api_key=s3cr3t&page=2", "server.port": 80},
    {"url.full": "http://user:pw@hub.local/x", "http.request.method": "POST"},
    {"http.request.header.authorization": ("Bearer abc",), "widget.id": "w-1"},
    {"db.query.text": "SELECT * FROM t WHERE token = 'x'", "db.system.name": "sqlite"},
    {"message": "sent to a@example.org", "count": 3},
    {"log": "Authorization: Basic dXNlcjpwYXNz", "ok": True},
    {"note": "tab\tBearer\tabc", "n": 1.5},
    {"widget.name": "Größe-Konverter", "client.address": "10.0.0.1"},
    {"user.id": "u-1", "user.email": "a@example.org", "widget.tag.stage": "parse"},
    {"gen_ai.usage.input_tokens": 12, "gen_ai.usage.output_tokens": 3, "password": "hunter2"},
    {"tags": ("a", "b c", "Token xyz"), "flags": (True, False), "sizes": (1, 2)},
    {},
]


@pytest.mark.parametrize("pii", [False, True])
@pytest.mark.parametrize("attrs", CASES)
def test_data_json_equals_the_value_by_value_scrubber(attrs: dict[str, Any], pii: bool) -> None:
    fast, slow = Scrubber(pii), Scrubber(pii)
    fast_items: list[tuple[str, Any]] = []
    slow_items: list[tuple[str, Any]] = []
    encoded = fast.data_json(attrs, fast_items)
    # Twice: the second call takes the memoised shape.
    assert fast.data_json(attrs) == encoded
    assert json.loads(encoded) == json.loads(dumps(slow.data(attrs, slow_items)))
    assert fast_items == slow_items


def test_secrets_never_survive_the_fast_path() -> None:
    encoded = (
        Scrubber()
        .data_json(
            {
                "url.full": "http://hub.local/x?token=abc123",
                "http.request.header.cookie": "session=abc123",
                "api_key": "abc123",
                "note": "Bearer abc123",
            }
        )
        .decode()
    )
    assert "abc123" not in encoded
    assert encoded.count(FILTERED) == 4
