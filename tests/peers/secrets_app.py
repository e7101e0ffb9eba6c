"""A FastAPI app that leaks every secret of ``secret_corpus`` in every place it can.

Run under ``opentelemetry-instrument`` by ``tests/test_privacy_corpus.py`` with ``SENTRY_DSN``
pointing at a real Sentry-protocol receiver and a local log: plain application code (the OTel
API, ``logging``, ``requests`` and widgettrace's scope API), nothing that knows about scrubbing.
Routes:

``/leak?token=&api_key=&password=``  puts each corpus text in: a log line (breadcrumb, log
    item), a breadcrumb's message and data, a tag and a context, a child span's attributes,
    name-derived description (``db.statement`` / ``db.query.text``) and span event, an outgoing
    ``requests`` call whose URL carries a password and query secrets, a captured message, and
    finally an exception whose message holds every text (exception value, frame local
    variables: the text, the span's attributes, the request's URL);
``/handled``  the same texts in an exception the app catches and reports itself;
``/mcp``      an in-memory MCP tool call whose arguments and result hold every text;
``/echo``     the target of the outgoing call;
``/flush``    flushes spans and Sentry.
"""

from __future__ import annotations

import logging
from typing import Any

import requests
import sentry_sdk
from fastapi import FastAPI, Request
from opentelemetry import trace
from peerlib import announce, bind_socket
from secret_corpus import SECRETS, URL_SECRETS, text_of

from widgettrace.instrumentation import scope

tracer = trace.get_tracer("secrets-app")
log = logging.getLogger("secrets_app")
app = FastAPI()
PORT = 0


class LeakError(Exception):
    pass


def _all_texts() -> str:
    return " | ".join(text_of(name) for name in SECRETS)


def _spread(request: Request) -> None:
    for name in SECRETS:
        text = text_of(name)
        log.warning("step failed: %s", text)
        scope.add_breadcrumb(text, category="corpus", data={"client_secret": text, "note": text})
        scope.set_context("corpus_" + name, {"note": text, "password": SECRETS[name]})
        with tracer.start_as_current_span("corpus " + name) as span:
            span.set_attribute("widget.note", text)
            span.set_attribute("db.system", "postgresql")
            span.set_attribute("db.statement", f"SELECT * FROM users WHERE note = '{text}'")
            span.add_event("note", {"detail": text, "api_key": SECRETS[name]})
        with tracer.start_as_current_span("query " + text) as span:  # a name holding it
            span.set_attribute("db.system.name", "postgresql")
            span.set_attribute("db.query.text", f"UPDATE users SET note = '{text}'")
    scope.set_tag("note", text_of("openai_key"))
    query = "&".join(f"{key}={SECRETS[name]}" for name, key in URL_SECRETS.items())
    requests.get(
        f"http://app:{SECRETS['dsn_password']}@127.0.0.1:{PORT}/echo?{query}",
        headers={"Authorization": f"Bearer {SECRETS['bearer']}"},
        timeout=10,
    )
    scope.capture_message("corpus message: " + _all_texts(), level="warning")


@app.get("/leak")
def leak(request: Request) -> dict[str, Any]:
    url = str(request.url)  # a frame local holding the query secrets
    _spread(request)
    span = trace.get_current_span()
    attributes = dict(getattr(span, "attributes", None) or {})  # a local holding span data
    msg = "conversion failed: " + _all_texts()
    raise LeakError(msg + f" (url {url}, {len(attributes)} attributes)")


@app.get("/handled")
def handled() -> dict[str, Any]:
    password = SECRETS["kv_password"]  # a local whose name says secret
    try:
        raise LeakError("handled: " + _all_texts())
    except LeakError as exc:
        scope.capture_exception(exc)
    return {"handled": bool(password)}


@app.get("/mcp")
async def mcp_call() -> dict[str, Any]:
    """An MCP tool call (in-memory client and server) whose arguments and result hold every
    corpus text: captured as payload attributes when WIDGETTRACE_CAPTURE_PAYLOADS=true."""
    from mcp import Client
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("secrets")

    @server.tool()
    def echo(data: dict[str, Any]) -> dict[str, Any]:
        return data

    notes = {f"note_{i:02d}": text_of(name) for i, name in enumerate(SECRETS)}
    async with Client(server) as client:
        result = await client.call_tool("echo", {"data": notes})
    return {"is_error": result.is_error}


@app.get("/echo")
def echo() -> dict[str, Any]:
    return {"ok": True}


@app.get("/flush")
def flush() -> dict[str, Any]:
    provider = trace.get_tracer_provider()
    flushed = bool(provider.force_flush(10_000)) if hasattr(provider, "force_flush") else False
    sentry_sdk.flush(timeout=10)
    return {"flushed": flushed}


if __name__ == "__main__":
    import uvicorn

    sock = bind_socket()
    PORT = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    announce(PORT)
    server.run(sockets=[sock])
