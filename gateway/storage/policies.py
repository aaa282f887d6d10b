"""The policy document set through the admin API, shared by every replica through the store."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Engine, delete, insert, select

from gateway.storage.changes import record_change
from gateway.storage.database import utcnow
from gateway.storage.tables import policy_documents


def stored_policy(engine: Engine) -> tuple[dict[str, Any], dt.datetime] | None:
    with engine.connect() as conn:
        row = conn.execute(select(policy_documents).where(policy_documents.c.id == 1)).first()
    return (dict(row.document), row.updated_at) if row else None


def store_policy(engine: Engine, document: dict[str, Any], updated_by: str) -> None:
    with engine.begin() as conn:
        conn.execute(delete(policy_documents).where(policy_documents.c.id == 1))
        conn.execute(insert(policy_documents).values(id=1, document=document, updated_at=utcnow(),
                                                     updated_by=updated_by))
        record_change(conn, "policy_changed", "policy")


def clear_policy(engine: Engine) -> bool:
    with engine.begin() as conn:
        record_change(conn, "policy_changed", "policy")
        return conn.execute(delete(policy_documents).where(policy_documents.c.id == 1)).rowcount > 0
