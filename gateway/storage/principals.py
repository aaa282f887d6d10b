"""Principals (employees and services) and their gateway keys, stored as keyed hashes only."""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import Engine, delete, insert, select
from sqlalchemy.exc import IntegrityError

from gateway.domain import Principal
from gateway.storage.changes import record_change
from gateway.storage.database import utcnow
from gateway.storage.pagination import envelope, page
from gateway.storage.tables import gateway_keys, principals


class DuplicateError(Exception):
    """An object with this id already exists."""


def _principal_row(row: Any) -> dict[str, Any]:
    return {"id": row.id, "groups": list(row.groups), "created_at": row.created_at.isoformat()}


def create_principal(engine: Engine, principal_id: str, groups: list[str]) -> dict[str, Any]:
    values = {"id": principal_id, "groups": sorted(set(groups)), "created_at": utcnow()}
    try:
        with engine.begin() as conn:
            conn.execute(insert(principals).values(**values))
    except IntegrityError as exc:
        raise DuplicateError(principal_id) from exc
    return {"id": principal_id, "groups": values["groups"], "created_at": values["created_at"].isoformat()}


def get_principal(engine: Engine, principal_id: str) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(select(principals).where(principals.c.id == principal_id)).first()
    return _principal_row(row) if row else None


def list_principals(engine: Engine, limit: int, cursor: str | None) -> dict[str, Any]:
    with engine.connect() as conn:
        rows = conn.execute(page(select(principals), principals.c.id, limit, cursor)).all()
    return envelope([_principal_row(r) for r in rows], limit)


def delete_principal(engine: Engine, principal_id: str) -> bool:
    """Remove the principal and every key it holds."""
    with engine.begin() as conn:
        conn.execute(delete(gateway_keys).where(gateway_keys.c.principal_id == principal_id))
        record_change(conn, "principal_removed", principal_id)
        return conn.execute(delete(principals).where(principals.c.id == principal_id)).rowcount > 0


def create_key(engine: Engine, principal_id: str, key_hash: str, prefix: str) -> dict[str, Any]:
    key_id = "key_" + secrets.token_hex(8)
    created = utcnow()
    with engine.begin() as conn:
        conn.execute(insert(gateway_keys).values(
            id=key_id, principal_id=principal_id, key_hash=key_hash, prefix=prefix, created_at=created))
    return {"id": key_id, "principal": principal_id, "prefix": prefix, "created_at": created.isoformat()}


def list_keys(engine: Engine, limit: int, cursor: str | None, principal_id: str | None = None) -> dict[str, Any]:
    query = select(gateway_keys.c.id, gateway_keys.c.principal_id, gateway_keys.c.prefix, gateway_keys.c.created_at)
    if principal_id:
        query = query.where(gateway_keys.c.principal_id == principal_id)
    with engine.connect() as conn:
        rows = conn.execute(page(query, gateway_keys.c.id, limit, cursor)).all()
    return envelope([{"id": r.id, "principal": r.principal_id, "prefix": r.prefix,
                      "created_at": r.created_at.isoformat()} for r in rows], limit)


def delete_key(engine: Engine, key_id: str) -> str | None:
    """Remove a key; returns its hash so caches can forget it at once."""
    with engine.begin() as conn:
        row = conn.execute(select(gateway_keys.c.key_hash).where(gateway_keys.c.id == key_id)).first()
        if row is None:
            return None
        conn.execute(delete(gateway_keys).where(gateway_keys.c.id == key_id))
        record_change(conn, "key_removed", key_id)
        return str(row.key_hash)


def principal_for_key_hash(engine: Engine, key_hash: str) -> Principal | None:
    """The principal holding the key with this hash, or None."""
    query = (
        select(gateway_keys.c.id, principals.c.id.label("principal_id"), principals.c.groups)
        .join(principals, principals.c.id == gateway_keys.c.principal_id)
        .where(gateway_keys.c.key_hash == key_hash)
    )
    with engine.connect() as conn:
        row = conn.execute(query).first()
    if row is None:
        return None
    return Principal(id=row.principal_id, groups=tuple(row.groups), key_id=row.id)
