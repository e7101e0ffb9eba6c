"""A FastAPI app whose error looks like a real one: three in-app frames with ordinary locals.

Run under ``opentelemetry-instrument`` by ``tests/test_event_size.py``. ``/convert/{widget_id}``
loads a manifest (a dict with a few hundred entries), reads a 20 KB file body, and fails three
calls deep with the manifest, the body, a list of sizes and the request in its frames' locals.
"""

from __future__ import annotations

from typing import Any

import sentry_sdk
from fastapi import FastAPI, Request
from opentelemetry import trace
from peerlib import announce, bind_socket

app = FastAPI()


class ConversionError(Exception):
    pass


def _validate(widget_id: str, manifest: dict[str, Any], body: str) -> None:
    sizes = [len(str(v)) for v in manifest.values()]
    layer = manifest["layers"][-1]
    if layer["dtype"] != "float32":
        raise ConversionError(
            f"widget {widget_id}: layer {layer['name']} has dtype {layer['dtype']}"
        )
    del sizes, body


def _convert(widget_id: str, manifest: dict[str, Any]) -> None:
    body = "weights:" + "0123456789abcdef" * 1250  # a 20 KB file read into memory
    options = {"target": "onnx", "opset": 17, "optimize": True, "cache": {"dir": "/tmp/w"}}
    _validate(widget_id, manifest, body)
    del options


@app.get("/convert/{widget_id}")
def convert(widget_id: str, request: Request) -> dict[str, Any]:
    manifest: dict[str, Any] = {
        f"param_{i}": {"shape": [i, 64], "init": "xavier"} for i in range(300)
    }
    manifest["layers"] = [{"name": f"dense_{i}", "dtype": "float32"} for i in range(50)]
    manifest["layers"][-1]["dtype"] = "int4"
    _convert(widget_id, manifest)
    return {}


@app.get("/flush")
def flush() -> dict[str, Any]:
    provider = trace.get_tracer_provider()
    flushed = bool(provider.force_flush(10_000)) if hasattr(provider, "force_flush") else False
    sentry_sdk.flush(timeout=10)
    return {"flushed": flushed}


if __name__ == "__main__":
    import uvicorn

    sock = bind_socket()
    # "critical": tracebacks on stderr would fill the pipe the harness never reads.
    server = uvicorn.Server(uvicorn.Config(app, log_level="critical", lifespan="off"))
    announce(sock.getsockname()[1])
    server.run(sockets=[sock])
