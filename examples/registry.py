"""The widget registry: a real SQLite database of converted widgets and cascade decisions.

Constraints do real work: ``UNIQUE(name, version)`` stops a widget from being published twice
under the same version (the example's third failure, ``sqlite3.IntegrityError``), and a
``CHECK`` keeps versions numeric.

Writes go through widgettrace's ``registry_span`` (a hot path, traced in code); the read helpers
``count`` and ``list_widgets`` are traced by configuration only (``WIDGETTRACE_TRACE_FUNCTIONS``
in examples/run.py), to show both styles side by side.

Usage::

    registry = WidgetRegistry(Path("registry.db"))
    registry.insert(widget_id="w-1", name="x", version="1.0.0", widget_type="card", norm=0.7)
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from widgettrace import registry_span

__all__ = ["WidgetRegistry"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS widgets (
    id        TEXT PRIMARY KEY,
    name      TEXT NOT NULL,
    version   TEXT NOT NULL CHECK (version GLOB '[0-9]*'),
    type      TEXT NOT NULL,
    norm      REAL NOT NULL,
    UNIQUE (name, version)
);
CREATE TABLE IF NOT EXISTS cascade_decisions (
    cascade   TEXT NOT NULL,
    iteration INTEGER NOT NULL,
    widget    TEXT NOT NULL,
    verdict   TEXT NOT NULL,
    PRIMARY KEY (cascade, iteration, widget)
);
"""


class WidgetRegistry:
    """A SQLite-backed registry; safe to use from several threads (one connection per call)."""

    name = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._write_lock = threading.Lock()
        with self._connect() as db:
            db.executescript(_SCHEMA)

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """A connection that commits on success, rolls back on error, and is always closed."""
        db = sqlite3.connect(self.path, timeout=5)
        try:
            with db:
                yield db
        finally:
            db.close()

    def insert(
        self, *, widget_id: str, name: str, version: str, widget_type: str, norm: float
    ) -> None:
        """Register a converted widget; raises ``sqlite3.IntegrityError`` on a duplicate."""
        with (
            registry_span(
                "write", registry=self.name, widget_id=widget_id, widget_type=widget_type
            ),
            self._write_lock,
            self._connect() as db,
        ):
            db.execute(
                "INSERT INTO widgets (id, name, version, type, norm) VALUES (?, ?, ?, ?, ?)",
                (widget_id, name, version, widget_type, norm),
            )

    def record_decision(self, cascade: str, iteration: int, widget: str, verdict: str) -> None:
        """Store (or overwrite) a cascade's verdict on a widget."""
        with (
            registry_span("upsert", registry=self.name, widget_id=widget),
            self._write_lock,
            self._connect() as db,
        ):
            db.execute(
                "INSERT OR REPLACE INTO cascade_decisions VALUES (?, ?, ?, ?)",
                (cascade, iteration, widget, verdict),
            )

    def count(self) -> dict[str, int]:
        """Rows per table (traced by configuration only)."""
        with self._connect() as db:
            widgets = db.execute("SELECT COUNT(*) FROM widgets").fetchone()[0]
            decisions = db.execute("SELECT COUNT(*) FROM cascade_decisions").fetchone()[0]
        return {"widgets": int(widgets), "decisions": int(decisions)}

    def list_widgets(self) -> list[dict[str, Any]]:
        """Every registered widget, by name (traced by configuration only)."""
        with self._connect() as db:
            rows = db.execute("SELECT id, name, version, type FROM widgets ORDER BY name")
            return [dict(zip(("id", "name", "version", "type"), row, strict=True)) for row in rows]
