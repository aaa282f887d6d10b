"""Article 8: destroy an agreement's material, derived items included, and certify it.

The store deletes and certifies in one transaction with the `agreement.destroy` audit
record (`storage/destruction.py`); then this process's registry forgets the agreement at
once and its policy facts are reloaded. Other replicas follow the `agreement_destroyed`
change within a second. Until the in-memory removal the material still matches, so the
gap fails closed: a prompt is refused a moment longer, never let through early.

A certificate holds ids, titles, counts and SHA-256 hashes of the originals, never their
text. `content_sha256` covers the certificate's own fields and
is written into the audit record, whose id and hash (the chain head right after it) the
certificate carries: `GET /admin/v1/audit/verify?expected_head=<audit_chain_head>` proves the
record is still in an intact chain.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Engine

from gateway.errors import Conflict, NotFound
from gateway.registration import RegistryService
from gateway.storage import agreements as agreement_store
from gateway.storage import destruction as store

ACTION = "agreement.destroy"
_AUDIT_FIELDS = ("audit_record_id", "audit_chain_head", "audit_record_seq", "content_sha256")


@dataclass(frozen=True, slots=True)
class DestructionRequest:
    """Who asks for the destruction and why (Article 8: on termination or on the discloser's request)."""

    agreement_id: str
    requested_by: str
    reason: str
    actor: str  # the admin token's id
    actor_role: str


@dataclass(frozen=True, slots=True)
class _Change:
    """A change-log row as `RegistryService.apply` reads it."""

    kind: str
    object_id: str
    agreement_id: str


def new_certificate_id() -> str:
    """`dcert_…`, random."""
    return f"dcert_{secrets.token_hex(8)}"


def content_sha256(certificate: Mapping[str, Any]) -> str:
    """SHA-256 of the certificate's canonical JSON (keys sorted) without the audit fields and itself.

    The audit record's `details.content_sha256` holds it, so an auditor can recompute it from the
    JSON certificate and tie every listed hash and count to the tamper-evident chain.
    """
    body = {k: v for k, v in certificate.items() if k not in _AUDIT_FIELDS}
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _item(row: Any) -> dict[str, Any]:
    return {"id": row.id, "title": row.title, "sha256": row.sha256, "fingerprints": row.fingerprint_count,
            "terms": row.term_count, "category": row.category, "source": row.source, "filename": row.filename,
            "chars": row.chars, "derived_from": row.derived_from}


def _record_set(row: Any) -> dict[str, Any]:
    return {"id": row.id, "filename": row.filename, "sha256": row.sha256, "rows": row.rows,
            "columns": len(row.columns or ())}


def _agreement(row: Any) -> dict[str, Any]:
    return {"id": row.id, "title": row.title, "counterparty": row.counterparty, "purpose": row.purpose,
            "effective_date": row.effective_date.isoformat(),
            "terminated_at": agreement_store.agreement_json(row)["terminated_at"]}


def certifier(request: DestructionRequest) -> store.Certify:
    """The certificate and audit fields for what the store found (called inside its transaction)."""

    def certify(inventory: store.Inventory) -> tuple[dict[str, Any], dict[str, Any]]:
        originals = [_item(r) for r in inventory.items if not r.derived_from]
        derived = [_item(r) for r in inventory.items if r.derived_from]
        record_sets = [_record_set(r) for r in inventory.record_sets]
        destroyed_at = inventory.destroyed_at.isoformat()
        certificate: dict[str, Any] = {
            "certificate_id": new_certificate_id(), "agreement_id": request.agreement_id,
            "destroyed_at": destroyed_at, "requested_by": request.requested_by, "reason": request.reason,
            "items": originals, "derived_items": derived, "record_sets": record_sets,
            "exclusions": len(inventory.exclusions),
            "fingerprints_removed": sum(i["fingerprints"] for i in originals + derived),
            "terms_removed": sum(i["terms"] for i in originals + derived),
            "exclusion_fingerprints_removed": sum(e.fingerprint_count for e in inventory.exclusions),
            "agreement": _agreement(inventory.agreement), "article": "8",
            "destroyed_by": {"token_id": request.actor, "role": request.actor_role},
        }
        certificate["content_sha256"] = content_sha256(certificate)
        details = {"certificate_id": certificate["certificate_id"], "items": len(originals),
                   "derived_items": len(derived), "record_sets": len(record_sets),
                   "exclusions": certificate["exclusions"], "fingerprints_removed": certificate["fingerprints_removed"],
                   "terms_removed": certificate["terms_removed"], "content_sha256": certificate["content_sha256"]}
        audit = {"kind": "admin", "actor": request.actor, "actor_role": request.actor_role, "action": ACTION,
                 "target": request.agreement_id, "agreements": [request.agreement_id], "details": details}
        return certificate, audit

    return certify


def agreement_not_found(agreement_id: str) -> NotFound:
    """404 for an unknown agreement (the same code as the agreements API)."""
    return NotFound(f"契約 '{agreement_id}' はありません。 / There is no agreement '{agreement_id}'.",
                    code="agreement_not_found")


def destroy_agreement(engine: Engine, registry: RegistryService, refresh_facts: Callable[[], None],
                      request: DestructionRequest) -> dict[str, Any]:
    """Destroy in the store (audited, certified), then in this process; returns the certificate.

    Raises NotFound for an unknown agreement, Conflict (with `certificate_id`) when it was destroyed before.
    """
    try:
        certificate = store.destroy(engine, request.agreement_id, certifier(request))
    except store.AgreementMissing:
        raise agreement_not_found(request.agreement_id) from None
    except store.AlreadyDestroyed as exc:
        raise Conflict(f"契約 '{request.agreement_id}' の資料は既に廃棄されています（第8条）。 / The material of "
                       f"agreement '{request.agreement_id}' was destroyed already (Article 8).",
                       code="agreement_already_destroyed", extra={"certificate_id": exc.certificate_id}) from None
    registry.apply([_Change("agreement_destroyed", request.agreement_id, request.agreement_id)])
    refresh_facts()
    return certificate


def certificate(engine: Engine, certificate_id: str) -> dict[str, Any]:
    """A stored certificate, or NotFound."""
    found = store.get_certificate(engine, certificate_id)
    if found is None:
        raise NotFound(f"廃棄証明書 '{certificate_id}' はありません。 / There is no destruction certificate "
                       f"'{certificate_id}'.", code="certificate_not_found")
    return found


def certificate_of_agreement(engine: Engine, agreement_id: str) -> dict[str, Any]:
    """The certificate of an agreement's destruction; NotFound when unknown or not destroyed."""
    found = store.certificate_for_agreement(engine, agreement_id)
    if found is not None:
        return found
    if agreement_store.get_agreement_row(engine, agreement_id) is None:
        raise agreement_not_found(agreement_id)
    raise NotFound(f"契約 '{agreement_id}' の資料は廃棄されていません。 / The material of agreement '{agreement_id}' "
                   "has not been destroyed.", code="not_destroyed")
