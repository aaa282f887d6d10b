"""Consents of the discloser (Article 4) and the queue of consent requests."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import Field

from gateway.errors import Conflict, NotFound, UnprocessableEntity
from gateway.routes.admin.agreements import AdminBody, plain_parameters
from gateway.routes.admin.agreements import not_found as agreement_not_found
from gateway.routes.admin.auth import Admin, require
from gateway.storage import agreements as agreement_store
from gateway.storage import consents as store

router = APIRouter(tags=["consents"], dependencies=[Depends(plain_parameters)])


class Evidence(AdminBody):
    reference: str = Field(min_length=1, max_length=1024, description="where the written consent is kept")
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$")


class ConsentIn(AdminBody):
    agreement_id: str = Field(min_length=1, max_length=128)
    item_ids: list[str] = Field(default_factory=list, max_length=10000)
    destinations: list[str] = Field(min_length=1, max_length=1000)
    purpose: Literal["inference", "training"]
    valid_from: dt.datetime | None = None
    valid_until: dt.datetime | None = None
    evidence: Evidence
    granted_by: str = Field(min_length=1, max_length=256)


class ApproveIn(AdminBody):
    evidence: Evidence
    granted_by: str = Field(min_length=1, max_length=256)
    valid_until: dt.datetime | None = None


class RejectIn(AdminBody):
    reason: str = Field(min_length=1, max_length=4000)



@router.post("/consents", status_code=201)
def create_consent(body: ConsentIn, request: Request, _: Admin = Depends(require("legal"))) -> dict[str, Any]:
    engine = request.app.state.engine
    if agreement_store.get_agreement_row(engine, body.agreement_id) is None:
        raise agreement_not_found(body.agreement_id)
    valid_from = agreement_store.aware_utc(body.valid_from)
    valid_until = agreement_store.aware_utc(body.valid_until)
    if valid_from and valid_until and valid_until <= valid_from:
        raise UnprocessableEntity("valid_until は valid_from より後でなければなりません。 / "
                                  "valid_until must be after valid_from.", code="invalid_validity",
                                  param="valid_until")
    for item_id in body.item_ids:
        item = agreement_store.get_item(engine, item_id)
        if item is None or item["agreement_id"] != body.agreement_id:
            raise UnprocessableEntity(f"資料 '{item_id}' はこの契約のものではありません。 / The item '{item_id}' "
                                      "is not registered under this agreement.", code="item_not_in_agreement",
                                      param="item_ids")
    created = store.create_consent(
        engine, agreement_id=body.agreement_id, item_ids=body.item_ids, destinations=body.destinations,
        purpose=body.purpose, evidence_reference=body.evidence.reference, evidence_sha256=body.evidence.sha256,
        granted_by=body.granted_by, valid_from=valid_from, valid_until=valid_until)
    request.app.state.refresh_policy_facts()
    return created


@router.get("/consents")
def list_consents(request: Request, limit: int = Query(100, ge=1, le=1000), cursor: str | None = None,
                  agreement_id: str | None = None, include_revoked: bool = True,
                  _: Admin = Depends(require("legal", "auditor"))) -> dict[str, Any]:
    return store.list_consents(request.app.state.engine, limit, cursor, agreement_id, include_revoked)


@router.get("/consents/{consent_id}")
def get_consent(consent_id: str, request: Request,
                _: Admin = Depends(require("legal", "auditor"))) -> dict[str, Any]:
    found = store.get_consent(request.app.state.engine, consent_id)
    if found is None:
        raise NotFound(f"同意 '{consent_id}' はありません。 / There is no consent '{consent_id}'.")
    return found


@router.delete("/consents/{consent_id}")
def revoke_consent(consent_id: str, request: Request, _: Admin = Depends(require("legal"))) -> dict[str, Any]:
    revoked = store.revoke_consent(request.app.state.engine, consent_id)
    if revoked is None:
        raise NotFound(f"同意 '{consent_id}' はありません。 / There is no consent '{consent_id}'.")
    request.app.state.refresh_policy_facts()
    return revoked


@router.get("/consent-requests")
def list_requests(request: Request, status: Literal["pending", "approved", "rejected"] | None = None,
                  limit: int = Query(100, ge=1, le=1000), cursor: str | None = None,
                  _: Admin = Depends(require("legal", "auditor"))) -> dict[str, Any]:
    return store.list_requests(request.app.state.engine, limit, cursor, status)


@router.get("/consent-requests/{request_id}")
def get_request(request_id: str, request: Request,
                _: Admin = Depends(require("legal", "auditor"))) -> dict[str, Any]:
    found = store.get_request(request.app.state.engine, request_id)
    if found is None:
        raise _request_not_found(request_id)
    return found


def _request_not_found(request_id: str) -> NotFound:
    return NotFound(f"同意依頼 '{request_id}' はありません。 / There is no consent request '{request_id}'.")


def _not_pending(request_id: str) -> Conflict:
    return Conflict(f"同意依頼 '{request_id}' は処理済みです。 / The consent request '{request_id}' was already "
                    "answered.", code="not_pending")


@router.post("/consent-requests/{request_id}/approve", status_code=201)
def approve(request_id: str, body: ApproveIn, request: Request,
            _: Admin = Depends(require("legal"))) -> dict[str, Any]:
    try:
        consent = store.approve_request(request.app.state.engine, request_id, body.evidence.reference,
                                        body.evidence.sha256, body.granted_by,
                                        agreement_store.aware_utc(body.valid_until))
    except store.NotPending:
        raise _not_pending(request_id) from None
    if consent is None:
        raise _request_not_found(request_id)
    request.app.state.refresh_policy_facts()
    return consent


@router.post("/consent-requests/{request_id}/reject")
def reject(request_id: str, body: RejectIn, request: Request,
           caller: Admin = Depends(require("legal"))) -> dict[str, Any]:
    try:
        rejected = store.reject_request(request.app.state.engine, request_id, body.reason, caller.token_id)
    except store.NotPending:
        raise _not_pending(request_id) from None
    if rejected is None:
        raise _request_not_found(request_id)
    return rejected
