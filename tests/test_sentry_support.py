"""Shared set-up for the Sentry exporter tests (no tests here; named to sit with them).

``sentry_pipeline(...)`` initialises the real ``sentry_sdk`` client through
:func:`widgettrace.exporters.sentry.configure_sentry` with a :class:`CapturingTransport`, builds a
``TracerProvider`` with our processor, and tears everything down afterwards. Every payload the
transport captures can be checked with :func:`assert_valid` (sentry-relay's ``StoreNormalizer``).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import sentry_sdk
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, Sampler
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

from widgettrace.exporters import _sentry_errors
from widgettrace.exporters.sentry import WidgetTraceSpanProcessor, configure_sentry
from widgettrace.instrumentation import scope
from widgettrace.instrumentation._config import Settings

DSN = "http://public@127.0.0.1:9/1"


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    duplicates = {key for key in keys if keys.count(key) > 1}
    assert not duplicates, f"duplicate JSON keys: {duplicates}"
    return dict(pairs)


class CapturingTransport(Transport):
    """Keeps every envelope; records lost events like the SDK's HTTP transport."""

    def __init__(self, dsn: str | None = DSN) -> None:
        super().__init__({"dsn": dsn} if dsn else None)
        self.envelopes: list[Envelope] = []
        self.lost: list[tuple[str, str | None, int]] = []
        self._cond = threading.Condition()

    def capture_envelope(self, envelope: Envelope) -> None:
        with self._cond:
            self.envelopes.append(envelope)
            self._cond.notify_all()

    def record_lost_event(
        self,
        reason: str,
        data_category: Any = None,
        item: Any = None,
        *,
        quantity: int = 1,
    ) -> None:
        self.lost.append((reason, data_category, quantity))

    def items(self, kind: str) -> list[dict[str, Any]]:
        with self._cond:
            envelopes = list(self.envelopes)
        return [
            json.loads(item.get_bytes(), object_pairs_hook=_no_duplicate_keys)
            for envelope in envelopes
            for item in envelope.items
            if item.type == kind
        ]

    def events(self) -> list[dict[str, Any]]:
        return self.items("event")

    def transactions(self) -> list[dict[str, Any]]:
        return self.items("transaction")

    def wait_for(
        self, predicate: Callable[[CapturingTransport], bool], timeout: float = 5.0
    ) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.05))
        return True


@dataclass
class Pipeline:
    provider: TracerProvider
    processor: WidgetTraceSpanProcessor
    transport: CapturingTransport

    @property
    def tracer(self) -> Any:
        return self.provider.get_tracer("tests")

    def flush(self) -> None:
        assert self.processor.force_flush(5000)


def make_settings(**overrides: Any) -> Settings:
    base = Settings(log_path=None, sentry_environment="test", sentry_release="widgets@1.0")
    return replace(base, **overrides)


@contextmanager
def sentry_pipeline(
    *,
    settings: Settings | None = None,
    sampler: Sampler | None = None,
    resource: Resource | None = None,
    dsn: str | None = DSN,
    **processor_options: Any,
) -> Iterator[Pipeline]:
    """The real SDK client + our processor + a capturing transport, torn down afterwards."""
    settings = settings or make_settings(sentry_dsn=dsn)
    resource = resource or Resource.create({"service.name": "widgets-api"})
    transport = CapturingTransport(dsn)
    processor = configure_sentry(settings, resource, transport=transport, **processor_options)
    assert isinstance(processor, WidgetTraceSpanProcessor)
    provider = TracerProvider(
        sampler=sampler or ParentBased(ALWAYS_ON), resource=resource, shutdown_on_exit=False
    )
    provider.add_span_processor(processor)
    try:
        yield Pipeline(provider, processor, transport)
    finally:
        provider.shutdown()
        _sentry_errors.uninstall()
        scope.set_error_sink(None)
        scope.clear()
        sentry_sdk.get_client().close()
        # Back to a client that sends nothing (and enables no integrations).
        sentry_sdk.init(default_integrations=False, auto_enabling_integrations=False)


def assert_valid(payloads: list[dict[str, Any]]) -> None:
    """Every payload passes sentry-relay's normaliser without errors."""
    from sentry_relay.processing import StoreNormalizer

    normalizer = StoreNormalizer(project_id=1)
    for payload in payloads:
        normalized = normalizer.normalize_event(payload)
        assert not normalized.get("errors"), (normalized.get("errors"), payload)
