"""A FastAPI app whose concurrent requests each log, tag and fail with their own marker.

Run under ``opentelemetry-instrument`` by ``tests/test_request_isolation.py``. At start-up,
outside any span, it logs one process-wide line (which belongs on every event). Routes:

``/sync/{marker}``   a plain ``def`` route (FastAPI runs it on a worker thread);
``/async/{marker}``  an ``async def`` route (an asyncio task on the event loop);

both log two lines with the marker (sleeping in between so requests interleave), set a tag, the
user and a context to it, then raise an exception naming it. ``/flush`` flushes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import sentry_sdk
from fastapi import FastAPI
from opentelemetry import trace
from peerlib import announce, bind_socket

from widgettrace.instrumentation import scope

log = logging.getLogger("isolation_app")
app = FastAPI()


class MarkedError(Exception):
    pass


def _mark(marker: str) -> None:
    scope.set_tag("marker", marker)
    scope.set_user(id=marker)
    scope.set_context("request_marker", {"marker": marker})


@app.get("/sync/{marker}")
def sync_route(marker: str) -> dict[str, Any]:
    log.warning("start %s", marker)
    _mark(marker)
    time.sleep(0.05)
    log.warning("middle %s", marker)
    raise MarkedError(f"failed {marker}")


@app.get("/async/{marker}")
async def async_route(marker: str) -> dict[str, Any]:
    log.warning("start %s", marker)
    _mark(marker)
    await asyncio.sleep(0.05)
    log.warning("middle %s", marker)
    raise MarkedError(f"failed {marker}")


@app.get("/flush")
def flush() -> dict[str, Any]:
    provider = trace.get_tracer_provider()
    flushed = bool(provider.force_flush(10_000)) if hasattr(provider, "force_flush") else False
    sentry_sdk.flush(timeout=10)
    return {"flushed": flushed}


if __name__ == "__main__":
    import uvicorn

    log.warning("process-wide start-up line")
    sock = bind_socket()
    # "critical": twenty 500 tracebacks on stderr would fill the pipe the harness never reads.
    server = uvicorn.Server(uvicorn.Config(app, log_level="critical", lifespan="off"))
    announce(sock.getsockname()[1])
    server.run(sockets=[sock])
