"""Suite-wide fixtures: swallowed internal errors fail the test that caused them."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from widgettrace.instrumentation._guard import set_internal_error_hook

# tests/ holds helper packages (receivers, peers); make them importable by name.
sys.path.insert(0, str(Path(__file__).parent))

# Real receivers: SentryReceiver (ours, checked by sentry-relay), Bugsink and Spotlight.
pytest_plugins = ["receivers.fixtures"]


@pytest.fixture(autouse=True)
def fail_on_internal_errors(request: pytest.FixtureRequest) -> Iterator[list[BaseException]]:
    """Like sentry-python's suite: an error the guard swallowed is a bug, so the test fails.

    A test that provokes internal errors on purpose marks itself
    ``@pytest.mark.internal_errors_expected`` and inspects the yielded list.
    """
    errors: list[BaseException] = []
    set_internal_error_hook(errors.append)
    try:
        yield errors
    finally:
        set_internal_error_hook(None)
    if errors and request.node.get_closest_marker("internal_errors_expected") is None:
        pytest.fail(f"widgettrace swallowed internal errors: {errors!r}")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "internal_errors_expected: the test provokes guarded internal errors"
    )
