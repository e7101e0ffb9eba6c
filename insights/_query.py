"""What every view shares: the filter window and the order of releases.

A :class:`Window` narrows a view to a time range, a service (or agent block), a release and an
environment; :meth:`Window.where` turns it into a SQL condition with parameters for the
``errors`` and ``transactions`` tables (whose columns share names).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

from widgettrace.insights._store import Store

__all__ = ["Window", "release_order"]


@dataclass(frozen=True)
class Window:
    """Which events a view looks at (``None`` everywhere: all of them)."""

    since: float | None = None
    until: float | None = None
    service: str | None = None
    release: str | None = None
    environment: str | None = None
    #: Extra conditions, for views that narrow further.
    extra: tuple[str, ...] = field(default=())

    def where(self, alias: str = "", *, time_column: str = "ts") -> tuple[str, list[Any]]:
        """``("cond AND cond", params)`` for ``errors``/``transactions`` rows (``alias.``)."""
        p = f"{alias}." if alias else ""
        conds: list[str] = ["true"]
        params: list[Any] = []
        if self.since is not None:
            conds.append(f"{p}{time_column} >= ?")
            params.append(self.since)
        if self.until is not None:
            conds.append(f"{p}{time_column} < ?")
            params.append(self.until)
        if self.service:
            # A service name, or the name of an agent block running in its traces.
            conds.append(
                f"({p}service = ? OR {p}trace_id IN "
                "(SELECT trace_id FROM agent_spans WHERE agent = ?))"
            )
            params += [self.service, self.service]
        if self.release:
            conds.append(f"{p}release = ?")
            params.append(self.release)
        if self.environment:
            conds.append(f"{p}environment = ?")
            params.append(self.environment)
        conds.extend(self.extra)
        return " AND ".join(conds), params

    def previous(self) -> Window:
        """The period of the same length just before this one (for trends)."""
        if self.since is None:
            return replace(self, since=0.0, until=0.0)
        until = self.until if self.until is not None else time.time()
        length = until - self.since
        return replace(self, since=self.since - length, until=self.since)


def release_order(store: Store) -> list[dict[str, Any]]:
    """Releases oldest first: ``release``, ``deployed_at`` (marker, else first event), ``source``.

    Only releases that had traffic (errors or transactions) or a deploy marker are listed.
    Computed once per ingestion (every view asks for it).
    """
    cached = store.cache.get("release_order")
    if cached is None:
        cached = store.cache["release_order"] = _release_order(store)
    return [dict(r) for r in cached]


def _release_order(store: Store) -> list[dict[str, Any]]:
    return store.rows(
        """
        WITH ev AS (
            SELECT release, min(ts) AS first_ts, max(ts) AS last_ts FROM (
                SELECT release, ts FROM errors UNION ALL SELECT release, start FROM transactions
            ) WHERE release IS NOT NULL GROUP BY release
        ), dep AS (
            SELECT release, min(ts) AS deployed, arg_min(environment, ts) AS environment
            FROM deploys GROUP BY release
        )
        SELECT coalesce(ev.release, dep.release) AS release,
            coalesce(dep.deployed, ev.first_ts) AS deployed_at,
            CASE WHEN dep.deployed IS NULL THEN 'first event' ELSE 'deploy marker' END
                AS source,
            dep.environment AS environment, ev.first_ts AS first_event, ev.last_ts AS last_event
        FROM ev FULL OUTER JOIN dep ON ev.release = dep.release
        ORDER BY deployed_at, release
        """
    )
