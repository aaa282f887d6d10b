"""Admin tokens by role, stored as keyed hashes only."""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import Engine, delete, func, insert, select

from gateway.storage.database import utcnow
from gateway.storage.pagination import envelope, page
from gateway.storage.tables import admin_tokens

ROLES = ("admin", "legal", "auditor")


def count_tokens(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(admin_tokens)).scalar_one())


def create_token(engine: Engine, role: str, token_hash: str, token_id: str | None = None) -> dict[str, Any]:
    token_id = token_id or "tok_" + secrets.token_hex(8)
    created = utcnow()
    with engine.begin() as conn:
        conn.execute(insert(admin_tokens).values(id=token_id, role=role, token_hash=token_hash, created_at=created))
    return {"id": token_id, "role": role, "created_at": created.isoformat()}


def ensure_token(engine: Engine, role: str, token_hash: str, token_id: str) -> None:
    """Make sure a token with this hash exists (the `SHUHI_ADMIN_TOKEN` at every start)."""
    with engine.begin() as conn:
        found = conn.execute(select(admin_tokens.c.id).where(admin_tokens.c.token_hash == token_hash)).first()
        if found is None:
            conn.execute(delete(admin_tokens).where(admin_tokens.c.id == token_id))
            conn.execute(insert(admin_tokens).values(id=token_id, role=role, token_hash=token_hash,
                                                     created_at=utcnow()))


def role_for_hash(engine: Engine, token_hash: str) -> tuple[str, str] | None:
    """(token id, role) of the token with this hash, or None."""
    with engine.connect() as conn:
        row = conn.execute(select(admin_tokens.c.id, admin_tokens.c.role)
                           .where(admin_tokens.c.token_hash == token_hash)).first()
    return (row.id, row.role) if row else None


def list_tokens(engine: Engine, limit: int, cursor: str | None) -> dict[str, Any]:
    query = select(admin_tokens.c.id, admin_tokens.c.role, admin_tokens.c.created_at)
    with engine.connect() as conn:
        rows = conn.execute(page(query, admin_tokens.c.id, limit, cursor)).all()
    return envelope([{"id": r.id, "role": r.role, "created_at": r.created_at.isoformat()} for r in rows], limit)


def delete_token(engine: Engine, token_id: str) -> bool:
    with engine.begin() as conn:
        return conn.execute(delete(admin_tokens).where(admin_tokens.c.id == token_id)).rowcount > 0
