"""The local log file under load: several processes at once, rotation, writers noticing rotation.

Real processes write through the real transport into one real file; every line must come out
whole and parseable and the count must be exact.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from widgettrace.exporters._logfile import LogFileWriter, rotated_paths

WRITER = r"""
import json, os, random, sys, time
from sentry_sdk.envelope import Envelope
from widgettrace.exporters.locallog import LocalLogTransport

path, name, count, max_bytes, backups, go = sys.argv[1:]
count, max_bytes, backups = int(count), int(max_bytes), int(backups)
transport = LocalLogTransport(path, max_bytes=max_bytes, backups=backups, queue_size=count + 10)
rng = random.Random(name)
open(go + "." + name, "w").close()  # ready
deadline = time.monotonic() + 30
while not os.path.exists(go):  # start together, so the writes really interleave
    if time.monotonic() > deadline:
        sys.exit("never got the go")
    time.sleep(0.001)
for i in range(count):
    envelope = Envelope()
    # Sizes from tiny to well above a pipe buffer (4 KiB), where interleaving would show.
    envelope.add_event({"message": f"{name}-{i}", "extra": {"pad": "x" * rng.randint(0, 9000)}})
    transport.capture_envelope(envelope)
    if i % 50 == 49:
        # Spread the writes over time: the writer appends what waits in few writes, and two
        # processes that each finish in one burst would barely overlap.
        time.sleep(0.005)
transport.flush(60)
print(json.dumps({"lost": {"/".join(k): v for k, v in transport.lost_events().items()},
                  "written": transport.lines_written}))
"""


def run_writers(
    path: Path, tmp_path: Path, *, procs: int, count: int, max_bytes: int, backups: int
) -> None:
    go = tmp_path / "go"
    children = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WRITER,
                str(path),
                f"p{n}",
                str(count),
                str(max_bytes),
                str(backups),
                str(go),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(procs)
    ]
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"go.p{n}").exists() for n in range(procs)):
        assert time.monotonic() < deadline, "writers never got ready"
        assert all(child.poll() is None for child in children), "a writer died"
        time.sleep(0.01)
    go.write_text("go")
    for child in children:
        out, err = child.communicate(timeout=90)
        assert child.returncode == 0, err
        report = json.loads(out)
        assert report == {"lost": {}, "written": count}, err


def all_lines(path: Path) -> list[bytes]:
    files = [*reversed([p for p in rotated_paths(path, 1000) if p.exists()]), path]
    return [line for f in files for line in f.read_bytes().split(b"\n")[:-1]]


def check_whole(lines: list[bytes], procs: int, count: int) -> None:
    messages = [json.loads(line)["message"] for line in lines]  # every line parses
    assert len(messages) == procs * count
    assert set(messages) == {f"p{n}-{i}" for n in range(procs) for i in range(count)}
    # The processes really wrote at the same time: their lines alternate many times.
    owners = [m.split("-")[0] for m in messages]
    assert sum(a != b for a, b in itertools.pairwise(owners)) >= 10
    # Each process's own lines stay in its order.
    for n in range(procs):
        mine = [int(m.split("-")[1]) for m in messages if m.startswith(f"p{n}-")]
        assert mine == sorted(mine)


def test_two_processes_append_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "sentry.log"
    run_writers(path, tmp_path, procs=2, count=1500, max_bytes=1 << 30, backups=3)
    data = path.read_bytes()
    assert data.endswith(b"\n")
    check_whole(data.split(b"\n")[:-1], procs=2, count=1500)
    assert not rotated_paths(path, 1)[0].exists()


def test_two_processes_rotating_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "sentry.log"
    max_bytes = 128 * 1024
    run_writers(path, tmp_path, procs=2, count=1200, max_bytes=max_bytes, backups=200)
    backups = [p for p in rotated_paths(path, 200) if p.exists()]
    assert len(backups) >= 10  # it did rotate, many times, with both processes writing
    assert not rotated_paths(path, 201)[-1].exists()
    check_whole(all_lines(path), procs=2, count=1200)
    biggest_line = 9000 + 200
    for f in [path, *backups]:
        # Two writers can pass the size check at the same moment: at most one line over.
        assert f.stat().st_size <= max_bytes + biggest_line


# --- rotation, one writer -------------------------------------------------------------------------


def line(i: int, size: int = 300) -> bytes:
    head = json.dumps({"i": i, "pad": ""}).encode()
    return json.dumps({"i": i, "pad": "x" * (size - 1 - len(head))}).encode()


def test_rotation_keeps_sizes_and_backup_count(tmp_path: Path) -> None:
    path = tmp_path / "sentry.log"
    writer = LogFileWriter(path, max_bytes=4096, backups=2)
    for i in range(100):
        writer.write_line(line(i))  # 300 bytes with the newline: 13 lines per 4096-byte file
    one, two, three = rotated_paths(path, 3)
    assert one.exists()
    assert two.exists()
    assert not three.exists()
    assert writer.rotations == 7
    assert [f.stat().st_size for f in (two, one, path)] == [3900, 3900, 9 * 300]
    kept = [json.loads(x)["i"] for x in all_lines(path)]
    assert kept == list(range(65, 100))  # the newest lines, in order, nothing torn


def test_zero_backups_truncates_by_starting_a_new_file(tmp_path: Path) -> None:
    path = tmp_path / "sentry.log"
    writer = LogFileWriter(path, max_bytes=4096, backups=0)
    for i in range(30):
        writer.write_line(line(i))
    assert not rotated_paths(path, 1)[0].exists()
    assert [json.loads(x)["i"] for x in all_lines(path)] == list(range(26, 30))


def test_a_line_bigger_than_the_cap_gets_a_file_of_its_own(tmp_path: Path) -> None:
    path = tmp_path / "sentry.log"
    writer = LogFileWriter(path, max_bytes=4096, backups=3)
    writer.write_line(line(0, 5000))  # an empty file takes it: no endless rotation
    assert writer.rotations == 0
    writer.write_line(line(1))
    assert writer.rotations == 1
    assert [json.loads(x)["i"] for x in rotated_paths(path, 1)[0].read_bytes().splitlines()] == [0]
    assert [json.loads(x)["i"] for x in path.read_bytes().splitlines()] == [1]


def test_a_writer_notices_another_rotated_and_reopens(tmp_path: Path) -> None:
    path = tmp_path / "sentry.log"
    ours = LogFileWriter(path, max_bytes=4096, backups=3)
    theirs = LogFileWriter(path, max_bytes=4096, backups=3)  # another process, in effect
    ours.write_line(b'{"who":"ours","n":0}')
    i = 0
    while theirs.rotations == 0:
        theirs.write_line(line(i))
        i += 1
    ours.write_line(b'{"who":"ours","n":1}')
    assert ours.rotations == 0
    current = [json.loads(x) for x in path.read_bytes().splitlines()]
    # Our line went to the new file, not into the one that was renamed away.
    assert current[-1] == {"who": "ours", "n": 1}
    assert b'"n":0' in rotated_paths(path, 1)[0].read_bytes()


def test_a_writer_recreates_a_deleted_log(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "sentry.log"
    writer = LogFileWriter(path, max_bytes=4096, backups=1)
    writer.write_line(b"{}")
    path.unlink()
    path.parent.rmdir()
    writer.write_line(b'{"again":1}')
    assert path.read_bytes() == b'{"again":1}\n'


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX-only")
def test_forked_child_writes_whole_lines_too(tmp_path: Path) -> None:
    """A child forked with the parent's writer (gunicorn-style workers) keeps lines whole."""
    path = tmp_path / "sentry.log"
    writer = LogFileWriter(path, max_bytes=1 << 30, backups=1)
    writer.write_line(b'{"who":"parent","i":-1}')
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 0
        try:
            for i in range(500):
                writer.write_line(json.dumps({"who": "child", "i": i, "p": "y" * 5000}).encode())
        except BaseException:
            code = 1
        os._exit(code)
    for i in range(500):
        writer.write_line(json.dumps({"who": "parent", "i": i, "p": "z" * 5000}).encode())
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    records = [json.loads(x) for x in path.read_bytes().splitlines()]
    assert len(records) == 1001
    assert sorted(r["i"] for r in records if r["who"] == "child") == list(range(500))


def test_write_lines_rotates_where_write_line_does(tmp_path: Path) -> None:
    # A batch goes out in a few writes, but the files end up exactly as line-by-line writing
    # leaves them: same rotations, same lines in each file, whole lines only.
    one_by_one = LogFileWriter(tmp_path / "a" / "sentry.log", max_bytes=4096, backups=2)
    batched = LogFileWriter(tmp_path / "b" / "sentry.log", max_bytes=4096, backups=2)
    lines = [line(i, 100 + (i * 37) % 900) for i in range(100)]
    for data in lines:
        one_by_one.write_line(data)
    assert batched.write_lines(lines[:60]) == 60
    assert batched.write_lines(lines[60:]) == 40
    assert batched.rotations == one_by_one.rotations > 0
    for a, b in zip(
        [one_by_one.path, *rotated_paths(one_by_one.path, 2)],
        [batched.path, *rotated_paths(batched.path, 2)],
        strict=True,
    ):
        assert a.read_bytes() == b.read_bytes()


def test_write_lines_ends_a_torn_line_first(tmp_path: Path) -> None:
    path = tmp_path / "sentry.log"
    path.write_bytes(b'{"whole":1}\n{"torn":')
    writer = LogFileWriter(path, max_bytes=1 << 20, backups=1)
    assert writer.write_lines([b'{"n":1}', b'{"n":2}']) == 2
    assert path.read_bytes() == b'{"whole":1}\n{"torn":\n{"n":1}\n{"n":2}\n'
