"""A FastAPI app for the otlp-mode test, run under ``opentelemetry-instrument``.

The test sets ``WIDGETTRACE_SENTRY_MODE=otlp`` and ``SENTRY_DSN`` (a local capture server), so
widgettrace's distro and configurator set everything up; this file is plain application code
(OTel API and widgettrace's scope API only). Routes:

``/ok``        a manual child span;
``/boom``      raises ``ValueError`` inside a manual span ``convert`` (an unhandled error);
``/handled``   catches ``KeyError`` and reports it with ``scope.capture_exception``;
``/call?url=`` an outgoing ``requests`` call (the capture server records its headers);
``/flush``     flushes spans and Sentry, and reports the global propagator's class.
"""

from __future__ import annotations

from typing import Any

import requests
import sentry_sdk
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.propagate import get_global_textmap
from peerlib import announce, bind_socket

from widgettrace.instrumentation import scope

tracer = trace.get_tracer("otlp-app")
app = FastAPI()


@app.get("/ok")
def ok() -> dict[str, Any]:
    with tracer.start_as_current_span("work"):
        return {"ok": True}


@app.get("/boom")
def boom() -> dict[str, Any]:
    with tracer.start_as_current_span("convert"):
        raise ValueError("widget manifest is broken")


@app.get("/handled")
def handled() -> dict[str, Any]:
    registry: dict[str, str] = {}
    try:
        registry["missing"]
    except KeyError as exc:
        scope.capture_exception(exc)
    return {"handled": True}


@app.get("/call")
def call(url: str) -> dict[str, Any]:
    return {"status": requests.get(url, timeout=10).status_code}


@app.get("/flush")
def flush() -> dict[str, Any]:
    provider = trace.get_tracer_provider()
    flushed = bool(provider.force_flush(10_000)) if hasattr(provider, "force_flush") else False
    sentry_sdk.flush(timeout=10)
    return {
        "flushed": flushed,
        "textmap": type(get_global_textmap()).__name__,
        "textmap_members": [
            type(p).__name__ for p in getattr(get_global_textmap(), "propagators", ())
        ],
        "provider": type(provider).__name__,
    }


if __name__ == "__main__":
    import uvicorn

    sock = bind_socket()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    announce(sock.getsockname()[1])
    server.run(sockets=[sock])
