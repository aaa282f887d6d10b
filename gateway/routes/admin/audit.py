"""The audit log for auditors: page through it, export it (JSONL or CSV, any size), verify its chain."""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
from collections.abc import Iterator
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy.exc import SQLAlchemyError

from gateway.audit import AuditUnavailable, format_at
from gateway.errors import InvalidRequest, UnprocessableEntity
from gateway.routes.admin.agreements import plain_parameters, representable
from gateway.routes.admin.auth import Admin, require
from gateway.storage import audit_log as store

router = APIRouter(tags=["audit"], dependencies=[Depends(plain_parameters)])
auditor = Depends(require("auditor"))
Decision = Literal["allow", "allow_marked", "redact", "consent_required", "block"]  # gateway.audit.DECISIONS
Kind = Literal["decision", "outcome", "admin"]  # gateway.audit.KINDS
MEDIA = {"jsonl": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}


def filters(since: dt.datetime | None = Query(None, description="from this time on (ISO 8601; naive is UTC)"),
            until: dt.datetime | None = Query(None, description="before this time"),
            principal: str | None = Query(None, max_length=256),
            agreement_id: str | None = Query(None, max_length=128),
            decision: Decision | None = None,
            kind: Kind | None = Query(None, description="decision | outcome | admin (an extension of API.md)"),
            ) -> store.Filters:
    """The filters shared by the list and the export."""
    for name, value in (("since", since), ("until", until)):
        if value is not None and not representable(value):
            raise UnprocessableEntity(f"{name} は UTC で西暦 1〜9999 年の時刻です。 / {name} must fall within "
                                      "the years 1 to 9999 in UTC.", code="validation_error", param=name)
    return store.Filters(since=since, until=until, principal=principal, agreement_id=agreement_id,
                         decision=decision, kind=kind)


@contextlib.contextmanager
def _store() -> Iterator[None]:
    """A store that is down answers 503, never 500."""
    try:
        yield
    except SQLAlchemyError as exc:
        raise AuditUnavailable(f"監査ログを読めません。 / The audit log cannot be read ({type(exc).__name__}).") \
            from exc


@router.get("/audit")
def list_audit(request: Request, selected: store.Filters = Depends(filters),
               limit: int = Query(100, ge=1, le=1000),
               cursor: str | None = Query(None, description="`next_cursor` of the previous page"),
               _: Admin = auditor) -> dict[str, Any]:
    """Records in chain order: `{"data": [...], "next_cursor": ...}`."""
    if cursor is not None and not (cursor.isascii() and cursor.isdigit() and len(cursor) <= 18):  # "³" is a digit
        raise InvalidRequest("cursor が不正です。 / The cursor is malformed.", code="invalid_cursor", param="cursor")
    with _store():
        return store.page(request.app.state.engine, selected, limit, int(cursor) if cursor else None)


@router.get("/audit/export")
def export_audit(request: Request, fmt: Literal["jsonl", "csv"] = Query("jsonl", alias="format"),
                 selected: store.Filters = Depends(filters), _: Admin = auditor) -> StreamingResponse:
    """The selected records as a download, streamed in constant memory whatever their number.

    JSONL: each line is a record's canonical JSON plus its `hash`; CSV: a header of every field."""
    engine = request.app.state.engine
    blocks = store.export_jsonl(engine, selected) if fmt == "jsonl" else store.export_csv(engine, selected)
    with _store():
        first = next(blocks, b"")  # the first query runs now: a store that is down is a 503, not a cut stream
    name = f"shuhi-audit-{format_at(dt.datetime.now(dt.UTC))[:19].replace(':', '')}.{fmt}"
    return StreamingResponse(itertools.chain([first], blocks), media_type=MEDIA[fmt],
                             headers={"content-disposition": f'attachment; filename="{name}"'})


@router.get("/audit/verify")
def verify_audit(request: Request,
                 expected_head: str | None = Query(None, pattern="^[0-9a-f]{64}$",
                                                   description="a head hash kept elsewhere: detects a cut tail"),
                 _: Admin = auditor) -> dict[str, Any]:
    """Walk the whole chain: `{ok, records, head, head_seq, anchor, first_bad?}`."""
    with _store():
        return store.verify(request.app.state.engine, expected_head)
