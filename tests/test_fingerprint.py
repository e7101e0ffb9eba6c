"""Custom fingerprints: ``fingerprint=`` on captures and ``set_fingerprint`` reach the Sentry event.

And the local reading side groups by them (``widgettrace.insights``), like Sentry does.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_sentry_support import assert_valid, sentry_pipeline

import widgettrace
from widgettrace.insights import issues, open_store
from widgettrace.instrumentation import scope


class HubDown(Exception):
    pass


def test_capture_calls_and_set_fingerprint_send_the_events_fingerprint(tmp_path: Path) -> None:
    with sentry_pipeline() as p:
        with p.tracer.start_as_current_span("request"):
            for n in range(2):
                try:
                    raise HubDown(f"hub {n} down")
                except HubDown as exc:
                    widgettrace.capture_exception(exc, fingerprint=["hub-down"])
            widgettrace.capture_message("cache cold 7", fingerprint=["cache", "cold"])
        with pytest.raises(HubDown), p.tracer.start_as_current_span("job"):  # noqa: PT012
            widgettrace.set_fingerprint(["{{ default }}", "tenant-a"])
            raise HubDown("escaped")
        with p.tracer.start_as_current_span("other"):
            widgettrace.capture_message("plain")  # another trace: no fingerprint
        p.flush()
        events = p.transport.events()
    assert_valid(events)
    assert [e.get("fingerprint") for e in events] == [
        ["hub-down"], ["hub-down"], ["cache", "cold"], ["{{ default }}", "tenant-a"], None,
    ]
    log = tmp_path / "sentry.log"
    log.write_text("".join(json.dumps(e, default=str) + "\n" for e in events))
    with open_store(log) as store:
        counts = sorted(i["count"] for i in issues.list_issues(store))
    assert counts == [1, 1, 1, 2]


def test_set_fingerprint_none_clears_it() -> None:
    with sentry_pipeline() as p:
        with p.tracer.start_as_current_span("request"):
            scope.set_fingerprint(["x"])
            scope.set_fingerprint(None)
            scope.capture_message("m")
        p.flush()
        (event,) = p.transport.events()
    assert "fingerprint" not in event
