"""The FastAPI app of ``bench_reliability.py`` (run under ``opentelemetry-instrument uvicorn``).

``GET /work``: a light endpoint; every 100th request raises (an error event plus a 500). At
shutdown (lifespan) it writes ``<served> <raised>`` to ``$BENCH_SERVED_FILE`` so the benchmark
can compare the local log with what the app really produced.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

__all__ = ["app"]

_served = 0
_raised = 0


@asynccontextmanager
async def _lifespan(_app: FastAPI) -> AsyncIterator[None]:
    yield
    path = os.environ.get("BENCH_SERVED_FILE")
    if path:
        with open(path, "w", encoding="ascii") as fh:
            fh.write(f"{_served} {_raised}\n")


app = FastAPI(lifespan=_lifespan)


@app.get("/work")
async def work() -> dict[str, int]:
    global _served, _raised
    _served += 1
    if _served % 100 == 0:
        _raised += 1
        raise ValueError(f"request {_served} failed")
    return {"n": _served}
