"""Admin tokens for the roles `admin`, `legal`, `auditor` (an extension of API.md; shown once, stored hashed)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response

from gateway.errors import NotFound
from gateway.keyring import keyed_hash, new_admin_token
from gateway.routes.admin.agreements import AdminBody, plain_parameters
from gateway.routes.admin.auth import Admin, require
from gateway.storage import admin_tokens as store

router = APIRouter(tags=["admin tokens"], dependencies=[Depends(plain_parameters)])


class TokenIn(AdminBody):
    role: Literal["admin", "legal", "auditor"]


@router.post("/tokens", status_code=201)
def create_token(body: TokenIn, request: Request, _: Admin = Depends(require())) -> dict[str, Any]:
    token = new_admin_token()
    created = store.create_token(request.app.state.engine, body.role, keyed_hash(request.app.state.secret, token))
    return {**created, "token": token}


@router.get("/tokens")
def list_tokens(request: Request, limit: int = Query(100, ge=1, le=1000), cursor: str | None = None,
                _: Admin = Depends(require())) -> dict[str, Any]:
    return store.list_tokens(request.app.state.engine, limit, cursor)


@router.delete("/tokens/{token_id}", status_code=204)
def delete_token(token_id: str, request: Request, caller: Admin = Depends(require())) -> Response:
    if not store.delete_token(request.app.state.engine, token_id):
        raise NotFound(f"トークン '{token_id}' はありません。 / There is no token '{token_id}'.")
    return Response(status_code=204)
