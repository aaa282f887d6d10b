"""Agreements (Articles 3 and 11): purpose, term, survival, who may see the material."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, ClassVar

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from gateway.errors import Conflict, InvalidRequest, NotFound, UnprocessableEntity
from gateway.routes.admin.auth import Admin, require
from gateway.storage import agreements as store
from gateway.storage.principals import DuplicateError


# What the store or the rules cannot hold is refused before it gets there, as a 4xx that names the field:
# PostgreSQL's text takes no NUL character; a time is read back into Python only within the years
# 1-9999 in UTC; and the rules add up to 200 years (term and survival) or a year (the provisional
# window) to the dates of agreements and items (`CALENDAR` fields), which are kept to the years 1900-2999.
EARLIEST, LATEST = dt.date(1900, 1, 1), dt.date(2999, 12, 31)


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, list | tuple | set | frozenset):
        return any(_has_nul(v) for v in value)
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    return False


def representable(value: dt.datetime) -> bool:
    """Whether the instant exists in UTC within the years 1-9999 (naive means UTC)."""
    try:
        (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)
    except OverflowError:
        return False
    return True


def _within_years(value: dt.date) -> bool:
    if isinstance(value, dt.datetime):
        if not representable(value):
            return False
        value = (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).astimezone(dt.UTC).date()
    return EARLIEST <= value <= LATEST


class AdminBody(BaseModel):
    """A request body of the admin API: unknown fields, NUL characters and out-of-range dates refused."""

    model_config = ConfigDict(extra="forbid")
    FREE_TEXT: ClassVar[frozenset[str]] = frozenset()  # fields only scanned, never stored as text
    CALENDAR: ClassVar[frozenset[str]] = frozenset()  # dates the rules compute with

    @field_validator("*", mode="after")
    @classmethod
    def _storable(cls, value: Any, info: ValidationInfo) -> Any:
        if info.field_name in cls.CALENDAR and isinstance(value, dt.date) and not _within_years(value):
            raise ValueError(f"must fall within the years {EARLIEST.year} to {LATEST.year} (UTC)")
        if isinstance(value, dt.datetime) and not representable(value):
            raise ValueError("the time in UTC must fall within the years 1 to 9999")
        if info.field_name not in cls.FREE_TEXT and _has_nul(value):
            raise ValueError("NUL characters (U+0000) are not allowed")
        return value


def _query_names(dependant: Any) -> set[str]:
    """The query parameters a route reads, its dependencies' included (FastAPI's `Dependant` tree)."""
    names = {param.alias for param in getattr(dependant, "query_params", ())}
    for sub in getattr(dependant, "dependencies", ()):
        names |= _query_names(sub)
    return names


def plain_parameters(request: Request) -> None:
    """A router dependency: no NUL character in a path parameter or a query parameter the route reads
    (ids and filters reach the store). Parameters the route does not read are ignored, as by FastAPI."""
    route = request.scope.get("route")
    read = _query_names(getattr(route, "dependant", None))
    for name, value in [*request.path_params.items(),
                        *((n, v) for n, v in request.query_params.multi_items() if n in read)]:
        if "\x00" in str(value):
            raise InvalidRequest(f"パラメータ '{name}' に NUL 文字は使えません。 / The parameter '{name}' may not "
                                 "contain NUL characters.", code="invalid_parameter", param=name)


router = APIRouter(tags=["agreements"], dependencies=[Depends(plain_parameters)])
Name = Annotated[str, Field(min_length=1, max_length=128)]


class AgreementIn(AdminBody):
    CALENDAR = frozenset({"effective_date", "terminated_at"})
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


class AgreementPatch(AdminBody):
    CALENDAR = AgreementIn.CALENDAR
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
    values["terminated_at"] = store.aware_utc(body.terminated_at)
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
        values["terminated_at"] = store.aware_utc(values["terminated_at"])
    for required in ("title", "counterparty", "purpose", "effective_date", "term_years", "survival_years"):
        if required in values and values[required] is None:
            raise UnprocessableEntity(f"'{required}' は空にできません。 / '{required}' cannot be null.",
                                      code="validation_error", param=required)
    updated = store.update_agreement(request.app.state.engine, agreement_id, values)
    if updated is None:
        raise not_found(agreement_id)
    request.app.state.refresh_policy_facts()
    return updated
