"""`create_app(settings)`: wires the store, the clients and the routes. No rules live here."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
from collections.abc import AsyncIterator, Mapping
from typing import Any

import anyio
import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import Router
from starlette.types import Receive, Scope, Send

from gateway.console import router as console_router
from gateway import telemetry
from gateway.errors import GatewayError, InvalidRequest, NotFound
from gateway.ratelimit import with_retry_after
from gateway.routes import ops, proxy
from gateway.routes.admin import router as admin_router
from gateway.routes.admin.changes import AuditAdminChanges
from gateway.services import Services
from gateway.settings import Settings, load_settings

log = logging.getLogger("shuhi")
REFRESH_SECONDS = 0.25  # how often the change log is read: another replica's change holds here within this (plus its work)


def _error_body(error: GatewayError) -> Response:
    return Response(orjson.dumps(error.openai_body()), status_code=error.status, media_type="application/json")


async def _gateway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    return _error_body(exc)


async def _validation_error(request: Request, exc: Exception) -> Response:
    """FastAPI's 422, without echoing the input: it may hold confidential text."""
    assert isinstance(exc, RequestValidationError)
    details = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
               for e in exc.errors()]
    fields = ", ".join(".".join(str(p) for p in d["loc"][1:]) or "body" for d in details)
    error = InvalidRequest(f"入力が不正です: {fields} / Invalid input: {fields}", code="validation_error",
                           extra={"details": details})
    error.status = 422
    return _error_body(error)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return _error_body(NotFound(f"{request.url.path} はありません。 / {request.url.path} does not exist.",
                                    code="unknown_url"))
    error = InvalidRequest(f"{exc.detail}", code=f"http_{exc.status_code}")
    error.status = exc.status_code
    return _error_body(error)


async def _unexpected(request: Request, exc: Exception) -> Response:
    """Last resort: a 500 that says nothing of the request (the type goes to the log, never the text)."""
    log.error("unexpected %s on %s %s", type(exc).__name__, request.method, request.url.path)
    body = {"error": {"message": "内部エラーが発生しました。 / Internal error.", "type": "api_error",
                      "param": None, "code": "internal_error"}}
    return Response(orjson.dumps(body), status_code=500, media_type="application/json")


def create_app(settings: Settings | None = None, *, environ: Mapping[str, str] | None = None,
               freeze_startup_objects: bool = False) -> ShuhiApp:
    """The gateway as an ASGI app; `environ` supplies the upstream keys (default: the process environment).

    `freeze_startup_objects` (on in served processes, `create_app_from_environment`): once started, move
    every object alive to the collector's permanent generation (`gc.freeze`). The language models,
    policy and registry are some 300,000 objects that live as long as the process, and each full
    collection walked them all: 75-100 ms during which no request on the worker moved. Off for apps
    built inside a test process, which starts and stops many and must be able to collect them.
    """
    settings = settings or load_settings()
    environ = os.environ if environ is None else environ

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = Services(settings, environ)
        await services.start()
        if freeze_startup_objects:
            gc.collect()
            gc.freeze()

        async def refresh_forever() -> None:
            while True:
                await services.wait_for_change(REFRESH_SECONDS)  # woken at once by a Redis notification
                try:
                    await anyio.to_thread.run_sync(services.refresh_all)
                except Exception as exc:  # the store may be briefly away; the last snapshot stays in force
                    log.warning("refresh from the store failed: %s", type(exc).__name__)

        state = app.state
        state.settings, state.services, state.engine, state.secret = settings, services, services.engine, services.secret
        state.ports, state.facts, state.registry_service = services.ports, services.facts, services.registry
        state.reload_destinations = services.reload_destinations
        state.refresh_policy_facts = services.refresh_policy_facts
        refresher = asyncio.create_task(refresh_forever())
        try:
            yield
        finally:
            refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresher
            await services.aclose()

    app = FastAPI(title="Shuhi", version="0.1.0", lifespan=lifespan,
                  description="Confidentiality gateway for AI APIs: admin API. Employee endpoints follow the "
                              "OpenAI and Anthropic APIs and are not described here.")
    app.include_router(admin_router())
    app.include_router(console_router)
    for route in ops.routes():
        app.router.routes.append(route)
    app.add_exception_handler(GatewayError, _gateway_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
    app.add_middleware(AuditAdminChanges)
    shuhi = ShuhiApp(app, Router(routes=proxy.routes()))
    telemetry.instrument(shuhi, settings.otel_endpoint)  # nothing at all unless an OTLP endpoint is configured
    return shuhi


class ShuhiApp:
    """The ASGI entry point: `/v1/…` goes straight to the provider routes, everything else to FastAPI.

    The employee endpoints are the hot path and speak the providers' schemas, so
    they skip FastAPI's routing, middleware stack and validation (measured at about
    50 µs of CPU per request); the admin API keeps them for its OpenAPI document.
    """

    def __init__(self, admin: FastAPI, provider_routes: Router) -> None:
        self.admin = admin
        self.provider_routes = provider_routes

    @property
    def state(self) -> Any:
        return self.admin.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1/"):
            scope["app"] = self.admin  # handlers reach settings and ports through request.app.state
            await self.provider_routes(scope, receive, with_retry_after(send))
        else:
            await self.admin(scope, receive, send)


def create_app_from_environment() -> ShuhiApp:
    """Factory for `uvicorn --factory` and worker processes: settings from `SHUHI_*` and `SHUHI_CONFIG`."""
    return create_app(load_settings(), freeze_startup_objects=True)
