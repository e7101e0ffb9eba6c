"""Ingestion: the local log (and its rotated files) into DuckDB tables kept next to the log.

:func:`open_store` returns a :class:`Store` whose tables are up to date with the log:

* ``errors``: one row per error event, with its issue key (``group_key``, see
  :mod:`widgettrace.insights._grouping`), title, culprit, level, release, user, trace;
* ``transactions``: one row per transaction (name, op, status, start/end, duration, release,
  user, service, LLM cost and tokens summed over its spans);
* ``spans``: one row per span (op, description, duration, self time, outcome), written on the
  first query that reads it (see below);
* ``span_minutes``: the spans' self time summed per minute, transaction name, op, description;
* ``agent_spans``: the agent blocks' spans (agent name, op, outcome);
* ``breadcrumbs``: what the app recorded on the way (for journeys);
* ``deploys``: deploy markers (``widgettrace deploy``);
* ``sessions``: release-health session updates (span v2, logs and sessions posted by ``wire``);
* ``session_aggregates``: a server's request sessions per minute (exited, errored, crashed,
  abnormal), from the SDK's ``sessions`` items;

Incremental: the store remembers, per file (device, inode and a hash of its first bytes), how
many bytes it has read. The next run reads only what was appended; a last line without its
newline (a writer mid-line) is left for the next run; a rotated file (``sentry.log`` renamed to
``sentry.log.1``) is recognised by its inode and read on from where it was; a file that is new
or was replaced is read from its start. Lines that are not JSON objects are counted
(``Store.corrupt_lines``), never fatal.

The derived tables live in ``<log>.insights.duckdb`` beside the log, so the second report only
parses the new bytes. When that file cannot be written (read-only directory, another process
holding DuckDB's lock), the store is built in memory instead: slower, same answers.

Parsing is DuckDB's own ``read_json`` with an explicit schema: one pass over the bytes in C++,
no Python loop per line.

Deferred span rows: transactions' child spans are most of a log's rows, and writing them was
half of a first ingestion's time. What the standup and most views need from them (self time
per minute, LLM cost and tokens, discovery outcomes, agent blocks) is derived from the parsed
lines directly; their ``spans`` rows are written on the first query that reads that table
(:meth:`Store.rows` and :meth:`Store.scalar` see it in the SQL and call
:meth:`Store.ensure_spans`), by reading those byte ranges again (found by inode, so after a
rotation too). Span v2 lines (stream mode) are rows already and are written at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import duckdb

from widgettrace.insights import _grouping

__all__ = ["InsightsError", "Store", "open_store", "store_path"]

#: Bump when the derived tables change shape: an older store is rebuilt from the log.
SCHEMA_VERSION = 13
_HEAD_BYTES = 256
_MAX_ROTATED = 100
_COPY_CHUNK = 1 << 24
# A query that reads the spans table (not span_minutes or agent_spans).
_READS_SPANS = re.compile(r"\b(?:FROM|JOIN)\s+spans\b", re.IGNORECASE)
# What the deferred pass reads of each line: the transactions' spans and their root.
_DEFERRED_KEYS = ("type", "event_id", "transaction", "timestamp", "start_timestamp", "contexts")


class InsightsError(Exception):
    """Bad input (missing, empty or unreadable log): the CLI prints it as one line."""


def store_path(log: Path) -> Path:
    """Where the derived tables of ``log`` are kept."""
    return log.with_name(log.name + ".insights.duckdb")


# The columns read from each line, typed: DuckDB parses straight into these structs and skips
# every other field, far faster than keeping JSON text. Leaves are VARCHAR (any JSON scalar
# reads as text) and are cast later with TRY_CAST, so an odd value never costs a whole line.
# Only the error-only parts whose shape varies (exception, message, fingerprint) stay JSON.
_DATA = (
    'STRUCT("widget.outcome" VARCHAR, "gen_ai.agent.name" VARCHAR, "widget.id" VARCHAR, '
    '"gen_ai.cost.total_tokens" VARCHAR, "gen_ai.usage.input_tokens" VARCHAR, '
    '"gen_ai.usage.output_tokens" VARCHAR, "session.id" VARCHAR, '
    # LLM cost by model, block and iteration (insights/agent_cost.py, the MCP `cost` tool).
    '"gen_ai.request.model" VARCHAR, "widget.cost.usd" VARCHAR, '
    '"widget.usage.input_tokens" VARCHAR, "widget.usage.output_tokens" VARCHAR, '
    '"widget.iteration.number" VARCHAR)'
)
# A transaction's child spans are most of the bytes (~10 per line): they are read with the
# fewest conversions. Our span processor writes their timestamps as epoch seconds, read straight
# as DOUBLE (an RFC 3339 string there reads as NULL: then the piece is read again with
# _SPANS_TEXT, see Store._load); the numeric data as DOUBLE (a number in a string converts, as
# TRY_CAST did). Text for numbers would cost a number-to-string conversion per value.
_SPAN_DATA = (
    'STRUCT("widget.outcome" VARCHAR, "gen_ai.agent.name" VARCHAR, "widget.id" VARCHAR, '
    '"gen_ai.cost.total_tokens" DOUBLE, "gen_ai.usage.input_tokens" DOUBLE, '
    '"gen_ai.usage.output_tokens" DOUBLE, "gen_ai.request.model" VARCHAR, '
    '"widget.cost.usd" DOUBLE, "widget.usage.input_tokens" DOUBLE, '
    '"widget.usage.output_tokens" DOUBLE, "widget.iteration.number" DOUBLE)'
)
_SPAN_FIELDS = (
    "span_id VARCHAR, parent_span_id VARCHAR, op VARCHAR, description VARCHAR, status VARCHAR, "
    'start_timestamp {ts}, "timestamp" {ts}, data ' + _SPAN_DATA
)
_SPANS_FAST = "STRUCT(" + _SPAN_FIELDS.format(ts="DOUBLE") + ")[]"
_SPANS_TEXT = "STRUCT(" + _SPAN_FIELDS.format(ts="VARCHAR") + ")[]"
# The first pass reads only what the roll-ups need of each span (the spans rows, written later,
# read them whole): fewer fields to convert and keep, for millions of spans.
_FIRST_FIELDS = (
    "span_id VARCHAR, parent_span_id VARCHAR, op VARCHAR, description VARCHAR, "
    'start_timestamp {ts}, "timestamp" {ts}, data STRUCT("widget.outcome" VARCHAR, '
    '"gen_ai.agent.name" VARCHAR, "gen_ai.cost.total_tokens" DOUBLE, '
    '"gen_ai.usage.input_tokens" DOUBLE, "gen_ai.usage.output_tokens" DOUBLE)'
)
_FIRST_FAST = "STRUCT(" + _FIRST_FIELDS.format(ts="DOUBLE") + ")[]"
_FIRST_TEXT = "STRUCT(" + _FIRST_FIELDS.format(ts="VARCHAR") + ")[]"
# Span v2 and log items carry typed attributes: {"key": {"value": ..., "type": ...}}.
_ATTRIBUTE_KEYS = (
    "sentry.op", "sentry.release", "sentry.environment", "sentry.segment.id",
    "sentry.segment.name", "service.name", "user.id", "widget.outcome", "gen_ai.agent.name",
    "widget.id", "gen_ai.cost.total_tokens", "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens", "gen_ai.request.model", "widget.cost.usd",
    "widget.usage.input_tokens", "widget.usage.output_tokens", "widget.iteration.number",
)
_ATTRIBUTES = "STRUCT(" + ", ".join(f'"{k}" STRUCT(value VARCHAR)' for k in _ATTRIBUTE_KEYS) + ")"
_COLUMNS = {
    "type": "VARCHAR",
    "event_id": "VARCHAR",
    "timestamp": "VARCHAR",
    "start_timestamp": "VARCHAR",
    "level": "VARCHAR",
    "release": "VARCHAR",
    "environment": "VARCHAR",
    "transaction": "VARCHAR",
    "server_name": "VARCHAR",
    "user": "STRUCT(id VARCHAR, username VARCHAR, email VARCHAR, ip_address VARCHAR)",
    "tags": (
        'STRUCT("service.name" VARCHAR, "session.id" VARCHAR, category VARCHAR, '
        '"audit.outcome" VARCHAR, tool VARCHAR, "test.outcome" VARCHAR)'
    ),
    "logger": "VARCHAR",
    "contexts": (
        "STRUCT(trace STRUCT(trace_id VARCHAR, span_id VARCHAR, parent_span_id VARCHAR, "
        f"op VARCHAR, status VARCHAR, data {_DATA}))"
    ),
    "exception": "JSON",
    "logentry": "JSON",
    "message": "JSON",
    "fingerprint": "JSON",
    "breadcrumbs": (
        'STRUCT("values" STRUCT("timestamp" VARCHAR, category VARCHAR, message VARCHAR, '
        "level VARCHAR)[])"
    ),
    "spans": _SPANS_FAST,
    # Flat records: deploy markers, and the span v2 / log / session items of `wire`.
    "name": "VARCHAR",
    "trace_id": "VARCHAR",
    "span_id": "VARCHAR",
    "parent_span_id": "VARCHAR",
    "status": "VARCHAR",
    "is_segment": "BOOLEAN",
    "end_timestamp": "VARCHAR",
    "body": "VARCHAR",
    "sid": "VARCHAR",
    "did": "VARCHAR",
    "started": "VARCHAR",
    "errors": "VARCHAR",
    "attrs": "STRUCT(release VARCHAR, environment VARCHAR)",
    # A server's request sessions, counted per minute by the SDK (`sessions` lines).
    "aggregates": (
        "STRUCT(started VARCHAR, exited BIGINT, errored BIGINT, crashed BIGINT, "
        "abnormal BIGINT)[]"
    ),
    "attributes": _ATTRIBUTES,
}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE TABLE IF NOT EXISTS files (
    dev UBIGINT, ino UBIGINT, head VARCHAR, "offset" UBIGINT, lines UBIGINT, corrupt UBIGINT
);
CREATE TABLE IF NOT EXISTS errors (
    event_id VARCHAR, ts DOUBLE, level VARCHAR, release VARCHAR, environment VARCHAR,
    service VARCHAR, user_id VARCHAR, session_id VARCHAR, trace_id VARCHAR, span_id VARCHAR,
    transaction VARCHAR, exc_type VARCHAR, exc_value VARCHAR, handled BOOLEAN,
    culprit VARCHAR, title VARCHAR, group_key VARCHAR, logger VARCHAR, category VARCHAR
);
-- Random ids do not compress; stored as they are, a first ingestion skips weighing every
-- compression for 900,000 of each (a third of this table's write).
CREATE TABLE IF NOT EXISTS transactions (
    event_id VARCHAR USING COMPRESSION 'uncompressed',
    trace_id VARCHAR USING COMPRESSION 'uncompressed',
    span_id VARCHAR USING COMPRESSION 'uncompressed', name VARCHAR, op VARCHAR,
    status VARCHAR, start DOUBLE, ts DOUBLE, duration_ms DOUBLE, release VARCHAR,
    environment VARCHAR, service VARCHAR, user_id VARCHAR, session_id VARCHAR,
    llm_cost DOUBLE, llm_tokens BIGINT, discovery_ok BIGINT, discovery_failed BIGINT
);
CREATE TABLE IF NOT EXISTS spans (
    event_id VARCHAR, trace_id VARCHAR, span_id VARCHAR, parent_span_id VARCHAR,
    txn_name VARCHAR, op VARCHAR, description VARCHAR, start DOUBLE, ts DOUBLE,
    duration_ms DOUBLE, self_ms DOUBLE, status VARCHAR, outcome VARCHAR, agent VARCHAR,
    widget_id VARCHAR, model VARCHAR, cost_usd DOUBLE, input_tokens BIGINT,
    output_tokens BIGINT, iteration BIGINT
);
-- Self time per minute (of the span's end), transaction name, op and description: what the
-- slow-transaction breakdown sums (insights/performance.py), without scanning every span.
CREATE TABLE IF NOT EXISTS span_minutes (
    minute DOUBLE, txn_name VARCHAR, op VARCHAR, description VARCHAR, self_ms DOUBLE
);
-- The agent blocks' spans (few): what the standup's per-block status and the --block filter
-- read, so they never wait for the spans table.
CREATE TABLE IF NOT EXISTS agent_spans (
    event_id VARCHAR, trace_id VARCHAR, op VARCHAR, agent VARCHAR, outcome VARCHAR
);
-- Byte ranges whose transactions have no ``spans`` rows yet (see Store.ensure_spans).
CREATE TABLE IF NOT EXISTS pending_spans (dev UBIGINT, ino UBIGINT, start UBIGINT, "end" UBIGINT);
CREATE TABLE IF NOT EXISTS breadcrumbs (
    event_id VARCHAR, user_id VARCHAR, ts DOUBLE, category VARCHAR, message VARCHAR,
    level VARCHAR
);
CREATE TABLE IF NOT EXISTS deploys (release VARCHAR, environment VARCHAR, ts DOUBLE);
CREATE TABLE IF NOT EXISTS sessions (
    sid VARCHAR, did VARCHAR, release VARCHAR, environment VARCHAR, status VARCHAR,
    started DOUBLE, ts DOUBLE, errors BIGINT, name VARCHAR
);
CREATE TABLE IF NOT EXISTS session_aggregates (
    minute DOUBLE, release VARCHAR, environment VARCHAR, exited BIGINT, errored BIGINT,
    crashed BIGINT, abnormal BIGINT
);
CREATE TABLE IF NOT EXISTS logs (
    ts DOUBLE, level VARCHAR, body VARCHAR, trace_id VARCHAR, release VARCHAR, service VARCHAR
);
"""

# A timestamp is epoch seconds (our processor) or RFC 3339 (the SDK's events).
_MACROS = """
CREATE OR REPLACE TEMP MACRO wt_ts(x) AS
    coalesce(TRY_CAST(x AS DOUBLE), epoch(TRY_CAST(x AS TIMESTAMPTZ)));
CREATE OR REPLACE TEMP MACRO wt_user(u) AS coalesce(u.id, u.username, u.email, u.ip_address);
-- LLM cost and tokens of a span's data: the call's own (gen_ai.*), else a block's roll-up.
CREATE OR REPLACE TEMP MACRO wt_llm_cost(d) AS
    TRY_CAST(coalesce(d."gen_ai.cost.total_tokens", d."widget.cost.usd") AS DOUBLE);
CREATE OR REPLACE TEMP MACRO wt_llm_in(d) AS
    TRY_CAST(coalesce(d."gen_ai.usage.input_tokens", d."widget.usage.input_tokens") AS BIGINT);
CREATE OR REPLACE TEMP MACRO wt_llm_out(d) AS
    TRY_CAST(coalesce(d."gen_ai.usage.output_tokens", d."widget.usage.output_tokens") AS BIGINT);
"""


@dataclass
class _Piece:
    """A byte range of one log file to ingest."""

    path: Path
    dev: int
    ino: int
    head: str
    start: int
    end: int  # just past the last complete line


class Store:
    """The derived tables of one log (use :func:`open_store`)."""

    def __init__(self, log: Path, con: duckdb.DuckDBPyConnection, *, persistent: bool) -> None:
        self.log = log
        self.con = con
        self.persistent = persistent
        #: Lines read in this call / in total that were not JSON objects.
        self.new_corrupt = 0
        self.new_lines = 0
        #: Results the views share, valid until a :meth:`refresh` ingests something.
        self.cache: dict[str, Any] = {}

    # --- queries ------------------------------------------------------------------------------

    def rows(self, sql: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        """Run ``sql`` and return its rows as dicts."""
        if _READS_SPANS.search(sql):
            self.ensure_spans()
        cur = self.con.execute(sql, params or [])
        names = [d[0] for d in cur.description or []]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def scalar(self, sql: str, params: list[Any] | None = None) -> Any:
        if _READS_SPANS.search(sql):
            self.ensure_spans()
        row = self.con.execute(sql, params or []).fetchone()
        return None if row is None else row[0]

    @property
    def corrupt_lines(self) -> int:
        return int(self.scalar("SELECT coalesce(sum(corrupt), 0) FROM files") or 0)

    @property
    def total_lines(self) -> int:
        return int(self.scalar("SELECT coalesce(sum(lines), 0) FROM files") or 0)

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- ingestion ----------------------------------------------------------------------------

    def refresh(self) -> int:
        """Read what was appended since the last call; returns the number of new lines."""
        pieces, seen = self._plan()
        self.new_lines = self.new_corrupt = 0
        if pieces:  # what the views computed from the old tables is stale
            self.cache.clear()
        for piece in pieces:
            self._ingest(piece)
        # Forget files that rotated off the end (their rows stay).
        if seen:
            keep = " OR ".join("(dev = ? AND ino = ?)" for _ in seen)
            flat = [v for pair in seen for v in pair]
            self.con.execute(f"DELETE FROM files WHERE NOT ({keep})", flat)
        return self.new_lines

    def _known(self) -> dict[tuple[int, int], tuple[str, int]]:
        rows = self.con.execute('SELECT dev, ino, head, "offset" FROM files').fetchall()
        return {(int(d), int(i)): (str(h), int(o)) for d, i, h, o in rows}

    def _plan(self) -> tuple[list[_Piece], list[tuple[int, int]]]:
        known = self._known()
        files = [self.log.with_name(f"{self.log.name}.{i}") for i in range(_MAX_ROTATED, 0, -1)]
        files.append(self.log)
        pieces: list[_Piece] = []
        seen: list[tuple[int, int]] = []
        for path in files:  # oldest first, so rows arrive in time order
            try:
                with path.open("rb") as fh:
                    info = os.fstat(fh.fileno())
                    head = _hash_head(fh)
                    key = (info.st_dev, info.st_ino)
                    seen.append(key)
                    start = 0
                    if key in known:
                        old_head, offset = known[key]
                        # Same file when its first bytes match what we hashed then (those bytes
                        # only grow until _HEAD_BYTES, so compare the shorter prefix).
                        if old_head == head or offset < _HEAD_BYTES:
                            start = offset if offset <= info.st_size else 0
                    end = _last_newline(fh, start, info.st_size)
            except (FileNotFoundError, IsADirectoryError):
                continue
            except OSError as exc:
                raise InsightsError(f"cannot read {path}: {exc.strerror or exc}") from exc
            if key in known and start == known[key][1] and end <= start:
                continue
            pieces.append(_Piece(path, info.st_dev, info.st_ino, head, start, max(end, start)))
        return pieces, seen

    def _ingest(self, piece: _Piece) -> None:
        row = self.con.execute(
            "SELECT lines, corrupt FROM files WHERE dev = ? AND ino = ? AND \"offset\" = ?",
            [piece.dev, piece.ino, piece.start],
        ).fetchone()
        lines, corrupt = (int(row[0]), int(row[1])) if row and piece.start else (0, 0)
        with _readable(piece) as source:
            self.con.execute("BEGIN")
            try:
                if not piece.start:  # read from its start: older ranges of this inode are gone
                    self.con.execute(
                        "DELETE FROM pending_spans WHERE dev = ? AND ino = ?",
                        [piece.dev, piece.ino],
                    )
                if piece.end > piece.start:
                    new_lines, new_corrupt, transactions = self._load(source)
                    lines += new_lines
                    corrupt += new_corrupt
                    if transactions:
                        self.con.execute(
                            "INSERT INTO pending_spans VALUES (?, ?, ?, ?)",
                            [piece.dev, piece.ino, piece.start, piece.end],
                        )
                self.con.execute(
                    "DELETE FROM files WHERE dev = ? AND ino = ?", [piece.dev, piece.ino]
                )
                self.con.execute(
                    "INSERT INTO files VALUES (?, ?, ?, ?, ?, ?)",
                    [piece.dev, piece.ino, piece.head, piece.end, lines, corrupt],
                )
                self.con.execute("COMMIT")
            except BaseException:
                self.con.execute("ROLLBACK")
                raise

    def _read(self, source: str, keys: tuple[str, ...] | None = None) -> None:
        """Parse ``source`` into the temporary table ``raw``, with columns computed from each
        line's spans. ``keys``: only those columns, the spans with all their fields and their
        shape (``_grouping.SPAN_SHAPE``: the deferred pass); else every column, the spans with
        the fields the first pass needs and the roll-ups' figures (``SPAN_FIGURES``)."""
        con = self.con
        kinds = (_FIRST_FAST, _FIRST_TEXT) if keys is None else (_SPANS_FAST, _SPANS_TEXT)
        derived = _grouping.SPAN_FIGURES if keys is None else _grouping.SPAN_SHAPE
        for spans in kinds:
            columns = {**_COLUMNS, "spans": spans}
            if keys is not None:
                columns = {k: columns[k] for k in (*keys, "spans")}
            spec = "{" + ", ".join(f"'{k}': '{v}'" for k, v in columns.items()) + "}"
            # The first pass keeps its own lists of the spans (SPAN_FIGURES), not the parsed.
            keep = "*" if keys is not None else "* EXCLUDE (spans)"
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE raw AS SELECT {keep}, {derived} "
                "FROM read_json(?, format = 'newline_delimited', records = true, "
                f"ignore_errors = true, columns = {spec})",
                [source],
            )
            # Span timestamps as text (RFC 3339): read the piece again, timestamps as text.
            if spans == kinds[1] or not con.execute(
                "SELECT count(*) FROM raw WHERE span_flags & 2 = 2"
            ).fetchone()[0]:  # type: ignore[index]
                break

    def _load(self, source: str) -> tuple[int, int, int]:
        """Parse ``source`` into the derived tables; returns (lines, corrupt lines,
        transactions, whose ``spans`` rows are deferred)."""
        con = self.con
        self._read(source)
        lines, corrupt, transactions = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE type IS NULL AND event_id IS NULL "
            "AND timestamp IS NULL AND name IS NULL AND sid IS NULL AND release IS NULL), "
            "count(*) FILTER (WHERE type = 'transaction') FROM raw"
        ).fetchone() or (0, 0, 0)
        self.new_lines += int(lines)
        self.new_corrupt += int(corrupt)
        # Rows are only ever appended to spans: the new ones are those past the old count.
        before = int(con.execute("SELECT count(*) FROM spans").fetchone()[0])  # type: ignore[index]
        for statement in _grouping.insert_statements():
            con.execute(statement)
        con.execute(_grouping.SPAN_MINUTES, [before])
        con.execute(_grouping.SPAN_AGENTS, [before])
        con.execute("DROP TABLE raw")
        return int(lines), int(corrupt), int(transactions)

    def ensure_spans(self) -> None:
        """Write the deferred ``spans`` rows (transactions' spans), if any are pending.

        A range whose file is gone (rotated off the end) is dropped: its spans were counted in
        every roll-up already, only their rows are missing.
        """
        pending = self.con.execute(
            'SELECT dev, ino, start, "end" FROM pending_spans ORDER BY dev, ino, start'
        ).fetchall()
        if not pending:
            return
        files: dict[tuple[int, int], tuple[Path, int]] = {}
        for i in range(_MAX_ROTATED + 1):
            path = self.log.with_name(f"{self.log.name}.{i}") if i else self.log
            with contextlib.suppress(OSError):
                info = os.stat(path)
                files[(info.st_dev, info.st_ino)] = (path, info.st_size)
        # Ranges appended one after another (incremental runs) are read as one.
        ranges: list[list[int]] = []
        for dev, ino, start, end in pending:
            if ranges and ranges[-1][:2] == [dev, ino] and ranges[-1][3] == start:
                ranges[-1][3] = end
            else:
                ranges.append([int(dev), int(ino), int(start), int(end)])
        self.con.execute("BEGIN")
        try:
            for dev, ino, start, end in ranges:
                found = files.get((dev, ino))
                if found is not None and found[1] >= end:
                    path = found[0]
                    piece = _Piece(path, dev, ino, "", start, end)
                    with _readable(piece) as source:
                        self._read(source, _DEFERRED_KEYS)
                        for statement in _grouping.DEFERRED_SPANS:
                            self.con.execute(statement)
                        self.con.execute("DROP TABLE raw")
            self.con.execute("DELETE FROM pending_spans")
            self.con.execute("COMMIT")
        except BaseException:
            self.con.execute("ROLLBACK")
            raise


def _hash_head(fh: BinaryIO) -> str:
    """The hash of a file's first bytes: how a file is recognised (with its inode)."""
    return hashlib.blake2b(fh.read(_HEAD_BYTES), digest_size=8).hexdigest()


def _last_newline(fh: BinaryIO, start: int, size: int) -> int:
    """The offset just past the last ``\\n`` in ``[start, size)``, or ``start`` if none."""
    pos = size
    block = 1 << 16
    while pos > start:
        lo = max(start, pos - block)
        fh.seek(lo)
        chunk = fh.read(pos - lo)
        idx = chunk.rfind(b"\n")
        if idx >= 0:
            return lo + idx + 1
        pos = lo
    return start


@contextlib.contextmanager
def _readable(piece: _Piece) -> Iterator[str]:
    """A path DuckDB can read holding exactly ``piece``'s bytes.

    The whole file when the piece is all of it and the file has not grown since (no copy);
    otherwise the range copied to a temporary file (``copy_file_range``: in the kernel).
    """
    if piece.start == 0:
        with contextlib.suppress(OSError):
            info = os.stat(piece.path)
            if info.st_size == piece.end and (info.st_dev, info.st_ino) == (piece.dev, piece.ino):
                yield str(piece.path)
                return
    with tempfile.TemporaryDirectory(prefix="widgettrace-insights-") as tmp:
        target = Path(tmp) / "piece.jsonl"
        with piece.path.open("rb") as src, target.open("wb") as dst:
            _copy_range(src.fileno(), dst.fileno(), piece.start, piece.end - piece.start)
        yield str(target)


def _copy_range(src: int, dst: int, offset: int, length: int) -> None:
    copy = getattr(os, "copy_file_range", None)
    while length > 0:
        n = 0
        if copy is not None:
            try:
                n = copy(src, dst, min(length, _COPY_CHUNK), offset)
            except OSError:
                copy = None
        if n <= 0:
            data = os.pread(src, min(length, _COPY_CHUNK), offset)
            if not data:
                return
            n = os.write(dst, data)
        offset += n
        length -= n


def _connect(db: Path | None) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(db) if db is not None else ":memory:")
    con.execute("SET preserve_insertion_order = false")
    con.execute("SET enable_progress_bar = false")
    return con


def open_store(log: str | os.PathLike[str], *, persist: bool = True) -> Store:
    """Open (creating or updating) the derived tables of ``log`` and ingest what is new.

    Raises :class:`InsightsError` for a missing log, a directory or an unreadable file.
    """
    path = Path(os.path.abspath(os.fspath(log)))
    if path.is_dir():
        raise InsightsError(f"{path} is a directory, not a log file")
    if not path.exists() and not path.with_name(path.name + ".1").exists():
        raise InsightsError(f"no local log at {path}")
    con: duckdb.DuckDBPyConnection | None = None
    persistent = False
    if persist:
        try:
            con = _connect(store_path(path))
            persistent = True
            version = con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_name = 'meta'"
            ).fetchone()
            if version is not None:
                row = con.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
                if row is None or row[0] != str(SCHEMA_VERSION):
                    con.close()
                    store_path(path).unlink()
                    con = _connect(store_path(path))
        except (duckdb.Error, OSError):
            # Locked by another reader, or a read-only directory: same answers, in memory.
            con = None
            persistent = False
    if con is None:
        con = _connect(None)
    con.execute(_SCHEMA)
    con.execute(
        "INSERT OR REPLACE INTO meta VALUES ('schema', ?)", [str(SCHEMA_VERSION)]
    )
    con.execute(_MACROS)
    _grouping.install_macros(con)
    store = Store(path, con, persistent=persistent)
    store.refresh()
    return store
