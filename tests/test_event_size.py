"""The size budget of an error event (``widgettrace.exporters._frames``), end to end.

A real FastAPI app (``tests/peers/size_app.py``) under ``opentelemetry-instrument`` fails three
in-app calls deep with ordinary locals (a 300-entry manifest, a 20 KB string, the request). The
error event on the wire must fit :data:`BUDGET` and still hold what a reader needs: the
exception, every frame's function and line, the code around the in-app frames, and the
arguments of the in-app frames (cut to size).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from peers.harness import PeerProcess, clean_env, wait_for
from receivers.sentry_receiver import SentryReceiver

from widgettrace.exporters._frames import MAX_FRAME_BYTES, MAX_VARS_BYTES

#: An error event from a FastAPI route (28 frames), as JSON on the wire (86 KB before).
BUDGET = 12 * 1024


def _event(tmp: Any, **env: str) -> tuple[dict[str, Any], int]:
    with SentryReceiver() as receiver:
        app = PeerProcess(
            "size_app.py",
            [],
            clean_env(
                SENTRY_DSN=receiver.dsn,
                WIDGETTRACE_LOG_PATH=str(tmp / "sentry.log"),
                OTEL_SERVICE_NAME="size-app",
                **env,
            ),
            instrument=True,
        )
        try:
            assert requests.get(f"{app.url}/convert/w-7", timeout=30).status_code == 500
            assert requests.get(f"{app.url}/flush", timeout=30).json()["flushed"] is True
            assert wait_for(lambda: len(receiver.items("event")) >= 1, timeout=20)
        finally:
            app.stop()
        (item,) = receiver.items("event")
        assert not item.normalization_errors, item.normalization_errors
        return item.json, len(item.payload)


@pytest.fixture(scope="module")
def default_event(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], int]:
    return _event(tmp_path_factory.mktemp("size"))


def _frames(event: dict[str, Any]) -> list[dict[str, Any]]:
    return event["exception"]["values"][-1]["stacktrace"]["frames"]  # type: ignore[no-any-return]


def test_error_event_fits_the_budget(default_event: tuple[dict[str, Any], int]) -> None:
    _, size = default_event
    assert size <= BUDGET, f"error event is {size} bytes"


def test_variables_fit_their_budget(default_event: tuple[dict[str, Any], int]) -> None:
    event, _ = default_event
    sizes = [len(json.dumps(f["vars"])) for f in _frames(event) if "vars" in f]
    assert sizes and max(sizes) <= MAX_FRAME_BYTES and sum(sizes) <= MAX_VARS_BYTES, sizes


def test_what_a_reader_needs_is_kept(default_event: tuple[dict[str, Any], int]) -> None:
    event, _ = default_event
    exc = event["exception"]["values"][-1]
    assert exc["type"] == "ConversionError"
    assert exc["value"] == "widget w-7: layer dense_49 has dtype int4"
    frames = _frames(event)
    assert all(f.get("function") and f.get("lineno") for f in frames)
    in_app = [f for f in frames if f.get("in_app")]
    assert [f["function"] for f in in_app][-3:] == ["convert", "_convert", "_validate"]
    for frame in in_app[-3:]:
        assert frame["context_line"].strip() and frame["pre_context"]
    validate = in_app[-1]["vars"]
    assert validate["widget_id"] == "'w-7'"
    assert "layer" in validate and "int4" in json.dumps(validate["layer"])
    assert "manifest" in validate  # cut to size, not dropped
    assert len(json.dumps(validate["body"])) <= 300  # the 20 KB string, cut
    assert "widget_id" in in_app[-2]["vars"] and "widget_id" in in_app[-3]["vars"]


def test_library_frames_carry_no_variables(default_event: tuple[dict[str, Any], int]) -> None:
    event, _ = default_event
    for frame in _frames(event):
        if not frame.get("in_app"):
            assert "vars" not in frame, frame.get("function")
            assert "pre_context" not in frame, frame.get("function")


def test_local_variables_off(tmp_path: Any) -> None:
    event, size = _event(tmp_path, WIDGETTRACE_LOCAL_VARIABLES="off")
    assert all("vars" not in f for f in _frames(event))
    assert size <= BUDGET
