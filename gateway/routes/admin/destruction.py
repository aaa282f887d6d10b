"""Article 8: destroy an agreement's material on termination or request, and fetch the certificate."""

from __future__ import annotations

from typing import Any, Literal

import anyio
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import Field

from gateway import destroy
from gateway.certificate import render
from gateway.routes.admin.agreements import AdminBody, plain_parameters
from gateway.routes.admin.auth import Admin, require

router = APIRouter(tags=["destruction"], dependencies=[Depends(plain_parameters)])
Format = Literal["json", "html"]
_HTML_HEADERS = {"content-security-policy": "default-src 'none'; style-src 'unsafe-inline'",
                 "x-content-type-options": "nosniff", "cache-control": "no-store"}


class DestroyIn(AdminBody):
    requested_by: str = Field(min_length=1, max_length=256, description="who asked: the discloser, legal staff…")
    reason: str = Field(min_length=1, max_length=2000, description="e.g. termination, or the discloser's request")


def _html(certificate: dict[str, Any]) -> Response:
    headers = {**_HTML_HEADERS, "content-disposition": f'inline; filename="{certificate["certificate_id"]}.html"'}
    return Response(render(certificate), media_type="text/html; charset=utf-8", headers=headers)


def _answer(certificate: dict[str, Any], fmt: Format) -> Any:
    return _html(certificate) if fmt == "html" else certificate


@router.post("/agreements/{agreement_id}/destroy", status_code=201)
async def destroy_agreement(agreement_id: str, body: DestroyIn, request: Request,
                            admin: Admin = Depends(require("legal"))) -> dict[str, Any]:
    """Destroy the agreement's items, derived items, exclusions and record sets → the certificate (201).

    The agreement, its consents and the audit log stay; new material for it is refused (422)."""
    state = request.app.state
    order = destroy.DestructionRequest(agreement_id=agreement_id, requested_by=body.requested_by,
                                       reason=body.reason, actor=admin.token_id, actor_role=admin.role)
    return await anyio.to_thread.run_sync(destroy.destroy_agreement, state.engine, state.registry_service,
                                          state.refresh_policy_facts, order)


@router.get("/destruction-certificates/{certificate_id}.html", response_model=None)
def certificate_html(certificate_id: str, request: Request,
                     _: Admin = Depends(require("legal", "auditor"))) -> Response:
    """The certificate as a printable bilingual A4 document."""
    return _html(destroy.certificate(request.app.state.engine, certificate_id))


@router.get("/destruction-certificates/{certificate_id}", response_model=None)
def get_certificate(certificate_id: str, request: Request, fmt: Format = Query("json", alias="format"),
                    _: Admin = Depends(require("legal", "auditor"))) -> Any:
    """The certificate as returned at destruction (`?format=html` for the printable document)."""
    return _answer(destroy.certificate(request.app.state.engine, certificate_id), fmt)


@router.get("/agreements/{agreement_id}/destruction-certificate", response_model=None)
def agreement_certificate(agreement_id: str, request: Request, fmt: Format = Query("json", alias="format"),
                          _: Admin = Depends(require("legal", "auditor"))) -> Any:
    """The certificate of this agreement's destruction; 404 `not_destroyed` before it."""
    return _answer(destroy.certificate_of_agreement(request.app.state.engine, agreement_id), fmt)
