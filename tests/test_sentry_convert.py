"""The encoder's fast paths answer exactly what the straightforward code answers: the scrubber
and the memoised classification of op, description, status and transaction name."""

from __future__ import annotations

import json
from typing import Any

import pytest
from opentelemetry.trace import SpanKind, StatusCode

from widgettrace.exporters._sentry_convert import (
    FILTERED,
    Scrubber,
    _derive,
    classify,
    dumps,
)

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


# --- classify: one memoised lookup, the same answers as the four functions it replaces ---

_K = SpanKind
CLASSIFY_CASES: list[tuple[str, SpanKind, StatusCode, dict[str, Any]]] = [
    ("GET /api/widgets/{id}", _K.SERVER, StatusCode.UNSET,
     {"http.request.method": "GET", "http.route": "/api/widgets/{id}",
      "url.path": "/api/widgets/7", "http.response.status_code": 200}),
    # Same route, another path and status: the memo must not answer with the first.
    ("GET /api/widgets/{id}", _K.SERVER, StatusCode.UNSET,
     {"http.request.method": "GET", "http.route": "/api/widgets/{id}",
      "url.path": "/api/widgets/8", "http.response.status_code": 404}),
    ("GET /api/widgets/{id}", _K.SERVER, StatusCode.ERROR,
     {"http.request.method": "GET", "http.route": "/api/widgets/{id}",
      "url.path": "/api/widgets/8", "http.response.status_code": 200}),
    # No route: the path names the transaction, so it must be part of the memo key.
    ("GET", _K.SERVER, StatusCode.UNSET,
     {"http.request.method": "GET", "url.path": "/a", "http.response.status_code": 200}),
    ("GET", _K.SERVER, StatusCode.UNSET,
     {"http.request.method": "GET", "url.path": "/b", "http.response.status_code": 200}),
    ("GET", _K.SERVER, StatusCode.UNSET, {"http.method": "GET", "http.target": "/old?x=1"}),
    # Clients: the URL (also the path beside a route) makes the description.
    ("POST", _K.CLIENT, StatusCode.UNSET,
     {"http.request.method": "POST", "url.full": "http://hub.local:8080/search?q=1"}),
    ("POST", _K.CLIENT, StatusCode.UNSET,
     {"http.request.method": "POST", "url.full": "http://git.local/search"}),
    ("GET", _K.CLIENT, StatusCode.UNSET,
     {"http.request.method": "GET", "server.address": "hub.local", "url.path": "/x",
      "http.route": "/r"}),
    ("GET", _K.CLIENT, StatusCode.UNSET,
     {"http.request.method": "GET", "server.address": "hub.local", "url.path": "/y",
      "http.route": "/r"}),
    ("GET", _K.INTERNAL, StatusCode.UNSET, {"http.request.method": "GET", "http.route": "/r"}),
    ("convert", _K.INTERNAL, StatusCode.UNSET, {"widget.op": "widget.conversion"}),
    ("convert", _K.INTERNAL, StatusCode.UNSET, {"widget.op": "widget.validation"}),
    ("tools/call", _K.CLIENT, StatusCode.UNSET, {"mcp.method.name": "tools/call"}),
    ("tools/call", _K.SERVER, StatusCode.ERROR, {"mcp.method.name": "tools/call"}),
    ("chat", _K.CLIENT, StatusCode.UNSET, {"gen_ai.operation.name": "chat"}),
    ("chat", _K.CLIENT, StatusCode.UNSET, {"gen_ai.operation.name": "invoke_agent"}),
    ("q", _K.CLIENT, StatusCode.UNSET, {"db.system.name": "sqlite", "db.query.text": "SELECT 1"}),
    ("q", _K.CLIENT, StatusCode.UNSET, {"db.system.name": "sqlite", "db.query.text": "SELECT 2"}),
    ("q", _K.CLIENT, StatusCode.UNSET, {"db.system": "pg", "db.statement": "SELECT 3"}),
    ("send", _K.PRODUCER, StatusCode.UNSET, {"messaging.system": "kafka"}),
    ("recv", _K.CONSUMER, StatusCode.UNSET, {"messaging.system": "kafka"}),
    ("call", _K.CLIENT, StatusCode.UNSET, {"rpc.system": "grpc"}),
    ("plain", _K.INTERNAL, StatusCode.UNSET, {}),
    ("plain", _K.SERVER, StatusCode.OK, {"widget.id": "w-1"}),
    ("plain", _K.INTERNAL, StatusCode.ERROR, {"widget.id": "w-1"}),
    # Unhashable values (a plain dict of lists): computed without the memo.
    ("GET", _K.CLIENT, StatusCode.UNSET,
     {"http.request.method": "GET", "url.full": ["http://a/x"], "widget.list": [1, 2]}),
]  # fmt: skip


def test_classify_answers_what_the_four_functions_answer() -> None:
    # Twice through, so the second pass is answered from the memo for every case.
    for _ in range(2):
        for name, kind, code, attrs in CLASSIFY_CASES:
            got = classify(name, kind, code, attrs, tuple(attrs))
            # _derive calls op_for, description_for, status_for and transaction_name afresh.
            assert got == _derive(name, kind, code, attrs), (name, kind, attrs)


def test_classify_distinguishes_cases_that_share_a_memo_shape() -> None:
    route = {"http.request.method": "GET", "http.route": "/r", "url.path": "/r/1"}
    ok = classify("GET /r", _K.SERVER, StatusCode.UNSET, route, tuple(route))
    # The same key tuple with another route or kind is a different transaction.
    other_route = dict(route, **{"http.route": "/s"})
    assert classify("GET /r", _K.SERVER, StatusCode.UNSET, other_route, tuple(route))[3] == "GET /s"
    assert classify("GET /r", _K.CLIENT, StatusCode.UNSET, route, tuple(route))[0] == "http.client"
    assert ok[:4] == ("http.server", "GET /r", "ok", "GET /r")
