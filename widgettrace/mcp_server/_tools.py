"""The tools of ``widgettrace mcp``: typed, documented inputs; structured, bounded outputs.

Each tool is a thin call into :mod:`widgettrace.insights` (the views are theirs; this module picks
the window, pages, caps and scrubs). Inputs are pydantic-annotated so the SDK publishes a JSON
schema with a description per argument; outputs are pydantic models, so each call returns
``structuredContent`` (and the same JSON as text for clients that read only text).
"""

from __future__ import annotations

import functools
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, Field

from widgettrace.insights import Store
from widgettrace.insights import issues as issues_view
from widgettrace.insights import journeys as journeys_view
from widgettrace.insights import performance as performance_view
from widgettrace.insights import releases as releases_view
from widgettrace.insights import standup as standup_view
from widgettrace.insights._query import Window, release_order
from widgettrace.insights.agent_cost import cost as cost_view
from widgettrace.insights.agent_search import search_events as search_view
from widgettrace.insights.agent_trace import get_trace as trace_view
from widgettrace.mcp_server._backend import (
    MAX_LIMIT,
    Backend,
    BadArgument,
    bounded,
    decode_cursor,
    encode_cursor,
    parse_time,
)
from widgettrace.mcp_server._rawevent import find_event, stack_frames

__all__ = ["Tools"]

_T = TypeVar("_T")
#: Answers kept per server; an answer is reused while the log is unchanged and for at most
#: ``_CACHE_TTL`` seconds (relative windows such as "the last 24 h" move on).
_CACHE_SIZE = 128
_CACHE_TTL = 300.0

# --- argument types (the descriptions are what an agent reads) ----------------------------------

Since = Annotated[
    str | None,
    Field(
        description="Only events at or after this time: '24h' or '7d' (ago), an ISO 8601 "
        "timestamp, epoch seconds, or 'last-release' (since the latest release was deployed)."
    ),
]
Until = Annotated[str | None, Field(description="Only events before this time (same forms).")]
Release = Annotated[str | None, Field(description="Only this release (SENTRY_RELEASE value).")]
Service = Annotated[
    str | None,
    Field(description="Only this service (OTEL_SERVICE_NAME) or agent block (gen_ai.agent.name)."),
]
Level = Literal["fatal", "error", "warning", "info", "debug"]
Limit = Annotated[int, Field(ge=1, le=MAX_LIMIT, description=f"Page size (1-{MAX_LIMIT}).")]
Cursor = Annotated[
    str | None, Field(description="The next_cursor of the previous page; omit for the first.")
]


# --- outputs --------------------------------------------------------------------------------------


class Issue(BaseModel):
    """An issue: error events grouped the way Sentry groups them."""

    issue_id: str = Field(description="The issue key (pass it to get_issue).")
    title: str
    culprit: str | None = None
    level: str
    status: str = Field(description="new, regressed, ongoing or resolved (over the whole log).")
    count: int = Field(description="Events in the window.")
    users: int
    first_seen: float = Field(description="Epoch seconds.")
    last_seen: float = Field(description="Epoch seconds.")
    first_release: str | None = None
    last_release: str | None = None
    releases: list[str] = Field(default_factory=list)
    latest_event: str | None = None
    latest_trace: str | None = Field(default=None, description="Pass it to get_trace.")


class IssuePage(BaseModel):
    issues: list[Issue]
    total: int = Field(description="Issues matching the filters (all pages).")
    next_cursor: str | None = None


class IssueDetail(BaseModel):
    issue: Issue
    message: str | None = Field(default=None, description="The latest event's exception value.")
    stacktrace: list[dict[str, Any]] = Field(
        description="The latest event's frames (filename, function, module, lineno, in_app, "
        "context_line), innermost last."
    )
    journey: list[dict[str, Any]] = Field(
        description="What the user or session did before the latest event, oldest first "
        "(ts, kind, text, failed, retry)."
    )
    trace: dict[str, Any] | None = Field(
        description="The latest event's trace: id, duration, services, span count (get_trace "
        "has the tree)."
    )
    recent_events: list[dict[str, Any]] = Field(description="Up to 10 latest events of it.")


class EventPage(BaseModel):
    events: list[dict[str, Any]] = Field(
        description="kind (error/transaction/log), event_id, ts, summary, level, release, "
        "service, trace_id, group_key (errors), duration_ms (transactions)."
    )
    total: int
    next_cursor: str | None = None


class TraceTree(BaseModel):
    trace_id: str
    duration_ms: float
    transactions: int
    spans: int
    errors: int
    services: list[str]
    truncated: bool = Field(description="True when more spans exist than max_spans.")
    roots: list[dict[str, Any]] = Field(
        description="Span tree: each node has span_id, op, name, start_ms (from the trace's "
        "start), duration_ms, status, errors, children, and for a service's root span its "
        "transaction (event_id, service, release)."
    )


class ReleaseHealth(BaseModel):
    releases: list[dict[str, Any]] = Field(
        description="Per release: deployed_at, events, transactions, errors, error_rate, "
        "sessions, new/fixed/regressed issues, llm_cost, health verdict against the previous."
    )
    comparison: dict[str, Any] | None = Field(
        default=None, description="With compare_to: the differences between the two releases."
    )


class Performance(BaseModel):
    endpoints: list[dict[str, Any]] = Field(
        description="Per transaction name: op, count, avg/p50/p95/p99 ms, error_rate, "
        "per_minute; slowest p95 first."
    )
    breakdown: list[dict[str, Any]] = Field(
        description="For the slowest names: where their time goes (self time by span op and "
        "description)."
    )
    total: int
    next_cursor: str | None = None


class Standup(BaseModel):
    markdown: str | None = Field(default=None, description="The standup as Markdown.")
    data: dict[str, Any] | None = Field(default=None, description="The same as JSON.")


class Cost(BaseModel):
    group_by: str
    rows: list[dict[str, Any]] = Field(
        description="Per group: key, cost_usd, tokens, input_tokens, output_tokens, and calls "
        "and unpriced calls (or transactions, by release); highest cost first."
    )
    total_usd: float = Field(description="The cost of all groups (not only this page).")


# --- the tools ----------------------------------------------------------------------------------


def _answer_cache(method: Callable[..., _T]) -> Callable[..., _T]:
    """Serve a tool's repeated question from :meth:`Tools._cached` (signature kept for the SDK)."""

    @functools.wraps(method)
    def cached(self: Tools, **kwargs: Any) -> _T:
        return self._cached(method.__name__, kwargs, lambda: method(self, **kwargs))

    return cached


def _issue(row: dict[str, Any]) -> Issue:
    return Issue(
        issue_id=row["group_key"],
        title=row.get("title") or row["group_key"],
        culprit=row.get("culprit"),
        level=row.get("level") or "error",
        status=row.get("status") or "ongoing",
        count=int(row.get("count") or 0),
        users=int(row.get("users") or 0),
        first_seen=float(row["first_seen"]),
        last_seen=float(row["last_seen"]),
        first_release=row.get("first_release"),
        last_release=row.get("last_release"),
        releases=list(row.get("releases") or []),
        latest_event=row.get("latest_event"),
        latest_trace=row.get("latest_trace"),
    )


def _page(total: int, offset: int, count: int) -> str | None:
    return encode_cursor(offset + count) if offset + count < total else None


class Tools:
    """The tool implementations over one :class:`Backend` (see the module docstring)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._cache: OrderedDict[str, tuple[int, float, Any]] = OrderedDict()
        self._cache_lock = threading.Lock()

    def _cached(self, name: str, args: dict[str, Any], compute: Callable[[], _T]) -> _T:
        """``compute()``, or the answer to the same question while the log is unchanged."""
        key = name + json.dumps(args, sort_keys=True, default=str)
        version = self.backend.current_version()
        now = time.monotonic()
        with self._cache_lock:
            hit = self._cache.get(key)
            if hit is not None and hit[0] == version and hit[1] > now:
                self._cache.move_to_end(key)
                result: _T = hit[2]
                return result
        result = compute()  # errors are not cached: BadArgument propagates
        with self._cache_lock:
            self._cache[key] = (version, now + _CACHE_TTL, result)
            self._cache.move_to_end(key)
            while len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        return result

    # -- shared --------------------------------------------------------------------------------
    def _since(self, store: Store, since: str | None) -> float | None:
        if since is not None and since.strip().lower() in {"last-release", "last_release"}:
            order = [r for r in release_order(store) if r.get("deployed_at") is not None]
            if not order:
                raise BadArgument("since='last-release': the log has no releases")
            return float(order[-1]["deployed_at"])
        return parse_time(since, "since")

    def _window(
        self,
        store: Store,
        since: str | None,
        until: str | None = None,
        release: str | None = None,
        service: str | None = None,
    ) -> Window:
        start, end = self._since(store, since), parse_time(until, "until")
        if start is not None and end is not None and end <= start:
            raise BadArgument(f"until={until!r} is not after since={since!r}")
        return Window(since=start, until=end, release=release or None, service=service or None)

    # -- tools ----------------------------------------------------------------------------------
    @_answer_cache
    def list_issues(
        self,
        since: Since = None,
        until: Until = None,
        release: Release = None,
        status: Literal["new", "regressed", "ongoing", "resolved"] | None = None,
        service: Service = None,
        level: Level | None = None,
        limit: Limit = 20,
        cursor: Cursor = None,
    ) -> IssuePage:
        """Issues (errors grouped as Sentry groups them) with events in the window, most events
        first: title, culprit, status, counts, first/last seen, releases, latest event and
        trace. Filter by time, release, status, service or agent block, and level."""
        offset = decode_cursor(cursor)
        with self.backend.store() as store:
            window = self._window(store, since, until, release, service)
            rows = issues_view.list_issues(store, window, status=status, level=level)
        page = rows[offset : offset + limit]
        return IssuePage(
            issues=[_issue(bounded(r)) for r in page],
            total=len(rows),
            next_cursor=_page(len(rows), offset, len(page)),
        )

    @_answer_cache
    def get_issue(
        self,
        issue_id: Annotated[str, Field(description="An issue_id from list_issues.")],
        journey_steps: Annotated[
            int, Field(ge=0, le=MAX_LIMIT, description="How many steps before the error.")
        ] = 15,
    ) -> IssueDetail:
        """One issue in depth: its latest event's stack trace, the journey of the user or
        session before it (requests, widget spans, breadcrumbs, retries), and its trace."""
        with self.backend.store() as store:
            detail = issues_view.issue_detail(store, issue_id)
            if detail is None:
                raise BadArgument(f"issue_id={issue_id!r}: no such issue in {self.backend.log}")
            latest = detail["events"][0] if detail.get("events") else {}
            trace_id = latest.get("trace_id") or detail.get("latest_trace")
            trace = trace_view(store, trace_id, max_spans=1) if trace_id else None
            journey = self._journey(store, latest, trace_id, journey_steps)
        record = find_event(self.backend.log, str(detail.get("latest_event") or ""))
        summary = None
        if trace is not None:
            summary = {k: v for k, v in trace.items() if k not in ("roots", "truncated")}
        return IssueDetail(
            issue=_issue(bounded(detail)),
            message=bounded(latest.get("message") or detail.get("value")),
            stacktrace=bounded(stack_frames(record) if record else []),
            journey=bounded(journey),
            trace=bounded(summary),
            recent_events=bounded(detail.get("events", [])[:10]),
        )

    def _journey(
        self, store: Store, latest: dict[str, Any], trace_id: str | None, steps: int
    ) -> list[dict[str, Any]]:
        if steps == 0 or not latest:
            return []
        ts = float(latest.get("ts") or 0.0)
        user = latest.get("user_id")
        if not user and trace_id:
            # A widget deep in the call chain often knows no user; the request that called it did.
            user = store.scalar(
                "SELECT any_value(user_id) FROM transactions WHERE trace_id = ? "
                "AND user_id IS NOT NULL",
                [trace_id],
            )
        if user:
            found = journeys_view.journeys(store, user=user, max_actions=2000, limit=1)
            actions = found[0]["actions"] if found else []
            before = [a for a in actions if float(a.get("ts") or 0.0) <= ts]
            return before[-steps:]
        if not trace_id:
            return []
        # No user at all: the trace itself, in order, up to the error.
        rows = store.rows(
            "SELECT start AS ts, 'span' AS kind, coalesce(description, op) AS text, "
            "coalesce(outcome = 'failure', false) AS failed FROM spans "
            "WHERE trace_id = ? AND start <= ? ORDER BY start DESC LIMIT ?",
            [trace_id, ts, steps],
        )
        return list(reversed(rows))

    @_answer_cache
    def search_events(
        self,
        query: Annotated[
            str | None,
            Field(
                description="Case-insensitive text to find in titles, messages, "
                "transaction names and log bodies; omit to match all."
            ),
        ] = None,
        kind: Literal["error", "transaction", "log"] | None = None,
        since: Since = None,
        until: Until = None,
        release: Release = None,
        service: Service = None,
        level: Level | None = None,
        limit: Limit = 20,
        cursor: Cursor = None,
    ) -> EventPage:
        """Raw events (errors, transactions, logs), newest first, matching a text and filters;
        use it to find what the grouped views do not show."""
        offset = decode_cursor(cursor)
        kinds = (kind,) if kind else ("error", "transaction", "log")
        with self.backend.store() as store:
            window = self._window(store, since, until, release, service)
            found = search_view(
                store, query, window, kinds=kinds, level=level, limit=limit, offset=offset
            )
        events = bounded(found["events"])
        return EventPage(
            events=events,
            total=found["total"],
            next_cursor=_page(found["total"], offset, len(events)),
        )

    @_answer_cache
    def get_trace(
        self,
        trace_id: Annotated[
            str, Field(min_length=1, description="A trace id (from an issue or an event).")
        ],
        max_spans: Annotated[
            int, Field(ge=1, le=2000, description="At most this many spans (earliest first).")
        ] = 300,
    ) -> TraceTree:
        """A whole trace as a span tree across services: ops, names, start offsets and
        durations in ms, statuses, and the errors raised in each span."""
        with self.backend.store() as store:
            tree = trace_view(store, trace_id.strip().lower(), max_spans=max_spans)
        if tree is None:
            raise BadArgument(f"trace_id={trace_id!r}: no transaction of that trace in the log")
        return TraceTree(**bounded(tree))

    @_answer_cache
    def release_health(
        self,
        release: Annotated[
            str | None, Field(description="One release; omit for all (oldest first).")
        ] = None,
        compare_to: Annotated[
            str | None, Field(description="A second release to compare `release` with.")
        ] = None,
    ) -> ReleaseHealth:
        """Release health: per release its traffic, errors, error rate (per session when the
        app sends sessions), new, fixed and regressed issues, LLM cost and a verdict against
        the release before it; or a comparison of two releases."""
        if compare_to and not release:
            raise BadArgument("compare_to needs release (the one to compare it with)")
        with self.backend.store() as store:
            every = releases_view.list_releases(store)
        known = {r["release"]: r for r in every}
        for name in (release, compare_to):
            if name and name not in known:
                some = ", ".join(list(known)[-5:]) or "none"
                raise BadArgument(f"release {name!r} is not in the log (latest: {some})")
        chosen = [known[r] for r in (release, compare_to) if r] if release else every
        comparison = None
        if release and compare_to:
            a, b = known[release], known[compare_to]
            comparison = {
                "release": release,
                "compare_to": compare_to,
                **{
                    f"{key}_change": (a.get(key) or 0) - (b.get(key) or 0)
                    for key in ("errors", "transactions", "llm_cost")
                },
                "error_rate": [a.get("error_rate"), b.get("error_rate")],
                "issues_only_in_release": _only(a, b),
                "issues_only_in_compare_to": _only(b, a),
            }
        return ReleaseHealth(releases=bounded(chosen[-MAX_LIMIT:]), comparison=bounded(comparison))

    @_answer_cache
    def performance(
        self,
        since: Since = None,
        until: Until = None,
        release: Release = None,
        service: Service = None,
        endpoint: Annotated[
            str | None,
            Field(description="One transaction name (e.g. 'POST /api/widgets')."),
        ] = None,
        limit: Limit = 20,
        cursor: Cursor = None,
    ) -> Performance:
        """Performance per endpoint (transaction name): count, avg/p50/p95/p99, error rate,
        throughput; and for the slowest (or the one asked), where the time goes."""
        offset = decode_cursor(cursor)
        with self.backend.store() as store:
            window = self._window(store, since, until, release, service)
            rows = performance_view.endpoints(store, window)
            if endpoint:
                rows = [r for r in rows if r["name"] == endpoint]
                if not rows:
                    raise BadArgument(f"endpoint={endpoint!r}: no such transaction in the window")
            page = rows[offset : offset + limit]
            names = [r["name"] for r in page[:3]]
            breakdown = performance_view.breakdown(store, window, names=names) if names else []
        return Performance(
            endpoints=bounded(page),
            breakdown=bounded(breakdown),
            total=len(rows),
            next_cursor=_page(len(rows), offset, len(page)),
        )

    @_answer_cache
    def standup(
        self,
        since: Annotated[
            str | None,
            Field(
                description="Start of the period (default: the last 24 h); same forms as "
                "list_issues' since."
            ),
        ] = None,
        service: Service = None,
        format: Annotated[
            Literal["markdown", "json", "both"], Field(description="What to return.")
        ] = "both",
    ) -> Standup:
        """The daily standup: critical errors, high-priority issues, fixed/new/monitoring,
        per-block status with trends, user impact, ranked recommendations."""
        data = self.standup_data(since, service)
        markdown = _render_standup(data) if format in ("markdown", "both") else None
        return Standup(markdown=markdown, data=data if format in ("json", "both") else None)

    @_answer_cache
    def cost(
        self,
        group_by: Annotated[
            Literal["block", "iteration", "model", "release"],
            Field(description="block (agent), iteration (cascade), model, or release."),
        ] = "model",
        since: Since = None,
        until: Until = None,
        release: Release = None,
        service: Service = None,
        limit: Limit = 20,
    ) -> Cost:
        """LLM cost and tokens by agent block, cascade iteration, model or release, highest
        first (calls without a known price are counted as unpriced, not as cost)."""
        with self.backend.store() as store:
            window = self._window(store, since, until, release, service)
            rows = cost_view(store, window, group_by=group_by)
        total = sum(float(r.get("cost_usd") or 0.0) for r in rows)
        return Cost(group_by=group_by, rows=bounded(rows[:limit]), total_usd=round(total, 6))

    def standup_data(self, since: str | None = None, service: str | None = None) -> dict[str, Any]:
        with self.backend.store() as store:
            start = self._since(store, since)
            data = standup_view.standup(store, since=start, service=service or None)
        result: dict[str, Any] = bounded(data)
        return result

    def warm(self) -> None:
        """Answer the questions an agent asks first (default issues, standup, performance) now,
        so the first calls after start-up are served from the cache."""
        self.list_issues()
        self.standup()
        self.performance()

    def open_issues(self) -> list[Issue]:
        """Issues not resolved, most events first (for the resource list)."""
        with self.backend.store() as store:
            rows = issues_view.list_issues(store)
        return [_issue(bounded(r)) for r in rows if r.get("status") != "resolved"][:MAX_LIMIT]


def _only(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    # new_issues/regressed_issues carry names; the per-release issue set is what differs.
    keys_b = {i["group_key"] for i in b.get("new_issues", []) + b.get("regressed_issues", [])}
    return [
        i
        for i in a.get("new_issues", []) + a.get("regressed_issues", [])
        if i["group_key"] not in keys_b
    ]


def _render_standup(data: dict[str, Any]) -> str:
    from widgettrace.insights.render import render

    text: str = render("standup", data, "markdown")
    return text
