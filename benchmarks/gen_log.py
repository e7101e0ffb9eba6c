"""Generate a local log (``sentry.log`` JSON lines) shaped like a busy widget platform's.

Reusable: the insights benchmark, the insights tests and the ``agents`` helper's tests build
their logs with it. Lines have exactly the shape widgettrace's local log writes (the Sentry event
and transaction payloads, see ``exporters/locallog.py``).

Building blocks::

    error_event(ts, "ReadTimeout", "discovery", "scan_repository", release="app@1", user="u1")
    transaction(ts, "POST /api/widgets/convert", 120.0, spans=[...], release="app@1")

The whole log::

    python benchmarks/gen_log.py OUT.log --events 1000000     # 90% transactions, ~10 spans each
    generate(path, 1_000_000, seed=1)                        # same, from Python

Deterministic for a given seed; timestamps end at ``end`` (default: now) so ``--since 24h``
windows hold data.
"""

from __future__ import annotations

import argparse
import random
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson

__all__ = ["error_event", "generate", "lines", "span", "transaction", "write_lines"]

_SERVICES = ("widget-platform", "widget-linter", "widget-ranker", "cascade")
_ENDPOINTS = (
    ("POST /api/widgets/convert", "http.server", 120.0),
    ("POST /api/widgets/discover", "http.server", 800.0),
    ("GET /api/widgets/status", "http.server", 15.0),
    ("POST /api/cascade/iterations", "http.server", 450.0),
    ("tools/call lint_config", "mcp.server", 30.0),
    ("tools/call rank_widgets", "mcp.server", 90.0),
)
_SPAN_KINDS = (
    ("widget.conversion", "run_inference", 0.47),
    ("db", "INSERT INTO widgets", 0.23),
    ("widget.discovery", "scan repository", 0.1),
    ("http.client", "GET hub/api/models", 0.1),
    ("gen_ai.chat", "chat claude-sonnet-4-5", 0.1),
)
_ERROR_TYPES = ("ReadTimeout", "JSONDecodeError", "IntegrityError", "ValueError", "KeyError")
_MODULES = ("discovery", "conversion", "registry", "cascade", "linter")


def _hex(rng: random.Random, n: int) -> str:
    return f"{rng.getrandbits(n * 4):0{n}x}"


def error_event(
    ts: float,
    exc_type: str,
    module: str,
    function: str,
    *,
    value: str = "something failed",
    lineno: int = 10,
    release: str | None = None,
    user: str | None = None,
    level: str = "error",
    handled: bool = False,
    fingerprint: Sequence[str] | None = None,
    service: str = "widget-platform",
    environment: str = "production",
    trace_id: str | None = None,
    event_id: str | None = None,
    extra_frames: Sequence[tuple[str, str, bool]] = (),
    message: str | None = None,
) -> dict[str, Any]:
    """One error event as the SDK writes it (an exception, or a message when ``message``)."""
    event: dict[str, Any] = {
        "level": level,
        "timestamp": ts,
        "contexts": {
            "trace": {"trace_id": trace_id or uuid.uuid4().hex, "span_id": uuid.uuid4().hex[:16]}
        },
        "tags": {"service.name": service},
        "event_id": event_id or uuid.uuid4().hex,
        "environment": environment,
        "platform": "python",
    }
    if message is not None:
        event["logentry"] = {"message": message}
    else:
        frames = [
            {"module": m, "function": f, "lineno": 1, "in_app": in_app}
            for m, f, in_app in extra_frames
        ]
        frames.append({"module": module, "function": function, "lineno": lineno, "in_app": True})
        event["exception"] = {
            "values": [
                {
                    "type": exc_type,
                    "value": value,
                    "module": None,
                    "mechanism": {"type": "widgettrace", "handled": handled},
                    "stacktrace": {"frames": frames},
                }
            ]
        }
    if release is not None:
        event["release"] = release
    if user is not None:
        event["user"] = {"id": user}
    if fingerprint is not None:
        event["fingerprint"] = list(fingerprint)
    return event


def span(
    op: str,
    description: str,
    start: float,
    duration_ms: float,
    *,
    span_id: str,
    parent: str,
    data: dict[str, Any] | None = None,
    status: str = "ok",
) -> dict[str, Any]:
    """One child span of a transaction."""
    return {
        "span_id": span_id,
        "parent_span_id": parent,
        "op": op,
        "description": description,
        "status": status,
        "start_timestamp": start,
        "timestamp": start + duration_ms / 1000.0,
        "data": data or {},
    }


def transaction(
    start: float,
    name: str,
    duration_ms: float,
    *,
    op: str = "http.server",
    spans: Sequence[dict[str, Any]] = (),
    release: str | None = None,
    user: str | None = None,
    status: str = "ok",
    service: str = "widget-platform",
    environment: str = "production",
    span_id: str | None = None,
    trace_id: str | None = None,
) -> dict[str, Any]:
    """One transaction as widgettrace's span processor writes it."""
    record: dict[str, Any] = {
        "event_id": uuid.uuid4().hex,
        "type": "transaction",
        "transaction": name,
        "tags": {"service.name": service},
        "contexts": {
            "trace": {
                "op": op,
                "status": status,
                "trace_id": trace_id or uuid.uuid4().hex,
                "span_id": span_id or uuid.uuid4().hex[:16],
            }
        },
        "spans": list(spans),
        "start_timestamp": start,
        "timestamp": start + duration_ms / 1000.0,
        "environment": environment,
    }
    if release is not None:
        record["release"] = release
    if user is not None:
        record["user"] = {"id": user}
    return record


def write_lines(path: Path, records: Sequence[dict[str, Any]] | Iterator[dict[str, Any]]) -> None:
    """Append ``records`` as JSON lines."""
    with Path(path).open("ab") as fh:
        for record in records:
            fh.write(orjson.dumps(record) + b"\n")


def lines(
    n_events: int,
    *,
    seed: int = 1,
    end: float | None = None,
    span_hours: float = 72.0,
    releases: int = 20,
    users: int = 500,
    issues: int = 200,
    error_share: float = 0.1,
    spans_per_transaction: int = 10,
) -> Iterator[bytes]:
    """The log's lines, oldest first, releases in order over the time span."""
    rng = random.Random(seed)
    end = time.time() if end is None else end
    start = end - span_hours * 3600
    step = (end - start) / max(n_events, 1)
    # The same issues whatever the seed, so events appended later (another seed) continue them.
    shapes = random.Random(0)
    issue_defs = [
        (shapes.choice(_ERROR_TYPES), shapes.choice(_MODULES), f"step_{i}") for i in range(issues)
    ]
    for i in range(n_events):
        ts = start + i * step
        release = f"widget-platform@1.{i * releases // max(n_events, 1)}.0"
        user = f"user-{rng.randrange(users)}"
        service = _SERVICES[i % len(_SERVICES)]
        if rng.random() < error_share:
            exc_type, module, function = issue_defs[int(rng.paretovariate(1.2)) % issues]
            record = error_event(
                ts, exc_type, module, function,
                value=f"failed at {rng.randrange(10**6)} for id {_hex(rng, 12)}",
                lineno=rng.randrange(1, 500), release=release, user=user, service=service,
                event_id=_hex(rng, 32), trace_id=_hex(rng, 32),
            )
        else:
            name, op, base_ms = _ENDPOINTS[rng.randrange(len(_ENDPOINTS))]
            duration = rng.lognormvariate(0, 0.5) * base_ms
            root = _hex(rng, 16)
            children = []
            t = ts
            for k in range(spans_per_transaction):
                kind_op, desc, share = _SPAN_KINDS[k % len(_SPAN_KINDS)]
                d = duration * share / 2
                data: dict[str, Any] = {"widget.outcome": "success" if rng.random() > 0.05
                                        else "failure"}
                if kind_op == "gen_ai.chat":
                    data.update({"gen_ai.usage.input_tokens": 500,
                                 "gen_ai.usage.output_tokens": 100,
                                 "gen_ai.cost.total_tokens": 0.002})
                children.append(span(kind_op, desc, t, d, span_id=_hex(rng, 16), parent=root,
                                     data=data))
                t += d / 1000.0
            record = transaction(
                ts, name, duration, op=op, spans=children, release=release, user=user,
                status="ok" if rng.random() > 0.02 else "internal_error", service=service,
                span_id=root, trace_id=_hex(rng, 32),
            )
            record["event_id"] = _hex(rng, 32)
        yield orjson.dumps(record) + b"\n"


def generate(path: str | Path, n_events: int, *, append: bool = False, **kwargs: Any) -> Path:
    """Write (or append) ``n_events`` generated lines to ``path``; returns the path."""
    out = Path(path)
    with out.open("ab" if append else "wb") as fh:
        buffer: list[bytes] = []
        for line in lines(n_events, **kwargs):
            buffer.append(line)
            if len(buffer) >= 10_000:
                fh.write(b"".join(buffer))
                buffer.clear()
        fh.write(b"".join(buffer))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--append", action="store_true")
    args = parser.parse_args()
    generate(args.out, args.events, seed=args.seed, append=args.append)


if __name__ == "__main__":
    main()
