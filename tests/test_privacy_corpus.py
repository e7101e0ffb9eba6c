"""Nothing sensitive leaves the process by default: the secret corpus, end to end.

A real FastAPI app (``tests/peers/secrets_app.py``) runs under ``opentelemetry-instrument`` with
``SENTRY_DSN`` pointing at our Sentry-protocol receiver and the local log on, header capture on
and both HTTP conventions emitted. It leaks each of the corpus's values
(``tests/peers/secret_corpus.py``: key=value pairs, Bearer/Basic, JWT, PEM, AWS, GitHub, Slack,
Stripe, OpenAI and Google keys, passwords in URLs and DSNs, Luhn-valid card numbers, emails...)
in every place text can travel: query strings, headers, log lines, breadcrumbs, tags, contexts,
span attributes, ``db.statement``/``db.query.text`` (span descriptions), span events, outgoing
URLs, messages, exception values and frame local variables. Each value is then counted in the raw
bytes of every envelope the receiver got and in the raw bytes of the local log: 0.

The test also checks that the texts around the secrets did arrive (so a place that silently
stopped carrying data cannot pass as "scrubbed"), and that ``WIDGETTRACE_SEND_DEFAULT_PII=true``
lets the email (personal data, not a credential) through while every credential stays out.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from peers.harness import CaptureServer, PeerProcess, clean_env, wait_for
from peers.secret_corpus import PII, SECRETS, URL_SECRETS
from receivers.sentry_receiver import SentryReceiver
from receivers.spotlight import SpotlightEnvelope, SpotlightServer

_HEADERS = "authorization,cookie,x-api-key"


def _run_app(
    tmp_path: Path, dsn: str, *, pii: bool, wait: Callable[[], bool], **extra: str
) -> Path:
    log_path = tmp_path / "sentry.log"
    env = clean_env(
        SENTRY_DSN=dsn,
        WIDGETTRACE_LOG_PATH=str(log_path),
        OTEL_SERVICE_NAME="secrets-app",
        OTEL_SEMCONV_STABILITY_OPT_IN="http/dup",
        OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST=_HEADERS,
        OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_CLIENT_REQUEST=_HEADERS,
        WIDGETTRACE_SEND_DEFAULT_PII="true" if pii else "false",
        WIDGETTRACE_CAPTURE_PAYLOADS="true",
        **extra,
    )
    app = PeerProcess("secrets_app.py", [], env, instrument=True)
    try:
        query = "&".join(f"{key}={SECRETS[name]}" for name, key in URL_SECRETS.items())
        headers = {
            "Authorization": f"Basic {SECRETS['basic']}",
            "Cookie": f"session_id={SECRETS['cookie_session']}",
            "X-Api-Key": SECRETS["header_api_key"],
        }
        leak = requests.get(f"{app.url}/leak?{query}", headers=headers, timeout=30)
        assert leak.status_code == 500
        assert requests.get(f"{app.url}/handled?{query}", headers=headers, timeout=30).ok
        assert requests.get(f"{app.url}/mcp", timeout=30).json() == {"is_error": False}
        assert requests.get(f"{app.url}/flush", timeout=30).json()["flushed"] is True
        assert wait_for(wait, timeout=20)
    finally:
        app.stop()
    return log_path


def _sentry_run(tmp_path: Path, receiver: SentryReceiver, *, pii: bool, **extra: str) -> Path:
    def arrived() -> bool:
        # 3 error events (/leak, /handled, the captured message) and the transactions.
        counts = receiver.counts()
        return counts.get("event", 0) >= 3 and counts.get("transaction", 0) >= 5

    return _run_app(tmp_path, receiver.dsn, pii=pii, wait=arrived, **extra)


def _wire_bytes(receiver: SentryReceiver) -> bytes:
    parts: list[bytes] = []
    for envelope in receiver.envelopes:
        parts.append(json.dumps(envelope.headers).encode())
        for item in envelope.items:
            parts.append(json.dumps(item.headers).encode())
            parts.append(item.payload)
    parts.extend(r.body for r in receiver.rejected)
    return b"\n".join(parts)


def hits(blob: bytes, *, pii: bool = False) -> dict[str, int]:
    """Occurrences of each corpus value in ``blob`` (only those found)."""
    found = {}
    for name, value in SECRETS.items():
        if pii and name in PII:
            continue
        count = blob.count(value.encode())
        if count:
            found[name] = count
    return found


@pytest.fixture(scope="module")
def default_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[bytes, bytes, SentryReceiver]]:
    with SentryReceiver() as receiver:
        log_path = _sentry_run(tmp_path_factory.mktemp("corpus"), receiver, pii=False)
        yield _wire_bytes(receiver), log_path.read_bytes(), receiver


def test_no_corpus_value_reaches_the_receiver(
    default_run: tuple[bytes, bytes, SentryReceiver],
) -> None:
    wire, _, _ = default_run
    assert len(SECRETS) >= 20
    assert hits(wire) == {}


def test_no_corpus_value_reaches_the_local_log(
    default_run: tuple[bytes, bytes, SentryReceiver],
) -> None:
    _, local, _ = default_run
    assert local.strip(), "the local log is empty"
    assert hits(local) == {}


def test_every_place_carried_its_text_scrubbed(
    default_run: tuple[bytes, bytes, SentryReceiver],
) -> None:
    """The places were really exercised: the words around each secret arrived, filtered."""
    _, _, receiver = default_run
    for item in receiver.items():
        assert not item.normalization_errors, (item.type, item.normalization_errors)
    events = receiver.events()
    leak = next(e for e in events if "conversion failed" in json.dumps(e))
    (exc,) = leak["exception"]["values"]
    assert "login failed for user=bob password=[Filtered]" in exc["value"]
    frames = exc["stacktrace"]["frames"]
    leak_frame = next(f for f in frames if f["function"] == "leak")
    assert "msg" in leak_frame["vars"] and "conversion failed" in leak_frame["vars"]["msg"]
    crumbs = [c.get("message", "") for c in leak["breadcrumbs"]["values"]]
    assert any("step failed: uploading with [Filtered]" in c for c in crumbs), crumbs
    assert any(c == "cloning with [Filtered]" for c in crumbs), crumbs
    assert "corpus_jwt" in leak["contexts"]
    message = next(e for e in events if "corpus message" in json.dumps(e))
    assert "[Filtered]" in json.dumps(message)
    spans = [s for t in receiver.transactions() for s in t.get("spans", [])]
    statements = [s["description"] for s in spans if s.get("op") == "db"]
    assert any(d.startswith("SELECT * FROM users WHERE note = 'charge") for d in statements)
    assert all("[Filtered]" in d for d in statements if "users" in d), statements
    events_data = [s["data"].get("otel.events") for s in spans if s["data"].get("otel.events")]
    assert events_data, "span events did not arrive"
    payloads = json.dumps([s["data"] for s in spans if s.get("op", "").startswith("mcp")])
    assert "fetching https://hub.local/api/widgets?token=[Filtered]" in payloads, payloads[:2000]
    server = next(t for t in receiver.transactions() if t["transaction"] == "GET /leak")
    data = server["contexts"]["trace"]["data"]
    assert any("[Filtered]" in str(v) for k, v in data.items() if "url" in k or "target" in k)


def test_pii_opt_in_lets_the_email_through_but_no_credential(tmp_path: Path) -> None:
    with SentryReceiver() as receiver:
        log_path = _sentry_run(tmp_path, receiver, pii=True)
        wire = _wire_bytes(receiver)
    assert wire.count(SECRETS["email"].encode()) > 0
    assert hits(wire, pii=True) == {}
    assert hits(log_path.read_bytes(), pii=True) == {}


def test_otlp_mode_sends_no_corpus_value(tmp_path: Path) -> None:
    """WIDGETTRACE_SENTRY_MODE=otlp: spans as OTLP protobuf, errors as envelopes; the corpus
    values are counted in the raw request bodies (protobuf strings are plain UTF-8)."""
    with CaptureServer() as server:

        def arrived() -> bool:
            paths = [r.path for r in server.requests]
            return any("otlp" in p for p in paths) and sum("envelope" in p for p in paths) >= 3

        log_path = _run_app(
            tmp_path,
            server.dsn,
            pii=False,
            wait=arrived,
            WIDGETTRACE_SENTRY_MODE="otlp",
            OTEL_TRACES_EXPORTER="none",
            OTEL_METRICS_EXPORTER="none",
            OTEL_LOGS_EXPORTER="none",
        )
        bodies = [r.body for r in server.requests]
    otlp = b"".join(b for r, b in zip(server.requests, bodies, strict=True) if "otlp" in r.path)
    assert b"corpus jwt" in otlp and b"[Filtered]" in otlp  # the spans did arrive, scrubbed
    assert hits(b"\n".join(bodies)) == {}
    assert hits(log_path.read_bytes()) == {}


def test_every_frames_variables_are_scrubbed_too(tmp_path: Path) -> None:
    """WIDGETTRACE_LOCAL_VARIABLES=all: library frames' locals (ASGI scopes, span attributes
    with the URL, where the probe found the query secrets) are sent, and scrubbed."""
    with SentryReceiver() as receiver:
        log_path = _sentry_run(tmp_path, receiver, pii=False, WIDGETTRACE_LOCAL_VARIABLES="all")
        wire = _wire_bytes(receiver)
        events = receiver.events()
    frames = [
        f
        for e in events
        for v in (e.get("exception") or {}).get("values", [])
        for f in v["stacktrace"]["frames"]
    ]
    assert any("vars" in f and not f.get("in_app") for f in frames)
    assert hits(wire) == {}
    assert hits(log_path.read_bytes()) == {}


def test_spans_to_a_collector_are_scrubbed(tmp_path: Path) -> None:
    """OTEL_TRACES_EXPORTER=otlp beside the Sentry export: the collector (a capture server
    speaking OTLP/HTTP) gets the spans scrubbed too."""
    with SentryReceiver() as receiver, CaptureServer() as collector:

        def arrived() -> bool:
            traces = [r for r in collector.requests if r.path.endswith("/v1/traces")]
            return bool(traces) and receiver.counts().get("event", 0) >= 3

        _run_app(
            tmp_path,
            receiver.dsn,
            pii=False,
            wait=arrived,
            OTEL_TRACES_EXPORTER="otlp",
            OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
            OTEL_EXPORTER_OTLP_ENDPOINT=collector.url,
            OTEL_METRICS_EXPORTER="none",
            OTEL_LOGS_EXPORTER="none",
        )
        otlp = b"".join(r.body for r in collector.requests if r.path.endswith("/v1/traces"))
    assert b"corpus jwt" in otlp and b"[Filtered]" in otlp  # the spans did arrive, scrubbed
    assert hits(otlp) == {}


def test_spotlight_gets_nothing_either(tmp_path: Path, spotlight: SpotlightServer) -> None:
    """SENTRY_SPOTLIGHT beside the DSN: the SDK feeds Spotlight itself, from the same
    (scrubbed) events and transactions."""
    with SentryReceiver() as receiver:
        _sentry_run(tmp_path, receiver, pii=False, SENTRY_SPOTLIGHT=spotlight.url)

    def ours(envelopes: list[SpotlightEnvelope]) -> bool:
        blob = json.dumps([e.items for e in envelopes], default=str)
        return "corpus message" in blob and "GET /leak" in blob

    envelopes = spotlight.wait_for(ours, timeout=30)
    blob = json.dumps([[e.headers, e.items] for e in envelopes], default=str, ensure_ascii=False)
    assert "[Filtered]" in blob
    assert hits(blob.encode()) == {}
