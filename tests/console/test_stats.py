"""`GET /admin/v1/stats` (the dashboard's figures) and the console's own routes, over real HTTP."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import openai
import pytest

from gateway import audit
from gateway.storage import audit_log
from gateway.storage.database import open_engine
from tests.conftest import Gateway

DESIGN = ("Auroraモデルは教師ネットワークの中間層表現を四つの小型生徒モデルへ段階的に蒸留する。"
          "蒸留温度は層ごとに0.7から2.5まで変化させ、生徒間の相互学習損失を重み0.3で加える。")
NDA = {"id": "nda-stats", "title": "AI技術秘密保持契約", "counterparty": "株式会社ミライ研究所", "purpose": "検討",
       "effective_date": "2026-04-01", "term_years": 3, "survival_years": 2}


def token_for(gateway: Gateway, role: str) -> str:
    made = gateway.admin.post("/admin/v1/tokens", json={"role": role})
    assert made.status_code == 201, made.text
    return str(made.json()["token"])


def test_stats_count_decisions_by_day_and_kind_top_agreements_and_pending(gateway: Gateway) -> None:
    assert gateway.admin.post("/admin/v1/agreements", json=NDA).status_code == 201
    assert gateway.admin.post(f"/admin/v1/agreements/{NDA['id']}/items",
                              json={"title": "設計書", "category": "ai_technology", "text": DESIGN}).status_code == 201
    client = gateway.closing(openai.OpenAI(base_url=gateway.url + "/v1", api_key=gateway.employee(), max_retries=0))
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "今日の天気は？"}])
    for _ in range(2):
        with pytest.raises(openai.PermissionDeniedError):
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": DESIGN[10:90]}])

    stats = gateway.admin.get("/admin/v1/stats", params={"days": 7}).json()
    today = dt.datetime.now(dt.UTC).date().isoformat()
    assert [d["date"] for d in stats["days"]][-1] == today and len(stats["days"]) == 7
    assert stats["days"][-1] == {"date": today, "allow": 1, "allow_marked": 0, "redact": 0, "consent_required": 2,
                                 "block": 0}
    assert sum(d["allow"] + d["consent_required"] for d in stats["days"][:-1]) == 0
    assert stats["totals"]["consent_required"] == 2 and stats["totals"]["allow"] == 1
    assert stats["top_agreements"] == [{"agreement_id": NDA["id"], "title": NDA["title"],
                                        "counterparty": NDA["counterparty"], "decisions": 2}]
    # one principal asking twice for the same scope is one pending request
    assert stats["pending_consent_requests"] == {"total": 1,
                                                 "by_agreement": [{"agreement_id": NDA["id"], "pending": 1}]}
    audit_head = gateway.admin.get("/admin/v1/audit/verify").json()["head_seq"]
    assert stats["audit"]["head_seq"] == audit_head
    assert DESIGN[10:20] not in str(stats)
    # the record of the agreement's destruction names it too, but is no match
    assert gateway.admin.post(f"/admin/v1/agreements/{NDA['id']}/destroy",
                              json={"requested_by": "法務部", "reason": "契約終了"}).status_code == 201
    assert gateway.admin.get("/admin/v1/stats").json()["top_agreements"][0]["decisions"] == 2


def decision(at: dt.datetime, kind: str, agreement: str | None = None) -> dict[str, Any]:
    record = audit.prepare({"kind": "decision", "principal": "alice@example.co.jp", "decision": kind,
                            "agreements": [agreement] if agreement else None}, now=at)
    return record


def test_settled_days_are_counted_once_and_recounted_after_pruning(gateway: Gateway) -> None:
    now = dt.datetime.now(dt.UTC)
    old, recent = now - dt.timedelta(days=40), now - dt.timedelta(days=3)
    engine = open_engine(gateway.settings.database_url)
    try:
        audit_log.commit(engine, [decision(old, "block", "nda-old"), decision(old, "block", "nda-old"),
                                  decision(old, "allow"), decision(recent, "consent_required", NDA["id"])])
        by_date = {d["date"]: d for d in gateway.admin.get("/admin/v1/stats", params={"days": 60}).json()["days"]}
        assert by_date[old.date().isoformat()]["block"] == 2 and by_date[old.date().isoformat()]["allow"] == 1
        assert by_date[recent.date().isoformat()]["consent_required"] == 1
        # a new decision today shows at once; the settled days stay as counted
        client = gateway.closing(openai.OpenAI(base_url=gateway.url + "/v1", api_key=gateway.employee(),
                                               max_retries=0))
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "こんにちは"}])
        stats = gateway.admin.get("/admin/v1/stats", params={"days": 60}).json()
        assert stats["days"][-1]["allow"] == 1 and stats["totals"] == {
            "allow": 2, "allow_marked": 0, "redact": 0, "consent_required": 1, "block": 2}
        assert [(a["agreement_id"], a["decisions"]) for a in stats["top_agreements"]] == [
            ("nda-old", 2), (NDA["id"], 1)]
        # pruning moves the chain's anchor: what it removed is no longer counted
        assert audit_log.prune(engine, days=10)["deleted"] >= 3
        stats = gateway.admin.get("/admin/v1/stats", params={"days": 60}).json()
        assert stats["totals"] == {"allow": 1, "allow_marked": 0, "redact": 0, "consent_required": 1, "block": 0}
        assert [a["agreement_id"] for a in stats["top_agreements"]] == [NDA["id"]]
    finally:
        engine.dispose()


def test_stats_roles_and_bad_input(gateway: Gateway) -> None:
    for role in ("legal", "auditor"):
        bearer = {"Authorization": f"Bearer {token_for(gateway, role)}"}
        answer = httpx.get(gateway.url + "/admin/v1/stats", headers=bearer)
        assert answer.status_code == 200 and answer.json()["days"][-1]["allow"] == 0
    assert httpx.get(gateway.url + "/admin/v1/stats").status_code == 401
    for days in ("0", "367", "x"):
        answer = gateway.admin.get("/admin/v1/stats", params={"days": days})
        assert answer.status_code == 422 and answer.json()["error"]["code"] == "validation_error"


@pytest.mark.parametrize(("accept", "language"), [
    ("ja,en-US;q=0.9,en;q=0.8", "ja"), ("en-US,en;q=0.9,ja;q=0.8", "en"), ("fr-FR,ja;q=0.5", "ja"),
    ("de-DE", "en"), ("", "en"), ("en;q=0.2, ja;q=0.7", "ja"), ("ja;q=0", "en"),
])
def test_console_shell_speaks_the_language_the_browser_asks_for(gateway: Gateway, accept: str, language: str) -> None:
    answer = httpx.get(gateway.url + "/console/", headers={"Accept-Language": accept})
    assert answer.status_code == 200 and f'<html lang="{language}"' in answer.text
    assert "script-src 'self'" in answer.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]


def test_console_serves_only_its_shipped_files(gateway: Gateway) -> None:
    assert httpx.get(gateway.url + "/console").headers["location"] == "/console/"
    script = httpx.get(gateway.url + "/console/static/app.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert httpx.get(gateway.url + "/console/static/pages/audit.js").status_code == 200
    for path in ("/console/static/../routes.py", "/console/static/%2e%2e/routes.py", "/console/static/nope.js",
                 "/console/static/../../settings.py", "/console/static/"):
        answer = httpx.get(gateway.url + path)
        assert answer.status_code == 404 and answer.json()["error"]["code"] == "unknown_url", path


def test_console_session_names_the_role_and_refuses_bad_tokens(gateway: Gateway) -> None:
    assert gateway.admin.get("/console/session").json()["role"] == "admin"
    auditor = token_for(gateway, "auditor")
    session = httpx.get(gateway.url + "/console/session", headers={"Authorization": f"Bearer {auditor}"})
    assert session.json()["role"] == "auditor"
    refused = httpx.get(gateway.url + "/console/session", headers={"Authorization": "Bearer not-a-token"})
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_admin_token"
