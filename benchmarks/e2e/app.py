"""The example-style FastAPI service that ``bench_e2e.py`` loads under uvicorn.

Two endpoints, like the example platform's API:

- ``GET /api/widgets/status``: light, ``async``, returns a small JSON document;
- ``GET /api/widgets/search?q=...``: sync (thread pool), calls out with ``requests`` to the stub
  hub at ``BENCH_STUB_URL`` and returns what it found.

``BENCH_MODE`` chooses what the app itself sets up; zero-code configurations (``bare``, ``otel``,
``ddtrace``, ``widgettrace``) need nothing here because ``opentelemetry-instrument`` or
``ddtrace-run`` did it before import:

- ``otel-sentry``: sentry-sdk's ``SentrySpanProcessor`` on the OTel provider that
  ``opentelemetry-instrument`` built (Sentry's documented 2.x OTel setup);
- ``sentry``: Sentry's native tracing (``traces_sample_rate=1.0``, DSN from ``SENTRY_DSN``);
- ``logfire``: Logfire with FastAPI and requests instrumented, not sending, no console output.

Every request served is counted (``itertools.count`` is atomic under the GIL) and the count is
written to ``BENCH_SERVED_FILE`` at exit, so the bench compares transactions delivered with
requests actually served, probes and warm-up included.

Run: ``uvicorn --app-dir benchmarks/e2e app:app`` (see ``bench_e2e.py`` for the exact lines).
"""

from __future__ import annotations

import atexit
import itertools
import os
import threading
from typing import Any

import requests
from fastapi import FastAPI

__all__ = ["app"]

MODE = os.environ.get("BENCH_MODE", "bare")
STUB_URL = os.environ.get("BENCH_STUB_URL", "http://127.0.0.1:9/")
_served = itertools.count()
_local = threading.local()


def _write_served() -> None:
    path = os.environ.get("BENCH_SERVED_FILE")
    if path:
        # next() returns how many were taken before it: the number served.
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(str(next(_served)))


atexit.register(_write_served)


def _setup_vendor() -> None:
    if MODE == "sentry":
        import sentry_sdk

        sentry_sdk.init(traces_sample_rate=1.0)
    elif MODE == "otel-sentry":
        import sentry_sdk
        from opentelemetry import trace
        from opentelemetry.propagate import set_global_textmap
        from sentry_sdk.integrations.opentelemetry import SentryPropagator, SentrySpanProcessor

        sentry_sdk.init(traces_sample_rate=1.0, instrumenter="otel")
        provider: Any = trace.get_tracer_provider()
        provider.add_span_processor(SentrySpanProcessor())
        set_global_textmap(SentryPropagator())


def _check_tracing() -> None:
    # A zero-code setup that silently failed would look fast; say so where bench_e2e.py looks.
    if MODE in ("otel", "otel-sentry", "widgettrace"):
        from opentelemetry import trace
        from opentelemetry.trace import ProxyTracerProvider

        if isinstance(trace.get_tracer_provider(), ProxyTracerProvider):
            print(f"BENCH-WARNING: {MODE}: no SDK tracer provider installed", flush=True)


_setup_vendor()
_check_tracing()
app = FastAPI(title="widget platform (bench)")

if MODE == "logfire":
    import logfire

    logfire.configure(send_to_logfire=False, console=False, service_name="bench")
    logfire.instrument_fastapi(app)
    logfire.instrument_requests()


def _session() -> requests.Session:
    # One keep-alive session per worker thread: requests.Session is not thread-safe, and a new
    # TCP connection per call would measure the kernel, not the instrumentation.
    session: requests.Session | None = getattr(_local, "session", None)
    if session is None:
        session = requests.Session()
        _local.session = session
    return session


@app.get("/api/widgets/status")
async def status() -> dict[str, Any]:
    next(_served)
    return {"status": "ok", "widgets": 42, "sources": ["hub", "git"]}


@app.get("/api/widgets/search")
def search(q: str = "widget") -> dict[str, Any]:
    next(_served)
    resp = _session().get(f"{STUB_URL}search", params={"q": q}, timeout=10)
    resp.raise_for_status()
    found = resp.json()
    return {"query": q, "found": len(found.get("items", [])), "source": "hub"}
