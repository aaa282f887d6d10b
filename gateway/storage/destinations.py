"""Destinations: the upstream providers the gateway forwards to."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, delete, insert, select, update

from gateway.domain import ApiFormat, Destination
from gateway.storage.changes import record_change
from gateway.storage.database import utcnow
from gateway.storage.tables import destinations


def _to_domain(row: Any) -> Destination:
    return Destination(
        id=row.id, base_url=row.base_url, api_format=ApiFormat(row.api_format), models=tuple(row.models),
        third_party=bool(row.third_party), trains_on_inputs=bool(row.trains_on_inputs),
        api_key_env=row.api_key_env, timeout_seconds=float(row.timeout_seconds),
    )


def to_json(destination: Destination) -> dict[str, Any]:
    return {
        "id": destination.id, "base_url": destination.base_url, "api_format": destination.api_format.value,
        "models": list(destination.models), "third_party": destination.third_party,
        "trains_on_inputs": destination.trains_on_inputs, "api_key_env": destination.api_key_env,
        "timeout_seconds": destination.timeout_seconds,
    }


def all_destinations(engine: Engine) -> list[Destination]:
    with engine.connect() as conn:
        return [_to_domain(r) for r in conn.execute(select(destinations).order_by(destinations.c.id))]


def get_destination(engine: Engine, destination_id: str) -> Destination | None:
    with engine.connect() as conn:
        row = conn.execute(select(destinations).where(destinations.c.id == destination_id)).first()
    return _to_domain(row) if row else None


def upsert_destination(engine: Engine, destination: Destination) -> bool:
    """Create or replace; True when it was created."""
    values = to_json(destination)
    with engine.begin() as conn:
        exists = conn.execute(select(destinations.c.id).where(destinations.c.id == destination.id)).first()
        record_change(conn, "destination_changed", destination.id)
        if exists:
            conn.execute(update(destinations).where(destinations.c.id == destination.id).values(**values))
            return False
        conn.execute(insert(destinations).values(**values, created_at=utcnow()))
        return True


def delete_destination(engine: Engine, destination_id: str) -> bool:
    with engine.begin() as conn:
        record_change(conn, "destination_changed", destination_id)
        return conn.execute(delete(destinations).where(destinations.c.id == destination_id)).rowcount > 0
