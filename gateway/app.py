"""`create_app(settings)`: wires the store, the clients and the routes. No rules live here."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import AsyncIterator, Mapping
from typing import Any

import anyio
import httpx
import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from gateway.authenticate import KeyCache
from gateway.domain import Destination, Principal
from gateway.facts import FactsHolder
from gateway.errors import GatewayError, InvalidRequest, NotFound
from gateway.forward import Forwarder
from gateway.keyring import keyed_hash, load_secret_key, new_admin_token, token_id_for
from gateway.pipeline import Ports
from gateway.registration import RegistryService
from gateway.routes import ops, proxy
from gateway.routes.admin import router as admin_router
from gateway.routes.admin.destinations import DestinationIn
from gateway.routing import Router
from gateway.settings import Settings, load_settings
from gateway.storage import admin_tokens, destinations, files, principals
from gateway.storage import agreements as agreement_store
from gateway.storage import consents as consent_store
from gateway.storage.database import migrate, open_engine

log = logging.getLogger("shuhi")
REFRESH_SECONDS = 1.0  # how stale another replica's change may be here, at most


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


def _bootstrap_admin(engine: Any, secret: bytes, settings: Settings) -> None:
    """`SHUHI_ADMIN_TOKEN` is always valid; with none given and no token stored, one is generated and shown once."""
    if settings.admin_token is not None:
        token = settings.admin_token.get_secret_value()
        admin_tokens.ensure_token(engine, "admin", keyed_hash(secret, token), token_id_for(secret, token))
    elif admin_tokens.count_tokens(engine) == 0:
        token = new_admin_token()
        admin_tokens.create_token(engine, "admin", keyed_hash(secret, token))
        print(f"shuhi: 初回の管理トークン / first admin token (shown once): {token}", file=sys.stderr, flush=True)


def create_app(settings: Settings | None = None, *, environ: Mapping[str, str] | None = None,
               transport: httpx.AsyncBaseTransport | None = None) -> FastAPI:
    """The gateway as an ASGI app; `environ` supplies upstream keys, `transport` replaces the network in unit tests."""
    settings = settings or load_settings()
    environ = os.environ if environ is None else environ

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = await anyio.to_thread.run_sync(open_engine, settings.database_url)
        await anyio.to_thread.run_sync(migrate, engine)
        secret = load_secret_key(settings)
        await anyio.to_thread.run_sync(_bootstrap_admin, engine, secret, settings)
        for declared in settings.destinations:
            destination = DestinationIn.model_validate(declared.model_dump()).to_domain()
            await anyio.to_thread.run_sync(destinations.upsert_destination, engine, destination)
        router = Router(await anyio.to_thread.run_sync(destinations.all_destinations, engine))
        forwarder = Forwarder(environ, settings.upstream_connect_timeout, transport)

        async def lookup_key(key_hash: str) -> Principal | None:
            return await anyio.to_thread.run_sync(principals.principal_for_key_hash, engine, key_hash)

        async def record_upload(file_id: str, destination_id: str, principal_id: str, purpose: str,
                                decision_id: str) -> None:
            await anyio.to_thread.run_sync(files.record_upload, engine, file_id, destination_id, principal_id,
                                           purpose, decision_id)

        facts = FactsHolder()

        def reload_destinations() -> None:
            found: list[Destination] = destinations.all_destinations(engine)
            router.replace(found)

        def refresh_policy_facts() -> None:
            facts.replace(agreements=agreement_store.all_agreements(engine),
                          items=agreement_store.all_item_infos(engine),
                          consents=consent_store.active_consents(engine))

        def refresh_all() -> None:
            reload_destinations()
            refresh_policy_facts()
            registry_service.sync()

        await anyio.to_thread.run_sync(refresh_policy_facts)
        registry_service = RegistryService(engine, secret)
        await anyio.to_thread.run_sync(registry_service.load)

        async def refresh_forever() -> None:
            while True:
                await asyncio.sleep(REFRESH_SECONDS)
                try:
                    await anyio.to_thread.run_sync(refresh_all)
                except Exception as exc:  # the store may be briefly away; the last snapshot stays in force
                    log.warning("refresh from the store failed: %s", type(exc).__name__)

        app.state.settings = settings
        app.state.engine = engine
        app.state.secret = secret
        app.state.reload_destinations = reload_destinations
        app.state.refresh_policy_facts = refresh_policy_facts
        app.state.facts = facts
        app.state.registry_service = registry_service
        app.state.ports = Ports(
            secret=secret, key_cache=KeyCache(settings.key_cache_seconds), lookup_key=lookup_key, router=router,
            forwarder=forwarder, record_upload=record_upload, files_destination=settings.files_destination)
        refresher = asyncio.create_task(refresh_forever())
        try:
            yield
        finally:
            refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresher
            await forwarder.aclose()
            engine.dispose()

    app = FastAPI(title="Shuhi", version="0.1.0", lifespan=lifespan,
                  description="Confidentiality gateway for AI APIs: admin API. Employee endpoints follow the "
                              "OpenAI and Anthropic APIs and are not described here.")
    app.include_router(admin_router())
    for route in ops.routes() + proxy.routes():
        app.router.routes.append(route)
    app.add_exception_handler(GatewayError, _gateway_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
    return app


def create_app_from_environment() -> FastAPI:
    """Factory for `uvicorn --factory` and worker processes: settings from `SHUHI_*` and `SHUHI_CONFIG`."""
    return create_app(load_settings())
