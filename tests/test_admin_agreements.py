"""Agreements and consents through the admin API, as legal staff use them."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import Gateway

NDA = {"id": "nda-aurora", "title": "AI技術秘密保持契約（Aurora）", "counterparty": "株式会社ミライ研究所",
       "purpose": "共同研究の可否の検討", "effective_date": "2026-04-01", "term_years": 3, "survival_years": 2,
       "authorized_groups": ["rd"]}


def legal_client(gateway: Gateway) -> httpx.Client:
    token = gateway.admin.post("/admin/v1/tokens", json={"role": "legal"}).json()["token"]
    return httpx.Client(base_url=gateway.url, headers={"authorization": f"Bearer {token}"})


def test_legal_staff_register_amend_and_terminate_an_agreement(gateway: Gateway) -> None:
    with legal_client(gateway) as legal:
        created = legal.post("/admin/v1/agreements", json=NDA)
        assert created.status_code == 201, created.text
        body: dict[str, Any] = created.json()
        assert body["title"] == NDA["title"] and body["authorized_groups"] == ["rd"]
        assert body["authorized_principals"] == [] and body["terminated_at"] is None
        assert legal.post("/admin/v1/agreements", json=NDA).status_code == 409
        amended = legal.patch("/admin/v1/agreements/nda-aurora", json={"terminated_at": "2027-01-31T00:00:00Z"})
        assert amended.status_code == 200 and amended.json()["terminated_at"].startswith("2027-01-31T00:00:00")
        assert legal.get("/admin/v1/agreements/nda-aurora").json()["terminated_at"] is not None
        assert legal.patch("/admin/v1/agreements/nope", json={"title": "x"}).status_code == 404
        assert legal.patch("/admin/v1/agreements/nda-aurora", json={}).status_code == 422
        assert legal.patch("/admin/v1/agreements/nda-aurora", json={"title": None}).status_code == 422
        generated = legal.post("/admin/v1/agreements", json={k: v for k, v in NDA.items() if k != "id"})
        assert generated.status_code == 201 and generated.json()["id"].startswith("agr_")
        assert [a["id"] for a in legal.get("/admin/v1/agreements").json()["data"]][-1] == "nda-aurora"


def test_auditor_reads_but_cannot_create(gateway: Gateway) -> None:
    token = gateway.admin.post("/admin/v1/tokens", json={"role": "auditor"}).json()["token"]
    with httpx.Client(base_url=gateway.url, headers={"authorization": f"Bearer {token}"}) as auditor:
        assert auditor.post("/admin/v1/agreements", json=NDA).status_code == 403
        assert auditor.get("/admin/v1/agreements").status_code == 200


def test_invalid_agreements_are_422(gateway: Gateway) -> None:
    for broken in ({**NDA, "effective_date": "2026-13-01"}, {**NDA, "term_years": -1}, {**NDA, "title": ""},
                   {**NDA, "surprise": 1}, {k: v for k, v in NDA.items() if k != "purpose"}):
        assert gateway.admin.post("/admin/v1/agreements", json=broken).status_code == 422


def test_consent_lifecycle(gateway: Gateway) -> None:
    with legal_client(gateway) as legal:
        legal.post("/admin/v1/agreements", json=NDA)
        consent = {"agreement_id": "nda-aurora", "destinations": ["fake-openai"], "purpose": "inference",
                   "valid_until": "2027-03-31T00:00:00Z", "granted_by": "法務部 山田",
                   "evidence": {"reference": "同意書 2026-05-10 第12号", "sha256": "ab" * 32}}
        created = legal.post("/admin/v1/consents", json=consent)
        assert created.status_code == 201, created.text
        assert created.json()["evidence"] == consent["evidence"] and created.json()["revoked_at"] is None
        consent_id = created.json()["id"]
        assert legal.get("/admin/v1/consents", params={"agreement_id": "nda-aurora"}).json()["data"][0]["id"] == consent_id
        revoked = legal.delete(f"/admin/v1/consents/{consent_id}")
        assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
        active = legal.get("/admin/v1/consents", params={"include_revoked": "false"}).json()["data"]
        assert active == []
        assert legal.post("/admin/v1/consents", json={**consent, "agreement_id": "missing"}).status_code == 404
        backwards = {**consent, "valid_from": "2027-04-01T00:00:00Z"}
        assert legal.post("/admin/v1/consents", json=backwards).status_code == 422
        assert legal.post("/admin/v1/consents", json={**consent, "item_ids": ["item_x"]}).status_code == 422
        assert legal.post("/admin/v1/consents", json={**consent, "purpose": "marketing"}).status_code == 422
        assert legal.get("/admin/v1/consent-requests", params={"status": "pending"}).json() == {
            "data": [], "next_cursor": None}
        assert legal.post("/admin/v1/consent-requests/creq_x/approve", json={
            "evidence": {"reference": "x"}, "granted_by": "y"}).status_code == 404
