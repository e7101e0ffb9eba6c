"""The frontend tunnel's rules, on a real FastAPI app in process.

tests/test_tunnel_browser.py drives it end to end from Chromium.

The Sentry client is the real SDK configured by widgettrace (``sentry_pipeline``), with a
capturing transport standing in for the local log / HTTP sender the tunnel hands envelopes to.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from test_sentry_support import DSN, sentry_pipeline

from widgettrace.exporters.tunnel import LOCAL_DSN, EnvelopeError, SentryTunnel, parse_envelope


def _app(tunnel: SentryTunnel) -> TestClient:
    app = FastAPI()
    app.add_route("/tunnel", tunnel, methods=["POST"])  # the documented one line
    return TestClient(app)


def _envelope(dsn: str, event: dict[str, Any], *extra: tuple[dict[str, Any], bytes]) -> bytes:
    payload = json.dumps(event).encode()
    parts = [
        json.dumps({"event_id": event["event_id"], "dsn": dsn}).encode(),
        json.dumps({"type": "event", "length": len(payload)}).encode(),
        payload,
    ]
    for headers, body in extra:
        parts += [json.dumps(headers).encode(), body]
    return b"\n".join(parts) + b"\n"


BROWSER_EVENT: dict[str, Any] = {
    "event_id": "c" * 32,
    "platform": "javascript",
    "exception": {"values": [{"type": "Error", "value": "boom"}]},
    "request": {
        "url": "http://127.0.0.1/page",
        "headers": {"Authorization": "Bearer secret-token", "User-Agent": "Chromium"},
    },
    "extra": {"password": "hunter2", "panel": "widgets"},
    "user": {"id": "u-1", "ip_address": "10.1.2.3", "email": "a@example.org"},
}


def test_forwards_scrubbed_event_and_drops_replays() -> None:
    with sentry_pipeline() as pipeline:
        client = _app(SentryTunnel(dsn=DSN))
        replay = ({"type": "replay_recording", "length": 5}, b"<dom>")
        answer = client.post("/tunnel", content=_envelope(DSN, BROWSER_EVENT, replay))
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"id": "c" * 32}
        (envelope,) = pipeline.transport.envelopes
        assert envelope.headers["dsn"] == DSN
        assert [item.type for item in envelope.items] == ["event"]
        (event,) = pipeline.transport.events()
        assert event["request"]["headers"]["Authorization"] == "[Filtered]"
        assert event["extra"]["password"] == "[Filtered]"
        assert event["extra"]["panel"] == "widgets"
        assert event["user"] == {"id": "u-1"}
        assert event["exception"]["values"][0]["value"] == "boom"


def test_refuses_other_dsn_malformed_and_oversized() -> None:
    with sentry_pipeline() as pipeline:
        tunnel = SentryTunnel(dsn=DSN, max_bytes=4096)
        client = _app(tunnel)
        other = "http://public@127.0.0.1:9/2"  # same host and key, another project
        assert client.post("/tunnel", content=_envelope(other, BROWSER_EVENT)).status_code == 403
        other_key = "http://other@127.0.0.1:9/1"
        assert (
            client.post("/tunnel", content=_envelope(other_key, BROWSER_EVENT)).status_code == 403
        )
        no_dsn = b'{"event_id": "x"}\n{"type": "event"}\n{}\n'
        assert client.post("/tunnel", content=no_dsn).status_code == 400
        truncated = _envelope(DSN, BROWSER_EVENT).replace(b'"length": ', b'"length": 9')
        assert client.post("/tunnel", content=truncated).status_code == 400
        not_object = b'{"dsn": "' + DSN.encode() + b'"}\n{"type": "event"}\n[1, 2]\n'
        assert client.post("/tunnel", content=not_object).status_code == 400
        big = dict(BROWSER_EVENT, extra={"blob": "x" * 5000})
        assert client.post("/tunnel", content=_envelope(DSN, big)).status_code == 413
        gzip = client.post("/tunnel", content=b"\x1f\x8b", headers={"content-encoding": "gzip"})
        assert gzip.status_code == 415
        assert pipeline.transport.envelopes == []
        assert tunnel.refused == {403: 2, 400: 3, 413: 1, 415: 1}


def test_rate_limit_per_client() -> None:
    with sentry_pipeline() as pipeline:
        client = _app(SentryTunnel(dsn=DSN, rate_per_minute=2))
        statuses = [client.post("/tunnel", content=_envelope(DSN, BROWSER_EVENT)) for _ in range(3)]
        assert [s.status_code for s in statuses] == [200, 200, 429]
        assert int(statuses[2].headers["retry-after"]) >= 1
        assert len(pipeline.transport.envelopes) == 2


def test_without_dsn_only_the_local_dsn_is_accepted() -> None:
    with sentry_pipeline(dsn=None):
        tunnel = SentryTunnel(dsn=None)
        if tunnel.dsn is not None:
            pytest.skip("SENTRY_DSN is set in this environment")
        client = _app(tunnel)
        assert client.post("/tunnel", content=_envelope(DSN, BROWSER_EVENT)).status_code == 403
        assert (
            client.post("/tunnel", content=_envelope(LOCAL_DSN, BROWSER_EVENT)).status_code == 200
        )


@pytest.mark.parametrize(
    "body",
    [b"", b"not json\n", b"[]\n{}\n", b'{"dsn": "x"}\n', b'{"dsn": "x"}\n{"type": 1}\n{}\n'],
)
def test_parse_envelope_rejects(body: bytes) -> None:
    with pytest.raises(EnvelopeError):
        parse_envelope(body)


def test_parse_envelope_with_and_without_lengths() -> None:
    body = b'{"dsn": "d"}\n{"type": "event", "length": 7}\n{"a":1}\n{"type": "log"}\n{"b": 2}'
    headers, items = parse_envelope(body)
    assert headers == {"dsn": "d"}
    assert items == [
        ({"type": "event", "length": 7}, b'{"a":1}'),
        ({"type": "log"}, b'{"b": 2}'),
    ]
