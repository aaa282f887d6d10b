"""Agreements (Articles 3 and 11): purpose, term, survival, who may see the material."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.errors import Conflict, NotFound, UnprocessableEntity
from gateway.routes.admin.auth import Admin, require
from gateway.storage import agreements as store
from gateway.storage.principals import DuplicateError

router = APIRouter(tags=["agreements"])
Name = Annotated[str, Field(min_length=1, max_length=128)]


class AgreementIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
    title: str = Field(min_length=1, max_length=512)
    counterparty: str = Field(min_length=1, max_length=512)
    purpose: str = Field(min_length=1, max_length=4000, description="the Purpose of Article 3(1)")
    effective_date: dt.date
    term_years: int = Field(ge=0, le=100)
    survival_years: int = Field(ge=0, le=100)
    terminated_at: dt.datetime | None = None
    authorized_principals: list[Name] | None = Field(default=None, max_length=10000)
    authorized_groups: list[Name] | None = Field(default=None, max_length=10000)


class AgreementPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str | None = Field(default=None, min_length=1, max_length=512)
    counterparty: str | None = Field(default=None, min_length=1, max_length=512)
    purpose: str | None = Field(default=None, min_length=1, max_length=4000)
    effective_date: dt.date | None = None
    term_years: int | None = Field(default=None, ge=0, le=100)
    survival_years: int | None = Field(default=None, ge=0, le=100)
    terminated_at: dt.datetime | None = None
    authorized_principals: list[Name] | None = None
    authorized_groups: list[Name] | None = None

    @model_validator(mode="after")
    def _something(self) -> AgreementPatch:
        if not self.model_fields_set:
            raise ValueError("nothing to change")
        return self


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    return value.replace(tzinfo=dt.UTC) if value is not None and value.tzinfo is None else value


def not_found(agreement_id: str) -> NotFound:
    return NotFound(f"契約 '{agreement_id}' はありません。 / There is no agreement '{agreement_id}'.",
                    code="agreement_not_found")


def live_agreement(request: Request, agreement_id: str) -> Any:
    """The agreement's row, or 404; a destroyed agreement takes no new material (Article 8)."""
    row = store.get_agreement_row(request.app.state.engine, agreement_id)
    if row is None:
        raise not_found(agreement_id)
    if row.destroyed_at is not None:
        raise UnprocessableEntity(
            f"契約 '{agreement_id}' の資料は第8条により廃棄済みです。 / The material of agreement '{agreement_id}' "
            "was destroyed under Article 8.", code="agreement_destroyed")
    return row


@router.post("/agreements", status_code=201)
def create_agreement(body: AgreementIn, request: Request, _: Admin = Depends(require("legal"))) -> dict[str, Any]:
    values = body.model_dump()
    values["id"] = body.id or store.new_id("agr")
    values["terminated_at"] = _aware(body.terminated_at)
    values["authorized_principals"] = sorted(set(body.authorized_principals or []))
    values["authorized_groups"] = sorted(set(body.authorized_groups or []))
    try:
        created = store.create_agreement(request.app.state.engine, values)
    except DuplicateError:
        raise Conflict(f"契約 '{values['id']}' は既にあります。 / The agreement '{values['id']}' exists already.",
                       code="agreement_exists") from None
    request.app.state.refresh_policy_facts()
    return created


@router.get("/agreements")
def list_agreements(request: Request, limit: int = Query(100, ge=1, le=1000), cursor: str | None = None,
                    _: Admin = Depends(require("legal", "auditor"))) -> dict[str, Any]:
    return store.list_agreements(request.app.state.engine, limit, cursor)


@router.get("/agreements/{agreement_id}")
def get_agreement(agreement_id: str, request: Request,
                  _: Admin = Depends(require("legal", "auditor"))) -> dict[str, Any]:
    found = store.get_agreement(request.app.state.engine, agreement_id)
    if found is None:
        raise not_found(agreement_id)
    return found


@router.patch("/agreements/{agreement_id}")
def amend_agreement(agreement_id: str, body: AgreementPatch, request: Request,
                    _: Admin = Depends(require("legal"))) -> dict[str, Any]:
    values = {k: getattr(body, k) for k in body.model_fields_set}
    for listed in ("authorized_principals", "authorized_groups"):
        if listed in values:
            values[listed] = sorted(set(values[listed] or []))
    if "terminated_at" in values:
        values["terminated_at"] = _aware(values["terminated_at"])
    for required in ("title", "counterparty", "purpose", "effective_date", "term_years", "survival_years"):
        if required in values and values[required] is None:
            raise UnprocessableEntity(f"'{required}' は空にできません。 / '{required}' cannot be null.",
                                      code="validation_error", param=required)
    updated = store.update_agreement(request.app.state.engine, agreement_id, values)
    if updated is None:
        raise not_found(agreement_id)
    request.app.state.refresh_policy_facts()
    return updated
