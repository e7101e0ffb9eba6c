"""``widgettrace dev``: the real local UIs one command away, and stopped afterwards.

The example platform runs through ``widgettrace dev --bugsink -- ...``; while it holds (see
``tests/peers/dev_child.py``) the test reads the transactions back from the Spotlight the command
started (``GET /stream``) and the issues from its Bugsink (REST API), then lets the command finish
and checks that both servers are gone. Also: Ctrl-C stops them, and a missing Node.js is reported
with what to install.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from receivers.bugsink import BugsinkServer
from receivers.example import DESIGNED_ERRORS, clean_env
from receivers.spotlight import PACKAGE_DIR, SpotlightEnvelope, SpotlightServer, items_of

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
#: Where scripts/setup-receivers.sh installed Spotlight (an installed wheel's copy has no modules).
SPOTLIGHT = ["--spotlight-dir", str(PACKAGE_DIR)]


def _wait_for(path: Path, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"widgettrace dev exited {proc.returncode}: {log.read_text()}"
        assert time.monotonic() < deadline, f"no {path.name} after {timeout}s: {log.read_text()}"
        time.sleep(0.2)


def _pids(text: str) -> list[int]:
    return [int(p) for p in re.findall(r"\(pid (\d+)\)", text)]


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_dev_runs_the_example_against_spotlight_and_bugsink(tmp_path: Path) -> None:
    log = tmp_path / "dev.err"
    local_log = tmp_path / "sentry.log"
    command = [
        str(BIN / "widgettrace"), "dev", "--bugsink", *SPOTLIGHT,
        "--workdir", str(tmp_path / "dev"), "--",
        str(BIN / "python"), str(REPO / "tests" / "peers" / "dev_child.py"), str(tmp_path),
        str(BIN / "opentelemetry-instrument"), "python", "examples/run.py",
        "--workdir", str(tmp_path / "world"),
    ]  # fmt: skip
    with log.open("wb") as err:
        proc = subprocess.Popen(
            command, cwd=REPO, env=clean_env(WIDGETTRACE_LOG_PATH=str(local_log)), stderr=err
        )
    try:
        _wait_for(tmp_path / "app.rc", proc, log, timeout=240)
        assert (tmp_path / "app.rc").read_text() == "0", log.read_text()
        given = json.loads((tmp_path / "env.json").read_text())
        printed = log.read_text()
        assert f"SENTRY_SPOTLIGHT={given['SENTRY_SPOTLIGHT']}" in printed
        assert f"SENTRY_DSN={given['SENTRY_DSN']}" in printed
        records = [json.loads(line) for line in local_log.read_text().splitlines() if line]
        wanted = {r["event_id"] for r in records if r.get("type") == "transaction"}
        assert wanted, printed

        # Spotlight: every transaction of the run, read back from GET /stream.
        spotlight = SpotlightServer(tmp_path / "reader")
        spotlight.port = int(re.findall(r":(\d+)/stream", given["SENTRY_SPOTLIGHT"])[0])

        def complete(envelopes: list[SpotlightEnvelope]) -> bool:
            got = {t.get("event_id") for t in items_of(envelopes, "transaction")}
            return wanted <= got

        envelopes = spotlight.wait_for(complete, timeout=30)
        names = {t["transaction"] for t in items_of(envelopes, "transaction")}
        assert "POST /api/widgets/discover" in names

        # Bugsink: the example's designed errors, grouped into issues.
        sink = BugsinkServer(tmp_path / "reader")
        sink.port = int(re.findall(r"Bugsink\s+http://127\.0\.0\.1:(\d+)", printed)[0])
        sink.token = re.findall(r"token: ([0-9a-f]+)", printed)[0]
        project_id = int(given["SENTRY_DSN"].rsplit("/", 1)[1])

        def types(issues: list[dict[str, Any]]) -> set[str]:
            return {str(i["calculated_type"]) for i in issues}

        issues = sink.wait_for_issues(project_id, lambda i: set(DESIGNED_ERRORS) <= types(i))
        assert set(DESIGNED_ERRORS) <= types(issues)
    finally:
        (tmp_path / "release").touch()
        try:
            rc = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert rc == 0, log.read_text()
    printed = log.read_text()
    pids = _pids(printed)
    assert len(pids) == 2, printed
    assert all(_gone(pid) for pid in pids), printed
    assert "stopped Spotlight and Bugsink" in printed


def test_ctrl_c_stops_what_dev_started(tmp_path: Path) -> None:
    log = tmp_path / "dev.err"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [str(BIN / "widgettrace"), "dev", *SPOTLIGHT, "--workdir", str(tmp_path / "dev")],
            env=clean_env(),
            stderr=err,
        )
    try:
        deadline = time.monotonic() + 60
        while "running until Ctrl-C" not in log.read_text():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        pids = _pids(log.read_text())
        assert len(pids) == 1
        assert not _gone(pids[0])
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert _gone(pids[0]), log.read_text()
    assert "stopped Spotlight" in log.read_text()


def _dev(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``widgettrace dev ARGS`` run to its end from the repository root."""
    return subprocess.run(
        [str(BIN / "widgettrace"), "dev", *args],
        cwd=REPO,
        env=env or clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_missing_node_says_what_to_install(tmp_path: Path) -> None:
    result = _dev("--workdir", str(tmp_path), "--", "true", env=clean_env(PATH=str(BIN)))
    assert result.returncode == 3
    assert "node is not on PATH" in result.stderr
    assert "apt-get install nodejs npm" in result.stderr
    assert "npm ci --prefix" in result.stderr


def test_missing_bugsink_venv_says_what_to_install(tmp_path: Path) -> None:
    venv = tmp_path / "no-venv"
    result = _dev(
        "--bugsink", "--bugsink-venv", str(venv), *SPOTLIGHT,
        "--workdir", str(tmp_path / "dev"), "--", "true",
    )  # fmt: skip
    assert result.returncode == 3, result.stderr
    assert f"python3 -m venv {venv} && {venv}/bin/pip install 'bugsink==" in result.stderr
    # Spotlight had started first: it is stopped again.
    assert "stopped Spotlight" in result.stderr


def test_the_commands_exit_status_is_returned(tmp_path: Path) -> None:
    relative = PACKAGE_DIR.relative_to(REPO)  # a relative --spotlight-dir works too
    for script, status in (("exit 7", 7), ("kill -TERM $$", 128 + signal.SIGTERM)):
        result = _dev(
            "--spotlight-dir", str(relative), "--workdir", str(tmp_path / "dev"),
            "--", "sh", "-c", script,
        )  # fmt: skip
        assert result.returncode == status, result.stderr
        assert "stopped Spotlight" in result.stderr
