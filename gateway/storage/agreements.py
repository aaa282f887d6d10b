"""Agreements and what is registered under them: items, exclusions, record sets, and the registry's change log."""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from gateway.domain import Agreement, Category, ItemInfo
from gateway.storage.database import utcnow
from gateway.storage.pagination import envelope, page
from gateway.storage.principals import DuplicateError
from gateway.storage.changes import record_change
from gateway.storage.tables import agreements, exclusions, items, record_sets


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


def _iso(value: dt.datetime | dt.date | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime) and value.tzinfo is None:  # SQLite hands back naive UTC
        value = value.replace(tzinfo=dt.UTC)
    return value.isoformat()


def aware_utc(value: dt.datetime | None) -> dt.datetime | None:
    """Naive times (SQLite hands them back so, clients may send them) are read as UTC."""
    return value.replace(tzinfo=dt.UTC) if value is not None and value.tzinfo is None else value


def agreement_json(row: Any) -> dict[str, Any]:
    return {
        "id": row.id, "title": row.title, "counterparty": row.counterparty, "purpose": row.purpose,
        "effective_date": row.effective_date.isoformat(), "term_years": row.term_years,
        "survival_years": row.survival_years, "terminated_at": _iso(row.terminated_at),
        "authorized_principals": list(row.authorized_principals), "authorized_groups": list(row.authorized_groups),
        "created_at": _iso(row.created_at), "updated_at": _iso(row.updated_at), "destroyed_at": _iso(row.destroyed_at),
    }


def agreement_domain(row: Any) -> Agreement:
    return Agreement(
        id=row.id, title=row.title, counterparty=row.counterparty, purpose=row.purpose,
        effective_date=row.effective_date, term_years=row.term_years, survival_years=row.survival_years,
        terminated_at=aware_utc(row.terminated_at), authorized_principals=tuple(row.authorized_principals),
        authorized_groups=tuple(row.authorized_groups))


def create_agreement(engine: Engine, values: dict[str, Any]) -> dict[str, Any]:
    now = utcnow()
    row = {"authorized_principals": [], "authorized_groups": [], "terminated_at": None, **values,
           "created_at": now, "updated_at": now, "destroyed_at": None}
    try:
        with engine.begin() as conn:
            conn.execute(insert(agreements).values(**row))
            record_change(conn, "agreement_changed", values["id"], values["id"])
    except IntegrityError as exc:
        raise DuplicateError(values["id"]) from exc
    found = get_agreement(engine, values["id"])
    assert found is not None
    return found


def get_agreement_row(engine: Engine, agreement_id: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(agreements).where(agreements.c.id == agreement_id)).first()


def get_agreement(engine: Engine, agreement_id: str) -> dict[str, Any] | None:
    row = get_agreement_row(engine, agreement_id)
    return agreement_json(row) if row else None


def list_agreements(engine: Engine, limit: int, cursor: str | None) -> dict[str, Any]:
    with engine.connect() as conn:
        rows = conn.execute(page(select(agreements), agreements.c.id, limit, cursor)).all()
    return envelope([agreement_json(r) for r in rows], limit)


def all_agreements(engine: Engine) -> list[Agreement]:
    with engine.connect() as conn:
        return [agreement_domain(r) for r in conn.execute(select(agreements))]


def update_agreement(engine: Engine, agreement_id: str, values: dict[str, Any]) -> dict[str, Any] | None:
    with engine.begin() as conn:
        done = conn.execute(update(agreements).where(agreements.c.id == agreement_id)
                            .values(**values, updated_at=utcnow())).rowcount
        if done:
            record_change(conn, "agreement_changed", agreement_id, agreement_id)
    return get_agreement(engine, agreement_id) if done else None


def item_json(row: Any) -> dict[str, Any]:
    return {
        "id": row.id, "agreement_id": row.agreement_id, "title": row.title, "category": row.category,
        "source": row.source, "filename": row.filename, "provisional": row.provisional,
        "disclosed_at": _iso(row.disclosed_at), "written_notice_at": _iso(row.written_notice_at),
        "derived_from": row.derived_from, "chars": row.chars, "sha256": row.sha256,
        "fingerprints": row.fingerprint_count, "terms": row.term_count, "created_at": _iso(row.created_at),
        "fingerprint_scheme": row.fingerprint_scheme,
    }


def item_domain(row: Any) -> ItemInfo:
    return ItemInfo(id=row.id, agreement_id=row.agreement_id, category=Category(row.category), title=row.title,
                    provisional=row.provisional, disclosed_at=aware_utc(row.disclosed_at),
                    written_notice_at=aware_utc(row.written_notice_at), derived_from=row.derived_from)


_ITEM_VIEW = [c for c in items.c if c.name not in ("fingerprints", "terms")]


_event = record_change


class AgreementDestroyed(Exception):
    """New material for an agreement whose material was destroyed (Article 8)."""


def _live(conn: Any, agreement_id: str) -> None:
    """Checked inside the registering transaction, so a destroy that finished a moment ago still wins."""
    row = conn.execute(select(agreements.c.destroyed_at).where(agreements.c.id == agreement_id)
                       .with_for_update()).first()
    if row is not None and row.destroyed_at is not None:
        raise AgreementDestroyed(agreement_id)


def create_item(engine: Engine, values: dict[str, Any]) -> dict[str, Any]:
    """Store an item's fingerprints (and sealed terms) and log the change for every replica's registry."""
    row = {"filename": None, "provisional": False, "disclosed_at": None, "written_notice_at": None,
           "derived_from": None, "terms": None, "term_count": 0, **values, "created_at": utcnow()}
    with engine.begin() as conn:
        _live(conn, row["agreement_id"])
        conn.execute(insert(items).values(**row))
        _event(conn, "item_added", row["id"], row["agreement_id"])
    found = get_item(engine, row["id"])
    assert found is not None
    return found


def get_item_row(engine: Engine, item_id: str, with_blobs: bool = False) -> Any:
    columns = list(items.c) if with_blobs else _ITEM_VIEW
    with engine.connect() as conn:
        return conn.execute(select(*columns).where(items.c.id == item_id)).first()


def get_item(engine: Engine, item_id: str) -> dict[str, Any] | None:
    row = get_item_row(engine, item_id)
    return item_json(row) if row else None


def list_items(engine: Engine, agreement_id: str, limit: int, cursor: str | None) -> dict[str, Any]:
    query = select(*_ITEM_VIEW).where(items.c.agreement_id == agreement_id)
    with engine.connect() as conn:
        rows = conn.execute(page(query, items.c.id, limit, cursor)).all()
    return envelope([item_json(r) for r in rows], limit)


def all_item_infos(engine: Engine) -> list[ItemInfo]:
    with engine.connect() as conn:
        return [item_domain(r) for r in conn.execute(select(*_ITEM_VIEW))]


def update_item(engine: Engine, item_id: str, values: dict[str, Any]) -> dict[str, Any] | None:
    with engine.begin() as conn:
        row = conn.execute(select(items.c.agreement_id).where(items.c.id == item_id)).first()
        if row is None:
            return None
        conn.execute(update(items).where(items.c.id == item_id).values(**values))
        _event(conn, "item_changed", item_id, row.agreement_id)
    return get_item(engine, item_id)


def delete_item(engine: Engine, item_id: str) -> dict[str, Any] | None:
    with engine.begin() as conn:
        row = conn.execute(select(*_ITEM_VIEW).where(items.c.id == item_id)).first()
        if row is None:
            return None
        conn.execute(delete(items).where(items.c.id == item_id))
        _event(conn, "item_removed", item_id, row.agreement_id)
    return item_json(row)


def create_exclusion(engine: Engine, values: dict[str, Any]) -> dict[str, Any]:
    row = {**values, "created_at": utcnow()}
    with engine.begin() as conn:
        _live(conn, row["agreement_id"])
        conn.execute(insert(exclusions).values(**row))
        _event(conn, "exclusion_added", row["id"], row["agreement_id"])
    return exclusion_json(row)


def exclusion_json(row: Any) -> dict[str, Any]:
    get = row.get if isinstance(row, dict) else row._mapping.get
    return {"id": get("id"), "agreement_id": get("agreement_id"), "reason": get("reason"), "chars": get("chars"),
            "sha256": get("sha256"), "fingerprints": get("fingerprint_count"), "created_at": _iso(get("created_at"))}


def list_exclusions(engine: Engine, agreement_id: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(select(exclusions).where(exclusions.c.agreement_id == agreement_id)
                            .order_by(exclusions.c.id)).all()
    return [exclusion_json(r) for r in rows]


def create_record_set(engine: Engine, values: dict[str, Any]) -> dict[str, Any]:
    row = {**values, "created_at": utcnow()}
    with engine.begin() as conn:
        _live(conn, row["agreement_id"])
        conn.execute(insert(record_sets).values(**row))
        _event(conn, "record_set_added", row["id"], row["agreement_id"])
    return record_set_json(row)


def record_set_json(row: Any) -> dict[str, Any]:
    get = row.get if isinstance(row, dict) else row._mapping.get
    return {"id": get("id"), "agreement_id": get("agreement_id"), "filename": get("filename"),
            "columns": list(get("columns")), "min_cells": get("min_cells"), "rows": get("rows"),
            "sha256": get("sha256"), "created_at": _iso(get("created_at"))}


def list_record_sets(engine: Engine, agreement_id: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(select(record_sets).where(record_sets.c.agreement_id == agreement_id)
                            .order_by(record_sets.c.id)).all()
    return [record_set_json(r) for r in rows]


def registry_rows(engine: Engine) -> dict[str, list[Any]]:
    """Everything the in-memory registry is built from, at start."""
    with engine.connect() as conn:
        return {
            "items": conn.execute(select(items)).all(),
            "exclusions": conn.execute(select(exclusions)).all(),
            "record_sets": conn.execute(select(record_sets)).all(),
        }


def object_row(engine: Engine, kind: str, object_id: str) -> Any:
    """The stored row behind a registry event, or None when it is gone since."""
    table = {"item": items, "exclusion": exclusions, "record_set": record_sets}[kind]
    with engine.connect() as conn:
        return conn.execute(select(table).where(table.c.id == object_id)).first()
