"""One trace across real processes: Sentry peer -> widgettrace -> plain OTel -> widgettrace.

Five processes talk real HTTP on 127.0.0.1 (scripts in ``tests/peers/chain_peer.py``):

A. a plain Sentry program (``sentry_sdk.init(traces_sample_rate=1.0)``, urllib client);
B. a widgettrace FastAPI service (requests client), with an active Sentry client whose
   stdlib integration would add its own headers unless told not to;
C. a plain OpenTelemetry service (default W3C propagators, requests client);
D. a widgettrace FastAPI service again (under ``opentelemetry-instrument``);
E. a plain Sentry WSGI server, to show a Sentry SDK continues the trace widgettrace sends.

Each server returns the raw headers it received (repeated headers kept), so the test checks
the wire itself: one value per header at every hop, one trace id, and each server span's parent
is exactly the client span of the hop before.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from peers.harness import (
    PEERS_DIR,
    VENV_BIN,
    CaptureServer,
    PeerProcess,
    clean_env,
    envelope_items,
    read_spans,
    wait_for,
)
from receivers.relay import normalize

pytestmark = pytest.mark.timeout(120)

PROPAGATION_HEADERS = ("traceparent", "tracestate", "sentry-trace", "baggage")

# widgettrace under opentelemetry-instrument (distro + configurator from the entry points).
AUTO_ENV = {
    "WIDGETTRACE_SENTRY_MODE": "processor",
    "WIDGETTRACE_LOG_PATH": "off",
    "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "widgettrace_functions,mcp",
    "OTEL_TRACES_EXPORTER": "none",
    "OTEL_METRICS_EXPORTER": "none",
    "OTEL_LOGS_EXPORTER": "none",
}


def values(hop: dict[str, Any], name: str) -> list[str]:
    return [v for k, v in hop["headers"] if k.lower() == name]


def baggage_of(hop: dict[str, Any]) -> dict[str, str]:
    (header,) = values(hop, "baggage")
    members = [m.strip().split("=", 1) for m in header.split(",")]
    keys = [k for k, _ in members]
    assert len(keys) == len(set(keys)), f"repeated baggage key in {header}"
    return {k: v for k, v in members}


def spans_of(path: Path, trace_id: str) -> list[dict[str, Any]]:
    return [s for s in read_spans(path) if s["trace_id"] == trace_id]


class Chain:
    """C and D (shared by the tests in this module) plus the span files."""

    def __init__(self, tmp: Path, receiver: CaptureServer) -> None:
        self.tmp = tmp
        self.receiver = receiver
        self.peers: list[PeerProcess] = []
        self.e_spans = tmp / "e.jsonl"
        self.d_spans = tmp / "d.jsonl"
        self.c_spans = tmp / "c.jsonl"
        try:
            self._start_shared()
        except BaseException:
            self.stop()  # never leave a started peer behind
            raise

    def _start_shared(self) -> None:
        self.e = self.start(["sentry-service", "--service", "E", "--spans", str(self.e_spans)])
        self.d = self.start(
            [
                "widgettrace-service",
                "--service",
                "D",
                "--spans",
                str(self.d_spans),
                "--downstream",
                self.e.url,
            ],
            auto=True,
        )
        self.c = self.start(
            [
                "otel-service",
                "--service",
                "C",
                "--spans",
                str(self.c_spans),
                "--downstream",
                self.d.url,
            ]
        )

    def start(self, args: list[str], *, auto: bool = False) -> PeerProcess:
        if auto:
            env = clean_env(**AUTO_ENV, OTEL_SERVICE_NAME=args[2], SENTRY_DSN=self.receiver.dsn)
            peer = PeerProcess("chain_peer.py", [*args, "--setup", "auto"], env, instrument=True)
        else:
            peer = PeerProcess("chain_peer.py", args, clean_env())
        self.peers.append(peer)
        return peer

    def start_b(self, name: str, *extra: str, auto: bool = False) -> tuple[PeerProcess, Path]:
        spans = self.tmp / f"{name}.jsonl"
        args = ["widgettrace-service", "--service", name, "--spans", str(spans)]
        return self.start([*args, "--downstream", self.c.url, *extra], auto=auto), spans

    def run_sentry_client(self, url: str) -> dict[str, Any]:
        out = subprocess.run(
            [sys.executable, str(PEERS_DIR / "chain_peer.py"), "sentry-client", url],
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert out.returncode == 0, out.stderr
        result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
        return result

    def stop(self) -> None:
        for peer in reversed(self.peers):
            peer.stop()


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    with CaptureServer() as receiver:
        chain = Chain(tmp_path_factory.mktemp("chain"), receiver)
        try:
            yield chain
        finally:
            chain.stop()


def check_one_trace(chain: Chain, result: dict[str, Any], b_spans: Path) -> None:
    trace_id = result["trace_id"]
    (a_client,) = [s for s in result["spans"] if s["op"] == "http.client"]
    hop_b = result["response"]
    hop_c = hop_b["downstream"]
    hop_d = hop_c["downstream"]
    hop_e = hop_d["downstream"]

    # Exactly one value per propagation header on every hop.
    for hop in (hop_b, hop_c, hop_d, hop_e):
        for name in PROPAGATION_HEADERS:
            assert len(values(hop, name)) <= 1, (hop["service"], name, values(hop, name))

    # A -> B: Sentry's own headers, naming A's http.client span.
    assert values(hop_b, "sentry-trace") == [f"{trace_id}-{a_client['span_id']}-1"]
    assert values(hop_b, "traceparent") == []
    a_dsc = baggage_of(hop_b)
    assert a_dsc["sentry-trace_id"] == trace_id

    def wait_spans(path: Path, count: int) -> list[dict[str, Any]]:
        assert wait_for(lambda: len(spans_of(path, trace_id)) >= count), read_spans(path)
        return spans_of(path, trace_id)

    b = wait_spans(b_spans, 2)
    c = wait_spans(chain.c_spans, 2)
    d = wait_spans(chain.d_spans, 2)
    e = wait_spans(chain.e_spans, 1)
    (b_server,) = [s for s in b if s["kind"] == "SERVER"]
    (b_client,) = [s for s in b if s["kind"] == "CLIENT"]
    (c_server,) = [s for s in c if s["kind"] == "SERVER"]
    (c_client,) = [s for s in c if s["kind"] == "CLIENT"]
    (d_server,) = [s for s in d if s["kind"] == "SERVER"]
    (d_client,) = [s for s in d if s["kind"] == "CLIENT"]
    (e_server,) = e

    # B continues A's trace under A's client span.
    assert b_server["parent_span_id"] == a_client["span_id"]
    assert b_server["parent_is_remote"] is True
    assert b_client["parent_span_id"] == b_server["span_id"]

    # B -> C: both dialects name B's client span; the head's DSC passes on frozen, merged.
    (traceparent,) = values(hop_c, "traceparent")
    assert traceparent.startswith(f"00-{trace_id}-{b_client['span_id']}-")
    assert values(hop_c, "sentry-trace") == [f"{trace_id}-{b_client['span_id']}-1"]
    assert {k: v for k, v in baggage_of(hop_c).items() if k.startswith("sentry-")} == a_dsc
    assert c_server["parent_span_id"] == b_client["span_id"]
    assert c_client["parent_span_id"] == c_server["span_id"]

    # C (plain OTel) -> D: W3C only, the baggage (with Sentry's DSC) passed through.
    (traceparent,) = values(hop_d, "traceparent")
    assert traceparent.startswith(f"00-{trace_id}-{c_client['span_id']}-")
    assert values(hop_d, "sentry-trace") == []
    assert baggage_of(hop_d) == baggage_of(hop_c)
    assert d_server["parent_span_id"] == c_client["span_id"]

    # D -> E: a plain Sentry SDK continues the trace under D's client span, and keeps the
    # head's DSC (Sentry's frozen baggage) for whatever it calls next.
    assert values(hop_e, "sentry-trace") == [f"{trace_id}-{d_client['span_id']}-1"]
    assert {k: v for k, v in baggage_of(hop_e).items() if k.startswith("sentry-")} == a_dsc
    assert e_server["parent_span_id"] == d_client["span_id"]
    assert hop_e["sentry_trace"].startswith(f"{trace_id}-")
    e_dsc = dict(m.split("=", 1) for m in hop_e["baggage"].split(","))
    assert e_dsc["sentry-trace_id"] == trace_id
    assert e_dsc["sentry-sample_rand"] == a_dsc["sentry-sample_rand"]


def test_chain_with_explicit_setup(chain: Chain) -> None:
    b, b_spans = chain.start_b("B-explicit")
    result = chain.run_sentry_client(b.url + "/hop")
    check_one_trace(chain, result, b_spans)


def test_chain_under_opentelemetry_instrument(chain: Chain) -> None:
    """B and D set up by widgettrace's distro and configurator (span processor mode): their
    Sentry transactions continue the Sentry peer's trace, under the right parent spans."""
    b, b_spans = chain.start_b("B-auto", auto=True)
    result = chain.run_sentry_client(b.url + "/hop")
    check_one_trace(chain, result, b_spans)
    trace_id = result["trace_id"]
    (a_client,) = [s for s in result["spans"] if s["op"] == "http.client"]
    (c_client,) = [s for s in spans_of(chain.c_spans, trace_id) if s["kind"] == "CLIENT"]

    def transactions() -> list[dict[str, Any]]:
        return [
            payload
            for kind, payload in envelope_items(chain.receiver.snapshot())
            if kind == "transaction" and payload["contexts"]["trace"]["trace_id"] == trace_id
        ]

    assert wait_for(lambda: len(transactions()) >= 2, timeout=15), transactions()
    parents = {t["contexts"]["trace"].get("parent_span_id") for t in transactions()}
    assert parents == {a_client["span_id"], c_client["span_id"]}  # B's and D's
    for transaction in transactions():
        assert normalize(transaction)[1] == []  # valid by Sentry's own rules (sentry-relay)


def test_without_our_sentry_options_sentry_adds_competing_headers(chain: Chain) -> None:
    """The control: a default ``sentry_sdk.init`` puts a second sentry-trace and baggage on
    the wire (Sentry's own, naming a span that does not exist in the OTel trace), which is
    exactly what ``SENTRY_SDK_OPTIONS`` prevents. Also proves the capture sees duplicates."""
    b, _ = chain.start_b("B-default", "--sentry", "default")
    result = chain.run_sentry_client(b.url + "/hop")
    hop_c = result["response"]["downstream"]
    assert len(values(hop_c, "sentry-trace")) == 2
    assert len(values(hop_c, "baggage")) == 2
    (traceparent,) = values(hop_c, "traceparent")
    otel_span = traceparent.split("-")[2]
    assert {v.split("-")[1] for v in values(hop_c, "sentry-trace")} - {otel_span}


def test_upstream_unsampled_and_garbage(chain: Chain) -> None:
    b, b_spans = chain.start_b("B-edge")
    trace_id, span_id = "5" * 32, "6" * 16
    hop = requests.get(
        b.url + "/hop", headers={"sentry-trace": f"{trace_id}-{span_id}-0"}, timeout=30
    ).json()
    hop_c = hop["downstream"]
    (sentry_trace,) = values(hop_c, "sentry-trace")
    assert sentry_trace.startswith(trace_id)
    assert sentry_trace.endswith("-0")
    (traceparent,) = values(hop_c, "traceparent")
    assert traceparent.startswith(f"00-{trace_id}-")
    assert not int(traceparent[-2:], 16) & 1
    assert baggage_of(hop_c)["sentry-sampled"] == "false"

    garbage = {
        "sentry-trace": "not-a-trace",
        "traceparent": "00-xyz-01",
        "baggage": "=;;,sentry-trace_id,%%%",
    }
    response = requests.get(b.url + "/hop", headers=garbage, timeout=30)
    assert response.status_code == 200
    hop_c = response.json()["downstream"]
    (traceparent,) = values(hop_c, "traceparent")
    new_trace = traceparent.split("-")[1]
    assert wait_for(lambda: len(spans_of(b_spans, new_trace)) == 2)
    (server,) = [s for s in spans_of(b_spans, new_trace) if s["kind"] == "SERVER"]
    assert server["parent_span_id"] is None  # garbage ignored: a new trace
    # The unsampled trace was never exported by B.
    assert spans_of(b_spans, trace_id) == []


@pytest.mark.parametrize(
    ("propagators", "expected"),
    [
        (None, ["TraceContextTextMapPropagator", "W3CBaggagePropagator", "SentryPropagator"]),
        (
            "tracecontext,baggage,sentry",
            ["TraceContextTextMapPropagator", "W3CBaggagePropagator", "SentryPropagator"],
        ),
        ("tracecontext", ["TraceContextTextMapPropagator"]),
    ],
)
def test_global_propagator_under_opentelemetry_instrument(
    propagators: str | None, expected: list[str]
) -> None:
    """What ``opentelemetry-instrument`` leaves as the global propagator, and that ``sentry``
    names widgettrace's class (not sentry-sdk's entry point of the same name)."""
    code = (
        "import json; from opentelemetry.propagate import get_global_textmap as g; "
        "m = getattr(g(), 'propagators', None) or getattr(g(), '_propagators', []); "
        "print(json.dumps([[type(p).__name__, type(p).__module__] for p in m]))"
    )
    env = clean_env(**{**AUTO_ENV, "WIDGETTRACE_SENTRY_MODE": "off"})
    if propagators is not None:
        env["OTEL_PROPAGATORS"] = propagators
    out = subprocess.run(
        [str(VENV_BIN / "opentelemetry-instrument"), sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    members = json.loads(out.stdout.strip().splitlines()[-1])
    assert [name for name, _ in members] == expected
    for name, module in members:
        if name == "SentryPropagator":
            assert module == "widgettrace.exporters.propagation"
