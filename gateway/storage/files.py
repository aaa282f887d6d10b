"""Files uploaded through the gateway, so a fine-tuning job can inherit the upload's scan (Article 4(1))."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, insert, select

from gateway.storage.database import utcnow
from gateway.storage.tables import uploaded_files


def record_upload(engine: Engine, file_id: str, destination_id: str, principal_id: str, purpose: str,
                  decision_id: str, matches: list[dict[str, Any]]) -> None:
    with engine.begin() as conn:
        conn.execute(insert(uploaded_files).values(
            id=file_id, destination_id=destination_id, principal_id=principal_id, purpose=purpose,
            decision_id=decision_id, created_at=utcnow(), matches=matches))


def get_upload(engine: Engine, file_id: str) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(select(uploaded_files).where(uploaded_files.c.id == file_id)).first()
    if row is None:
        return None
    found = dict(row._mapping)
    found["matches"] = found.get("matches") or []
    return found
