"""One request's breadcrumbs, tags, user and contexts never reach another request's error.

A real FastAPI app (``tests/peers/isolation_app.py``) under ``opentelemetry-instrument`` sends to
our Sentry-protocol receiver. Twenty requests run at once, half on FastAPI's worker threads
(``def`` routes) and half as asyncio tasks (``async def`` routes); each logs two lines with its
own marker, sets a tag, the user and a context to it, and fails. Every error event must carry
its own marker everywhere and no other request's marker anywhere, plus the one line logged
outside any span (process-wide data belongs on every event).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from peers.harness import PeerProcess, clean_env, wait_for
from receivers.sentry_receiver import SentryReceiver

_MARKERS = [f"mk-{kind}-{i:02d}x" for kind in ("sync", "async") for i in range(10)]
_MARKER = re.compile(r"mk-(?:sync|async)-\d\dx")


@pytest.fixture(scope="module")
def run(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[list[dict[str, object]], str]]:
    with SentryReceiver() as receiver:
        env = clean_env(
            SENTRY_DSN=receiver.dsn,
            WIDGETTRACE_LOG_PATH=str(tmp_path_factory.mktemp("iso") / "sentry.log"),
            OTEL_SERVICE_NAME="isolation-app",
        )
        app = PeerProcess("isolation_app.py", [], env, instrument=True)
        try:

            def call(marker: str) -> int:
                kind = marker.split("-")[1]
                return requests.get(f"{app.url}/{kind}/{marker}", timeout=30).status_code

            with ThreadPoolExecutor(max_workers=len(_MARKERS)) as pool:
                statuses = list(pool.map(call, _MARKERS))
            assert statuses == [500] * len(_MARKERS)
            assert requests.get(f"{app.url}/flush", timeout=30).json()["flushed"] is True
            assert wait_for(lambda: len(receiver.events()) >= len(_MARKERS), timeout=20)
        finally:
            stderr = app.stop()
        for item in receiver.items():
            assert not item.normalization_errors, (item.type, item.normalization_errors)
        yield receiver.events(), stderr


def _own_marker(event: dict[str, object]) -> str:
    value = event["exception"]["values"][-1]["value"]  # type: ignore[index]
    match = _MARKER.search(str(value))
    assert match, value
    return match.group(0)


@pytest.fixture(scope="module")
def events(run: tuple[list[dict[str, object]], str]) -> list[dict[str, object]]:
    return run[0]


def test_each_request_failed_once(events: list[dict[str, object]]) -> None:
    assert sorted(_own_marker(e) for e in events) == sorted(_MARKERS)


def test_no_event_carries_another_requests_marker(events: list[dict[str, object]]) -> None:
    for event in events:
        own = _own_marker(event)
        others = set(_MARKER.findall(json.dumps(event))) - {own}
        assert not others, f"the event of {own} carries {sorted(others)}"


def test_each_event_carries_its_own_data_and_the_process_wide_line(
    events: list[dict[str, object]],
) -> None:
    for event in events:
        own = _own_marker(event)
        crumbs = [c.get("message") for c in event["breadcrumbs"]["values"]]  # type: ignore[index]
        assert f"start {own}" in crumbs and f"middle {own}" in crumbs, crumbs
        assert "process-wide start-up line" in crumbs, crumbs
        assert event["tags"]["marker"] == own  # type: ignore[index]
        assert event["user"] == {"id": own}
        assert event["contexts"]["request_marker"] == {"marker": own}  # type: ignore[index]


def test_log_breadcrumbs_are_not_kept_twice(events: list[dict[str, object]]) -> None:
    for event in events:
        own = _own_marker(event)
        crumbs = [c.get("message") for c in event["breadcrumbs"]["values"]]  # type: ignore[index]
        assert crumbs.count(f"start {own}") == 1, crumbs


def test_the_apps_own_logging_output_is_unchanged(run: tuple[list[dict[str, object]], str]) -> None:
    """The app configured no logging: Python prints its warnings to stderr (``lastResort``).
    Keeping log records as breadcrumbs must not add a handler that would silence that."""
    _, stderr = run
    assert "process-wide start-up line" in stderr
    assert "middle mk-sync-00x" in stderr
