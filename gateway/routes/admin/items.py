"""Material registered under an agreement: items (text, files, terms), exclusions, record sets."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
from typing import Annotated, Any, Literal

import anyio
import orjson
from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field, ValidationError
from starlette.datastructures import UploadFile

from gateway.domain import Category
from gateway.errors import InvalidRequest, NotFound, PayloadTooLarge, UnprocessableEntity
from gateway.registration import Material, RegistryService, check_written_notice
from gateway.routes.admin.agreements import AdminBody, live_agreement, plain_parameters
from gateway.routes.admin.agreements import not_found as agreement_not_found
from gateway.routes.admin.auth import Admin, require
from gateway.storage import agreements as store

router = APIRouter(tags=["items"], dependencies=[Depends(plain_parameters)])
Term = Annotated[str, Field(min_length=1, max_length=512)]


class ItemIn(AdminBody):
    FREE_TEXT = frozenset({"text"})  # scanned into fingerprints, never stored
    CALENDAR = frozenset({"disclosed_at", "written_notice_at"})
    title: str = Field(min_length=1, max_length=512)
    category: Category
    text: str | None = Field(default=None, max_length=50_000_000)
    terms: list[Term] = Field(default_factory=list, max_length=100_000)
    disclosed_at: dt.datetime | None = None
    provisional: bool | None = None
    written_notice_at: dt.datetime | None = None


class ItemPatch(AdminBody):
    CALENDAR = frozenset({"written_notice_at"})
    written_notice_at: dt.datetime


class ExclusionIn(AdminBody):
    FREE_TEXT = frozenset({"text"})  # sealed at rest as bytes
    text: str = Field(min_length=1, max_length=10_000_000)
    reason: Literal["public_at_disclosure", "became_public", "previously_held", "third_party",
                    "independently_developed"]



def _inlined(schema: Any, defs: dict[str, Any]) -> Any:
    """A pydantic JSON schema with its `$defs` references replaced by the definitions themselves."""
    if isinstance(schema, dict):
        ref = schema.get("$ref", "")
        if ref.startswith("#/$defs/"):
            return _inlined(defs[ref.removeprefix("#/$defs/")], defs)
        return {k: _inlined(v, defs) for k, v in schema.items() if k != "$defs"}
    if isinstance(schema, list):
        return [_inlined(v, defs) for v in schema]
    return schema


def _json_schema(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema()
    return _inlined(schema, schema.get("$defs", {}))  # type: ignore[no-any-return]


def _item_body_doc() -> dict[str, Any]:
    """The two bodies `register_item` parses itself, for the OpenAPI document (FastAPI cannot see them)."""
    fields = _json_schema(ItemIn)
    form = {name: {"type": "string"} for name in fields["properties"]}
    form["category"] = fields["properties"]["category"]
    form["terms"] = {"type": "string", "description": "a JSON array of terms, or one term a line"}
    form["file"] = {"type": "string", "format": "binary", "description": "the material (text, PDF, DOCX, …)"}
    return {"requestBody": {"required": True, "content": {
        "application/json": {"schema": fields},
        "multipart/form-data": {"schema": {"type": "object", "properties": form, "required": ["title", "category"]}},
    }}}


RECORD_SET_BODY_DOC = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file", "columns"], "properties": {
        "file": {"type": "string", "format": "binary", "description": "CSV (UTF-8 or Shift_JIS) or XLSX"},
        "columns": {"type": "string", "description": "a JSON array of the header names to match"},
        "min_cells": {"type": "integer", "default": 2, "description": "cells of one row a match needs"}}}}}}}


def _service(request: Request) -> RegistryService:
    return request.app.state.registry_service  # type: ignore[no-any-return]


async def _form(request: Request) -> Any:
    limit = request.app.state.settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"アップロードが上限（{limit} バイト）を超えています。 / The upload exceeds {limit} bytes.")
    try:
        return await request.form(max_files=1, max_fields=50, max_part_size=limit)
    except Exception as exc:  # python-multipart's parse errors: say what is wrong, not what was sent
        raise InvalidRequest("multipart の本文を解析できません。 / The multipart body could not be parsed.",
                             code="invalid_multipart") from exc


def _validation(exc: ValidationError) -> UnprocessableEntity:
    fields = ", ".join(".".join(str(p) for p in e["loc"]) or "body" for e in exc.errors())
    return UnprocessableEntity(f"入力が不正です: {fields} / Invalid input: {fields}", code="validation_error",
                               extra={"details": [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()]})


async def _item_input(request: Request) -> tuple[ItemIn, bytes | None, str | None]:
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await _form(request)
        try:
            return await _multipart_item(form)
        finally:
            await form.close()
    try:
        return ItemIn.model_validate_json(await request.body()), None, None
    except ValidationError as exc:
        raise _validation(exc) from None


async def _multipart_item(form: Any) -> tuple[ItemIn, bytes | None, str | None]:
    upload = form.get("file")
    fields = {k: v for k, v in form.items() if k != "file" and isinstance(v, str)}
    if "terms" in fields:
        try:
            fields["terms"] = orjson.loads(fields["terms"])  # type: ignore[assignment]
        except orjson.JSONDecodeError:
            fields["terms"] = [t for t in fields["terms"].split("\n") if t.strip()]  # type: ignore[assignment]
    try:
        body = ItemIn.model_validate(fields)
    except ValidationError as exc:
        raise _validation(exc) from None
    if isinstance(upload, UploadFile):
        return body, await upload.read(), _filename(upload, "upload")
    return body, None, None


def _filename(upload: UploadFile, default: str) -> str:
    """The upload's file name as the store keeps it (at most 512 characters, no NUL)."""
    name = upload.filename or default
    if len(name) > 512 or "\x00" in name:
        raise UnprocessableEntity("ファイル名が長すぎるか、使えない文字を含みます。 / The file name is too long "
                                  "(over 512 characters) or contains a NUL character.", code="invalid_filename",
                                  param="file")
    return name


@router.post("/agreements/{agreement_id}/items", status_code=201, openapi_extra=_item_body_doc())
async def register_item(agreement_id: str, request: Request,
                        _: Admin = Depends(require("legal"))) -> dict[str, Any]:
    """JSON `{title, category, text?, terms?, …}` or multipart with `file` and the same fields."""
    await anyio.to_thread.run_sync(live_agreement, request, agreement_id)
    body, data, filename = await _item_input(request)
    if body.text is None and data is None and not body.terms:
        raise UnprocessableEntity("text、file、terms のいずれかが必要です。 / Give text, a file or terms.",
                                  code="empty_material")
    material = Material(title=body.title, category=body.category, text=body.text, file=data, filename=filename,
                        terms=tuple(body.terms), provisional=body.provisional,
                        disclosed_at=store.aware_utc(body.disclosed_at),
                        written_notice_at=store.aware_utc(body.written_notice_at))
    created = await anyio.to_thread.run_sync(_service(request).register_item, agreement_id, material)
    await anyio.to_thread.run_sync(request.app.state.refresh_policy_facts)
    return created


@router.get("/agreements/{agreement_id}/items")
def list_items(agreement_id: str, request: Request, limit: int = Query(100, ge=1, le=1000),
               cursor: str | None = None, _: Admin = Depends(require("legal", "auditor"))) -> dict[str, Any]:
    if store.get_agreement_row(request.app.state.engine, agreement_id) is None:
        raise agreement_not_found(agreement_id)
    return store.list_items(request.app.state.engine, agreement_id, limit, cursor)


def _item_not_found(item_id: str) -> NotFound:
    return NotFound(f"資料 '{item_id}' はありません。 / There is no item '{item_id}'.", code="item_not_found")


@router.get("/items/{item_id}")
def get_item(item_id: str, request: Request, _: Admin = Depends(require("legal", "auditor"))) -> dict[str, Any]:
    found = store.get_item(request.app.state.engine, item_id)
    if found is None:
        raise _item_not_found(item_id)
    return found


@router.patch("/items/{item_id}")
def confirm_written_notice(item_id: str, body: ItemPatch, request: Request,
                           _: Admin = Depends(require("legal"))) -> dict[str, Any]:
    """Article 2(1)(6): record the written confirmation of an oral disclosure (within 30 days)."""
    engine = request.app.state.engine
    row = store.get_item_row(engine, item_id)
    if row is None:
        raise _item_not_found(item_id)
    notice = store.aware_utc(body.written_notice_at)
    assert notice is not None
    disclosed = row.disclosed_at if row.disclosed_at.tzinfo else row.disclosed_at.replace(tzinfo=dt.UTC)
    check_written_notice(disclosed, notice)
    updated = store.update_item(engine, item_id, {"written_notice_at": notice})
    request.app.state.refresh_policy_facts()
    assert updated is not None
    return updated


@router.delete("/items/{item_id}")
async def delete_item(item_id: str, request: Request, _: Admin = Depends(require("legal"))) -> dict[str, Any]:
    removed = await anyio.to_thread.run_sync(_service(request).remove_item, item_id)
    if removed is None:
        raise _item_not_found(item_id)
    await anyio.to_thread.run_sync(request.app.state.refresh_policy_facts)
    return removed


@router.post("/agreements/{agreement_id}/exclusions", status_code=201)
async def add_exclusion(agreement_id: str, body: ExclusionIn, request: Request,
                        _: Admin = Depends(require("legal"))) -> dict[str, Any]:
    """Article 2(2): public, already held, third-party or independently developed text never matches."""
    await anyio.to_thread.run_sync(live_agreement, request, agreement_id)
    return await anyio.to_thread.run_sync(_service(request).add_exclusion, agreement_id, body.text, body.reason)


@router.get("/agreements/{agreement_id}/exclusions")
def list_exclusions(agreement_id: str, request: Request,
                    _: Admin = Depends(require("legal", "auditor"))) -> dict[str, Any]:
    return {"data": store.list_exclusions(request.app.state.engine, agreement_id), "next_cursor": None}


def _table(data: bytes, filename: str) -> list[list[str]]:
    """Rows of a CSV or XLSX file, header first."""
    if filename.lower().endswith((".xlsx", ".xlsm")):
        from openpyxl import load_workbook

        try:
            book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        except Exception:  # not a workbook: the message names the file only
            raise UnprocessableEntity(f"'{filename}' を読み取れません。 / '{filename}' could not be read.",
                                      code="unreadable_file") from None
        sheet = book.worksheets[0]
        return [["" if c is None else str(c) for c in row] for row in sheet.iter_rows(values_only=True)]
    for encoding in ("utf-8-sig", "cp932"):
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise UnprocessableEntity(f"'{filename}' の文字コードを判別できません。 / The encoding of '{filename}' is "
                                  "not UTF-8 or Shift_JIS.", code="unreadable_file")
    return [row for row in csv.reader(io.StringIO(text))]


@router.post("/agreements/{agreement_id}/record-sets", status_code=201, openapi_extra=RECORD_SET_BODY_DOC)
async def add_record_set(agreement_id: str, request: Request,
                         _: Admin = Depends(require("legal"))) -> dict[str, Any]:
    """Multipart `file` (CSV/XLSX) + `columns` (JSON array of header names) + `min_cells` (default 2)."""
    await anyio.to_thread.run_sync(live_agreement, request, agreement_id)
    form = await _form(request)
    try:
        return await _record_set(request, agreement_id, form)
    finally:
        await form.close()


async def _record_set(request: Request, agreement_id: str, form: Any) -> dict[str, Any]:
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise UnprocessableEntity("file（CSV または XLSX）が必要です。 / A CSV or XLSX file is required.",
                                  code="file_required", param="file")
    try:
        columns = orjson.loads(str(form.get("columns", "")))
        min_cells = int(str(form.get("min_cells", "2")))
    except (orjson.JSONDecodeError, ValueError):
        raise UnprocessableEntity("columns は JSON 配列、min_cells は整数です。 / columns must be a JSON array and "
                                  "min_cells an integer.", code="validation_error") from None
    if not isinstance(columns, list) or not columns or not all(isinstance(c, str) for c in columns):
        raise UnprocessableEntity("columns は列名の配列です。 / columns must be a non-empty array of column names.",
                                  code="validation_error", param="columns")
    if not 1 <= min_cells <= len(columns) or (len(columns) > 1 and min_cells < 2):
        raise UnprocessableEntity("min_cells は 2 以上、列数以下です。 / min_cells must be at least 2 and at most the "
                                  "number of columns.", code="validation_error", param="min_cells")
    filename = _filename(upload, "records.csv")
    data = await upload.read()
    table = await anyio.to_thread.run_sync(_table, data, filename)
    if not table:
        raise UnprocessableEntity(f"'{filename}' が空です。 / '{filename}' is empty.", code="empty_material")
    header = [h.strip() for h in table[0]]
    missing = [c for c in columns if c not in header]
    if missing:
        raise UnprocessableEntity(f"列が見つかりません: {', '.join(missing)} / Columns not found: {', '.join(missing)}",
                                  code="unknown_columns", param="columns")
    picks = [header.index(c) for c in columns]
    rows = [[row[i].strip() if i < len(row) else "" for i in picks] for row in table[1:]]
    rows = [r for r in rows if any(r)]
    digest = hashlib.sha256(data).hexdigest()
    return await anyio.to_thread.run_sync(_service(request).add_record_set, agreement_id, rows, columns, min_cells,
                                          filename, digest)


@router.get("/agreements/{agreement_id}/record-sets")
def list_record_sets(agreement_id: str, request: Request,
                     _: Admin = Depends(require("legal", "auditor"))) -> dict[str, Any]:
    return {"data": store.list_record_sets(request.app.state.engine, agreement_id), "next_cursor": None}
