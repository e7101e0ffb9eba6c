"""End to end against a real Spotlight: whole example traces, child spans included, arrive there.

The example platform runs under ``opentelemetry-instrument`` with ``SENTRY_SPOTLIGHT`` pointing at
the session's Spotlight sidecar (127.0.0.1) and no DSN, with the local log on in a temporary file.
Every transaction and error the local log holds must also be in Spotlight, identical span for
span: a cascade iteration's trace spans four processes (driver, platform, ranker and linter
widgets), and each of their transactions arrives with all its child spans.
"""

from __future__ import annotations

from typing import Any

import pytest
from receivers.example import DESIGNED_ERRORS, ExampleRun, run_example
from receivers.relay import normalize
from receivers.spotlight import SpotlightEnvelope, SpotlightServer, items_of


def _trace_id(record: dict[str, Any]) -> str:
    return str(record.get("contexts", {}).get("trace", {}).get("trace_id"))


def _span_ids(transaction: dict[str, Any]) -> set[str]:
    return {str(s["span_id"]) for s in transaction.get("spans") or []}


@pytest.fixture(scope="module")
def spotlight_run(
    spotlight: SpotlightServer, tmp_path_factory: pytest.TempPathFactory
) -> tuple[ExampleRun, list[SpotlightEnvelope]]:
    tmp = tmp_path_factory.mktemp("e2e-spotlight")
    run = run_example(
        tmp,
        SENTRY_SPOTLIGHT=spotlight.url,
        WIDGETTRACE_LOG_PATH=str(tmp / "sentry.log"),
    )
    assert run.result.returncode == 0, run.describe()
    assert run.transactions, f"the local log holds no transactions\n{run.describe()}"
    wanted = {t["event_id"] for t in run.transactions} | {e["event_id"] for e in run.errors}

    def complete(envelopes: list[SpotlightEnvelope]) -> bool:
        have = {p.get("event_id") for e in envelopes for _, p in e.items if isinstance(p, dict)}
        return wanted <= have

    try:
        envelopes = spotlight.wait_for(complete, timeout=30)
    except TimeoutError as exc:
        pytest.fail(f"{exc}\n{run.describe()}\nSpotlight log:\n{spotlight.log_tail()}")
    return run, envelopes


def _ours(run: ExampleRun, envelopes: list[SpotlightEnvelope], kind: str) -> list[dict[str, Any]]:
    ids = {r["event_id"] for r in run.records if "event_id" in r}
    payloads = items_of(envelopes, kind)
    return [p for p in payloads if isinstance(p, dict) and p.get("event_id") in ids]


def test_every_transaction_arrives_with_all_its_child_spans(
    spotlight_run: tuple[ExampleRun, list[SpotlightEnvelope]],
) -> None:
    run, envelopes = spotlight_run
    received = {t["event_id"]: t for t in _ours(run, envelopes, "transaction")}
    assert len(received) == len(run.transactions)
    for logged in run.transactions:
        got = received[logged["event_id"]]
        assert got["transaction"] == logged["transaction"]
        assert _trace_id(got) == _trace_id(logged)
        assert _span_ids(got) == _span_ids(logged), logged["transaction"]


def test_a_cascade_iteration_is_one_whole_trace_across_processes(
    spotlight_run: tuple[ExampleRun, list[SpotlightEnvelope]],
) -> None:
    run, envelopes = spotlight_run
    transactions = _ours(run, envelopes, "transaction")
    servers = [t for t in transactions if t["transaction"] == "POST /api/cascade/iterations"]
    assert len(servers) == 3
    for server in servers:
        trace = [t for t in transactions if _trace_id(t) == _trace_id(server)]
        services = {
            t.get("contexts", {}).get("otel", {}).get("resource", {}).get("service.name")
            or t.get("tags", {}).get("service.name")
            for t in trace
        }
        assert {"widget-platform", "widget-ranker", "widget-linter"} <= services, services
        # Parent links hold inside the trace: every transaction but the root hangs off a span
        # (or transaction root) of another transaction in the same trace.
        known = {t["contexts"]["trace"]["span_id"] for t in trace}
        for t in trace:
            known |= _span_ids(t)
        roots = [t for t in trace if not t["contexts"]["trace"].get("parent_span_id")]
        assert len(roots) == 1, [t["transaction"] for t in roots]
        for t in trace:
            parent = t["contexts"]["trace"].get("parent_span_id")
            assert parent is None or parent in known, t["transaction"]
        ops = {s.get("op") for s in server.get("spans") or []}
        assert "http.client" in ops
        assert len(server.get("spans") or []) >= 10


def test_errors_arrive_linked_to_their_traces(
    spotlight_run: tuple[ExampleRun, list[SpotlightEnvelope]],
) -> None:
    run, envelopes = spotlight_run
    errors = _ours(run, envelopes, "event")
    by_type: dict[str, int] = {}
    for error in errors:
        kind = str(error["exception"]["values"][-1]["type"])
        by_type[kind] = by_type.get(kind, 0) + 1
    assert by_type == DESIGNED_ERRORS
    trace_ids = {_trace_id(t) for t in run.transactions}
    for error in errors:
        assert _trace_id(error) in trace_ids


def test_what_spotlight_received_is_valid_for_sentry(
    spotlight_run: tuple[ExampleRun, list[SpotlightEnvelope]],
) -> None:
    run, envelopes = spotlight_run
    for kind in ("transaction", "event"):
        for payload in _ours(run, envelopes, kind):
            _, errors = normalize(payload)
            assert errors == [], (kind, payload.get("transaction"), errors)


def test_local_log_and_spotlight_hold_the_same_payloads(
    spotlight_run: tuple[ExampleRun, list[SpotlightEnvelope]],
) -> None:
    run, envelopes = spotlight_run
    received = {p["event_id"]: dict(p) for p in _ours(run, envelopes, "transaction")}
    received.update({p["event_id"]: dict(p) for p in _ours(run, envelopes, "event")})
    for record in run.records:
        if "event_id" not in record:
            continue  # span, log and session lines (tests/test_wire_spotlight.py)
        got = received[record["event_id"]]
        if "type" not in record:
            # Spotlight's parser copies the item header's type into the payload
            # (dist/server/parser/processEnvelope.js); the payload sent had none.
            got.pop("type", None)
        assert got == record, (record.get("transaction"), record.get("exception"))
