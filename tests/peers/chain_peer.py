"""The services of the cross-process propagation chain, one role per process.

Roles:

``sentry-client URL``
    A plain Sentry-instrumented program (``sentry_sdk.init(traces_sample_rate=1.0)``, no
    OpenTelemetry): one transaction, one ``urllib`` request to ``URL`` (Sentry's stdlib
    integration adds ``sentry-trace``/``baggage``). Prints one JSON line: its transaction
    (trace id, spans) and the response body.
``widgettrace-service``
    A FastAPI app under uvicorn, traced by widgettrace: either set up explicitly
    (``--setup explicit``: TracerProvider, widgettrace's propagator, the requests and FastAPI
    instrumentors, and ``sentry_sdk.init`` as the Sentry exporter does) or by running under
    ``opentelemetry-instrument`` (``--setup auto``: the widgettrace distro and configurator).
``otel-service``
    A plain OpenTelemetry service: ``http.server``, opentelemetry-sdk, the default W3C
    propagators (tracecontext, baggage), the requests instrumentor.
``sentry-service``
    A plain Sentry-instrumented WSGI server (``sentry_sdk.init(traces_sample_rate=1.0)``,
    Sentry's WSGI middleware, no OpenTelemetry): the end of the chain. Its transactions go to
    ``--spans``; it answers with the ``sentry-trace``/``baggage`` Sentry would propagate on.

Every server answers ``GET /hop`` with ``{"service", "headers", "downstream"}``: the raw request
headers exactly as received (repeated headers kept) and, when ``--downstream`` is given, the
answer of the next hop. Every finished span goes to ``--spans`` as a JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from fastapi import Request  # module level: FastAPI resolves the route's annotation here
from peerlib import JsonLinesSpanExporter, NullTransport, announce, bind_socket

# A DSN that is never contacted (NullTransport): the Sentry client only has to be active.
_DUMMY_DSN = "http://public@127.0.0.1:9/1"


def _fetch(url: str) -> Any:
    import requests

    response = requests.get(url, timeout=15)
    response.raise_for_status()
    return response.json()


def run_sentry_client(url: str) -> None:
    import sentry_sdk

    transactions: list[dict[str, Any]] = []

    def keep(event: Any, hint: Any) -> Any:
        transactions.append(event)
        return event

    sentry_sdk.init(
        dsn=_DUMMY_DSN,
        transport=NullTransport,
        traces_sample_rate=1.0,
        before_send_transaction=keep,
    )
    with (
        sentry_sdk.start_transaction(op="task", name="sentry-peer"),
        urllib.request.urlopen(url, timeout=15) as response,
    ):
        body = json.loads(response.read())
    sentry_sdk.flush(timeout=5)
    event = transactions[0] if transactions else {}
    trace_context = event.get("contexts", {}).get("trace", {})
    print(
        json.dumps(
            {
                "trace_id": trace_context.get("trace_id"),
                "span_id": trace_context.get("span_id"),
                "spans": [
                    {
                        "op": span.get("op"),
                        "span_id": span.get("span_id"),
                        "parent_span_id": span.get("parent_span_id"),
                        "description": span.get("description"),
                    }
                    for span in event.get("spans", [])
                ],
                "response": body,
            }
        ),
        flush=True,
    )


def run_widgettrace_service(args: argparse.Namespace) -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    exporter = SimpleSpanProcessor(JsonLinesSpanExporter(args.spans, args.service))
    if args.setup == "auto":
        # opentelemetry-instrument already ran widgettrace's distro and configurator.
        provider = trace.get_tracer_provider()
        if not isinstance(provider, TracerProvider):
            sys.exit("widgettrace's configurator did not install an SDK TracerProvider")
        provider.add_span_processor(exporter)
    else:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
        from opentelemetry.instrumentation.requests import RequestsInstrumentor
        from opentelemetry.propagate import set_global_textmap
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased

        from widgettrace.exporters.propagation import SENTRY_SDK_OPTIONS, default_propagator

        provider = TracerProvider(
            resource=Resource.create({"service.name": args.service}),
            sampler=ParentBased(ALWAYS_ON),
        )
        provider.add_span_processor(exporter)
        trace.set_tracer_provider(provider)
        set_global_textmap(default_propagator())
        if args.sentry != "none":
            import sentry_sdk

            # What the Sentry exporter does: an active client with its default integrations
            # (stdlib http.client patch included), no Sentry-side tracing.
            options: dict[str, Any] = dict(SENTRY_SDK_OPTIONS) if args.sentry == "ours" else {}
            sentry_sdk.init(dsn=_DUMMY_DSN, transport=NullTransport, **options)
        RequestsInstrumentor().instrument()
        FastAPIInstrumentor().instrument(exclude_spans=["send", "receive"])

    import uvicorn
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/hop")
    def hop(request: Request) -> dict[str, Any]:
        headers = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.scope["headers"]]
        downstream = _fetch(args.downstream + "/hop") if args.downstream else None
        return {"service": args.service, "headers": headers, "downstream": downstream}

    sock = bind_socket()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    announce(sock.getsockname()[1])
    server.run(sockets=[sock])


def run_otel_service(args: argparse.Namespace) -> None:
    from opentelemetry import trace
    from opentelemetry.context import attach, detach
    from opentelemetry.instrumentation.requests import RequestsInstrumentor
    from opentelemetry.propagate import extract
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": args.service}))
    provider.add_span_processor(
        SimpleSpanProcessor(JsonLinesSpanExporter(args.spans, args.service))
    )
    RequestsInstrumentor().instrument(tracer_provider=provider)
    tracer = provider.get_tracer("otel-peer")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *a: Any) -> None:
            pass

        def do_GET(self) -> None:
            headers = [[k, v] for k, v in self.headers.items()]
            # OpenTelemetry's default global propagator: W3C tracecontext + baggage only.
            # Attached (as OTel's server instrumentations do) so extracted baggage flows on.
            token = attach(extract({k.lower(): v for k, v in self.headers.items()}))
            try:
                with tracer.start_as_current_span("GET /hop", kind=trace.SpanKind.SERVER):
                    downstream = _fetch(args.downstream + "/hop") if args.downstream else None
            finally:
                detach(token)
            body = json.dumps(
                {"service": args.service, "headers": headers, "downstream": downstream}
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    announce(server.server_address[1])
    server.serve_forever()


def run_sentry_service(args: argparse.Namespace) -> None:
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    import sentry_sdk
    from sentry_sdk.integrations.wsgi import SentryWsgiMiddleware

    spans = JsonLinesSpanExporter(args.spans, args.service)

    def keep(event: Any, hint: Any) -> Any:
        trace_context = event.get("contexts", {}).get("trace", {})
        spans.write_raw(
            {
                "service": args.service,
                "name": event.get("transaction"),
                "kind": "SERVER",
                "trace_id": trace_context.get("trace_id"),
                "span_id": trace_context.get("span_id"),
                "parent_span_id": trace_context.get("parent_span_id"),
                "parent_is_remote": True,
                "sampled": True,
            }
        )
        return event

    sentry_sdk.init(
        dsn=_DUMMY_DSN,
        transport=NullTransport,
        traces_sample_rate=1.0,
        before_send_transaction=keep,
    )

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        headers = [
            [key[5:].replace("_", "-").lower(), value]
            for key, value in environ.items()
            if key.startswith("HTTP_")
        ]
        body = json.dumps(
            {
                "service": args.service,
                "headers": headers,
                "downstream": None,
                "sentry_trace": sentry_sdk.get_traceparent(),
                "baggage": sentry_sdk.get_baggage(),
            }
        ).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, format: str, *a: Any) -> None:
            pass

    server = make_server("127.0.0.1", 0, SentryWsgiMiddleware(app), handler_class=QuietHandler)
    announce(server.server_address[1])
    server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "role",
        choices=["sentry-client", "widgettrace-service", "otel-service", "sentry-service"],
    )
    parser.add_argument("url", nargs="?")
    parser.add_argument("--service", default="peer")
    parser.add_argument("--spans", default="/dev/null")
    parser.add_argument("--downstream")
    parser.add_argument("--setup", choices=["explicit", "auto"], default="explicit")
    parser.add_argument("--sentry", choices=["ours", "default", "none"], default="ours")
    args = parser.parse_args()
    if args.role == "sentry-client":
        run_sentry_client(args.url)
    elif args.role == "widgettrace-service":
        run_widgettrace_service(args)
    elif args.role == "sentry-service":
        run_sentry_service(args)
    else:
        run_otel_service(args)


if __name__ == "__main__":
    main()
