"""Article 8 in the store: delete an agreement's material and keep a certificate of it.

One transaction does it all, under the audit chain's lock: it reads what the agreement holds,
appends the `agreement.destroy` admin record, deletes the items (derived ones included),
exclusions and record sets with their fingerprints, sealed terms and cells, marks the agreement
`destroyed_at`, stores the certificate and logs `agreement_destroyed` for every replica. So the
record, the deletion and the certificate commit together or not at all, and two destroys of one
agreement cannot both succeed. The agreement row, consents, consent requests and the audit log stay.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Engine, String, Table, Text, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from gateway.audit import Record, prepare
from gateway.storage.audit_log import chain_transaction, seal_records
from gateway.storage.changes import record_change
from gateway.storage.tables import agreements, exclusions, items, metadata, record_sets

destruction_certificates = Table(
    "destruction_certificates",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("agreement_id", String(128), nullable=False, unique=True),  # one destruction per agreement
    Column("destroyed_at", DateTime(timezone=True), nullable=False),
    Column("requested_by", String(256), nullable=False),
    Column("reason", Text, nullable=False),
    Column("audit_record_id", String(64), nullable=False),
    Column("audit_chain_head", String(64), nullable=False),
    Column("certificate", JSON, nullable=False),  # the whole certificate as returned: ids, counts, hashes
)

_ITEM_COLUMNS = (items.c.id, items.c.title, items.c.category, items.c.source, items.c.filename, items.c.sha256,
                 items.c.chars, items.c.fingerprint_count, items.c.term_count, items.c.derived_from)
_EXCLUSION_COLUMNS = (exclusions.c.id, exclusions.c.reason, exclusions.c.sha256, exclusions.c.fingerprint_count)
_RECORD_SET_COLUMNS = (record_sets.c.id, record_sets.c.filename, record_sets.c.sha256, record_sets.c.rows,
                       record_sets.c.columns)


class AgreementMissing(LookupError):
    """No agreement has this id."""


class AlreadyDestroyed(Exception):
    """The agreement's material was destroyed before; `certificate_id` names that certificate."""

    def __init__(self, certificate_id: str | None) -> None:
        super().__init__(certificate_id)
        self.certificate_id = certificate_id


@dataclass(frozen=True, slots=True)
class Inventory:
    """What the store holds of one agreement at the moment of destruction (rows without blobs)."""

    agreement: Any
    items: list[Any]
    exclusions: list[Any]
    record_sets: list[Any]
    destroyed_at: dt.datetime


# Builds (certificate without the audit fields, the audit record's fields) from the inventory.
Certify = Callable[[Inventory], tuple[dict[str, Any], dict[str, Any]]]


def destroy(engine: Engine, agreement_id: str, certify: Certify, now: dt.datetime | None = None) -> dict[str, Any]:
    """Destroy the agreement's material and return its certificate, audit record id and head included.

    Raises AgreementMissing, or AlreadyDestroyed when a certificate exists or `destroyed_at` is set.
    """
    try:
        with chain_transaction(engine) as conn:
            inventory = _inventory(conn, agreement_id, now or dt.datetime.now(dt.UTC))
            certificate, audit_fields = certify(inventory)
            record = _append(conn, {**audit_fields, "at": inventory.destroyed_at})
            certificate = {**certificate, "audit_record_id": record["id"], "audit_chain_head": record["hash"],
                           "audit_record_seq": record["seq"]}
            _delete_material(conn, agreement_id)
            conn.execute(update(agreements).where(agreements.c.id == agreement_id)
                         .values(destroyed_at=inventory.destroyed_at, updated_at=inventory.destroyed_at))
            conn.execute(insert(destruction_certificates).values(
                id=certificate["certificate_id"], agreement_id=agreement_id, destroyed_at=inventory.destroyed_at,
                requested_by=certificate["requested_by"], reason=certificate["reason"],
                audit_record_id=record["id"], audit_chain_head=record["hash"], certificate=certificate))
            record_change(conn, "agreement_destroyed", agreement_id, agreement_id)
            conn.commit()
    except IntegrityError:  # another process certified this agreement first
        raise AlreadyDestroyed(_certificate_id_for(engine, agreement_id)) from None
    return certificate


def _inventory(conn: Any, agreement_id: str, now: dt.datetime) -> Inventory:
    agreement = conn.execute(select(agreements).where(agreements.c.id == agreement_id)).first()
    if agreement is None:
        raise AgreementMissing(agreement_id)
    existing = conn.execute(select(destruction_certificates.c.id)
                            .where(destruction_certificates.c.agreement_id == agreement_id)).scalar()
    if existing is not None or agreement.destroyed_at is not None:
        raise AlreadyDestroyed(existing)
    return Inventory(
        agreement=agreement,
        items=conn.execute(select(*_ITEM_COLUMNS).where(items.c.agreement_id == agreement_id)
                           .order_by(items.c.created_at, items.c.id)).all(),
        exclusions=conn.execute(select(*_EXCLUSION_COLUMNS).where(exclusions.c.agreement_id == agreement_id)
                                .order_by(exclusions.c.id)).all(),
        record_sets=conn.execute(select(*_RECORD_SET_COLUMNS).where(record_sets.c.agreement_id == agreement_id)
                                 .order_by(record_sets.c.created_at, record_sets.c.id)).all(),
        destroyed_at=now)


def _append(conn: Any, fields: dict[str, Any]) -> Record:
    """The admin record, chained after the head inside this (locked) transaction."""
    return seal_records(conn, [prepare(fields)])[0]


def _delete_material(conn: Any, agreement_id: str) -> None:
    for table in (items, exclusions, record_sets):
        conn.execute(delete(table).where(table.c.agreement_id == agreement_id))


def _certificate_id_for(engine: Engine, agreement_id: str) -> str | None:
    with engine.connect() as conn:
        found = conn.execute(select(destruction_certificates.c.id)
                             .where(destruction_certificates.c.agreement_id == agreement_id)).scalar()
    return found


def get_certificate(engine: Engine, certificate_id: str) -> dict[str, Any] | None:
    """A stored certificate as it was returned at destruction, or None."""
    with engine.connect() as conn:
        found = conn.execute(select(destruction_certificates.c.certificate)
                             .where(destruction_certificates.c.id == certificate_id)).scalar()
    return dict(found) if found is not None else None


def certificate_for_agreement(engine: Engine, agreement_id: str) -> dict[str, Any] | None:
    """The certificate of an agreement's destruction, or None when it was not destroyed."""
    with engine.connect() as conn:
        found = conn.execute(select(destruction_certificates.c.certificate)
                             .where(destruction_certificates.c.agreement_id == agreement_id)).scalar()
    return dict(found) if found is not None else None


def remaining(engine: Engine, agreement_id: str) -> dict[str, int]:
    """How many items, exclusions and record sets the store still holds for an agreement (for checks)."""
    with engine.connect() as conn:
        return {table.name: len(conn.execute(select(table.c.id).where(table.c.agreement_id == agreement_id)).all())
                for table in (items, exclusions, record_sets)}
