"""The NDA's wire rules, one scenario per article, end to end through the official SDKs.

An agreement with an item of AI-technology material is registered; employees call
the gateway as they would call the provider; legal staff answer consent requests.
"""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.conftest import Gateway

DESIGN = ("Auroraモデルは教師ネットワークの中間層表現を四つの小型生徒モデルへ段階的に蒸留する。"
          "蒸留温度は層ごとに0.7から2.5まで変化させ、生徒間の相互学習損失を重み0.3で加える。"
          "評価データは社内で収集した二十万件の対話ログで、個人情報はすべて仮名化されている。")
EXCERPT = DESIGN[20:95]
NDA = {"id": "nda-mirai", "title": "AI技術秘密保持契約（ミライ研究所）", "counterparty": "株式会社ミライ研究所",
       "purpose": "共同研究の可否の検討", "effective_date": "2026-04-01", "term_years": 3, "survival_years": 2,
       "authorized_groups": ["rd"]}


@pytest.fixture
def setup(gateway: Gateway) -> dict[str, Any]:
    assert gateway.admin.post("/admin/v1/agreements", json=NDA).status_code == 201
    item = gateway.admin.post(f"/admin/v1/agreements/{NDA['id']}/items", json={
        "title": "Aurora 設計書", "category": "ai_technology", "text": DESIGN}).json()
    gateway.admin.post("/admin/v1/destinations", json={
        "id": "internal-llm", "base_url": gateway.upstream.openai_base_url, "api_format": "openai",
        "models": ["in-house"], "third_party": False})
    key = gateway.employee("hanako@example.co.jp", ("rd",))
    return {"item": item, "key": key}


def oai(gateway: Gateway, key: str) -> openai.OpenAI:
    return gateway.closing(openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0, timeout=15))


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": "あなたは研究開発の相談相手です。"},
            {"role": "user", "content": f"次の文を英訳してください：{text}"}]


def refused(gateway: Gateway, key: str, model: str, text: str) -> dict[str, Any]:
    with pytest.raises(openai.PermissionDeniedError) as caught:
        oai(gateway, key).chat.completions.create(model=model, messages=ask(text))
    error = caught.value.body
    assert isinstance(error, dict) and error["type"] == "confidentiality_violation"
    assert caught.value.response.headers["x-gateway-decision-id"] == error["decision_id"]
    return error


def test_clean_prompts_pass_unmarked(gateway: Gateway, setup: dict[str, Any]) -> None:
    raw = oai(gateway, setup["key"]).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=ask("来週の勉強会の議題を考えて"))
    assert raw.headers["x-gateway-decision"] == "allow" and "x-confidential" not in raw.headers
    assert "confidentiality" not in raw.http_response.json()


def test_article_4_2_consent_required_then_approved_retry_passes_marked(gateway: Gateway,
                                                                        setup: dict[str, Any]) -> None:
    error = refused(gateway, setup["key"], "gpt-4o-mini", EXCERPT)
    assert error["code"] == "consent_required" and error["articles"][0] == "4(2)"
    assert error["consent_request_id"].startswith("creq_")
    assert NDA["id"] in error["message"] and "4(2)" in error["message"] and "第4条" in error["message"]
    assert EXCERPT[:12] not in error["message"]
    match = error["matches"][0]
    assert match["agreement_id"] == NDA["id"] and match["item_id"] == setup["item"]["id"]
    assert match["location"] == "messages[1].content" and match["kind"] == "fingerprint"
    sent = ask(EXCERPT)[1]["content"]
    assert sent[match["start"]:match["end"]] in EXCERPT and match["end"] - match["start"] >= 30
    assert gateway.upstream_requests() == []  # nothing left the building

    pending = gateway.admin.get("/admin/v1/consent-requests", params={"status": "pending"}).json()["data"]
    assert [(r["id"], r["agreement_id"], r["destination"], r["purpose"], r["principal"]) for r in pending] == [
        (error["consent_request_id"], NDA["id"], "fake-openai", "inference", "hanako@example.co.jp")]
    approved = gateway.admin.post(f"/admin/v1/consent-requests/{error['consent_request_id']}/approve", json={
        "evidence": {"reference": "ミライ研究所 同意書 2026-11-27"}, "granted_by": "法務部 佐藤"})
    assert approved.status_code == 201, approved.text

    raw = oai(gateway, setup["key"]).chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=ask(EXCERPT))
    assert raw.headers["x-gateway-decision"] == "allow_marked"
    assert raw.headers["x-confidential"] == "true" and raw.headers["x-confidential-agreements"] == NDA["id"]
    marking = raw.http_response.json()["confidentiality"]
    assert marking["confidential"] is True and marking["article"] == "4(3)" and marking["agreements"] == [NDA["id"]]
    assert marking["decision_id"] == raw.headers["x-gateway-decision-id"]
    assert raw.parse().choices[0].message.content.startswith("echo: ")  # SDK still parses it

    consent_id = approved.json()["id"]
    assert gateway.admin.delete(f"/admin/v1/consents/{consent_id}").status_code == 200
    assert refused(gateway, setup["key"], "gpt-4o-mini", EXCERPT)["code"] == "consent_required"


def test_article_4_3_output_registered_as_derived_item_is_caught_elsewhere(gateway: Gateway,
                                                                          setup: dict[str, Any]) -> None:
    generated = ("The Aurora distillation schedule raises the temperature layer by layer and adds a mutual "
                 "learning loss between the four students, weighted at three tenths.")
    gateway.queue({"kind": "reply", "text": generated})
    raw = oai(gateway, setup["key"]).chat.completions.with_raw_response.create(model="in-house", messages=ask(EXCERPT))
    marking = raw.http_response.json()["confidentiality"]
    derived_id = marking["derived_item_id"]
    assert derived_id and raw.parse().choices[0].message.content == generated
    derived = gateway.admin.get(f"/admin/v1/items/{derived_id}").json()
    assert derived["agreement_id"] == NDA["id"] and derived["derived_from"] == marking["decision_id"]
    # the employee pastes the generated answer into a third-party service
    error = refused(gateway, setup["key"], "gpt-4o-mini", generated)
    assert error["matches"][0]["item_id"] == derived_id and error["code"] == "consent_required"


def test_article_3_3_need_to_know_applies_even_internally(gateway: Gateway, setup: dict[str, Any]) -> None:
    outsider = gateway.employee("taro@example.co.jp", ("sales",))
    error = refused(gateway, outsider, "in-house", EXCERPT)
    assert error["code"] == "not_authorized" and "3(3)" in error["articles"]
    raw = oai(gateway, setup["key"]).chat.completions.with_raw_response.create(model="in-house", messages=ask(EXCERPT))
    assert raw.headers["x-gateway-decision"] == "allow_marked" and raw.headers["x-confidential"] == "true"


def test_article_4_1_training_needs_training_consent(gateway: Gateway, setup: dict[str, Any], tmp_path) -> None:  # type: ignore[no-untyped-def]
    key = setup["key"]
    training = tmp_path / "train.jsonl"
    training.write_text('{"messages": [{"role": "user", "content": "要約して"}, '
                        f'{{"role": "assistant", "content": "{EXCERPT}"}}]}}\n', encoding="utf-8")
    with pytest.raises(openai.PermissionDeniedError) as caught:
        oai(gateway, key).files.create(file=training.read_bytes(), purpose="fine-tune")
    body = caught.value.body
    assert isinstance(body, dict) and body["code"] == "training_consent_required" and "4(1)" in body["articles"]
    assert body["matches"][0]["location"] == "file[0].messages[1].content"
    # a chat call to a destination that trains on its inputs is training too
    gateway.admin.post("/admin/v1/destinations", json={
        "id": "free-tier", "base_url": gateway.upstream.openai_base_url, "api_format": "openai",
        "models": ["free-model"], "third_party": True, "trains_on_inputs": True})
    assert refused(gateway, key, "free-model", EXCERPT)["code"] == "training_consent_required"
    # a job naming a file the gateway never saw cannot be vouched for
    with pytest.raises(openai.PermissionDeniedError) as caught:
        oai(gateway, key).fine_tuning.jobs.create(model="gpt-4o-mini", training_file="file-never-seen")
    assert isinstance(caught.value.body, dict) and caught.value.body["code"] == "unscannable_content"
    # a clean training file goes through, and its job inherits the clean scan
    clean = tmp_path / "clean.jsonl"
    clean.write_text('{"messages": [{"role": "user", "content": "挨拶して"}, {"role": "assistant", "content": "こんにちは"}]}\n',
                     encoding="utf-8")
    uploaded = oai(gateway, key).files.create(file=clean.read_bytes(), purpose="fine-tune")
    job = oai(gateway, key).fine_tuning.jobs.create(model="gpt-4o-mini", training_file=uploaded.id)
    assert job.training_file == uploaded.id


def test_article_11_material_of_an_expired_agreement_no_longer_counts(gateway: Gateway, setup: dict[str, Any]) -> None:
    old = {**NDA, "id": "nda-2015", "effective_date": "2015-01-01", "term_years": 3, "survival_years": 2,
           "authorized_groups": []}
    gateway.admin.post("/admin/v1/agreements", json=old)
    text = "旧契約の試作機は液冷式の推論ボードを八枚搭載し、消費電力を毎秒ごとに制御して冷却水の流量を最適化していた。"
    gateway.admin.post("/admin/v1/agreements/nda-2015/items", json={"title": "試作機", "category": "ai_technology",
                                                                    "text": text})
    reply = oai(gateway, setup["key"]).chat.completions.create(model="gpt-4o-mini", messages=ask(text))
    assert reply.choices[0].message.content and "echo" in reply.choices[0].message.content
    scan = gateway.admin.post("/admin/v1/scan", json={"text": text}).json()
    assert scan["decision"] == "allow" and scan["matches"] and scan["matches"][0]["reason"] == "survival_ended"


def test_article_2_1_6_oral_disclosure_lapses_without_written_notice(gateway: Gateway, setup: dict[str, Any]) -> None:
    spoken = "口頭で説明された次期モデルは、検索拡張と自己検証を組み合わせ、回答ごとに三回の再検索で根拠の整合性を確かめる。"
    disclosed = (dt.datetime.now(dt.UTC) - dt.timedelta(days=40)).isoformat()
    item = gateway.admin.post(f"/admin/v1/agreements/{NDA['id']}/items", json={
        "title": "口頭説明", "category": "oral", "text": spoken, "disclosed_at": disclosed}).json()
    scan = gateway.admin.post("/admin/v1/scan", json={"text": spoken}).json()
    assert scan["decision"] == "allow" and scan["matches"][0]["reason"] == "provisional_lapsed"
    recent = (dt.datetime.now(dt.UTC) - dt.timedelta(days=3)).isoformat()
    gateway.admin.delete(f"/admin/v1/items/{item['id']}")
    gateway.admin.post(f"/admin/v1/agreements/{NDA['id']}/items", json={
        "title": "口頭説明", "category": "oral", "text": spoken, "disclosed_at": recent})
    assert refused(gateway, setup["key"], "gpt-4o-mini", spoken)["code"] == "consent_required"


def test_article_2_2_exclusions_never_match(gateway: Gateway, setup: dict[str, Any]) -> None:
    public = DESIGN[:60]
    gateway.admin.post(f"/admin/v1/agreements/{NDA['id']}/exclusions", json={"text": public,
                                                                           "reason": "public_at_disclosure"})
    reply = oai(gateway, setup["key"]).chat.completions.with_raw_response.create(model="gpt-4o-mini",
                                                                                 messages=ask(public))
    assert reply.headers["x-gateway-decision"] == "allow"
    assert refused(gateway, setup["key"], "gpt-4o-mini", DESIGN[70:150])["code"] == "consent_required"


def test_encoded_material_is_caught_and_the_span_covers_the_blob(gateway: Gateway, setup: dict[str, Any]) -> None:
    blob = base64.b64encode(EXCERPT.encode()).decode()
    error = refused(gateway, setup["key"], "gpt-4o-mini", f"decode this: {blob}")
    sent = ask(f"decode this: {blob}")[1]["content"]
    match = error["matches"][0]
    assert sent[match["start"]:match["end"]] == blob


def test_anthropic_refusal_shape(gateway: Gateway, setup: dict[str, Any]) -> None:
    client = gateway.closing(anthropic.Anthropic(base_url=gateway.url, api_key=setup["key"], max_retries=0))
    with pytest.raises(anthropic.PermissionDeniedError) as caught:
        client.messages.create(model="claude-sonnet-4-6", max_tokens=64,
                               messages=[{"role": "user", "content": EXCERPT}])
    body = caught.value.body
    assert isinstance(body, dict) and body["type"] == "error"
    assert body["error"]["type"] == "confidentiality_violation" and body["error"]["code"] == "consent_required"


def test_streams_mark_the_closing_event(gateway: Gateway, setup: dict[str, Any]) -> None:
    key = setup["key"]
    chunks = list(oai(gateway, key).chat.completions.create(model="in-house", messages=ask(EXCERPT), stream=True))
    closing = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(closing) == 1
    marking = closing[0].model_extra["confidentiality"]  # type: ignore[index]
    assert marking["agreements"] == [NDA["id"]] and marking["derived_item_id"]
    assert all("confidentiality" not in (c.model_extra or {}) for c in chunks if c is not closing[0])
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("echo: ")
    derived = gateway.admin.get(f"/admin/v1/items/{marking['derived_item_id']}")
    assert derived.status_code == 200 and derived.json()["derived_from"] == marking["decision_id"]

    events = list(oai(gateway, key).responses.create(model="in-house", input=EXCERPT, stream=True))
    completed = [e for e in events if e.type == "response.completed"]
    assert completed[0].model_extra["confidentiality"]["agreements"] == [NDA["id"]]  # type: ignore[index]


def test_answer_that_contains_material_is_marked_even_when_the_prompt_did_not(gateway: Gateway,
                                                                              setup: dict[str, Any]) -> None:
    gateway.queue({"kind": "reply", "text": f"参考までに：{EXCERPT}"})
    raw = oai(gateway, setup["key"]).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=ask("蒸留について一般論を教えて"))
    assert raw.headers["x-gateway-decision"] == "allow" and raw.headers["x-confidential"] == "true"
    assert raw.http_response.json()["confidentiality"]["agreements"] == [NDA["id"]]


def test_redact_policy_forwards_placeholders(gateway: Gateway, setup: dict[str, Any]) -> None:
    policy = gateway.admin.get("/admin/v1/policy").json()
    policy["actions"]["default"]["third_party"] = "redact"
    policy["actions"].setdefault("ai_technology", {})["third_party"] = "redact"
    assert gateway.admin.put("/admin/v1/policy", json=policy).status_code == 200
    raw = oai(gateway, setup["key"]).chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=ask(EXCERPT))
    assert raw.headers["x-gateway-decision"] == "redact"
    forwarded = gateway.upstream_requests()[-1]["json"]["messages"][1]["content"]
    assert "[REDACTED:nda-mirai:fingerprint:1]" in forwarded and EXCERPT[10:40] not in forwarded
    assert gateway.admin.delete("/admin/v1/policy").status_code == 204
    assert gateway.admin.get("/admin/v1/policy").json()["actions"]["default"]["third_party"] != "redact"


def test_dry_run_scan_explains_without_forwarding(gateway: Gateway, setup: dict[str, Any]) -> None:
    response = gateway.admin.post("/admin/v1/scan", json={"text": f"前置き。{EXCERPT}", "destination": "fake-openai",
                                                        "principal": "hanako@example.co.jp"})
    body = response.json()
    assert body["decision"] == "consent_required" and body["consent_possible"] is True
    assert body["matches"][0]["item_id"] == setup["item"]["id"] and body["matches"][0]["counts"] is True
    assert 0 < body["matches"][0]["item_coverage"] <= 1
    assert gateway.upstream_requests() == []
    assert httpx.post(gateway.url + "/admin/v1/scan", json={"text": "x"}).status_code == 401
