"""Principals and their gateway keys (shown once, stored hashed)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import Field

from gateway.errors import Conflict, NotFound
from gateway.keyring import keyed_hash, new_gateway_key
from gateway.routes.admin.agreements import AdminBody, plain_parameters
from gateway.routes.admin.auth import Admin, require
from gateway.storage import principals as store

router = APIRouter(tags=["principals and keys"], dependencies=[Depends(plain_parameters)])
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,127}$"


class PrincipalIn(AdminBody):
    id: str = Field(pattern=ID_PATTERN, description="employee or service id, e.g. an e-mail address")
    groups: list[Annotated[str, Field(min_length=1, max_length=128)]] = Field(default_factory=list, max_length=256)


class KeyIn(AdminBody):
    principal: str = Field(pattern=ID_PATTERN)


def _not_found(kind: str, ident: str) -> NotFound:
    return NotFound(f"{kind} '{ident}' はありません。 / There is no {kind} '{ident}'.")


@router.post("/principals", status_code=201)
def create_principal(body: PrincipalIn, request: Request, _: Admin = Depends(require())) -> dict[str, Any]:
    try:
        return store.create_principal(request.app.state.engine, body.id, body.groups)
    except store.DuplicateError:
        raise Conflict(f"principal '{body.id}' は既にあります。 / The principal '{body.id}' exists already.") from None


@router.get("/principals")
def list_principals(request: Request, limit: int = Query(100, ge=1, le=1000), cursor: str | None = None,
                    _: Admin = Depends(require("legal", "auditor"))) -> dict[str, Any]:
    return store.list_principals(request.app.state.engine, limit, cursor)


@router.get("/principals/{principal_id}")
def get_principal(principal_id: str, request: Request,
                  _: Admin = Depends(require("legal", "auditor"))) -> dict[str, Any]:
    found = store.get_principal(request.app.state.engine, principal_id)
    if found is None:
        raise _not_found("principal", principal_id)
    return found


@router.delete("/principals/{principal_id}", status_code=204)
def delete_principal(principal_id: str, request: Request, _: Admin = Depends(require())) -> Response:
    if not store.delete_principal(request.app.state.engine, principal_id):
        raise _not_found("principal", principal_id)
    request.app.state.ports.key_cache.forget()
    return Response(status_code=204)


@router.post("/keys", status_code=201)
def create_key(body: KeyIn, request: Request, _: Admin = Depends(require())) -> dict[str, Any]:
    state = request.app.state
    if store.get_principal(state.engine, body.principal) is None:
        raise _not_found("principal", body.principal)
    key, prefix = new_gateway_key()
    created = store.create_key(state.engine, body.principal, keyed_hash(state.secret, key), prefix)
    return {**created, "key": key}


@router.get("/keys")
def list_keys(request: Request, limit: int = Query(100, ge=1, le=1000), cursor: str | None = None,
              principal: str | None = None, _: Admin = Depends(require("auditor"))) -> dict[str, Any]:
    return store.list_keys(request.app.state.engine, limit, cursor, principal)


@router.delete("/keys/{key_id}", status_code=204)
def delete_key(key_id: str, request: Request, _: Admin = Depends(require())) -> Response:
    key_hash = store.delete_key(request.app.state.engine, key_id)
    if key_hash is None:
        raise _not_found("key", key_id)
    request.app.state.ports.key_cache.forget(key_hash)
    return Response(status_code=204)
