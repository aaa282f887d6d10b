"""The active policy (the YAML of `policies/` as JSON), and the dry-run scan."""

from __future__ import annotations

import datetime as dt
from typing import Any

import anyio
from fastapi import APIRouter, Body, Depends, Request, Response
from pydantic import Field

from gateway.decide import DecisionInput, evaluate
from gateway.domain import Destination, Endpoint, Principal, TextPart
from gateway.errors import NotFound, UnprocessableEntity
from gateway.pipeline import find_pii, match_json, new_decision_id
from gateway.policy.loader import PolicyError
from gateway.routes.admin.agreements import AdminBody, plain_parameters
from gateway.routes.admin.auth import Admin, require
from gateway.storage import principals as principal_store

router = APIRouter(tags=["policy"], dependencies=[Depends(plain_parameters)])


@router.get("/policy")
def get_policy(request: Request, _: Admin = Depends(require("legal", "auditor"))) -> dict[str, Any]:
    services = request.app.state.services
    source = "admin_api" if services.policies.override is not None else str(services.policies.file.path)
    return {**services.policies.current().model_dump(mode="json"), "source": source}


@router.put("/policy")
def put_policy(request: Request, document: dict[str, Any] = Body(...),
               caller: Admin = Depends(require())) -> dict[str, Any]:
    """Validate and install a policy for every replica; `DELETE` goes back to the policy file."""
    document.pop("source", None)
    try:
        policy = request.app.state.services.policies.put(document, caller.token_id)
    except PolicyError as exc:
        raise UnprocessableEntity("ポリシーが不正です: " + "; ".join(exc.problems) + " / Invalid policy.",
                                  code="invalid_policy", extra={"problems": exc.problems}) from None
    return {**policy.model_dump(mode="json"), "source": "admin_api"}


@router.delete("/policy", status_code=204)
def reset_policy(request: Request, _: Admin = Depends(require())) -> Response:
    request.app.state.services.policies.reset()
    return Response(status_code=204)


class ScanIn(AdminBody):
    FREE_TEXT = frozenset({"text"})  # scanned, never stored
    text: str = Field(min_length=1, max_length=20_000_000)
    destination: str | None = Field(default=None, description="destination id; default: a third party")
    principal: str | None = Field(default=None, description="principal id; default: a member of every authorized "
                                                             "group")
    purpose: str = Field(default="inference", pattern="^(inference|training)$")


@router.post("/scan")
async def scan(body: ScanIn, request: Request, _: Admin = Depends(require("legal"))) -> dict[str, Any]:
    """Dry run: what would match (registered material and personal information) and what the decision would be;
    nothing is forwarded or recorded."""
    services = request.app.state.services
    destination = _destination(services, body.destination)
    principal = await anyio.to_thread.run_sync(_principal, services, body.principal)
    parts = [TextPart(location="text", text=body.text)]
    matches = await anyio.to_thread.run_sync(services.registry.scan, parts)
    matches += await find_pii(parts, destination, body.purpose == "training", services.ports)  # as a call would
    facts = services.facts.current
    evaluation = evaluate(DecisionInput(
        decision_id=new_decision_id(), principal=principal, destination=destination,
        endpoint=Endpoint.FINE_TUNING_JOBS if body.purpose == "training" else Endpoint.CHAT_COMPLETIONS,
        matches=matches, now=dt.datetime.now(dt.UTC), agreements=facts.agreements, items=facts.items,
        consents=facts.consents, training=body.purpose == "training"), services.policies.current())
    decision = evaluation.decision
    return {
        "decision": decision.kind.value, "code": decision.code, "articles": list(decision.articles),
        "agreements": list(decision.agreements), "consent_possible": evaluation.consent_possible,
        "matches": [{**match_json(v.match), "score": round(v.match.score, 4),
                     "item_coverage": round(v.match.item_coverage, 4),
                     "request_coverage": round(v.match.request_coverage, 4),
                     "counts": v.counts, "reason": v.reason} for v in evaluation.verdicts],
    }


def _destination(services: Any, destination_id: str | None) -> Destination:
    if destination_id is None:
        return Destination(id="(any third party)", base_url="", api_format=services.router.destinations[0].api_format
                           if services.router.destinations else Endpoint.CHAT_COMPLETIONS.api_format,
                           models=(), third_party=True)
    found = services.router.get(destination_id)
    if found is None:
        raise NotFound(f"接続先 '{destination_id}' はありません。 / There is no destination '{destination_id}'.",
                       code="destination_not_found")
    return found  # type: ignore[no-any-return]


def _principal(services: Any, principal_id: str | None) -> Principal:
    if principal_id is None:  # a member of every authorized group (agreements that list only people need `principal`)
        groups = {g for a in services.facts.current.agreements.values() for g in a.authorized_groups}
        return Principal(id="(dry run)", groups=tuple(sorted(groups)))
    found = principal_store.get_principal(services.engine, principal_id)
    if found is None:
        raise NotFound(f"principal '{principal_id}' はありません。 / There is no principal '{principal_id}'.")
    return Principal(id=principal_id, groups=tuple(found["groups"]))
