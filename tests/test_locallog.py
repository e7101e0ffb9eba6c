"""The local log transport: what becomes a line, the tee to Sentry, overflow, unwritable paths.

Real parts only: a real ``sentry_sdk.Client`` builds the events, lines land in real files, and
the tee sends to a real HTTP server on 127.0.0.1 speaking Sentry's envelope endpoint.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import sentry_sdk
from sentry_sdk.envelope import Envelope, Item, PayloadRef
from sentry_sdk.transport import HttpTransport
from sentry_sdk.utils import event_from_exception

from widgettrace.exporters._logfile import LogFileWriter
from widgettrace.exporters.locallog import LocalLogTransport, make_transport, resolve_log_path
from widgettrace.instrumentation._config import Settings


def settings_for(path: Path | str | None, **kwargs: Any) -> Settings:
    return Settings(log_path=None if path is None else str(path), **kwargs)


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines()


def parse_config(text: str) -> Any:
    """A widget-config parser: the in-app frame the error points at."""
    return json.loads(text)


def error_event(client: sentry_sdk.Client) -> tuple[Any, Any]:
    try:
        parse_config("{not json")
    except ValueError:
        event, hint = event_from_exception(sys.exc_info(), client_options=client.options)
        return event, hint
    raise AssertionError("parse_config did not raise")


def transaction_event(name: str = "POST /api/widgets/convert", ms: float = 250.0) -> Any:
    end = time.time()
    start = end - ms / 1000
    trace = {"trace_id": "ab" * 16, "span_id": "cd" * 8, "op": "http.server", "status": "ok"}
    span = {
        "trace_id": "ab" * 16,
        "span_id": "ef" * 8,
        "parent_span_id": "cd" * 8,
        "op": "db",
        "description": "INSERT INTO widgets",
        "start_timestamp": start + 0.01,
        "timestamp": end - 0.01,
    }
    return {
        "type": "transaction",
        "transaction": name,
        "start_timestamp": start,
        "timestamp": end,
        "contexts": {"trace": trace},
        "spans": [span],
    }


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "logs" / "sentry.log"


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the per-user fallback (``<tmp>/widgettrace-<uid>``) into the test's directory."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return tmp


# --- what becomes a line --------------------------------------------------------------------------


def test_no_dsn_writes_each_event_and_transaction_as_one_line(log_path: Path) -> None:
    transport = make_transport({}, settings_for(log_path))
    assert isinstance(transport, LocalLogTransport)
    assert transport.inner is None
    assert transport.parsed_dsn is None
    client = sentry_sdk.Client(transport=transport, release="1.2.3")
    event, hint = error_event(client)
    client.capture_event(event, hint)
    client.capture_event(transaction_event())
    client.capture_event({"message": "cache warm-up skipped", "level": "warning"})
    client.flush(timeout=5)

    records = [json.loads(line) for line in lines_of(log_path)]
    assert len(records) == 3
    # Errors (and other events) of a burst are written before its transactions, so the order
    # depends on how the writer's batches fell: find each by what it is.
    (txn,) = [r for r in records if r.get("type") == "transaction"]
    (error,) = [r for r in records if "exception" in r]
    (message,) = [r for r in records if r.get("message") == "cache warm-up skipped"]
    assert error["exception"]["values"][-1]["type"] == "JSONDecodeError"
    assert error["release"] == "1.2.3"
    assert txn["type"] == "transaction"
    assert txn["transaction"] == "POST /api/widgets/convert"
    assert len(txn["spans"]) == 1
    assert message["level"] == "warning"
    client.close()


def test_a_line_is_exactly_the_item_payload(log_path: Path) -> None:
    transport = LocalLogTransport(log_path)
    envelope = Envelope()
    envelope.add_event({"event_id": "a" * 32, "message": "x\ny", "extra": {"n": 1}})
    envelope.add_transaction(transaction_event())
    transport.capture_envelope(envelope)
    transport.flush(5)
    assert lines_of(log_path) == [item.get_bytes() for item in envelope.items]


def test_attachments_and_client_reports_are_not_written(log_path: Path) -> None:
    """Events and transactions as they are; logs and sessions one line each, with their type
    (``tests/test_sentry_logs.py``, ``tests/test_sessions.py``); nothing else."""
    transport = LocalLogTransport(log_path)
    envelope = Envelope()
    envelope.add_event({"event_id": "b" * 32, "message": "kept"})
    envelope.add_item(Item(payload=b"binary\x00\nblob", type="attachment", filename="a.bin"))
    envelope.add_item(Item(payload=PayloadRef(json={"discarded_events": []}), type="client_report"))
    envelope.add_item(Item(payload=PayloadRef(json={"sid": "1"}), type="session"))
    envelope.add_item(Item(payload=PayloadRef(json={"items": [{"body": "l"}]}), type="log"))
    transport.capture_envelope(envelope)
    transport.flush(5)
    assert [json.loads(line) for line in lines_of(log_path)] == [
        {"event_id": "b" * 32, "message": "kept"},
        {"type": "session", "sid": "1"},
        {"type": "log", "body": "l"},
    ]


def test_a_pretty_printed_payload_still_becomes_one_line(log_path: Path) -> None:
    transport = LocalLogTransport(log_path)
    pretty = json.dumps({"event_id": "c" * 32, "message": "multi"}, indent=2).encode()
    envelope = Envelope(items=[Item(payload=pretty, type="event")])
    transport.capture_envelope(envelope)
    transport.flush(5)
    assert [json.loads(line) for line in lines_of(log_path)] == [json.loads(pretty)]


def test_bad_payload_is_counted_not_raised(
    log_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    transport = LocalLogTransport(log_path)
    bad = Envelope(items=[Item(payload=b"{not json\n", type="event")])
    transport.capture_envelope(bad)
    transport.flush(5)
    assert transport.lost_events() == {("error", "local_log_error"): 1}
    assert "cannot write the local log" in caplog.text


def test_make_transport_modes(log_path: Path) -> None:
    dsn = "http://public@127.0.0.1:9/1"
    assert make_transport({}, settings_for(None)) is None
    assert make_transport({"dsn": dsn}, settings_for(None)) is None  # the SDK's own HTTP
    assert make_transport({}, settings_for("off")) is None
    tee = make_transport({"dsn": dsn}, settings_for(log_path))
    assert isinstance(tee, LocalLogTransport)
    assert isinstance(tee.inner, HttpTransport)
    assert tee.parsed_dsn is not None
    assert tee.parsed_dsn.public_key == "public"
    from_settings = make_transport({}, settings_for(log_path, sentry_dsn=dsn))
    assert isinstance(from_settings, LocalLogTransport)
    assert isinstance(from_settings.inner, HttpTransport)
    tee.kill()
    from_settings.kill()


def test_relative_path_is_resolved_against_the_cwd_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    transport = make_transport({}, settings_for(".claude/logs/sentry.log"))
    assert isinstance(transport, LocalLogTransport)
    monkeypatch.chdir(tmp_path.parent)  # a later chdir does not move the log
    transport.capture_envelope(Envelope(items=[Item(b'{"message":"m"}', type="event")]))
    transport.flush(5)
    assert lines_of(tmp_path / ".claude" / "logs" / "sentry.log") == [b'{"message":"m"}']


def test_settings_drive_rotation_and_the_queue_follows_the_sdk(log_path: Path) -> None:
    transport = make_transport({}, settings_for(log_path, log_max_bytes=4096, log_backups=1))
    assert isinstance(transport, LocalLogTransport)
    assert (transport.writer.max_bytes, transport.writer.backups) == (4096, 1)
    assert transport.queue_size == 1000
    deep = make_transport({"transport_queue_size": 10000}, settings_for(log_path))
    assert isinstance(deep, LocalLogTransport)
    assert deep.queue_size == 10000


def test_lines_are_valid_events_by_sentrys_own_normaliser(log_path: Path) -> None:
    from receivers.relay import assert_valid

    client = sentry_sdk.Client(transport=make_transport({}, settings_for(log_path)))
    event, hint = error_event(client)
    client.capture_event(event, hint)
    client.capture_event(transaction_event())
    client.flush(5)
    lines = lines_of(log_path)
    assert len(lines) == 2
    for line in lines:
        assert_valid(json.loads(line))
    client.close()


# --- never blocks, never raises -------------------------------------------------------------------


class BlockingWriter(LogFileWriter):
    """Holds the worker inside its first write until released, so the queue fills for sure."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, max_bytes=1 << 20, backups=1)
        self.entered = threading.Event()
        self.release = threading.Event()

    def write_line(self, data: bytes) -> None:
        self.entered.set()
        assert self.release.wait(10)
        super().write_line(data)

    def write_lines(self, lines: list[bytes]) -> int:
        self.entered.set()
        assert self.release.wait(10)
        return super().write_lines(lines)


def test_overflow_is_counted_and_warned_once(
    log_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    transport = LocalLogTransport(log_path, queue_size=2)
    writer = BlockingWriter(log_path)
    transport.writer = writer

    def envelope(i: int) -> Envelope:
        e = Envelope()
        e.add_event({"message": f"e{i}"})
        return e

    transport.capture_envelope(envelope(0))
    assert writer.entered.wait(5)  # the worker holds #0; the queue is empty again
    started = time.monotonic()
    for i in range(1, 10):
        # #1, #2 queue, #3, #4 too (errors have a reserve of the queue's size); #5..#9 overflow
        transport.capture_envelope(envelope(i))
    assert time.monotonic() - started < 5  # it returned instead of waiting for the writer
    assert not transport.is_healthy()
    assert transport.lost_events() == {("error", "queue_overflow"): 5}
    warnings = [r for r in caplog.records if "queue is full" in r.getMessage()]
    assert len(warnings) == 1
    writer.release.set()
    transport.flush(5)
    assert [json.loads(line)["message"] for line in lines_of(log_path)] == [
        f"e{i}" for i in range(5)
    ]
    assert transport.is_healthy()


def test_write_failure_is_counted_and_the_log_recovers(
    log_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    transport = LocalLogTransport(log_path)

    def send(message: str) -> None:
        transport.capture_envelope(
            Envelope(items=[Item(PayloadRef(json={"m": message}), type="event")])
        )
        transport.flush(5)

    send("before")
    log_path.unlink()
    log_path.parent.rmdir()
    log_path.parent.write_text("a file where the log directory was")  # the next write fails
    send("lost")
    assert transport.lost_events() == {("error", "local_log_error"): 1}
    assert caplog.text.count("cannot write the local log") == 1
    log_path.parent.unlink()
    send("after")  # the directory is created again
    assert [json.loads(line)["m"] for line in lines_of(log_path)] == ["after"]


def test_record_lost_event_counts_and_forwards(log_path: Path) -> None:
    dsn = "http://public@127.0.0.1:9/1"
    tee = make_transport({"dsn": dsn}, settings_for(log_path))
    assert isinstance(tee, LocalLogTransport)
    assert isinstance(tee.inner, HttpTransport)
    tee.record_lost_event("sample_rate", data_category="error", quantity=2)
    assert tee.lost_events() == {("error", "sample_rate"): 2}
    assert tee.inner._discarded_events[("error", "sample_rate")] == 2
    tee.kill()


# --- unwritable paths -----------------------------------------------------------------------------


def warnings_about_log_path(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "WIDGETTRACE_LOG_PATH" in r.getMessage()]


@pytest.mark.parametrize("kind", ["file_as_directory", "directory_as_file"])
def test_unwritable_path_falls_back_to_a_per_user_file(
    tmp_path: Path, private_tmp: Path, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    caplog.set_level(logging.WARNING, logger="widgettrace")
    if kind == "file_as_directory":
        (tmp_path / "afile").write_text("x")
        bad = tmp_path / "afile" / "sentry.log"
    else:
        bad = tmp_path / "adir"
        bad.mkdir()
    transport = make_transport({}, settings_for(bad))
    assert isinstance(transport, LocalLogTransport)
    fallback = private_tmp / f"widgettrace-{os.getuid()}" / "sentry.log"
    assert transport.path == fallback
    (message,) = warnings_about_log_path(caplog)
    assert repr(str(bad)) in message
    assert str(fallback) in message
    assert "instead" in message
    assert (fallback.parent.stat().st_mode & 0o777) == 0o700
    transport.capture_envelope(Envelope(items=[Item(b'{"message":"kept"}', type="event")]))
    transport.flush(5)
    assert lines_of(fallback) == [b'{"message":"kept"}']


def test_unwritable_everywhere_means_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="widgettrace")
    (tmp_path / "afile").write_text("x")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "afile"))  # no fallback either
    bad = tmp_path / "afile" / "sentry.log"
    assert resolve_log_path(str(bad)) is None
    assert make_transport({}, settings_for(bad)) is None
    messages = warnings_about_log_path(caplog)
    assert len(messages) == 2  # one per call
    assert "using off instead" in messages[0]


def test_a_fallback_directory_owned_by_a_symlink_is_refused(
    tmp_path: Path, private_tmp: Path, caplog: pytest.LogCaptureFixture
) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir()
    (private_tmp / f"widgettrace-{os.getuid()}").symlink_to(target)
    (tmp_path / "afile").write_text("x")
    assert resolve_log_path(str(tmp_path / "afile" / "sentry.log")) is None
    assert "using off instead" in caplog.text


APP = r"""
import sentry_sdk
from widgettrace.exporters.locallog import make_transport
from widgettrace.instrumentation._config import get_settings
sentry_sdk.init(transport=make_transport({}, get_settings()), default_integrations=False)
try:
    1 / 0
except ZeroDivisionError as exc:
    sentry_sdk.capture_exception(exc)
sentry_sdk.flush(5)
print("app still running")
"""


def test_real_process_with_an_unwritable_path_logs_one_line_and_keeps_running(
    tmp_path: Path,
) -> None:
    (tmp_path / "afile").write_text("x")
    bad = tmp_path / "afile" / "sentry.log"
    fallback_root = tmp_path / "tmp"
    fallback_root.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SENTRY_", "WIDGETTRACE_"))}
    env.update(WIDGETTRACE_LOG_PATH=str(bad), TMPDIR=str(fallback_root))
    proc = subprocess.run(
        [sys.executable, "-c", APP],
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "app still running"
    fallback = fallback_root / f"widgettrace-{os.getuid()}" / "sentry.log"
    (line,) = [ln for ln in proc.stderr.splitlines() if "WIDGETTRACE_LOG_PATH" in ln]
    assert str(bad) in line
    assert str(fallback) in line
    (record,) = [json.loads(x) for x in lines_of(fallback)]
    assert record["exception"]["values"][-1]["type"] == "ZeroDivisionError"


# --- the tee: sent to Sentry and written locally --------------------------------------------------


class _Ingest(BaseHTTPRequestHandler):
    server: _IngestServer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        encoding = self.headers.get("Content-Encoding", "")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        elif encoding:
            self.send_response(415)
            self.end_headers()
            return
        with self.server.lock:
            self.server.requests.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _IngestServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Ingest)
        self.lock = threading.Lock()
        self.requests: list[tuple[str, bytes]] = []

    @property
    def dsn(self) -> str:
        return f"http://public@127.0.0.1:{self.server_address[1]}/1"

    def items(self) -> list[Item]:
        with self.lock:
            bodies = [body for _, body in self.requests]
        return [item for body in bodies for item in Envelope.deserialize(body).items]


@pytest.fixture
def ingest() -> Iterator[_IngestServer]:
    server = _IngestServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_tee_sends_to_sentry_and_writes_the_same_bytes(
    log_path: Path, ingest: _IngestServer
) -> None:
    transport = make_transport({"dsn": ingest.dsn}, settings_for(log_path))
    assert isinstance(transport, LocalLogTransport)
    client = sentry_sdk.Client(dsn=ingest.dsn, transport=transport, release="2.0.0")
    event, hint = error_event(client)
    client.capture_event(event, hint)
    client.capture_event(transaction_event("GET /api/widgets/status"))
    client.flush(timeout=10)

    sent = [i for i in ingest.items() if i.type in {"event", "transaction"}]
    assert [i.type for i in sent] == ["event", "transaction"]
    assert all(path == "/api/1/envelope/" for path, _ in ingest.requests)
    # Byte for byte what Sentry received.
    assert lines_of(log_path) == [item.get_bytes() for item in sent]
    client.close()


def test_tee_keeps_writing_locally_when_sentry_is_down(log_path: Path) -> None:
    with _IngestServer() as closed:
        dsn = closed.dsn  # bound, then closed: connection refused
    transport = make_transport({"dsn": dsn}, settings_for(log_path))
    assert isinstance(transport, LocalLogTransport)
    client = sentry_sdk.Client(dsn=dsn, transport=transport)
    client.capture_event({"message": "offline"})
    client.flush(timeout=5)
    assert [json.loads(x)["message"] for x in lines_of(log_path)] == ["offline"]
    # The HTTP half accounts for its own loss (Sentry's client reports); locally nothing was lost.
    assert transport.lost_events() == {}
    client.close()
