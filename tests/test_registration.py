"""Registering material under an agreement: text, files, terms, exclusions, record sets. The text is never stored."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import httpx
import sqlalchemy as sa

from gateway.storage.database import engine_url
from tests.conftest import Gateway
from tests.test_admin_agreements import NDA

DESIGN = ("Auroraモデルは教師ネットワークの中間層表現を四つの小型生徒モデルへ段階的に蒸留する。"
          "蒸留温度は層ごとに0.7から2.5まで変化させ、生徒間の相互学習損失を重み0.3で加える。"
          "評価データは社内で収集した二十万件の対話ログで、個人情報はすべて仮名化されている。")


def agreement(gateway: Gateway) -> str:
    assert gateway.admin.post("/admin/v1/agreements", json=NDA).status_code == 201
    return str(NDA["id"])


def stored_bytes(gateway: Gateway) -> bytes:
    """Everything the store holds, as bytes: what an attacker with the database would see."""
    engine = sa.create_engine(engine_url(gateway.settings.database_url))
    chunks = []
    with engine.connect() as conn:
        for table in sa.inspect(conn).get_table_names():
            for row in conn.execute(sa.text(f'SELECT * FROM "{table}"')):
                chunks += [v if isinstance(v, bytes) else str(v).encode() for v in row]
    engine.dispose()
    return b"\n".join(chunks)


def test_register_text_and_terms(gateway: Gateway) -> None:
    agreement_id = agreement(gateway)
    created = gateway.admin.post(f"/admin/v1/agreements/{agreement_id}/items", json={
        "title": "Aurora 設計書 v3", "category": "ai_technology", "text": DESIGN,
        "terms": ["Project Aurora", "aurora-train-01.internal"]})
    assert created.status_code == 201, created.text
    item = created.json()
    assert item["fingerprints"] > 5 and item["terms"] == 2 and item["chars"] == len(DESIGN)
    assert item["sha256"] == hashlib.sha256(DESIGN.encode() + b"\x00Project Aurora\x00aurora-train-01.internal").hexdigest()
    assert item["provisional"] is False and item["category"] == "ai_technology"
    listed = gateway.admin.get(f"/admin/v1/agreements/{agreement_id}/items").json()["data"]
    assert [i["id"] for i in listed] == [item["id"]]
    raw = stored_bytes(gateway)
    for secret in (DESIGN[:30], DESIGN[40:70], "Project Aurora", "aurora-train-01"):
        assert secret.encode() not in raw


def test_register_file_multipart(gateway: Gateway, tmp_path: Path) -> None:
    agreement_id = agreement(gateway)
    content = ("# 学習データ仕様\n\n" + DESIGN).encode()
    created = gateway.admin.post(f"/admin/v1/agreements/{agreement_id}/items",
                                 files={"file": ("spec.md", content, "text/markdown")},
                                 data={"title": "学習データ仕様", "category": "data"})
    assert created.status_code == 201, created.text
    assert created.json()["filename"] == "spec.md" and created.json()["sha256"] == hashlib.sha256(content).hexdigest()
    assert created.json()["source"] == "file"
    bad = gateway.admin.post(f"/admin/v1/agreements/{agreement_id}/items",
                             files={"file": ("photo.png", b"\x89PNG\r\n\x1a\n" + bytes(100), "image/png")},
                             data={"title": "写真", "category": "data"})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "unsupported_file"


def test_oral_items_are_provisional_and_notice_must_come_within_30_days(gateway: Gateway) -> None:
    agreement_id = agreement(gateway)
    created = gateway.admin.post(f"/admin/v1/agreements/{agreement_id}/items", json={
        "title": "口頭説明 2026-11-20", "category": "oral", "text": DESIGN, "disclosed_at": "2026-11-20T10:00:00Z"})
    item = created.json()
    assert item["provisional"] is True and item["written_notice_at"] is None
    late = gateway.admin.patch(f"/admin/v1/items/{item['id']}", json={"written_notice_at": "2026-12-21T10:00:00Z"})
    assert late.status_code == 422 and late.json()["error"]["code"] == "written_notice_too_late"
    ok = gateway.admin.patch(f"/admin/v1/items/{item['id']}", json={"written_notice_at": "2026-12-01T09:00:00Z"})
    assert ok.status_code == 200 and ok.json()["written_notice_at"].startswith("2026-12-01T09:00:00")


def test_delete_item_and_unknown_ids(gateway: Gateway) -> None:
    agreement_id = agreement(gateway)
    item = gateway.admin.post(f"/admin/v1/agreements/{agreement_id}/items", json={
        "title": "t", "category": "business", "text": DESIGN}).json()
    assert gateway.admin.delete(f"/admin/v1/items/{item['id']}").status_code == 200
    assert gateway.admin.get(f"/admin/v1/items/{item['id']}").status_code == 404
    assert gateway.admin.delete(f"/admin/v1/items/{item['id']}").status_code == 404
    assert gateway.admin.post("/admin/v1/agreements/nope/items", json={
        "title": "t", "category": "business", "text": DESIGN}).status_code == 404


def test_invalid_items_are_4xx(gateway: Gateway) -> None:
    agreement_id = agreement(gateway)
    url = f"/admin/v1/agreements/{agreement_id}/items"
    assert gateway.admin.post(url, json={"title": "t", "category": "secret", "text": DESIGN}).status_code == 422
    assert gateway.admin.post(url, json={"title": "t", "category": "data"}).status_code == 422
    assert gateway.admin.post(url, json={"title": "t", "category": "data", "text": "短い"}).status_code == 422
    assert gateway.admin.post(url, content=b"{oops", headers={"content-type": "application/json"}).status_code == 422
    response = gateway.admin.post(url, json={"title": "t", "category": "data", "text": "x", "extra": DESIGN})
    assert response.status_code == 422 and DESIGN[:20] not in response.text


def test_exclusions_and_record_sets(gateway: Gateway) -> None:
    agreement_id = agreement(gateway)
    excluded = gateway.admin.post(f"/admin/v1/agreements/{agreement_id}/exclusions", json={
        "text": "蒸留は広く知られた手法であり、論文として公開されている。", "reason": "public_at_disclosure"})
    assert excluded.status_code == 201 and excluded.json()["reason"] == "public_at_disclosure"
    assert gateway.admin.post(f"/admin/v1/agreements/{agreement_id}/exclusions", json={
        "text": "x", "reason": "because"}).status_code == 422
    csv_bytes = "顧客名,住所,電話\n山田商事,大阪府大阪市北区梅田1-2-3,06-1234-5678\n".encode()
    created = gateway.admin.post(f"/admin/v1/agreements/{agreement_id}/record-sets",
                                 files={"file": ("customers.csv", io.BytesIO(csv_bytes), "text/csv")},
                                 data={"columns": '["顧客名", "住所", "電話"]', "min_cells": "2"})
    assert created.status_code == 201, created.text
    assert created.json()["rows"] == 1 and created.json()["columns"] == ["顧客名", "住所", "電話"]
    assert "山田商事".encode() not in stored_bytes(gateway)
    wrong = gateway.admin.post(f"/admin/v1/agreements/{agreement_id}/record-sets",
                               files={"file": ("customers.csv", io.BytesIO(csv_bytes), "text/csv")},
                               data={"columns": '["氏名"]'})
    assert wrong.status_code == 422
    listed = gateway.admin.get(f"/admin/v1/agreements/{agreement_id}/record-sets").json()["data"]
    assert len(listed) == 1 and "cells" not in listed[0]


def test_registration_needs_legal_or_admin(gateway: Gateway) -> None:
    agreement_id = agreement(gateway)
    token = gateway.admin.post("/admin/v1/tokens", json={"role": "auditor"}).json()["token"]
    response = httpx.post(f"{gateway.url}/admin/v1/agreements/{agreement_id}/items", json={
        "title": "t", "category": "data", "text": DESIGN}, headers={"authorization": f"Bearer {token}"})
    assert response.status_code == 403
