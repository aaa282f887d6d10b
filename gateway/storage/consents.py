"""The discloser's consents (Article 4) and the queue of consent requests raised by refused calls."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, insert, select, update

from gateway.domain import Consent, ConsentPurpose
from gateway.storage.agreements import _iso, aware_utc, new_id
from gateway.storage.changes import record_change
from gateway.storage.database import utcnow
from gateway.storage.pagination import envelope, page
from gateway.storage.tables import consent_requests, consents


def consent_json(row: Any) -> dict[str, Any]:
    m = row._mapping if hasattr(row, "_mapping") else row
    return {
        "id": m["id"], "agreement_id": m["agreement_id"], "item_ids": list(m["item_ids"]),
        "destinations": list(m["destinations"]), "purpose": m["purpose"], "valid_from": _iso(m["valid_from"]),
        "valid_until": _iso(m["valid_until"]),
        "evidence": {"reference": m["evidence_reference"], "sha256": m["evidence_sha256"]},
        "granted_by": m["granted_by"], "consent_request_id": m["consent_request_id"],
        "created_at": _iso(m["created_at"]), "revoked_at": _iso(m["revoked_at"]),
    }


def consent_domain(row: Any) -> Consent:
    return Consent(id=row.id, agreement_id=row.agreement_id, destinations=tuple(row.destinations),
                   purpose=ConsentPurpose(row.purpose), item_ids=tuple(row.item_ids),
                   valid_from=aware_utc(row.valid_from), valid_until=aware_utc(row.valid_until),
                   revoked_at=aware_utc(row.revoked_at))


def _consent_values(agreement_id: str, item_ids: list[str], destinations: list[str], purpose: str,
                    evidence_reference: str, evidence_sha256: str | None, granted_by: str,
                    valid_from: Any = None, valid_until: Any = None,
                    consent_request_id: str | None = None) -> dict[str, Any]:
    return {"id": new_id("cons"), "agreement_id": agreement_id, "item_ids": sorted(set(item_ids)),
            "destinations": sorted(set(destinations)), "purpose": purpose, "valid_from": valid_from,
            "valid_until": valid_until, "evidence_reference": evidence_reference, "evidence_sha256": evidence_sha256,
            "granted_by": granted_by, "consent_request_id": consent_request_id, "created_at": utcnow(),
            "revoked_at": None}


def create_consent(engine: Engine, **fields: Any) -> dict[str, Any]:
    values = _consent_values(**fields)
    with engine.begin() as conn:
        conn.execute(insert(consents).values(**values))
        record_change(conn, "consent_changed", values["id"], values["agreement_id"])
    return consent_json(values)


def get_consent(engine: Engine, consent_id: str) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(select(consents).where(consents.c.id == consent_id)).first()
    return consent_json(row) if row else None


def list_consents(engine: Engine, limit: int, cursor: str | None, agreement_id: str | None = None,
                  include_revoked: bool = True) -> dict[str, Any]:
    query = select(consents)
    if agreement_id:
        query = query.where(consents.c.agreement_id == agreement_id)
    if not include_revoked:
        query = query.where(consents.c.revoked_at.is_(None))
    with engine.connect() as conn:
        rows = conn.execute(page(query, consents.c.id, limit, cursor)).all()
    return envelope([consent_json(r) for r in rows], limit)


def active_consents(engine: Engine) -> list[Consent]:
    """Unrevoked consents; validity periods are the engine's to judge at decision time."""
    with engine.connect() as conn:
        return [consent_domain(r) for r in conn.execute(select(consents).where(consents.c.revoked_at.is_(None)))]


def revoke_consent(engine: Engine, consent_id: str) -> dict[str, Any] | None:
    with engine.begin() as conn:
        if conn.execute(update(consents).where(consents.c.id == consent_id, consents.c.revoked_at.is_(None))
                        .values(revoked_at=utcnow())).rowcount:
            record_change(conn, "consent_changed", consent_id)
    return get_consent(engine, consent_id)


def request_json(row: Any) -> dict[str, Any]:
    m = row._mapping if hasattr(row, "_mapping") else row
    return {
        "id": m["id"], "agreement_id": m["agreement_id"], "item_ids": list(m["item_ids"]),
        "destination": m["destination_id"], "purpose": m["purpose"], "principal": m["principal_id"],
        "decision_id": m["decision_id"], "status": m["status"], "created_at": _iso(m["created_at"]),
        "resolved_at": _iso(m["resolved_at"]), "resolved_by": m["resolved_by"], "reason": m["reason"],
        "consent_id": m["consent_id"],
    }


def open_request(engine: Engine, agreement_id: str, item_ids: list[str], destination_id: str, purpose: str,
                 principal_id: str, decision_id: str) -> str:
    """A pending request for this scope, reusing one already pending for the same principal and scope."""
    items_sorted = sorted(set(item_ids))
    with engine.begin() as conn:
        pending = conn.execute(select(consent_requests.c.id, consent_requests.c.item_ids).where(
            consent_requests.c.agreement_id == agreement_id, consent_requests.c.destination_id == destination_id,
            consent_requests.c.purpose == purpose, consent_requests.c.principal_id == principal_id,
            consent_requests.c.status == "pending")).all()
        for row in pending:
            if list(row.item_ids) == items_sorted:
                return str(row.id)
        request_id = new_id("creq")
        conn.execute(insert(consent_requests).values(
            id=request_id, agreement_id=agreement_id, item_ids=items_sorted, destination_id=destination_id,
            purpose=purpose, principal_id=principal_id, decision_id=decision_id, status="pending",
            created_at=utcnow()))
    return request_id


def get_request(engine: Engine, request_id: str) -> dict[str, Any] | None:
    with engine.connect() as conn:
        row = conn.execute(select(consent_requests).where(consent_requests.c.id == request_id)).first()
    return request_json(row) if row else None


def list_requests(engine: Engine, limit: int, cursor: str | None, status: str | None) -> dict[str, Any]:
    query = select(consent_requests)
    if status:
        query = query.where(consent_requests.c.status == status)
    with engine.connect() as conn:
        rows = conn.execute(page(query, consent_requests.c.id, limit, cursor)).all()
    return envelope([request_json(r) for r in rows], limit)


class NotPending(Exception):
    """The consent request was already approved or rejected."""


def approve_request(engine: Engine, request_id: str, evidence_reference: str, evidence_sha256: str | None,
                    granted_by: str, valid_until: Any = None) -> dict[str, Any] | None:
    """Record a consent for the request's scope and close the request, in one transaction."""
    with engine.begin() as conn:
        row = conn.execute(select(consent_requests).where(consent_requests.c.id == request_id)
                           .with_for_update()).first()
        if row is None:
            return None
        if row.status != "pending":
            raise NotPending(request_id)
        values = _consent_values(
            row.agreement_id, list(row.item_ids), [row.destination_id], row.purpose, evidence_reference,
            evidence_sha256, granted_by, valid_until=valid_until, consent_request_id=request_id)
        conn.execute(insert(consents).values(**values))
        record_change(conn, "consent_changed", values["id"], row.agreement_id)
        conn.execute(update(consent_requests).where(consent_requests.c.id == request_id).values(
            status="approved", resolved_at=utcnow(), resolved_by=granted_by, consent_id=values["id"]))
    return consent_json(values)


def reject_request(engine: Engine, request_id: str, reason: str, rejected_by: str) -> dict[str, Any] | None:
    with engine.begin() as conn:
        row = conn.execute(select(consent_requests.c.status).where(consent_requests.c.id == request_id)).first()
        if row is None:
            return None
        if row.status != "pending":
            raise NotPending(request_id)
        conn.execute(update(consent_requests).where(consent_requests.c.id == request_id).values(
            status="rejected", resolved_at=utcnow(), resolved_by=rejected_by, reason=reason))
    return get_request(engine, request_id)
