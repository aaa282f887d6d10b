"""Article 8 end to end: material, derived items, exclusions and record sets are destroyed and certified.

Employees call through the official OpenAI SDK; legal staff destroy through the admin API; the
store, the audit chain and the printable certificate are then inspected directly.
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import openai
import orjson
import pytest
import sqlalchemy as sa

from gateway.app import ShuhiApp, create_app
from gateway.demo.upstream import UpstreamServer
from gateway.destroy import content_sha256
from gateway.routes.admin.destruction import router as destruction_router
from gateway.storage import audit_log
from gateway.storage.database import open_engine
from gateway.storage.destruction import destruction_certificates
from gateway.storage.tables import agreements, consent_requests, exclusions, items, record_sets
from tests.conftest import ADMIN_TOKEN, UPSTREAM_KEYS, Gateway, ServerThread, eventually, gateway_settings
from tests.test_articles_e2e import DESIGN, EXCERPT

NDA: dict[str, Any] = {"id": "nda-hikari", "title": "AI技術秘密保持契約（ヒカリ技研）", "counterparty": "ヒカリ技研株式会社",
       "purpose": "推論基盤の共同評価", "effective_date": "2026-04-01", "term_years": 3, "survival_years": 2,
       "authorized_groups": ["rd"]}
TITLE = 'Aurora <設計書> & "v2"'  # every value in the printable certificate is escaped
MANUAL = ("推論ボードは液冷式で八枚構成とし、各ボードの消費電力を毎秒計測して冷却水の流量を自動で調整する。"
          "量子化は四ビットで、精度低下は社内評価で一ポイント未満に抑えられている。").encode()
RECORDS = "顧客名,住所,電話\n山田商事,大阪府大阪市北区梅田1-2-3,06-1234-5678\n".encode()
ROW_PROMPT = "山田商事（大阪府大阪市北区梅田1-2-3）に電話してください"
PUBLIC = DESIGN[:60]
GENERATED = ("The Aurora distillation schedule raises the temperature layer by layer and adds a mutual "
             "learning loss between the four students, weighted at three tenths.")
DESTROY = {"requested_by": "ヒカリ技研 法務部 田中", "reason": "契約終了に伴う開示者からの廃棄要求"}
ROUTE = "/admin/v1/agreements/{agreement_id}/destroy"


def serve(database_url: str, upstream: UpstreamServer) -> tuple[ServerThread, ShuhiApp]:
    """A gateway with the destruction routes, whether or not the admin API mounts them already."""
    app = create_app(gateway_settings(database_url, upstream), environ=dict(UPSTREAM_KEYS))
    if not any(getattr(route, "path", None) == ROUTE for route in app.admin.routes):
        app.admin.include_router(destruction_router, prefix="/admin/v1")
    server = ServerThread(app)
    server.start()
    return server, app


@pytest.fixture
def gateway(database_url: str, upstream: UpstreamServer) -> Iterator[Gateway]:
    server, _ = serve(database_url, upstream)
    admin = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10)
    made = Gateway(url=server.url, settings=gateway_settings(database_url, upstream), admin=admin,
                   upstream=upstream, clients=[])
    try:
        yield made
    finally:
        for client in made.clients:
            client.close()
        admin.close()
        server.stop()


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    made = open_engine(database_url)
    yield made
    made.dispose()


def token(gateway: Gateway, role: str) -> httpx.Client:
    secret = gateway.admin.post("/admin/v1/tokens", json={"role": role}).json()["token"]
    client = httpx.Client(base_url=gateway.url, headers={"authorization": f"Bearer {secret}"}, timeout=10)
    gateway.closing(client)
    return client


def chat(gateway: Gateway, key: str, model: str, text: str) -> Any:
    client = gateway.closing(openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0, timeout=15))
    return client.chat.completions.with_raw_response.create(model=model, messages=[{"role": "user", "content": text}])


def refused(gateway: Gateway, key: str, text: str) -> str:
    with pytest.raises(openai.PermissionDeniedError) as caught:
        chat(gateway, key, "gpt-4o-mini", text)
    body = caught.value.body
    assert isinstance(body, dict) and body["type"] == "confidentiality_violation"
    return str(body["code"])


def passes(gateway: Gateway, key: str, text: str) -> None:
    """Forwarded, unmarked, and decided on no match of the destroyed agreement (personal data in the text
    may still be redacted under Article 2(1)(4): that is the PII policy, not the destroyed material)."""
    raw = chat(gateway, key, "gpt-4o-mini", text)
    assert raw.headers["x-gateway-decision"] in ("allow", "redact") and "x-confidential" not in raw.headers
    assert "confidentiality" not in raw.http_response.json()
    decided = gateway.admin.get("/admin/v1/audit", params={"agreement_id": NDA["id"], "kind": "decision", "limit": 1000}).json()
    assert raw.headers["x-gateway-decision-id"] not in {r["id"] for r in decided["data"]}


def register(gateway: Gateway) -> dict[str, Any]:
    """An agreement with a text item, a file item, an exclusion, a record set and a derived item."""
    admin = gateway.admin
    assert admin.post("/admin/v1/agreements", json=NDA).status_code == 201
    text_item = admin.post(f"/admin/v1/agreements/{NDA['id']}/items", json={
        "title": TITLE, "category": "ai_technology", "text": DESIGN, "terms": ["Aurora-Distill"]}).json()
    file_item = admin.post(f"/admin/v1/agreements/{NDA['id']}/items", data={"title": "推論ボード仕様",
                           "category": "ai_technology"}, files={"file": ("board.txt", io.BytesIO(MANUAL), "text/plain")})
    assert file_item.status_code == 201, file_item.text
    exclusion = admin.post(f"/admin/v1/agreements/{NDA['id']}/exclusions",
                           json={"text": PUBLIC, "reason": "public_at_disclosure"})
    assert exclusion.status_code == 201, exclusion.text
    record_set = admin.post(f"/admin/v1/agreements/{NDA['id']}/record-sets",
                            files={"file": ("customers.csv", io.BytesIO(RECORDS), "text/csv")},
                            data={"columns": '["顧客名", "住所", "電話"]', "min_cells": "2"})
    assert record_set.status_code == 201, record_set.text
    admin.post("/admin/v1/destinations", json={"id": "internal-llm", "base_url": gateway.upstream.openai_base_url,
                                               "api_format": "openai", "models": ["in-house"], "third_party": False})
    key = gateway.employee("hanako@example.co.jp", ("rd",))
    gateway.queue({"kind": "reply", "text": GENERATED})  # Article 4(3): the marked answer becomes a derived item
    marked = chat(gateway, key, "in-house", EXCERPT).http_response.json()["confidentiality"]
    assert marked["derived_item_id"]
    return {"key": key, "text_item": text_item, "file_item": file_item.json(), "record_set": record_set.json(),
            "exclusion": exclusion.json(), "derived_id": marked["derived_item_id"], "decision_id": marked["decision_id"]}


def stored(engine: sa.Engine, table: sa.Table, agreement_id: str) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(table).where(table.c.agreement_id == agreement_id)).all())


def test_destroyed_material_no_longer_matches_and_is_certified(gateway: Gateway, engine: sa.Engine) -> None:
    setup = register(gateway)
    key = setup["key"]
    for text in (EXCERPT, MANUAL.decode()[10:80], GENERATED, ROW_PROMPT):
        assert refused(gateway, key, text) in ("consent_required", "block")
    legal = token(gateway, "legal")

    response = legal.post(f"/admin/v1/agreements/{NDA['id']}/destroy", json=DESTROY)
    assert response.status_code == 201, response.text
    cert = response.json()

    for text in (EXCERPT, MANUAL.decode()[10:80], GENERATED, ROW_PROMPT):  # at once, in this process
        passes(gateway, key, text)
    assert cert["certificate_id"].startswith("dcert_") and cert["agreement_id"] == NDA["id"]
    assert cert["requested_by"] == DESTROY["requested_by"] and cert["reason"] == DESTROY["reason"]
    text_item, file_item = setup["text_item"], setup["file_item"]
    assert [(i["id"], i["title"], i["sha256"], i["fingerprints"]) for i in cert["items"]] == [
        (text_item["id"], TITLE, text_item["sha256"], text_item["fingerprints"]),
        (file_item["id"], "推論ボード仕様", hashlib.sha256(MANUAL).hexdigest(), file_item["fingerprints"])]
    assert file_item["sha256"] == hashlib.sha256(MANUAL).hexdigest()
    derived = gateway.admin.get(f"/admin/v1/items/{setup['derived_id']}")
    assert derived.status_code == 404  # gone with the rest
    [derived_entry] = cert["derived_items"]
    assert derived_entry["id"] == setup["derived_id"] and derived_entry["derived_from"] == setup["decision_id"]
    assert len(derived_entry["sha256"]) == 64 and derived_entry["fingerprints"] > 0
    assert cert["record_sets"] == [{"id": setup["record_set"]["id"], "filename": "customers.csv",
                                    "sha256": hashlib.sha256(RECORDS).hexdigest(), "rows": 1, "columns": 3}]
    assert cert["exclusions"] == 1 and cert["terms_removed"] == 1
    assert cert["fingerprints_removed"] == (text_item["fingerprints"] + file_item["fingerprints"]
                                            + derived_entry["fingerprints"])
    assert cert["agreement"]["counterparty"] == NDA["counterparty"]
    assert cert["destroyed_at"] and gateway.admin.get(f"/admin/v1/agreements/{NDA['id']}").json()["destroyed_at"]

    # the store keeps the agreement, consent requests and audit log, and nothing of the material
    for table in (items, exclusions, record_sets):
        assert stored(engine, table, NDA["id"]) == []
    with engine.connect() as conn:
        ids = [text_item["id"], file_item["id"], setup["derived_id"]]
        assert conn.execute(sa.select(sa.func.count()).select_from(items).where(items.c.id.in_(ids))).scalar() == 0
        assert conn.execute(sa.select(agreements.c.destroyed_at).where(agreements.c.id == NDA["id"])).scalar()
    assert stored(engine, consent_requests, NDA["id"])  # raised by the refusals above
    assert stored(engine, destruction_certificates, NDA["id"])[0].id == cert["certificate_id"]

    # the audit record was written before the answer, and the chain verifies up to the certificate's head
    with engine.connect() as conn:
        row = conn.execute(sa.select(audit_log.audit_log).where(audit_log.audit_log.c.id == cert["audit_record_id"])
                           ).one()
    assert row.hash == cert["audit_chain_head"] and row.kind == "admin"
    record = orjson.loads(row.canonical)
    assert record["action"] == "agreement.destroy" and record["target"] == NDA["id"]
    assert record["agreements"] == [NDA["id"]] and record["actor_role"] == "legal"
    assert record["details"] == {"certificate_id": cert["certificate_id"], "items": 2, "derived_items": 1,
                                 "record_sets": 1, "exclusions": 1, "fingerprints_removed": cert["fingerprints_removed"],
                                 "terms_removed": 1, "content_sha256": content_sha256(cert)}
    assert cert["content_sha256"] == content_sha256(cert)
    for secret in (EXCERPT[:20], DESIGN[:20], GENERATED[:30], "山田商事", DESTROY["reason"]):
        assert secret not in row.canonical
    verified = gateway.admin.get("/admin/v1/audit/verify", params={"expected_head": cert["audit_chain_head"]})
    if verified.status_code == 404:  # the audit router is not mounted in this build
        assert audit_log.verify(engine, expected_head=cert["audit_chain_head"])["ok"] is True
    else:
        assert verified.status_code == 200 and verified.json()["ok"] is True

    # the certificate can be fetched again, also by an auditor
    auditor = token(gateway, "auditor")
    assert auditor.get(f"/admin/v1/destruction-certificates/{cert['certificate_id']}").json() == cert
    assert auditor.get(f"/admin/v1/agreements/{NDA['id']}/destruction-certificate").json() == cert


def test_printable_certificate_is_bilingual_escaped_and_holds_no_material(gateway: Gateway) -> None:
    setup = register(gateway)
    cert = gateway.admin.post(f"/admin/v1/agreements/{NDA['id']}/destroy", json=DESTROY).json()
    page = gateway.admin.get(f"/admin/v1/destruction-certificates/{cert['certificate_id']}.html")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    html = page.text
    assert html == gateway.admin.get(f"/admin/v1/destruction-certificates/{cert['certificate_id']}",
                                     params={"format": "html"}).text
    assert html == gateway.admin.get(f"/admin/v1/agreements/{NDA['id']}/destruction-certificate",
                                     params={"format": "html"}).text
    assert "秘密情報廃棄証明書" in html and "Certificate of Destruction of Confidential Information" in html
    assert "@page" in html and "A4" in html and "第8条" in html and "Article 8" in html
    for value in (NDA["id"], NDA["title"], NDA["counterparty"], NDA["purpose"], NDA["effective_date"],
                  cert["certificate_id"], cert["audit_record_id"], cert["audit_chain_head"], cert["content_sha256"],
                  DESTROY["requested_by"], DESTROY["reason"], setup["derived_id"], "customers.csv",
                  *(entry["sha256"] for entry in cert["items"] + cert["derived_items"] + cert["record_sets"])):
        assert value in html, value
    assert "Aurora &lt;設計書&gt; &amp; &quot;v2&quot;" in html and TITLE not in html
    assert f"/admin/v1/audit/verify?expected_head={cert['audit_chain_head']}" in html
    for secret in (EXCERPT[:15], DESIGN[30:45], MANUAL.decode()[:15], GENERATED[:30], "山田商事", "06-1234-5678",
                   PUBLIC[:15], "Aurora-Distill"):
        assert secret not in html, secret


def test_second_destroy_unknown_agreement_and_new_material(gateway: Gateway) -> None:
    admin = gateway.admin
    assert admin.post("/admin/v1/agreements", json=NDA).status_code == 201
    first = admin.post(f"/admin/v1/agreements/{NDA['id']}/destroy", json=DESTROY)  # nothing registered yet: still certified
    assert first.status_code == 201 and first.json()["items"] == [] and first.json()["fingerprints_removed"] == 0
    again = admin.post(f"/admin/v1/agreements/{NDA['id']}/destroy", json=DESTROY)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "agreement_already_destroyed"
    assert again.json()["error"]["certificate_id"] == first.json()["certificate_id"]
    missing = admin.post("/admin/v1/agreements/nope/destroy", json=DESTROY)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "agreement_not_found"
    item = admin.post(f"/admin/v1/agreements/{NDA['id']}/items", json={"title": "t", "category": "data",
                                                                        "text": DESIGN})
    assert item.status_code == 422 and item.json()["error"]["code"] == "agreement_destroyed"
    exclusion = admin.post(f"/admin/v1/agreements/{NDA['id']}/exclusions", json={"text": PUBLIC,
                                                                                "reason": "became_public"})
    assert exclusion.status_code == 422
    record_set = admin.post(f"/admin/v1/agreements/{NDA['id']}/record-sets",
                            files={"file": ("c.csv", io.BytesIO(RECORDS), "text/csv")}, data={"columns": '["顧客名", "住所"]'})
    assert record_set.status_code == 422
    assert admin.post(f"/admin/v1/agreements/{NDA['id']}/destroy", json={"requested_by": "x"}).status_code == 422
    assert admin.get("/admin/v1/destruction-certificates/dcert_0000").status_code == 404
    assert admin.get("/admin/v1/destruction-certificates/dcert_0000.html").status_code == 404
    other = {**NDA, "id": "nda-other"}
    assert admin.post("/admin/v1/agreements", json=other).status_code == 201
    kept = admin.get("/admin/v1/agreements/nda-other/destruction-certificate")
    assert kept.status_code == 404 and kept.json()["error"]["code"] == "not_destroyed"
    assert admin.get("/admin/v1/agreements/nope/destruction-certificate").json()["error"]["code"] == \
        "agreement_not_found"


def test_concurrent_destroys_certify_once(gateway: Gateway, engine: sa.Engine) -> None:
    assert gateway.admin.post("/admin/v1/agreements", json=NDA).status_code == 201
    gateway.admin.post(f"/admin/v1/agreements/{NDA['id']}/items", json={"title": "t", "category": "ai_technology",
                                                                         "text": DESIGN})

    def attempt(_: int) -> httpx.Response:
        with httpx.Client(base_url=gateway.url, headers={"authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30) as c:
            return c.post(f"/admin/v1/agreements/{NDA['id']}/destroy", json=DESTROY)

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(attempt, range(4)))
    assert sorted(a.status_code for a in answers) == [201, 409, 409, 409]
    [winner] = [a.json() for a in answers if a.status_code == 201]
    assert {a.json()["error"]["certificate_id"] for a in answers if a.status_code == 409} == {winner["certificate_id"]}
    assert len(stored(engine, destruction_certificates, NDA["id"])) == 1
    assert audit_log.verify(engine, expected_head=winner["audit_chain_head"])["ok"] is True


def test_only_legal_or_admin_may_destroy(gateway: Gateway, engine: sa.Engine) -> None:
    assert gateway.admin.post("/admin/v1/agreements", json=NDA).status_code == 201
    gateway.admin.post(f"/admin/v1/agreements/{NDA['id']}/items", json={"title": "t", "category": "ai_technology",
                                                                         "text": DESIGN})
    auditor = token(gateway, "auditor")
    denied = auditor.post(f"/admin/v1/agreements/{NDA['id']}/destroy", json=DESTROY)
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "role_forbidden"
    assert httpx.post(gateway.url + f"/admin/v1/agreements/{NDA['id']}/destroy", json=DESTROY).status_code == 401
    assert len(stored(engine, items, NDA["id"])) == 1
    assert gateway.admin.get(f"/admin/v1/agreements/{NDA['id']}").json()["destroyed_at"] is None


def test_other_replicas_follow_the_destruction(database_url: str, upstream: UpstreamServer) -> None:
    servers = [serve(database_url, upstream)[0] for _ in range(2)]
    headers = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    try:
        a, b = (s.url for s in servers)
        httpx.post(a + "/admin/v1/principals", json={"id": "hanako", "groups": ["rd"]}, headers=headers)
        key = httpx.post(a + "/admin/v1/keys", json={"principal": "hanako"}, headers=headers).json()["key"]
        httpx.post(a + "/admin/v1/agreements", json=NDA, headers=headers)
        httpx.post(a + f"/admin/v1/agreements/{NDA['id']}/items", headers=headers,
                   json={"title": "設計書", "category": "ai_technology", "text": DESIGN})

        def status(url: str) -> int:
            return httpx.post(url + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"}, json={
                "model": "gpt-4o-mini", "messages": [{"role": "user", "content": EXCERPT}]}).status_code

        eventually(lambda: status(b) == 403, 2.0)
        assert httpx.post(a + f"/admin/v1/agreements/{NDA['id']}/destroy", json=DESTROY,
                          headers=headers).status_code == 201
        assert status(a) == 200
        eventually(lambda: status(b) == 200, 2.0)
    finally:
        for server in servers:
            server.stop()


@pytest.mark.parametrize("module", ["gateway.destroy", "gateway.certificate", "gateway.storage.destruction"])
def test_destruction_logic_knows_nothing_of_http(module: str) -> None:
    code = f"import sys, {module}; print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True).stdout.split())
    assert not loaded & {"fastapi", "starlette", "httpx", "aiohttp"}
