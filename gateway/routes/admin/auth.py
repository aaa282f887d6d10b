"""Admin tokens and roles: `admin` may do everything, `legal` and `auditor` their share (API.md)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Request

from gateway.errors import AuthenticationFailed, Forbidden
from gateway.keyring import keyed_hash
from gateway.storage import admin_tokens


@dataclass(frozen=True, slots=True)
class Admin:
    """Who is calling the admin API."""

    token_id: str
    role: str


def require(*roles: str) -> Callable[[Request], Admin]:
    """A dependency that lets through the given roles (and `admin`, always)."""
    allowed = {"admin", *roles}

    def dependency(request: Request) -> Admin:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationFailed("管理トークンがありません。 / No admin token: send Authorization: Bearer <token>.",
                                       code="missing_admin_token")
        state = request.app.state
        found = admin_tokens.role_for_hash(state.engine, keyed_hash(state.secret, token.strip()))
        if found is None:
            raise AuthenticationFailed("管理トークンが無効です。 / The admin token is not valid.",
                                       code="invalid_admin_token")
        token_id, role = found
        if role not in allowed:
            raise Forbidden(f"ロール '{role}' にはこの操作の権限がありません。 / The role '{role}' may not do this.",
                            code="role_forbidden")
        caller = Admin(token_id=token_id, role=role)
        request.state.admin = caller  # for the audit record of the change (routes/admin/changes.py)
        return caller

    return dependency
