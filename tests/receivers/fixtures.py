"""Pytest fixtures for the real receivers.

Register with ``pytest_plugins = ["receivers.fixtures"]`` in the root conftest.py.

* ``sentry_receiver`` (function scope): a started ``SentryReceiver``; at teardown the test fails
  if sentry-relay rejected anything it received (unless marked
  ``@pytest.mark.normalization_errors_expected``).
* ``no_normalization_errors``: the same check for every ``SentryReceiver`` the test created itself
  (``with SentryReceiver() as r:``). Make it suite-wide with, in conftest.py::

      @pytest.fixture(autouse=True)
      def _relay_clean(no_normalization_errors: None) -> None: ...

* ``bugsink`` (session): a real Bugsink server from ``.venv-bugsink`` (see ``receivers.bugsink``).
* ``spotlight`` (session): a real Spotlight sidecar via node (see ``receivers.spotlight``).

A receiver that cannot start FAILS the test (it never skips silently) unless
``WIDGETTRACE_TESTS_ALLOW_MISSING_RECEIVERS=1``, where it skips with the reason.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, NoReturn

import pytest

from receivers.sentry_receiver import SentryReceiver, watch_receivers

if TYPE_CHECKING:
    from receivers.bugsink import BugsinkServer
    from receivers.spotlight import SpotlightServer

__all__ = [
    "ALLOW_MISSING_ENV",
    "bugsink",
    "missing_receiver",
    "no_normalization_errors",
    "pytest_configure",
    "sentry_receiver",
    "spotlight",
]

ALLOW_MISSING_ENV = "WIDGETTRACE_TESTS_ALLOW_MISSING_RECEIVERS"
_MARKER = "normalization_errors_expected"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{_MARKER}: the test sends events sentry-relay rejects, on purpose"
    )


def missing_receiver(what: str, why: str) -> NoReturn:
    """Fail for a receiver that is down (skip with WIDGETTRACE_TESTS_ALLOW_MISSING_RECEIVERS=1)."""
    message = f"{what} could not start: {why} (run scripts/setup-receivers.sh)"
    if os.environ.get(ALLOW_MISSING_ENV) == "1":
        pytest.skip(message)
    pytest.fail(message, pytrace=False)


def _describe(errors: list[tuple[str, object, list[object]]]) -> str:
    lines = []
    for where, payload, errs in errors[:5]:
        lines.append(f"{where}: {json.dumps(errs, default=str)[:1500]}")
        lines.append(f"  payload: {json.dumps(payload, default=str)[:1500]}")
    more = f"\n... and {len(errors) - 5} more" if len(errors) > 5 else ""
    return "\n".join(lines) + more


def _check_receivers(request: pytest.FixtureRequest, receivers: list[SentryReceiver]) -> None:
    if request.node.get_closest_marker(_MARKER) is not None:
        return
    found: list[tuple[str, object, list[object]]] = []
    for receiver in receivers:
        errors = receiver.normalization_errors()
        for item, errs in errors:
            found.append((f"{item.type} item at {receiver!r}", item.json, errs))
    if found:
        pytest.fail(
            "sentry-relay's StoreNormalizer rejected what the test sent:\n" + _describe(found),
            pytrace=False,
        )


@pytest.fixture
def sentry_receiver(request: pytest.FixtureRequest) -> Iterator[SentryReceiver]:
    """A started Sentry-protocol receiver on 127.0.0.1; use ``sentry_receiver.dsn``."""
    try:
        receiver = SentryReceiver().start()
    except OSError as exc:
        missing_receiver("SentryReceiver", repr(exc))
    try:
        yield receiver
    finally:
        receiver.stop()
    _check_receivers(request, [receiver])


@pytest.fixture
def no_normalization_errors(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail the test if any SentryReceiver got an event/transaction sentry-relay rejects."""
    with watch_receivers() as created:
        yield
    _check_receivers(request, created)


@pytest.fixture(scope="session")
def bugsink(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BugsinkServer]:
    """A real Bugsink on 127.0.0.1 for the whole session; ``bugsink.create_project(name)``."""
    from receivers.bugsink import BugsinkServer, BugsinkUnavailable

    server = BugsinkServer(tmp_path_factory.mktemp("bugsink"))
    try:
        server.start()
    except BugsinkUnavailable as exc:
        server.stop()
        missing_receiver("Bugsink", str(exc))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def spotlight(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SpotlightServer]:
    """A real Spotlight sidecar on 127.0.0.1 for the whole session; SDK option ``spotlight.url``."""
    from receivers.spotlight import SpotlightServer, SpotlightUnavailable

    server = SpotlightServer(tmp_path_factory.mktemp("spotlight"))
    try:
        server.start()
    except SpotlightUnavailable as exc:
        server.stop()
        missing_receiver("Spotlight", str(exc))
    try:
        yield server
    finally:
        server.stop()
