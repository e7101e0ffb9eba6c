"""The widget platform's HTTP API (FastAPI), run under uvicorn as a child of examples/run.py.

Endpoints::

    POST /api/widgets/discover     {"query": "text"}  hub search + Git repository scans
    POST /api/widgets/convert      {"id": "w-1", "config": "<raw JSON text>"}
    GET  /api/widgets/status       registry counts (the light endpoint)
    POST /api/cascade/iterations   {"cascade": "onboarding", "iteration": 1}
    POST /api/admin/registry/compact   admin only (``Authorization: Bearer $WIDGET_ADMIN_TOKEN``)
    GET  /api/frontend/config      the DSN and tunnel URL for the page's Sentry browser SDK
    POST /tunnel                   the browser SDK's envelopes (widgettrace's Sentry tunnel)

No tracing code for HTTP here: ``opentelemetry-instrument`` (the parent runs this process with
its ``sitecustomize`` on ``PYTHONPATH``) instruments FastAPI and ``requests``; the domain spans
come from widgettrace's API in the modules this one calls, and some functions are traced by
configuration only (``WIDGETTRACE_TRACE_FUNCTIONS``, set by run.py).

Failures, on purpose (see demo_data.py):

* discover: one repository scan times out (``requests.exceptions.ReadTimeout`` in a worker
  thread); the response is still 200 and lists the repository under ``failed``;
* convert: invalid JSON (``json.JSONDecodeError``) and a duplicate name/version
  (``sqlite3.IntegrityError``) are not handled: they escape the handler and the request answers
  500, which is exactly the kind of bug the telemetry is there to show.

Configuration (environment): ``WIDGET_HUB_URL``, ``WIDGET_REPOS_DIR``, ``WIDGET_REGISTRY_PATH``,
``WIDGET_RANKER_URL``; ``WIDGET_CORS_ORIGINS`` (comma-separated) lets a frontend on another
origin call the API and the tunnel with its ``sentry-trace``/``baggage`` headers.

Security events: every 401/403 answer, every request body that fails validation (422) and every
``PermissionError`` become audit events (``widgettrace.instrumentation.audit.instrument_app``),
and a successful admin action is recorded with ``audit_event``. Run::

    python examples/service.py --fd 3      # a listening socket inherited from the parent
"""

from __future__ import annotations

import asyncio
import hmac
import os
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.middleware.cors import CORSMiddleware
from pydantic import BaseModel, Field

from _serving import serve_main
from cascade import CascadeDeps, SimulatedLLM, run_iteration
from conversion import convert_widget
from discovery import discover
from registry import WidgetRegistry
from widgets import WidgetLinks
from widgettrace import add_breadcrumb, set_tag, set_user

try:
    from widgettrace import audit_event
    from widgettrace.exporters.tunnel import SentryTunnel
    from widgettrace.instrumentation.audit import instrument_app
except ImportError:  # the examples also run on plain OpenTelemetry: no tunnel, no audit trail
    SentryTunnel = None  # type: ignore[assignment,misc]
    instrument_app = None  # type: ignore[assignment]

    def audit_event(action: str, outcome: str, **kw: Any) -> None:  # type: ignore[misc]
        pass


__all__ = ["app", "create_app"]

TUNNEL_PATH = "/tunnel"


class DiscoverRequest(BaseModel):
    """Body of POST /api/widgets/discover."""

    query: str = Field(min_length=1, max_length=100)


class ConvertRequest(BaseModel):
    """Body of POST /api/widgets/convert: the widget's config as submitted (raw JSON text)."""

    id: str = Field(min_length=1, max_length=100)
    config: str = Field(max_length=100_000)


class IterationRequest(BaseModel):
    """Body of POST /api/cascade/iterations."""

    cascade: str = Field(min_length=1, max_length=100)
    iteration: int = Field(ge=1, le=1000)


@dataclass
class Platform:
    """The service's long-lived parts, built in the lifespan."""

    hub_url: str
    repos_dir: Path
    registry: WidgetRegistry
    cascade: CascadeDeps


def _identify(request: Request) -> None:
    # The tenant is an opaque id: no e-mail or name ever goes on the telemetry.
    set_user(id=request.headers.get("x-tenant", "anonymous"))


def create_app() -> FastAPI:
    """Build the FastAPI application (configured from the environment at startup)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        hub_url = os.environ["WIDGET_HUB_URL"]
        registry = WidgetRegistry(Path(os.environ["WIDGET_REGISTRY_PATH"]))
        with ThreadPoolExecutor(max_workers=4, thread_name_prefix="registry") as executor:
            async with WidgetLinks(os.environ["WIDGET_RANKER_URL"]) as links:
                app.state.platform = Platform(
                    hub_url=hub_url,
                    repos_dir=Path(os.environ["WIDGET_REPOS_DIR"]),
                    registry=registry,
                    cascade=CascadeDeps(hub_url, registry, links, executor, SimulatedLLM()),
                )
                yield

    app = FastAPI(title="widget platform", lifespan=lifespan)
    origins = [o.strip() for o in os.environ.get("WIDGET_CORS_ORIGINS", "").split(",") if o.strip()]
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST"],
            allow_headers=["content-type", "sentry-trace", "baggage", "x-tenant"],
        )
    if instrument_app is not None:
        instrument_app(app)  # audit events for 401/403, validation and permission failures
    tunnel = SentryTunnel() if SentryTunnel is not None else None
    if tunnel is not None:
        app.add_route(TUNNEL_PATH, tunnel, methods=["POST"])  # the browser SDK's `tunnel`

    @app.post("/api/admin/registry/compact")
    async def compact_registry(request: Request) -> dict[str, Any]:
        """An admin action: 401 without a token, 403 with a wrong one, audited when done."""
        given = request.headers.get("authorization", "")
        if not given:
            raise HTTPException(401, "admin token required", {"WWW-Authenticate": "Bearer"})
        token = os.environ.get("WIDGET_ADMIN_TOKEN", "")
        if not token or not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise HTTPException(403, "not an admin")
        _identify(request)
        counts = await asyncio.to_thread(platform(request).registry.count)
        audit_event("registry.compact", "success", resource="registry")
        return {"compacted": True, **counts}

    @app.get("/api/frontend/config")
    async def frontend_config() -> dict[str, Any]:
        """What the page passes to ``Sentry.init`` (``dsn`` is null without the tunnel)."""
        dsn = tunnel.browser_dsn if tunnel is not None else None
        return {"dsn": dsn, "tunnel": TUNNEL_PATH if tunnel is not None else None}

    def platform(request: Request) -> Platform:
        current: Platform = request.app.state.platform
        return current

    @app.post("/api/widgets/discover")
    async def discover_widgets(body: DiscoverRequest, request: Request) -> dict[str, Any]:
        """Search the hub and scan the local repositories (blocking work in a thread)."""
        _identify(request)
        p = platform(request)
        result = await asyncio.to_thread(discover, p.hub_url, p.repos_dir, body.query)
        return result.as_json()

    @app.post("/api/widgets/convert")
    async def convert(body: ConvertRequest, request: Request) -> dict[str, Any]:
        """Convert one widget; invalid JSON and registry conflicts are left unhandled (500)."""
        _identify(request)
        set_tag("widget.source", "upload")
        add_breadcrumb("conversion requested", category="api", data={"widget": body.id})
        p = platform(request)
        return await asyncio.to_thread(convert_widget, body.id, body.config, p.registry)

    @app.get("/api/widgets/status")
    async def status(request: Request) -> dict[str, Any]:
        """Registry counts."""
        p = platform(request)
        counts = await asyncio.to_thread(p.registry.count)
        return {"status": "ok", **counts}

    @app.post("/api/cascade/iterations")
    async def cascade_iteration(body: IterationRequest, request: Request) -> dict[str, Any]:
        """Run one iteration of the cascade orchestrator (one trace)."""
        _identify(request)
        return await run_iteration(platform(request).cascade, body.cascade, body.iteration)

    return app


app = create_app()

if __name__ == "__main__":
    serve_main(app, "widget-platform")
