"""Checks for Sentry's attribute-based items (span v2, log) and release-health sessions.

sentry-relay's Python package (``sentry_relay``, 0.10) normalises events and transactions
(``StoreNormalizer``) but has no entry point for span v2 items, log items or sessions: those are
parsed only inside relay's Rust server. What the package does offer is used here:
``parse_release`` (relay's own release validation, which rejects a session or span whose release
Sentry would refuse) and ``DataCategory`` (the client-report categories relay knows). The rest is
relay's schema written down (``relay-event-schema``: ``span_v2/mod.rs`` ``SpanV2`` and
``SpanV2Link``, ``attributes.rs``, ``ourlog.rs``, ``session.rs``): required fields, id formats,
status values, attribute types.

Usage::

    problems = check_span(span_json)      # [] when valid
    assert_valid_span(span_json)          # same, failing with the problems
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any

from sentry_relay import DataCategory, parse_release

__all__ = [
    "ATTRIBUTE_TYPES",
    "assert_valid",
    "check_log",
    "check_session",
    "check_sessions",
    "check_span",
    "known_category",
]

ATTRIBUTE_TYPES = {
    "string": (str,),
    "integer": (int,),
    "double": (float, int),
    "boolean": (bool,),
    "array": (list,),
}
_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")
_SPAN_ID = re.compile(r"^[0-9a-f]{16}$")
_SESSION_STATUSES = {"ok", "exited", "crashed", "abnormal", "errored"}
_LOG_LEVELS = {"trace", "debug", "info", "warn", "error", "fatal"}


def known_category(name: str) -> bool:
    """Whether relay knows ``name`` as a data category (client reports)."""
    return DataCategory.parse(name) not in (None, DataCategory.UNKNOWN)


def _release_problems(release: Any, where: str) -> list[str]:
    if not isinstance(release, str):
        return [f"{where}: release missing or not a string"]
    try:
        parse_release(release)
    except Exception as exc:  # relay's InvalidReleaseError family
        return [f"{where}: relay rejects release {release!r}: {type(exc).__name__}"]
    return []


def _attributes(attrs: Any, where: str) -> list[str]:
    if attrs is None:
        return []
    if not isinstance(attrs, dict):
        return [f"{where}: attributes is not an object"]
    problems = []
    for key, typed in attrs.items():
        if not isinstance(typed, dict) or set(typed) != {"value", "type"}:
            problems.append(f"{where}.{key}: not {{value, type}}: {typed!r}")
            continue
        kind, value = typed["type"], typed["value"]
        allowed = ATTRIBUTE_TYPES.get(kind)
        if allowed is None:
            problems.append(f"{where}.{key}: unknown type {kind!r}")
        elif not isinstance(value, allowed) or (kind != "boolean" and type(value) is bool):
            problems.append(f"{where}.{key}: {value!r} is not a {kind}")
        elif kind == "array" and value and len({type(v) for v in value}) != 1:
            problems.append(f"{where}.{key}: mixed array {value!r}")
    if isinstance(attrs.get("sentry.release"), dict):
        problems += _release_problems(attrs["sentry.release"]["value"], f"{where}.sentry.release")
    return problems


def check_span(span: Any) -> list[str]:
    """Problems relay's ``SpanV2`` schema would have with one span (``[]``: none)."""
    if not isinstance(span, dict):
        return ["span is not an object"]
    problems = []
    for key in ("trace_id", "span_id", "name", "status", "start_timestamp", "end_timestamp"):
        if key not in span:
            problems.append(f"required field {key} missing")
    if not _TRACE_ID.match(str(span.get("trace_id", ""))):
        problems.append(f"trace_id {span.get('trace_id')!r} is not 32 hex digits")
    for key in ("span_id", "parent_span_id"):
        if key in span and not _SPAN_ID.match(str(span[key])):
            problems.append(f"{key} {span[key]!r} is not 16 hex digits")
    if span.get("status") not in ("ok", "error"):
        problems.append(f"status {span.get('status')!r} is neither ok nor error")
    if "is_segment" in span and type(span["is_segment"]) is not bool:
        problems.append("is_segment is not a boolean")
    start, end = span.get("start_timestamp"), span.get("end_timestamp")
    if not isinstance(start, (int, float)) or not isinstance(end, (int, float)) or end < start:
        problems.append(f"timestamps {start!r}..{end!r} are not seconds with end >= start")
    if not isinstance(span.get("name"), str) or not span.get("name"):
        problems.append("name is empty")
    for i, link in enumerate(span.get("links") or ()):
        if not _TRACE_ID.match(str(link.get("trace_id", ""))):
            problems.append(f"links[{i}].trace_id invalid")
        if not _SPAN_ID.match(str(link.get("span_id", ""))):
            problems.append(f"links[{i}].span_id invalid")
        if "sampled" in link and type(link["sampled"]) is not bool:
            problems.append(f"links[{i}].sampled is not a boolean")
        problems += _attributes(link.get("attributes"), f"links[{i}].attributes")
    problems += _attributes(span.get("attributes"), "attributes")
    return problems


def check_log(log: Any) -> list[str]:
    """Problems relay's ``OurLog`` schema would have with one log (``[]``: none)."""
    problems = []
    for key in ("timestamp", "level", "body"):
        if key not in log:
            problems.append(f"required field {key} missing")
    if log.get("level") not in _LOG_LEVELS:
        problems.append(f"level {log.get('level')!r} unknown")
    if "trace_id" in log and not _TRACE_ID.match(str(log["trace_id"])):
        problems.append("trace_id invalid")
    if "span_id" in log and not _SPAN_ID.match(str(log["span_id"])):
        problems.append("span_id invalid")
    problems += _attributes(log.get("attributes"), "attributes")
    return problems


def _iso(value: Any) -> bool:
    try:
        datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def check_session(update: Any) -> list[str]:
    """Problems relay's ``SessionUpdate`` would have (``[]``: none)."""
    problems = []
    try:
        uuid.UUID(str(update.get("sid")))
    except ValueError:
        problems.append(f"sid {update.get('sid')!r} is not a UUID")
    for key in ("started", "timestamp"):
        if not _iso(update.get(key)):
            problems.append(f"{key} {update.get(key)!r} is not ISO 8601")
    if update.get("status") not in _SESSION_STATUSES:
        problems.append(f"status {update.get('status')!r} unknown")
    if "duration" in update and not (
        isinstance(update["duration"], (int, float)) and update["duration"] >= 0
    ):
        problems.append("duration is not a non-negative number")
    if "errors" in update and not (isinstance(update["errors"], int) and update["errors"] >= 0):
        problems.append("errors is not a non-negative integer")
    problems += _release_problems((update.get("attrs") or {}).get("release"), "attrs")
    return problems


def check_sessions(aggregates: Any) -> list[str]:
    """Problems relay's ``SessionAggregates`` would have (``[]``: none)."""
    problems = _release_problems((aggregates.get("attrs") or {}).get("release"), "attrs")
    buckets = aggregates.get("aggregates")
    if not isinstance(buckets, list) or not buckets:
        return [*problems, "aggregates missing"]
    for bucket in buckets:
        if not _iso(bucket.get("started")):
            problems.append(f"started {bucket.get('started')!r} is not ISO 8601")
        for key in ("exited", "errored", "abnormal", "crashed"):
            if key in bucket and not (isinstance(bucket[key], int) and bucket[key] >= 0):
                problems.append(f"{key} is not a count")
    return problems


def assert_valid(kind: str, payload: Any) -> None:
    """Fail with the problems unless ``payload`` (a span, log, session or sessions) is valid."""
    check = {
        "span": check_span,
        "log": check_log,
        "session": check_session,
        "sessions": check_sessions,
    }[kind]
    problems = check(payload)
    if problems:
        raise AssertionError(f"invalid {kind}: {problems}\n{payload!r}"[:4000])
