"""The test receivers themselves: SentryReceiver speaks Sentry's ingest protocol to the real SDK.

The real ``sentry_sdk`` client runs in a subprocess (``sentry_sdk.init`` is process-global; the test
process must stay clean for the rest of the suite) and sends to a ``SentryReceiver`` on 127.0.0.1.
Fault modes show the SDK's own behaviour: a 429 makes it drop and report the drop in a client
report, a 500 or a reset is recorded as a network error, a slow receiver still gets the event.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
import uuid
import zlib
from pathlib import Path
from typing import Any

import pytest
from receivers.bugsink import BugsinkServer, BugsinkUnavailable
from receivers.relay import assert_valid, normalize
from receivers.sentry_receiver import SentryReceiver, parse_auth_header, parse_envelope
from receivers.spotlight import (
    SpotlightEnvelope,
    SpotlightServer,
    SpotlightUnavailable,
    items_of,
)

_SDK_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import sentry_sdk

    options = json.loads(sys.argv[2])
    sentry_sdk.init(dsn=sys.argv[1] or None, **options)
    exec(sys.argv[3])
    sentry_sdk.flush(timeout=15)
    """
)


def run_sdk(dsn: str, code: str, **options: Any) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter after ``sentry_sdk.init(dsn=dsn, **options)``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SENTRY_", "OTEL_", "WIDGETTRACE_")) and k != "PYTHONPATH"
    }
    result = subprocess.run(
        [sys.executable, "-c", _SDK_SCRIPT, dsn, json.dumps(options), textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def post(
    url: str, body: bytes, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    request = urllib.request.Request(url, data=body, method="POST", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}"), dict(exc.headers)


AUTH = {"X-Sentry-Auth": "Sentry sentry_key=public, sentry_version=7, sentry_client=test/1.0"}


def make_event(message: str = "hello", **extra: Any) -> dict[str, Any]:
    return {
        "event_id": uuid.uuid4().hex,
        "timestamp": 1_700_000_000.0,
        "platform": "python",
        "level": "error",
        "message": message,
        **extra,
    }


# -- the real SDK against the receiver -------------------------------------------------------


def test_sdk_error_event_arrives_decoded_and_valid(sentry_receiver: SentryReceiver) -> None:
    run_sdk(
        sentry_receiver.dsn,
        """
        def fail():
            raise ValueError("boom")
        try:
            fail()
        except ValueError as exc:
            sentry_sdk.capture_exception(exc)
        """,
        release="widgettrace-test@1.0",
    )
    events = sentry_receiver.wait_for(lambda r: r.events(), timeout=10)
    exc = events[0]["exception"]["values"][-1]
    assert exc["type"] == "ValueError"
    assert exc["value"] == "boom"
    assert events[0]["release"] == "widgettrace-test@1.0"
    envelope = sentry_receiver.envelopes[0]
    assert envelope.project_id == "1"
    assert envelope.auth["sentry_key"] == "public"
    assert envelope.auth["sentry_client"].startswith("sentry.python/")
    # The SDK compresses (gzip, or br when brotli is installed): the receiver decoded it.
    assert envelope.content_encoding in ("gzip", "br")
    item = sentry_receiver.items("event")[0]
    assert item.normalized is not None
    assert item.normalization_errors == []


def test_sdk_transaction_with_child_spans(sentry_receiver: SentryReceiver) -> None:
    run_sdk(
        sentry_receiver.dsn,
        """
        with sentry_sdk.start_transaction(name="checkout", op="task"):
            with sentry_sdk.start_span(op="db", name="select widgets"):
                pass
            with sentry_sdk.start_span(op="http.client", name="GET hub.local/search"):
                pass
        """,
        traces_sample_rate=1.0,
    )
    (transaction,) = sentry_receiver.wait_for(lambda r: r.transactions(), timeout=10)
    assert transaction["transaction"] == "checkout"
    assert sorted(s["op"] for s in transaction["spans"]) == ["db", "http.client"]
    assert sentry_receiver.normalization_errors() == []


@pytest.mark.parametrize(
    ("experiments", "encoding"),
    [({"transport_compression_algo": "gzip"}, "gzip"), ({"transport_compression_level": 0}, "")],
)
def test_sdk_compression_settings(
    sentry_receiver: SentryReceiver, experiments: dict[str, Any], encoding: str
) -> None:
    run_sdk(sentry_receiver.dsn, "sentry_sdk.capture_message('hi')", _experiments=experiments)
    sentry_receiver.wait_for(lambda r: r.events(), timeout=10)
    assert sentry_receiver.envelopes[0].content_encoding == encoding


def test_429_makes_sdk_drop_and_report(sentry_receiver: SentryReceiver) -> None:
    # Only errors are limited, so the client report itself (category "internal") goes through.
    sentry_receiver.set_fault("429", times=1, retry_after=60, rate_limits="60:error:organization")
    run_sdk(
        sentry_receiver.dsn,
        """
        sentry_sdk.capture_message("first")   # answered 429: the SDK learns the limit
        sentry_sdk.flush(timeout=10)
        sentry_sdk.capture_message("second")  # dropped locally, counted as ratelimit_backoff
        """,
    )
    sentry_receiver.wait_for(lambda r: r.client_reports(), timeout=10)
    assert [r.status for r in sentry_receiver.rejected] == [429]
    assert sentry_receiver.events() == []
    assert sentry_receiver.discarded().get(("ratelimit_backoff", "error")) == 1


def test_500_is_recorded_as_network_error(sentry_receiver: SentryReceiver) -> None:
    sentry_receiver.set_fault("500", times=1)
    run_sdk(sentry_receiver.dsn, "sentry_sdk.capture_message('lost')")
    sentry_receiver.wait_for(lambda r: r.client_reports(), timeout=10)
    assert [r.status for r in sentry_receiver.rejected] == [500]
    assert sentry_receiver.events() == []
    assert sentry_receiver.discarded().get(("network_error", "error")) == 1


def test_reset_is_accounted_for(sentry_receiver: SentryReceiver) -> None:
    sentry_receiver.set_fault("reset", times=1)
    run_sdk(sentry_receiver.dsn, "sentry_sdk.capture_message('reset me')")
    sentry_receiver.wait_for(lambda r: r.client_reports(), timeout=10)
    assert [r.reason for r in sentry_receiver.rejected] == ["reset"]
    assert sentry_receiver.events() == []
    assert sentry_receiver.discarded().get(("network_error", "error")) == 1


def test_slow_receiver_still_gets_the_event(sentry_receiver: SentryReceiver) -> None:
    sentry_receiver.set_fault("slow", delay=1.0)
    run_sdk(sentry_receiver.dsn, "sentry_sdk.capture_message('patience')")
    events = sentry_receiver.wait_for(lambda r: r.events(), timeout=10)
    assert events[0]["message"] == "patience"
    assert sentry_receiver.rejected == []


# -- the protocol, driven by hand ------------------------------------------------------------


def _envelope(*items: tuple[dict[str, Any], bytes], headers: dict[str, Any] | None = None) -> bytes:
    lines = [json.dumps(headers or {}).encode()]
    for item_headers, payload in items:
        lines.extend([json.dumps(item_headers).encode(), payload])
    return b"\n".join(lines) + b"\n"


def test_parse_envelope_length_and_newline_delimited() -> None:
    with_newline = b'{"message": "a\\nb"}\n'  # a payload with a newline byte inside its length
    body = (
        b'{"event_id": "abc"}\n'
        + json.dumps({"type": "attachment", "length": len(with_newline)}).encode()
        + b"\n"
        + with_newline
        + b"\n"
        + b'{"type": "event"}\n{"message": "second"}\n'
        + b'{"type": "client_report"}\n{"discarded_events": []}'
    )
    headers, items = parse_envelope(body)
    assert headers == {"event_id": "abc"}
    assert [i.type for i in items] == ["attachment", "event", "client_report"]
    assert items[0].payload == with_newline
    assert items[1].json == {"message": "second"}
    assert items[2].json == {"discarded_events": []}
    with pytest.raises(ValueError, match="runs past"):
        parse_envelope(b'{}\n{"type": "event", "length": 99}\n{}')


def test_parse_auth_header() -> None:
    assert parse_auth_header("Sentry sentry_key=k, sentry_version=7, sentry_client=x/1") == {
        "sentry_key": "k",
        "sentry_version": "7",
        "sentry_client": "x/1",
    }


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "deflate-raw", "identity", "br"])
def test_body_encodings(sentry_receiver: SentryReceiver, encoding: str) -> None:
    event = make_event(encoding)
    raw = _envelope(({"type": "event"}, json.dumps(event).encode()))
    headers = dict(AUTH)
    if encoding == "gzip":
        body = gzip.compress(raw)
    elif encoding == "deflate":
        body = zlib.compress(raw)
    elif encoding == "deflate-raw":
        compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        body = compressor.compress(raw) + compressor.flush()
        encoding = "deflate"
    elif encoding == "br":
        try:
            import brotli  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            # Without brotli the receiver must refuse the body, not store garbage.
            status, _, _ = post(
                sentry_receiver.envelope_url, raw, {**headers, "Content-Encoding": "br"}
            )
            assert status == 400
            assert sentry_receiver.events() == []
            return
        body = brotli.compress(raw)
    else:
        body = raw
    if encoding != "identity":
        headers["Content-Encoding"] = encoding
    status, answer, _ = post(sentry_receiver.envelope_url, body, headers)
    assert status == 200
    assert answer["id"] == event["event_id"]
    assert sentry_receiver.events()[0]["message"] == event["message"]


def test_store_endpoint_with_query_auth(sentry_receiver: SentryReceiver) -> None:
    event = make_event("legacy")
    url = f"{sentry_receiver.url}/api/1/store/?sentry_key=public&sentry_version=7"
    status, answer, _ = post(url, json.dumps(event).encode(), {"Content-Type": "application/json"})
    assert status == 200
    assert answer == {"id": event["event_id"]}
    assert sentry_receiver.envelopes[0].endpoint == "store"
    assert sentry_receiver.events() == [event]


def test_envelope_header_dsn_authenticates(sentry_receiver: SentryReceiver) -> None:
    body = _envelope(
        ({"type": "event"}, json.dumps(make_event()).encode()),
        headers={"dsn": sentry_receiver.dsn},
    )
    status, _, _ = post(sentry_receiver.envelope_url, body)
    assert status == 200
    assert len(sentry_receiver.events()) == 1


def test_missing_or_wrong_key_is_refused(sentry_receiver: SentryReceiver) -> None:
    body = _envelope(({"type": "event"}, json.dumps(make_event()).encode()))
    assert post(sentry_receiver.envelope_url, body)[0] == 401
    wrong = {"X-Sentry-Auth": "Sentry sentry_key=nope, sentry_version=7"}
    assert post(sentry_receiver.envelope_url, body, wrong)[0] == 401
    assert sentry_receiver.events() == []
    assert [r.status for r in sentry_receiver.rejected] == [401, 401]


def test_429_headers(sentry_receiver: SentryReceiver) -> None:
    sentry_receiver.set_fault("429", retry_after=30, rate_limits="30:transaction:organization")
    body = _envelope(({"type": "event"}, json.dumps(make_event()).encode()))
    status, _, headers = post(sentry_receiver.envelope_url, body, AUTH)
    assert status == 429
    assert headers["Retry-After"] == "30"
    assert headers["X-Sentry-Rate-Limits"] == "30:transaction:organization"
    sentry_receiver.set_fault(None)
    assert post(sentry_receiver.envelope_url, body, AUTH)[0] == 200


@pytest.mark.normalization_errors_expected
def test_normalization_errors_are_collected(sentry_receiver: SentryReceiver) -> None:
    bad = make_event(timestamp="not a time")
    good = make_event("fine")
    body = _envelope(
        ({"type": "event"}, json.dumps(bad).encode()),
        ({"type": "event"}, json.dumps(good).encode()),
    )
    assert post(sentry_receiver.envelope_url, body, AUTH)[0] == 200
    ((item, errors),) = sentry_receiver.normalization_errors()
    assert item.json["event_id"] == bad["event_id"]
    assert errors[0]["name"] == "timestamp"


def test_relay_normalize_function() -> None:
    normalized, errors = normalize(make_event())
    assert errors == []
    assert normalized["level"] == "error"
    _, errors = normalize(make_event(timestamp="nope"))
    assert errors
    with pytest.raises(AssertionError, match="timestamp"):
        assert_valid(make_event(timestamp="nope"))


def test_wait_for_times_out_with_summary(sentry_receiver: SentryReceiver) -> None:
    with pytest.raises(TimeoutError, match="received items"):
        sentry_receiver.wait_for(lambda: len(sentry_receiver.events()) > 0, timeout=0.2)
    assert sentry_receiver.wait_for(lambda r: r.events(), 0.1, raise_on_timeout=False) == []


def test_clear_forgets_everything(sentry_receiver: SentryReceiver) -> None:
    body = _envelope(({"type": "event"}, json.dumps(make_event()).encode()))
    post(sentry_receiver.envelope_url, body, AUTH)
    assert sentry_receiver.counts() == {"event": 1}
    sentry_receiver.clear()
    assert sentry_receiver.envelopes == []
    assert sentry_receiver.counts() == {}


def test_context_manager_binds_loopback_and_stops() -> None:
    with SentryReceiver() as receiver:
        assert receiver.dsn == f"http://public@127.0.0.1:{receiver.port}/1"
        url = receiver.url
    with pytest.raises(urllib.error.URLError, match="refused"):
        urllib.request.urlopen(url, timeout=2)


# -- Bugsink and Spotlight: the real servers come up and ingest what the SDK sends ---------------


def test_bugsink_groups_sdk_errors_into_issues_with_release(bugsink: BugsinkServer) -> None:
    project = bugsink.create_project(f"receivers-{uuid.uuid4().hex[:8]}")
    run_sdk(
        project.dsn,
        """
        def fail(kind, n):
            if kind == "value":
                raise ValueError(f"bad widget {n}")
            raise KeyError(f"missing {n}")
        for kind, n in [("value", 1), ("value", 2), ("key", 1), ("value", 3)]:
            try:
                fail(kind, n)
            except Exception as exc:
                sentry_sdk.capture_exception(exc)
        """,
        release="receivers@1.2.3",
        environment="test",
    )
    issues = bugsink.wait_for_issues(
        project.id, lambda issues: sum(i["digested_event_count"] for i in issues) == 4
    )
    by_type = {i["calculated_type"]: i for i in issues}
    assert set(by_type) == {"ValueError", "KeyError"}
    assert by_type["ValueError"]["digested_event_count"] == 3
    assert by_type["KeyError"]["digested_event_count"] == 1
    assert by_type["ValueError"]["events_at"] == ["receivers@1.2.3"]
    assert [r["version"] for r in bugsink.releases(project.id)] == ["receivers@1.2.3"]
    (first, *_) = bugsink.events(by_type["ValueError"]["id"])
    data = bugsink.event(first["id"])["data"]
    assert data["exception"]["values"][-1]["value"] == "bad widget 1"
    assert data["environment"] == "test"


def test_spotlight_replays_transaction_and_error(spotlight: SpotlightServer) -> None:
    name = f"receivers-{uuid.uuid4().hex[:8]}"
    env = {"SENTRY_SPOTLIGHT": spotlight.url}
    run_sdk(
        "",
        f"""
        with sentry_sdk.start_transaction(name={name!r}, op="task"):
            with sentry_sdk.start_span(op="db", name="select widgets"):
                pass
            with sentry_sdk.start_span(op="http.client", name="GET hub.local/search"):
                try:
                    raise RuntimeError({name!r})
                except RuntimeError as exc:
                    sentry_sdk.capture_exception(exc)
        """,
        traces_sample_rate=1.0,
        spotlight=env["SENTRY_SPOTLIGHT"],
    )

    def ours(envelopes: list[SpotlightEnvelope]) -> bool:
        txs = [t for t in items_of(envelopes, "transaction") if t.get("transaction") == name]
        errors = [
            e
            for e in items_of(envelopes, "event")
            if e.get("exception", {}).get("values", [{}])[-1].get("value") == name
        ]
        return bool(txs and errors)

    envelopes = spotlight.wait_for(ours, timeout=15)
    (transaction,) = [t for t in items_of(envelopes, "transaction") if t["transaction"] == name]
    (error,) = [
        e
        for e in items_of(envelopes, "event")
        if e.get("exception", {}).get("values", [{}])[-1].get("value") == name
    ]
    # (The SDK's own POST of the error to Spotlight, made inside the transaction, shows up as an
    # extra http.client span from its stdlib integration: look for ours by name.)
    spans = {(s["op"], s["description"]) for s in transaction["spans"]}
    assert {("db", "select widgets"), ("http.client", "GET hub.local/search")} <= spans
    trace_id = transaction["contexts"]["trace"]["trace_id"]
    assert error["contexts"]["trace"]["trace_id"] == trace_id
    # Every payload Spotlight got is valid by Sentry's rules too.
    assert normalize(transaction)[1] == []
    assert normalize(error)[1] == []


def test_missing_receiver_fails_unless_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    # Imported here: a module-level import would beat pytest_plugins to it (no assert rewriting).
    from receivers.fixtures import ALLOW_MISSING_ENV, missing_receiver

    monkeypatch.delenv(ALLOW_MISSING_ENV, raising=False)
    with pytest.raises(pytest.fail.Exception, match="Bugsink could not start"):
        missing_receiver("Bugsink", "no venv")
    monkeypatch.setenv(ALLOW_MISSING_ENV, "1")
    with pytest.raises(pytest.skip.Exception, match="Bugsink could not start"):
        missing_receiver("Bugsink", "no venv")


def test_servers_report_why_they_cannot_start(tmp_path: Path) -> None:
    with pytest.raises(BugsinkUnavailable, match="no Bugsink virtual environment"):
        BugsinkServer(tmp_path / "b", venv=tmp_path / "no-venv").start()
    with pytest.raises(SpotlightUnavailable, match="Spotlight reported no port"):
        SpotlightServer(tmp_path / "s", node="/bin/false").start(timeout=5)
