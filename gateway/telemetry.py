"""OpenTelemetry traces, when `SHUHI_OTEL_ENDPOINT` names an OTLP/HTTP collector; off by default.

Off, nothing is imported from the SDK and `span()` is a `nullcontext`: no cost on the hot path.
On, every HTTP request is a server span (method, route, status, decision and decision id) with a
child span per step that waits (`shuhi.scan`, `shuhi.forward`); spans carry ids and kinds, never
text. The provider belongs to the app (not the process-wide global), and is flushed when the app
shuts down.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any

_TRACER: contextvars.ContextVar[Any] = contextvars.ContextVar("shuhi_tracer", default=None)


def span(name: str) -> contextlib.AbstractContextManager[Any]:
    """A child span of the current request's span, or nothing when tracing is off."""
    tracer = _TRACER.get()
    if tracer is None:
        return contextlib.nullcontext()
    return tracer.start_as_current_span(name)  # type: ignore[no-any-return]


class TracingMiddleware:
    """ASGI middleware: one server span per HTTP request; flushes the provider at lifespan shutdown."""

    def __init__(self, app: Any, provider: Any, flush: bool = False) -> None:
        self.app, self.provider, self.flush = app, provider, flush
        self.tracer = provider.get_tracer("shuhi")

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan" and self.flush:
            await self.app(scope, receive, self._flushing(send))
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from opentelemetry.trace import SpanKind

        path = scope["path"]
        route = path if path.startswith("/v1/") or path in ("/healthz", "/readyz", "/metrics") else "/admin"
        with self.tracer.start_as_current_span(f"{scope['method']} {route}", kind=SpanKind.SERVER) as current:
            current.set_attribute("http.request.method", scope["method"])
            current.set_attribute("http.route", route)
            token = _TRACER.set(self.tracer)
            try:
                await self.app(scope, receive, _recording(send, current))
            finally:
                _TRACER.reset(token)

    def _flushing(self, send: Any) -> Any:
        async def sending(message: Any) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                self.provider.shutdown()
            await send(message)

        return sending


def _recording(send: Any, current: Any) -> Any:
    async def sending(message: Any) -> None:
        if message["type"] == "http.response.start":
            current.set_attribute("http.response.status_code", message["status"])
            for name, value in message.get("headers", ()):
                if name == b"x-gateway-decision":
                    current.set_attribute("shuhi.decision", value.decode("latin-1"))
                elif name == b"x-gateway-decision-id":
                    current.set_attribute("shuhi.decision_id", value.decode("latin-1"))
        await send(message)

    return sending


def instrument(app: Any, endpoint: str | None) -> None:
    """Trace a `ShuhiApp` (its provider routes and its FastAPI part) when an endpoint is configured."""
    if not endpoint:
        return
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "shuhi"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces")))
    app.provider_routes = TracingMiddleware(app.provider_routes, provider)
    app.admin.add_middleware(TracingMiddleware, provider=provider, flush=True)

