"""What scrubbing and the error-event budget cost, against the same work without them.

Run from the repository root::

    .venv/bin/python benchmarks/bench_privacy.py [--quick]

Groups (each measured interleaved, medians of the rounds, ratio against the group's baseline):

1. Span data on the export thread, per span, for a FastAPI server span's 13 attributes:
   ``encode_only`` (baseline: the JSON encoding alone, what the processor did before it scrubbed
   content) against ``scrub_repeated`` (the same attributes every call: the memo's case, e.g.
   one route) and ``scrub_unique`` (a new URL, path and peer port every call: every string
   scrubbed afresh, the worst case).
2. One error captured on the application's thread (``scope.capture_exception`` through the real
   SDK client, a capturing transport): a FastAPI-like stack three in-app calls deep with a
   300-entry dict, a 20 KB string and a list in its locals. ``locals_all`` (baseline: every
   frame's variables, scrubbed, the closest to the SDK's default) against ``locals_app`` (the
   default budget) and ``locals_off``.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from _harness import (
    bench_args,
    command_line,
    format_rows,
    interleaved,
    ratio_rows,
    write_result,
)

from widgettrace.exporters._scrub import Scrubber, dumps

_ATTRS: dict[str, Any] = {
    "http.request.method": "GET",
    "url.scheme": "http",
    "server.address": "127.0.0.1",
    "server.port": 8000,
    "network.peer.address": "127.0.0.1",
    "network.peer.port": 50000,
    "user_agent.original": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0",
    "url.path": "/api/widgets/w-1/convert",
    "url.query": "page=2",
    "http.route": "/api/widgets/{widget_id}/convert",
    "network.protocol.version": "1.1",
    "http.response.status_code": 200,
    "url.full": "http://127.0.0.1:8000/api/widgets/w-1/convert?page=2",
}


def _span_group(rounds: int, number: int) -> list[dict[str, Any]]:
    scrubber = Scrubber()
    counter = itertools.count()

    def encode_only() -> None:
        dumps(_ATTRS)

    def scrub_repeated() -> None:
        scrubber.data_json(_ATTRS, [])

    def scrub_unique() -> None:
        n = next(counter)
        attrs = dict(_ATTRS)
        attrs["url.path"] = f"/api/widgets/w-{n}/convert"
        attrs["url.full"] = f"http://127.0.0.1:8000/api/widgets/w-{n}/convert?page=2"
        attrs["network.peer.port"] = 40000 + n % 20000
        scrubber.data_json(attrs, [])

    stats = interleaved(
        {
            "encode_only": encode_only,
            "scrub_repeated": scrub_repeated,
            "scrub_unique": scrub_unique,
        },
        rounds=rounds,
        number=number,
    )
    return ratio_rows(stats, unit="us/span", baseline="encode_only", scale=1e6)


def _validate(widget_id: str, manifest: dict[str, Any], body: str) -> None:
    sizes = [len(str(v)) for v in manifest.values()]
    raise ValueError(f"widget {widget_id}: bad layer ({len(sizes)} params, {len(body)} bytes)")


def _convert(widget_id: str, manifest: dict[str, Any]) -> None:
    body = "weights:" + "0123456789abcdef" * 1250
    _validate(widget_id, manifest, body)


def _route(widget_id: str) -> None:
    manifest = {f"param_{i}": {"shape": [i, 64], "init": "xavier"} for i in range(300)}
    _convert(widget_id, manifest)


def _error_group(rounds: int, number: int) -> list[dict[str, Any]]:
    import sentry_sdk
    from test_sentry_support import sentry_pipeline

    from widgettrace.instrumentation import scope

    rows: list[dict[str, Any]] = []
    with sentry_pipeline() as pipeline:
        options = sentry_sdk.get_client().options
        budget = options["event_scrubber"]

        def capture(mode: str) -> None:
            options["include_local_variables"] = mode != "off"
            budget.mode = mode
            try:
                _route("w-7")
            except ValueError as exc:
                scope.capture_exception(exc)
            pipeline.transport.envelopes.clear()

        stats = interleaved(
            {
                "locals_all": lambda: capture("all"),
                "locals_app": lambda: capture("app"),
                "locals_off": lambda: capture("off"),
            },
            rounds=rounds,
            number=number,
        )
        rows += ratio_rows(stats, unit="us/error", baseline="locals_all", scale=1e6)
    return rows


def main() -> None:
    args = bench_args(__doc__ or "")
    rounds, number = (5, 500) if args.quick else (15, 3000)
    rows = _span_group(rounds, number)
    rows += _error_group(rounds, max(20, number // 20))
    print(format_rows(rows))
    path = write_result("privacy", rows, command_line())
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
