"""The example platform under ``opentelemetry-instrument`` leaves its story in the local log.

Runs ``opentelemetry-instrument python examples/run.py`` once (module fixture, about 15-25 s)
with no DSN and a temporary ``WIDGETTRACE_LOG_PATH``, then reads the JSON lines back: the
endpoints' transactions, the three designed failures as error events (by exception type, each
exactly once, linked to its trace), one trace per cascade iteration across processes, threads,
asyncio tasks and both MCP links, the domain and configuration-only spans, tokens and cost.

Everything is real: the subprocesses, uvicorn servers, the stdio and streamable-HTTP MCP widgets,
SQLite and git. Nothing here imports the example's modules.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
ENDPOINTS = (
    "POST /api/widgets/discover",
    "POST /api/widgets/convert",
    "GET /api/widgets/status",
    "POST /api/cascade/iterations",
)
#: The designed failures: exception type -> (endpoint whose trace holds it, file that raised it).
FAILURES = {
    "ReadTimeout": ("POST /api/widgets/discover", "discovery.py"),
    "JSONDecodeError": ("POST /api/widgets/convert", "conversion.py"),
    "IntegrityError": ("POST /api/widgets/convert", "registry.py"),
}
ITERATIONS = 3
#: Settings from the developer's shell that would send the run elsewhere or change its shape.
_SCRUBBED = ("SENTRY_", "OTEL_", "WIDGETTRACE_")


@dataclass
class ExampleRun:
    """One run of the example: its process result, log records and work directory."""

    result: subprocess.CompletedProcess[str]
    records: list[dict[str, Any]]
    workdir: Path

    @property
    def transactions(self) -> list[dict[str, Any]]:
        """Transaction payloads."""
        return [r for r in self.records if r.get("type") == "transaction"]

    @property
    def errors(self) -> list[dict[str, Any]]:
        """Error event payloads."""
        return [r for r in self.records if r.get("type") != "transaction" and "exception" in r]

    def named(self, name: str) -> list[dict[str, Any]]:
        """Transactions called ``name``."""
        return [t for t in self.transactions if t.get("transaction") == name]

    def in_trace(self, trace_id: str) -> list[dict[str, Any]]:
        """Every transaction of one trace (all processes)."""
        return [t for t in self.transactions if trace_id_of(t) == trace_id]


def trace_id_of(record: dict[str, Any]) -> str:
    """The record's trace id."""
    return str(record.get("contexts", {}).get("trace", {}).get("trace_id"))


def service_of(record: dict[str, Any]) -> str:
    """The OTel service.name of the process that sent the record."""
    resource = record.get("contexts", {}).get("otel", {}).get("resource", {})
    return str(resource.get("service.name") or record.get("tags", {}).get("service.name"))


def spans(transaction: dict[str, Any]) -> list[dict[str, Any]]:
    """A transaction's child spans."""
    return list(transaction.get("spans") or [])


def exception_type(event: dict[str, Any]) -> str:
    """The outermost exception's type name."""
    return str(event["exception"]["values"][-1]["type"])


def _env(log_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED)}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["WIDGETTRACE_LOG_PATH"] = str(log_path)
    env.pop("PYTHONPATH", None)
    return env


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> ExampleRun:
    """Run the example once for the whole module."""
    tmp = tmp_path_factory.mktemp("example")
    log_path = tmp / "sentry.log"
    workdir = tmp / "world"
    result = subprocess.run(
        [
            str(BIN / "opentelemetry-instrument"),
            "python",
            "examples/run.py",
            "--workdir",
            str(workdir),
        ],
        cwd=REPO,
        env=_env(log_path),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    records = []
    if log_path.exists():
        records = [json.loads(line) for line in log_path.read_text().splitlines() if line]
    return ExampleRun(result, records, workdir)


def _describe(run: ExampleRun) -> str:
    return (
        f"exit {run.result.returncode}\nstdout:\n{run.result.stdout}\nstderr:\n{run.result.stderr}"
    )


def test_run_completes_and_says_where_telemetry_went(example: ExampleRun) -> None:
    assert example.result.returncode == 0, _describe(example)
    out = example.result.stdout.lower()
    assert "telemetry went to:" in out
    for expected in ("local log:", "sentry.log", "errors by type:", "slowest endpoint:"):
        assert expected in out, out
    for kind in FAILURES:
        assert kind.lower() in out, out


def test_every_endpoint_has_server_transactions(example: ExampleRun) -> None:
    for endpoint in ENDPOINTS:
        found = example.named(endpoint)
        have = sorted({t["transaction"] for t in example.transactions})
        assert found, f"no transaction {endpoint!r}; have {have}"
        assert all(t["contexts"]["trace"].get("op") == "http.server" for t in found)
        assert all(service_of(t) == "widget-platform" for t in found)
    assert len(example.named("POST /api/widgets/convert")) == 5
    assert len(example.named("POST /api/cascade/iterations")) == ITERATIONS


@pytest.mark.parametrize("kind", sorted(FAILURES))
def test_designed_failure_is_one_linked_error_event(example: ExampleRun, kind: str) -> None:
    endpoint, raised_in = FAILURES[kind]
    events = [e for e in example.errors if exception_type(e) == kind]
    assert len(events) == 1, (
        f"{kind}: {len(events)} error events; all: {[exception_type(e) for e in example.errors]}"
    )
    event = events[0]
    assert service_of(event) == "widget-platform"
    # Linked to the request's trace, and to a span inside it.
    traces = {trace_id_of(t) for t in example.named(endpoint)}
    assert trace_id_of(event) in traces
    span_id = event["contexts"]["trace"].get("span_id")
    span_ids = {s["span_id"] for t in example.in_trace(trace_id_of(event)) for s in spans(t)} | {
        t["contexts"]["trace"]["span_id"] for t in example.in_trace(trace_id_of(event))
    }
    assert span_id in span_ids
    # The traceback reaches the example's own code.
    frames = event["exception"]["values"][-1]["stacktrace"]["frames"]
    files = [str(f.get("abs_path") or f.get("filename")) for f in frames]
    assert any(name.endswith(raised_in) for name in files), files


def test_failing_requests_answer_500_and_the_scan_failure_is_partial(example: ExampleRun) -> None:
    statuses = sorted(
        t["contexts"]["trace"].get("data", {}).get("http.response.status_code")
        or t.get("contexts", {}).get("response", {}).get("status_code")
        or t["contexts"]["trace"].get("status")
        for t in example.named("POST /api/widgets/convert")
    )
    assert len([s for s in statuses if s in (500, "internal_error")]) == 2, statuses
    (discover,) = example.named("POST /api/widgets/discover")
    scans = [s for s in spans(discover) if str(s.get("description", "")).startswith("scan ")]
    assert len(scans) == 4
    failed = [s for s in scans if s.get("data", {}).get("widget.outcome") == "failure"]
    assert [s["description"] for s in failed] == ["scan vendored-models"]


def test_each_iteration_is_one_trace_across_processes_threads_and_tasks(
    example: ExampleRun,
) -> None:
    iterations = example.named("POST /api/cascade/iterations")
    assert len({trace_id_of(t) for t in iterations}) == ITERATIONS
    for server in iterations:
        trace = example.in_trace(trace_id_of(server))
        services = {service_of(t) for t in trace}
        # Driver (run.py), platform, and the ranker widget (HTTP) in every iteration; the
        # linter widget (stdio) too.
        assert {"widget-platform", "widget-ranker", "widget-linter"} <= services, services
        assert any(t["transaction"].startswith("run.py cascade iteration") for t in trace)
        ops = [s.get("op") for s in spans(server)]
        descriptions = [str(s.get("description")) for s in spans(server)]
        assert any(d.startswith("iteration ") for d in descriptions), descriptions
        assert sum(d.startswith("invoke_agent ") for d in descriptions) == 4
        assert any(d == "execute_tool record_decision" for d in descriptions)
        # Registry writes ran in worker threads, hub calls in asyncio.to_thread: both inside.
        assert any(d == "registry upsert" for d in descriptions), descriptions
        assert "http.client" in ops
        # Ranker's own outgoing requests are in the same trace.
        ranker = [t for t in trace if service_of(t) == "widget-ranker"]
        assert any(s.get("op") == "http.client" for t in ranker for s in spans(t))


def test_llm_spans_carry_tokens_and_cost_except_for_the_unpriced_model(
    example: ExampleRun,
) -> None:
    chats = [
        s
        for t in example.named("POST /api/cascade/iterations")
        for s in spans(t)
        if str(s.get("description", "")).startswith("chat ")
    ]
    assert len(chats) == 4 * ITERATIONS
    for chat in chats:
        data = chat.get("data", {})
        assert data.get("gen_ai.usage.input_tokens", 0) > 0
        assert data.get("gen_ai.usage.output_tokens", 0) > 0
        if chat["description"] == "chat widgetron-7b-ft":
            assert "gen_ai.cost.total_tokens" not in data  # missing from prices.json: no cost
        else:
            assert data.get("gen_ai.cost.total_tokens", 0) > 0, chat


def test_configuration_only_spans_are_present(example: ExampleRun) -> None:
    descriptions = {str(s.get("description")) for t in example.transactions for s in spans(t)}
    for traced in ("validate_config", "run_inference", "read_manifest", "WidgetRegistry.count"):
        assert traced in descriptions, sorted(descriptions)


def test_mcp_calls_link_platform_and_widgets(example: ExampleRun) -> None:
    for server in example.named("POST /api/cascade/iterations"):
        client_spans = {
            s["span_id"]: s
            for s in spans(server)
            if s.get("data", {}).get("mcp.method.name") == "tools/call"
        }
        assert client_spans, "no MCP client span for tools/call in the platform transaction"
        trace = example.in_trace(trace_id_of(server))
        for service, tool in (("widget-linter", "lint_config"), ("widget-ranker", "rank_widgets")):
            handled = [
                t
                for t in trace
                if service_of(t) == service
                and t["contexts"]["trace"].get("data", {}).get("mcp.method.name") == "tools/call"
                and t["contexts"]["trace"].get("data", {}).get("gen_ai.tool.name") == tool
            ]
            assert handled, f"{service} handled no tools/call {tool} in this trace"
            for t in handled:
                assert t["contexts"]["trace"].get("parent_span_id") in client_spans


def test_linter_tool_exception_reaches_sentry_once(example: ExampleRun) -> None:
    """Issue 5, point 5: the tool's real exception, before MCP makes it an isError result."""
    rejected = [
        e
        for e in example.errors
        if exception_type(e) == "ValueError" and service_of(e) == "widget-linter"
    ]
    # legacy-tokenizer is linted in iterations 2 and 3: two calls, two exceptions.
    assert len(rejected) == 2, [(exception_type(e), service_of(e)) for e in example.errors]


def test_no_internal_errors_in_any_process(example: ExampleRun) -> None:
    outputs = [example.result.stdout, example.result.stderr]
    outputs += [p.read_text(errors="replace") for p in example.workdir.glob("*.log")]
    for text in outputs:
        assert "widgettrace: internal error" not in text, text[-3000:]
