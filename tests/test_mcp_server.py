"""``widgettrace mcp``: the insights served over MCP, tested with the SDK's own client.

Against the example platform's log (one run of examples/run.py under opentelemetry-instrument,
as scripts/run-example.sh does): over stdio (the command as a subprocess) and over streamable
HTTP (``--http PORT``), every tool answers with structured content that matches the example's
designed failures; the log is never written; the server's own MCP calls are traced (our MCP
instrumentation) into its trace log and never into the log it serves. In-process (the same
server object, the SDK's in-memory transport) for the edges: JSON-RPC errors for bad arguments,
pagination, scrubbing, resources.
"""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS
from receivers.example import DESIGNED_ERRORS, clean_env, run_example

from widgettrace.mcp_server._backend import Backend
from widgettrace.mcp_server._server import TOOL_NAMES, build_server

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from gen_log import error_event, transaction, write_lines

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def example_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("mcp-example")
    run = run_example(tmp, WIDGETTRACE_LOG_PATH=str(tmp / "logs" / "sentry.log"))
    assert run.result.returncode == 0, run.describe()
    assert run.errors and run.transactions, run.describe()
    return tmp / "logs" / "sentry.log"


def _digest(path: Path) -> tuple[str, int]:
    data = path.read_bytes()
    return hashlib.sha256(data).hexdigest(), path.stat().st_mtime_ns


def _run(client_target: Any, body: Callable[[Client], Awaitable[None]]) -> None:
    if isinstance(client_target, StdioServerParameters):
        # stdio_client(params), not Client(params): the latter needs mcp >= 2.1 (we support 2.0).
        client_target = stdio_client(client_target)

    async def main() -> None:
        async with Client(client_target) as client:
            await body(client)

    anyio.run(main)


async def _exercise_every_tool(client: Client) -> dict[str, Any]:
    """Call each tool once; check the answers against the example's designed failures."""
    listed = await client.list_tools()
    tools = {t.name: t for t in listed.tools}
    assert set(tools) == set(TOOL_NAMES)
    for tool in tools.values():
        assert tool.description, tool.name
        assert tool.output_schema is not None, tool.name
        for name, prop in tool.input_schema.get("properties", {}).items():
            assert prop.get("description") or prop.get("enum") or "anyOf" in prop, (tool.name, name)

    got: dict[str, Any] = {}

    async def call(name: str, args: dict[str, Any]) -> dict[str, Any]:
        result = await client.call_tool(name, args)
        assert not result.is_error, (name, result.content)
        assert isinstance(result.structured_content, dict), name
        got[name] = result.structured_content
        return result.structured_content

    issues = (await call("list_issues", {"limit": 100}))["issues"]
    titles = " ".join(i["title"] for i in issues)
    for exc_type in DESIGNED_ERRORS:
        assert exc_type in titles, (exc_type, titles)
    lint = next(i for i in issues if i["title"].startswith("ValueError"))
    assert lint["count"] == DESIGNED_ERRORS["ValueError"]

    detail = await call("get_issue", {"issue_id": lint["issue_id"]})
    assert detail["issue"]["issue_id"] == lint["issue_id"]
    assert "legacy" in (detail["message"] or "")
    in_app = [f for f in detail["stacktrace"] if f["in_app"]]
    assert in_app and in_app[-1]["function"] == "lint_config", detail["stacktrace"]
    assert detail["journey"], "no journey before the error"
    assert detail["trace"]["trace_id"] == lint["latest_trace"]

    trace = await call("get_trace", {"trace_id": lint["latest_trace"]})
    assert {"widget-platform", "widget-linter"} <= set(trace["services"])

    def walk(nodes: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for node in nodes:
            yield node
            yield from walk(node["children"])

    nodes = list(walk(trace["roots"]))
    assert all(n["duration_ms"] is not None and n["op"] for n in nodes)
    assert any(e["group_key"] == lint["issue_id"] for n in nodes for e in n["errors"])

    found = await call("search_events", {"query": "timed out", "kind": "error"})
    assert found["total"] >= 1 and all(e["kind"] == "error" for e in found["events"])
    health = await call("release_health", {})
    assert health["releases"] and health["releases"][-1]["errors"] >= sum(DESIGNED_ERRORS.values())
    perf = await call("performance", {"limit": 50})
    names = {e["name"] for e in perf["endpoints"]}
    assert "POST /api/widgets/discover" in names
    standup = await call("standup", {"format": "both"})
    assert standup["markdown"] and standup["data"]["figures"]["errors"] >= 1
    by_model = await call("cost", {"group_by": "model"})
    assert by_model["total_usd"] > 0 and by_model["rows"][0]["key"]
    return got


def test_stdio_every_tool_read_only_and_traced_elsewhere(example_log: Path, tmp_path: Path) -> None:
    before = _digest(example_log)
    own = tmp_path / "own.log"
    params = StdioServerParameters(
        command=str(BIN / "widgettrace"),
        args=["mcp", "--log", str(example_log), "--trace-log", str(own)],
        env=clean_env(),
    )
    _run(params, _exercise_every_tool)
    assert _digest(example_log) == before, "the served log was written"
    # Our MCP instrumentation traced the server's own calls, into its own log only.
    deadline = time.monotonic() + 10
    while not own.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    records = [json.loads(line) for line in own.read_text().splitlines() if line]
    names = {r.get("transaction") for r in records if r.get("type") == "transaction"}
    assert "tools/call get_trace" in names, names
    assert "widgettrace-mcp" not in example_log.read_text()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_streamable_http_on_loopback(example_log: Path, tmp_path: Path) -> None:
    port = _free_port()
    err = tmp_path / "server.err"
    with err.open("wb") as stderr:
        proc = subprocess.Popen(
            [str(BIN / "widgettrace"), "mcp", "--log", str(example_log), "--http", str(port),
             "--trace-log", "off"],
            env=clean_env(),
            stderr=stderr,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while f"http://127.0.0.1:{port}/mcp" not in err.read_text():
            assert proc.poll() is None, err.read_text()
            assert time.monotonic() < deadline, err.read_text()
            time.sleep(0.1)
        while True:  # the URL is printed just before uvicorn listens
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, err.read_text()
                time.sleep(0.1)
        # Bound to loopback only: the listening socket's address is 127.0.0.1.
        listening = subprocess.run(
            ["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True, check=False
        ).stdout
        local = [line.split()[3] for line in listening.splitlines() if line.strip()]
        assert local == [f"127.0.0.1:{port}"], listening
        got: dict[str, Any] = {}

        async def body(client: Client) -> None:
            got.update(await _exercise_every_tool(client))

        _run(f"http://127.0.0.1:{port}/mcp", body)
        assert set(got) == set(TOOL_NAMES)
    finally:
        proc.terminate()
        proc.wait(timeout=20)


# --- in-process: the edges ------------------------------------------------------------------


@pytest.fixture
def small_log(tmp_path: Path) -> Path:
    log = tmp_path / "sentry.log"
    now = time.time()
    records: list[dict[str, Any]] = []
    for i in range(7):
        records.append(
            error_event(
                now - 600 + i, f"Error{i}", "discovery", f"step{i}", release="app@2", user="u1"
            )
        )
    records.append(
        error_event(
            now - 30, "PermissionError", "registry", "write",
            value="denied: Authorization: Bearer sk-live-0123456789 for bob@example.com",
            release="app@2",
        )
    )  # fmt: skip
    records.append(transaction(now - 20, "POST /api/widgets/convert", 120.0, release="app@2"))
    write_lines(log, records)
    return log


def _server(log: Path) -> Any:
    backend = Backend(log, persist=False)
    backend.open()
    return build_server(backend)


def _expect_invalid(log: Path, name: str, args: dict[str, Any], *words: str) -> None:
    async def body(client: Client) -> None:
        with pytest.raises(MCPError) as caught:
            await client.call_tool(name, args)
        assert caught.value.code == INVALID_PARAMS
        for word in words:
            assert word in caught.value.message, caught.value.message

    _run(_server(log), body)


@pytest.mark.parametrize(
    ("name", "args", "words"),
    [
        ("list_issues", {"limit": 1000}, ("limit", "less than or equal to 100")),
        ("list_issues", {"since": "yesterday-ish"}, ("since", "24h")),
        ("list_issues", {"status": "broken"}, ("status",)),
        ("list_issues", {"cursor": "not-a-cursor"}, ("cursor",)),
        ("list_issues", {"since": "1h", "until": "2h"}, ("until", "not after")),
        ("get_issue", {"issue_id": "nope"}, ("no such issue",)),
        ("get_issue", {}, ("issue_id", "Field required")),
        ("get_trace", {"trace_id": "0" * 32}, ("no transaction of that trace",)),
        ("release_health", {"release": "app@9"}, ("app@9", "not in the log")),
        ("cost", {"group_by": "colour"}, ("group_by",)),
        ("no_such_tool", {}, ("Unknown tool", "list_issues")),
    ],
)
def test_bad_arguments_are_json_rpc_errors(
    small_log: Path, name: str, args: dict[str, Any], words: tuple[str, ...]
) -> None:
    _expect_invalid(small_log, name, args, *words)


def test_pages_cover_every_issue_once(small_log: Path) -> None:
    async def body(client: Client) -> None:
        seen: list[str] = []
        cursor = None
        total = None
        while True:
            args: dict[str, Any] = {"limit": 3}
            if cursor:
                args["cursor"] = cursor
            page = (await client.call_tool("list_issues", args)).structured_content
            assert page is not None
            assert len(page["issues"]) <= 3
            total = page["total"]
            seen += [i["issue_id"] for i in page["issues"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert total == 8 and len(seen) == 8 and len(set(seen)) == 8

    _run(_server(small_log), body)


def test_secrets_stay_scrubbed(small_log: Path) -> None:
    async def body(client: Client) -> None:
        out = []
        for name, args in [
            ("search_events", {"query": "denied"}),
            ("list_issues", {}),
            ("get_issue", {"issue_id": await _issue_id(client, "PermissionError")}),
        ]:
            result = await client.call_tool(name, args)
            out.append(json.dumps(result.structured_content))
            out.append(" ".join(getattr(c, "text", "") for c in result.content))
        text = "\n".join(out)
        assert "denied" in text  # the event is there...
        assert "sk-live-0123456789" not in text  # ...without its secret
        assert "bob@example.com" not in text

    _run(_server(small_log), body)


async def _issue_id(client: Client, prefix: str) -> str:
    page = (await client.call_tool("list_issues", {"limit": 100})).structured_content
    assert page is not None
    return str(next(i["issue_id"] for i in page["issues"] if i["title"].startswith(prefix)))


def test_resources_latest_standup_and_each_open_issue(small_log: Path) -> None:
    async def body(client: Client) -> None:
        listed = (await client.list_resources()).resources
        uris = {str(r.uri) for r in listed}
        assert "widgettrace://standup/latest" in uris
        issue_uris = {u for u in uris if u.startswith("widgettrace://issues/")}
        assert len(issue_uris) == 8
        standup = await client.read_resource("widgettrace://standup/latest")
        text = standup.contents[0].text  # type: ignore[union-attr]
        assert "PermissionError" in text
        one = sorted(issue_uris)[0]
        issue = json.loads((await client.read_resource(one)).contents[0].text)  # type: ignore[union-attr]
        assert issue["issue"]["issue_id"] == one.rsplit("/", 1)[1]

    _run(_server(small_log), body)


def test_refuses_to_trace_into_the_log_it_serves(small_log: Path) -> None:
    result = subprocess.run(
        [str(BIN / "widgettrace"), "mcp", "--log", str(small_log), "--trace-log", str(small_log)],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 2
    assert "is the log being served" in result.stderr


# --- an agent's flow, checked against the insights CLI ------------------------------------------


def _cli_json(*args: str) -> Any:
    result = subprocess.run(
        [str(BIN / "widgettrace"), *args, "--format", "json"],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return json.loads(result.stdout)


def test_agent_flow_matches_the_insights_cli(example_log: Path, tmp_path: Path) -> None:
    """A plain client does what a QA agent would: list_issues -> get_issue -> get_trace."""
    answers: dict[str, Any] = {}

    async def agent(client: Client) -> None:
        page = (await client.call_tool("list_issues", {"limit": 100})).structured_content
        assert page is not None
        answers["issues"] = page["issues"]
        worst = page["issues"][0]
        detail = await client.call_tool("get_issue", {"issue_id": worst["issue_id"]})
        answers["detail"] = detail.structured_content
        trace_id = answers["detail"]["issue"]["latest_trace"]
        tree = await client.call_tool("get_trace", {"trace_id": trace_id, "max_spans": 2000})
        answers["trace"] = tree.structured_content

    params = StdioServerParameters(
        command=str(BIN / "widgettrace"),
        args=["mcp", "--log", str(example_log), "--trace-log", str(tmp_path / "own.log")],
        env=clean_env(),
    )
    _run(params, agent)

    cli = _cli_json("issues", str(example_log))
    assert [(i["issue_id"], i["count"], i["title"], i["status"]) for i in answers["issues"]] == [
        (i["group_key"], i["count"], i["title"], i["status"]) for i in cli
    ]
    worst = cli[0]
    assert answers["detail"]["issue"]["latest_event"] == worst["latest_event"]
    assert answers["detail"]["issue"]["latest_trace"] == worst["latest_trace"]

    # The trace, counted straight from the log's lines (not through insights).
    records = [json.loads(line) for line in example_log.read_text().splitlines() if line]
    in_trace = [
        r
        for r in records
        if r.get("type") == "transaction"
        and r["contexts"]["trace"]["trace_id"] == worst["latest_trace"]
    ]
    span_ids = {r["contexts"]["trace"]["span_id"] for r in in_trace} | {
        s["span_id"] for r in in_trace for s in r.get("spans") or []
    }
    trace = answers["trace"]
    assert trace["transactions"] == len(in_trace)
    assert trace["spans"] == len(span_ids)
    assert not trace["truncated"]

    def count(nodes: list[dict[str, Any]]) -> int:
        return sum(1 + count(n["children"]) for n in nodes)

    assert count(trace["roots"]) == len(span_ids)
    services = {r.get("tags", {}).get("service.name") for r in in_trace} - {None}
    assert set(trace["services"]) == services


def test_answers_follow_the_log_as_it_grows(small_log: Path) -> None:
    backend = Backend(small_log, persist=False, refresh_interval=0.0)
    backend.open()
    server = build_server(backend)

    async def body(client: Client) -> None:
        first = (await client.call_tool("list_issues", {})).structured_content
        assert first is not None and first["total"] == 8
        again = (await client.call_tool("list_issues", {})).structured_content
        assert again == first  # the same question, the log unchanged: the same answer
        write_lines(
            small_log, [error_event(time.time(), "LateError", "cascade", "late", release="app@2")]
        )
        after = (await client.call_tool("list_issues", {})).structured_content
        assert after is not None and after["total"] == 9
        assert any(i["title"].startswith("LateError") for i in after["issues"])

    _run(server, body)


def test_a_missing_log_is_one_clear_line(tmp_path: Path) -> None:
    missing = tmp_path / "nope.log"
    result = subprocess.run(
        [str(BIN / "widgettrace"), "mcp", "--log", str(missing), "--trace-log", "off"],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 1
    assert result.stderr.strip() == f"widgettrace mcp: no local log at {missing}"


def test_refuses_under_opentelemetry_instrument_writing_the_served_log(small_log: Path) -> None:
    """Run under the wrapper with the local log = the served log: its own spans would land in
    what it reads (a feedback loop), so it says so and does not start."""
    before = _digest(small_log)
    result = subprocess.run(
        # No --log: the default is the configured local log, the one the wrapper writes to.
        [str(BIN / "opentelemetry-instrument"), str(BIN / "widgettrace"), "mcp"],
        env=clean_env(WIDGETTRACE_LOG_PATH=str(small_log)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "feedback loop" in result.stderr
    assert _digest(small_log) == before
