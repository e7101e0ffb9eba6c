"""The ``widgettrace`` command: tail (pretty, raw, follow across rotation), summary, config.

The log files are written by the real Sentry SDK through the real local-log transport, and the
command runs as a real subprocess (``python -m widgettrace``), as a user would run it.
"""

from __future__ import annotations

import json
import os
import pty
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
import sentry_sdk
from sentry_sdk.utils import event_from_exception

from widgettrace.cli import summarize, summary_data
from widgettrace.exporters._logfile import LogFileWriter, rotated_paths
from widgettrace.exporters.locallog import LocalLogTransport
from widgettrace.instrumentation import _config

BIN = Path(sys.executable).parent
# Never the repo root: `python -m` puts the cwd first on sys.path, and the source folder
# widgettrace/ would shadow the installed package that CI tests.
NEUTRAL_CWD = Path(tempfile.gettempdir())


def run_cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("WIDGETTRACE_", "OTEL_"))}
    base.pop("NO_COLOR", None)
    return subprocess.run(
        [sys.executable, "-m", "widgettrace", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
        cwd=cwd or NEUTRAL_CWD,
        env={**base, **(env or {})},
    )


def load_widget_config(text: str) -> Any:
    """In-app code calling into the standard library, which raises."""
    return json.loads(text)  # the top in-app frame


LOAD_LINE = load_widget_config.__code__.co_firstlineno + 2


def timed_transaction(name: str, ms: float, op: str = "http.server", at: float = 0.0) -> Any:
    end = (at or time.time()) + ms / 1000
    return {
        "type": "transaction",
        "transaction": name,
        "start_timestamp": end - ms / 1000,
        "timestamp": end,
        "contexts": {"trace": {"trace_id": "1f" * 16, "span_id": "2e" * 8, "op": op}},
        "spans": [],
    }


@pytest.fixture
def client(tmp_path: Path) -> Iterator[tuple[sentry_sdk.Client, Path]]:
    """A real SDK client writing to a real local log (``tmp/sentry.log``)."""
    path = tmp_path / "sentry.log"
    c = sentry_sdk.Client(
        transport=LocalLogTransport(path),
        release="widgets@1.4.0",
        traces_sample_rate=1.0,
        default_integrations=False,
        project_root=str(Path(__file__).parent),
    )
    yield c, path
    c.close()


def capture_error(c: sentry_sdk.Client) -> None:
    try:
        load_widget_config('{"name": "gizmo",')
    except ValueError:
        event, hint = event_from_exception(sys.exc_info(), client_options=c.options)
        c.capture_event(event, hint)


def capture_real_transaction(c: sentry_sdk.Client) -> None:
    with sentry_sdk.new_scope() as scope:
        scope.set_client(c)
        with sentry_sdk.start_transaction(name="POST /api/widgets/convert", op="http.server") as t:
            for step in ("parse", "validate", "infer"):
                with sentry_sdk.start_span(op="function", name=step):
                    time.sleep(0.002)
            t.set_http_status(200)


# --- tail -----------------------------------------------------------------------------------------


def test_tail_pretty_prints_errors_and_transactions(
    client: tuple[sentry_sdk.Client, Path],
) -> None:
    c, path = client
    capture_error(c)
    capture_real_transaction(c)
    c.capture_event({"message": "registry slow to answer", "level": "warning"})
    c.flush(5)

    proc = run_cli("tail", str(path))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 3, lines
    # Errors may be written ahead of a transaction captured before them (errors go first).
    (error,) = [line for line in lines if "ERROR" in line]
    (txn,) = [line for line in lines if "TXN" in line]
    (warning,) = [line for line in lines if "WARNING" in line]
    assert "ERROR" in error
    assert "JSONDecodeError: Expecting property name enclosed in double quotes" in error
    assert f"test_cli.py:{LOAD_LINE} load_widget_config" in error  # in-app, not json/decoder.py
    assert "release=widgets@1.4.0" in error
    assert error[:4].isdigit()
    assert "T" in error[:24]
    assert error[23] == "Z"
    assert "TXN" in txn
    assert "POST /api/widgets/convert" in txn
    assert "3 spans" in txn
    assert "http.server ok" in txn
    duration = float(txn.split("POST /api/widgets/convert")[1].split("ms")[0])
    assert 6.0 <= duration < 5000
    assert "WARNING" in warning
    assert "message: registry slow to answer" in warning
    assert "\x1b[" not in proc.stdout  # not a terminal: no colour


def test_tail_n_and_json_print_the_last_raw_lines(client: tuple[sentry_sdk.Client, Path]) -> None:
    c, path = client
    for i in range(5):
        c.capture_event({"message": f"m{i}"})
    c.flush(5)
    proc = run_cli("tail", "-n", "2", "--json", str(path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.encode().splitlines() == path.read_bytes().splitlines()[-2:]


def test_tail_reaches_into_rotated_files(tmp_path: Path) -> None:
    path = tmp_path / "sentry.log"
    one = rotated_paths(path, 1)[0]
    one.write_text("".join(json.dumps({"message": f"old{i}"}) + "\n" for i in range(3)))
    path.write_text(json.dumps({"message": "new"}) + "\n")
    proc = run_cli("tail", "-n", "3", str(path))
    assert proc.returncode == 0, proc.stderr
    assert [ln.rsplit(": ", 1)[1] for ln in proc.stdout.splitlines()] == ["old1", "old2", "new"]


def test_tail_shows_a_line_it_cannot_parse_instead_of_failing(tmp_path: Path) -> None:
    path = tmp_path / "sentry.log"
    path.write_text('not json at all\n{"message": "fine"}\n')
    proc = run_cli("tail", str(path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "? not json at all"


def test_tail_missing_file_is_an_error(tmp_path: Path) -> None:
    proc = run_cli("tail", str(tmp_path / "nope.log"))
    assert proc.returncode == 1
    assert "no local log at" in proc.stderr
    assert proc.stdout == ""


def test_default_path_follows_the_setting_and_the_cwd(tmp_path: Path) -> None:
    default = tmp_path / ".claude" / "logs" / "sentry.log"
    default.parent.mkdir(parents=True)
    default.write_text(json.dumps({"message": "from the default path"}) + "\n")
    proc = run_cli("tail", cwd=tmp_path)
    assert "from the default path" in proc.stdout, proc.stderr
    custom = tmp_path / "custom.log"
    custom.write_text(json.dumps({"message": "from the setting"}) + "\n")
    proc = run_cli("tail", cwd=tmp_path, env={"WIDGETTRACE_LOG_PATH": "custom.log"})
    assert "from the setting" in proc.stdout, proc.stderr
    proc = run_cli("tail", cwd=tmp_path, env={"WIDGETTRACE_LOG_PATH": "off"})
    assert proc.returncode == 2
    assert "off" in proc.stderr


def test_default_path_falls_back_like_the_app(tmp_path: Path) -> None:
    fallback = tmp_path / "tmp" / f"widgettrace-{os.getuid()}" / "sentry.log"
    fallback.parent.mkdir(parents=True)
    fallback.write_text(json.dumps({"message": "in the fallback"}) + "\n")
    proc = run_cli("tail", cwd=tmp_path, env={"TMPDIR": str(tmp_path / "tmp")})
    assert "in the fallback" in proc.stdout, proc.stderr
    assert str(fallback) in proc.stderr


def run_in_terminal(args: list[str], env: dict[str, str]) -> str:
    """Run the command with its stdout on a pseudo-terminal; return what it printed."""
    leader, follower = pty.openpty()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "widgettrace", *args],
            check=False,
            stdout=follower,
            stderr=subprocess.PIPE,
            timeout=30,
            env=env,
            cwd=NEUTRAL_CWD,
        )
        assert proc.returncode == 0, proc.stderr
        return os.read(leader, 65536).decode()
    finally:
        os.close(leader)
        os.close(follower)


def test_colour_only_on_a_terminal(tmp_path: Path) -> None:
    path = tmp_path / "sentry.log"
    path.write_text(json.dumps({"message": "m", "level": "error"}) + "\n")
    env = {k: v for k, v in os.environ.items() if k not in {"NO_COLOR", "TERM"}}
    assert "\x1b[31m" in run_in_terminal(["tail", str(path)], env)  # red ERROR on a terminal
    assert "\x1b[" not in run_in_terminal(["tail", str(path)], {**env, "NO_COLOR": "1"})
    assert "\x1b[" not in run_cli("tail", str(path)).stdout  # a pipe
    assert "\x1b[" in run_cli("tail", "--color", "always", str(path)).stdout


class _Lines:
    """Reads a subprocess's stdout on a thread so the test can wait with a timeout."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.queue: queue.Queue[str] = queue.Queue()
        assert proc.stdout is not None
        stream = proc.stdout
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: IO[str]) -> None:
        for ln in stream:
            self.queue.put(ln.rstrip("\n"))

    def take(self, n: int, timeout: float) -> list[str]:
        deadline = time.monotonic() + timeout
        got: list[str] = []
        while len(got) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                got.append(self.queue.get(timeout=remaining))
            except queue.Empty:
                break
        return got


def test_follow_prints_new_lines_across_rotation(tmp_path: Path) -> None:
    path = tmp_path / "sentry.log"
    writer = LogFileWriter(path, max_bytes=4096, backups=12)
    writer.write_line(b'{"n":-1}')
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "widgettrace",
            "tail",
            "-f",
            "-n",
            "1",
            "--json",
            "-s",
            "0.05",
            str(path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=NEUTRAL_CWD,
    )
    try:
        lines = _Lines(proc)
        assert lines.take(1, 20) == ['{"n":-1}']  # it is following now
        expected = []
        for n in range(300):
            record = json.dumps({"n": n, "pad": "p" * (n % 7 * 40)}, separators=(",", ":"))
            writer.write_line(record.encode())
            expected.append(record)
            if n % 50 == 0:
                time.sleep(0.1)  # sometimes the follower catches up, sometimes it falls behind
        assert writer.rotations >= 8
        assert lines.take(len(expected), 20) == expected  # all of them, in order, once
        assert lines.take(1, 0.3) == []
    finally:
        proc.terminate()  # by PID, as a script would stop it
        proc.wait(10)
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""


def test_follow_waits_for_a_log_that_does_not_exist_yet(tmp_path: Path) -> None:
    path = tmp_path / "later" / "sentry.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "widgettrace", "tail", "-f", "-s", "0.05", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=NEUTRAL_CWD,
    )
    try:
        lines = _Lines(proc)
        # It says so, in one line, instead of waiting silently (and only then is the file made:
        # on a loaded machine the command may start after a fixed sleep would have ended).
        assert proc.stderr is not None
        said = proc.stderr.readline().strip()
        assert said == f"widgettrace: waiting for {path} to appear (Ctrl-C to stop)"
        LogFileWriter(path, max_bytes=1 << 20, backups=1).write_line(
            json.dumps(timed_transaction("GET /api/widgets/status", 12.5)).encode()
        )
        (shown,) = lines.take(1, 20)
        assert "GET /api/widgets/status" in shown
        assert "12.5 ms" in shown
    finally:
        proc.terminate()
        proc.wait(10)
    assert proc.stderr.read().strip() == ""  # nothing more


# --- summary --------------------------------------------------------------------------------------


def test_summary_counts_errors_and_times_transactions(
    client: tuple[sentry_sdk.Client, Path],
) -> None:
    c, path = client
    for _ in range(3):
        capture_error(c)
    c.capture_event({"message": "note"})
    for ms in (10, 20, 300):
        c.capture_event(timed_transaction("POST /api/widgets/convert", ms))
    for ms in (50, 60):
        c.capture_event(timed_transaction("GET /api/widgets/status", ms))
    c.capture_event(timed_transaction("cascade.run", 5000, op="function"))
    c.flush(5)

    data = summary_data(path)
    assert data["errors"] == {"JSONDecodeError": 3, "message": 1}
    convert = data["transactions"]["POST /api/widgets/convert"]
    assert (convert["count"], convert["max_ms"]) == (3, pytest.approx(300, abs=0.01))
    assert convert["p50_ms"] == pytest.approx(20, abs=0.01)
    # The slowest *endpoint* (http.server) by p50; the slower cascade run is not an endpoint.
    assert data["slowest"] == "GET /api/widgets/status"

    text = summarize(path)
    assert "4 errors, 6 transactions" in text
    assert "Slowest endpoint: GET /api/widgets/status (p50 55.0 ms, max 60.0 ms)" in text
    proc = run_cli("summary", str(path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == text
    as_json = json.loads(run_cli("summary", "--json", str(path)).stdout)
    assert as_json["errors"] == data["errors"]


def test_summary_since_and_rotated_files(tmp_path: Path) -> None:
    path = tmp_path / "sentry.log"
    old = time.time() - 3600
    rotated_paths(path, 1)[0].write_text(
        json.dumps(timed_transaction("GET /old", 5, at=old)) + "\n"
    )
    path.write_text(json.dumps(timed_transaction("GET /new", 7)) + "\n")
    assert set(summary_data(path)["transactions"]) == {"GET /old", "GET /new"}
    assert set(summary_data(path, since=old + 60)["transactions"]) == {"GET /new"}
    proc = run_cli("summary", "--since", str(old + 60), str(path))
    assert "GET /new" in proc.stdout
    assert "GET /old" not in proc.stdout


def test_summary_of_an_empty_log(tmp_path: Path) -> None:
    path = tmp_path / "sentry.log"
    path.write_text("")
    assert summarize(path) == f"Local log {path}: 0 errors, 0 transactions\n"
    assert summarize(tmp_path / "none.log") == f"No local log at {tmp_path / 'none.log'}.\n"


# --- config and the command itself ----------------------------------------------------------------


def test_config_markdown_is_the_table() -> None:
    proc = run_cli("config", "--markdown")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == _config.markdown_table()
    lines = proc.stdout.splitlines()
    assert len(lines) == 2 + len(_config.SETTINGS)
    assert any("`WIDGETTRACE_LOG_PATH`" in ln and ".claude/logs/sentry.log" in ln for ln in lines)


def test_config_plain_shows_current_values() -> None:
    proc = run_cli("config", env={"WIDGETTRACE_LOG_MAX_BYTES": "65536"})
    assert proc.returncode == 0, proc.stderr
    assert "WIDGETTRACE_LOG_MAX_BYTES = '65536'" in proc.stdout
    assert all(s.env in proc.stdout for s in _config.SETTINGS)


def test_console_script_and_module_agree() -> None:
    script = subprocess.run(
        [str(BIN / "widgettrace"), "--help"],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    module = run_cli("--help")
    assert script.returncode == module.returncode == 0
    assert script.stdout.replace("widgettrace", "W") == module.stdout.replace("widgettrace", "W")
    assert all(cmd in script.stdout for cmd in ("tail", "summary", "config"))


def test_the_command_does_not_import_heavy_modules(tmp_path: Path) -> None:
    path = tmp_path / "sentry.log"
    path.write_text(json.dumps({"message": "m"}) + "\n")
    probe = (
        "import sys\n"
        "from widgettrace.cli import main\n"
        f"assert main(['tail', {str(path)!r}]) == 0\n"
        f"assert main(['summary', {str(path)!r}]) == 0\n"
        "heavy = [m for m in ('sentry_sdk', 'opentelemetry.sdk', 'urllib3') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], check=False, capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "HEAVY []"
