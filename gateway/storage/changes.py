"""The change log every replica follows: one row per change to what the hot path holds in memory.

Each process reads the rows after the last one it saw, once a second, and
reloads only what changed (one cheap query when nothing did). Rows carry ids,
never content.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select

from gateway.storage.database import utcnow
from gateway.storage.tables import registry_events

DESTINATIONS = frozenset({"destination_changed"})
FACTS = frozenset({"agreement_changed", "consent_changed", "item_added", "item_changed", "item_removed",
                   "agreement_destroyed"})
POLICY = frozenset({"policy_changed"})
KEYS = frozenset({"key_removed", "principal_removed"})


def record_change(conn: Connection, kind: str, object_id: str, agreement_id: str = "") -> None:
    """Append a change inside the caller's transaction, so the log and the change commit together."""
    conn.execute(insert(registry_events).values(kind=kind, object_id=object_id, agreement_id=agreement_id,
                                                at=utcnow()))
    conn.info["shuhi_changed"] = True  # announced to the other replicas at commit (gateway.redis_bus)


def last_change(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.coalesce(func.max(registry_events.c.seq), 0))).scalar_one())


def changes_since(engine: Engine, seq: int) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(registry_events).where(registry_events.c.seq > seq)
                                 .order_by(registry_events.c.seq)).all())
