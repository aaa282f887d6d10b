"""The console end to end in headless Chromium, in Japanese and in English.

A person who never saw Shuhi registers an NDA and its material, issues a key, answers the
consent request an employee's refused call raised (through the official OpenAI SDK), sees the
retry pass and its audit entry, exports the month's log, verifies the chain and destroys the
material, from the console alone.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from typing import Any

import openai
import pytest
from playwright.sync_api import expect

from tests.conftest import Gateway
from tests.console.conftest import Shots, open_page

DESIGN = ("Auroraモデルは教師ネットワークの中間層表現を四つの小型生徒モデルへ段階的に蒸留する。"
          "蒸留温度は層ごとに0.7から2.5まで変化させ、生徒間の相互学習損失を重み0.3で加える。"
          "評価データは社内で収集した二十万件の対話ログで、個人情報はすべて仮名化されている。")
EXCERPT = DESIGN[20:95]
SPEC = ("The Borealis retrieval stack shards the vector index by tenant, keeps hot shards on NVMe, "
        "re-ranks the top two hundred candidates with a distilled cross-encoder and caches answers for ninety seconds.")
WORDS = {
    "ja": {"sign_in": "サインイン", "new_agreement": "契約を登録", "in_term": "有効期間中", "registered": "登録しました",
           "days_left": "あと 30 日", "approved": "承認しました", "verify_ok": "改ざんなし", "destroyed": "廃棄済み",
           "nav_audit": "監査ログ", "terminated": "解約済み", "certificate": "廃棄証明書", "consent_required": "同意待ち"},
    "en": {"sign_in": "Sign in", "new_agreement": "Register an agreement", "in_term": "In term", "registered": "Registered",
           "days_left": "30 days left", "approved": "Approved", "verify_ok": "Intact", "destroyed": "Destroyed",
           "nav_audit": "Audit log", "terminated": "Terminated", "certificate": "Certificate of destruction",
           "consent_required": "Consent required"},
}


def admin_token(gateway: Gateway) -> str:
    assert gateway.settings.admin_token is not None
    return gateway.settings.admin_token.get_secret_value()


def sign_in(page: Any, gateway: Gateway, token: str | None = None) -> None:
    page.goto(gateway.url + "/console/")
    page.fill("input[name=token]", token or admin_token(gateway))
    page.click("form.signin button[type=submit]")
    page.wait_for_selector("nav.sidebar")


def go(page: Any, route: str) -> None:
    page.goto(page.url.split("#")[0] + "#/" + route)
    page.wait_for_selector(f'.page[data-page="{route.split("/")[0]}"]')


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"次の文を英訳してください：{text}"}]


@pytest.mark.slow
@pytest.mark.parametrize("language", ["ja", "en"])
def test_register_consent_audit_export_verify_destroy(gateway: Gateway, browser: Any, shots: Shots, language: str,
                                                       tmp_path: Any) -> None:
    words = WORDS[language]
    errors: list[str] = []
    context, page = open_page(browser, language, errors)
    nda = f"nda-mirai-{language}"
    try:
        # Sign in: the page speaks the browser's language before anyone chooses.
        page.goto(gateway.url + "/console/")
        assert page.locator("html").get_attribute("lang") == language
        assert page.locator("form.signin button[type=submit]").inner_text() == words["sign_in"]
        shots(page, "sign-in")
        sign_in(page, gateway)

        # Register an agreement.
        go(page, "agreements")
        page.click('[data-action="new-agreement"]')
        dialog = page.locator("dialog")
        assert words["new_agreement"] in dialog.inner_text()
        dialog.locator("[name=id]").fill(nda)
        dialog.locator("[name=title]").fill("AI技術秘密保持契約（ミライ研究所）")
        dialog.locator("[name=counterparty]").fill("株式会社ミライ研究所")
        dialog.locator("[name=purpose]").fill("共同研究の可否の検討")
        dialog.locator("[name=effective_date]").fill("2026-04-01")
        dialog.locator("[name=authorized_groups]").fill("rd")
        shots(page, "agreement-form")
        dialog.locator("button[type=submit]").click()
        page.wait_for_url(re.compile(f"#/agreements/{nda}$"))
        page.wait_for_selector("svg.timeline")
        assert words["in_term"] in page.inner_text("main")
        shots(page, "agreement-timeline")
        stored = gateway.admin.get(f"/admin/v1/agreements/{nda}").json()
        assert stored["term_years"] == 3 and stored["survival_years"] == 2 and stored["authorized_groups"] == ["rd"]

        # Register material: text, two files at once, and an oral disclosure awaiting written notice.
        go(page, f"material/{nda}")
        form = page.locator('[data-form="register-text"]')
        form.locator("[name=title]").fill("Aurora 設計書")
        form.locator("[name=text]").fill(DESIGN)
        form.locator("button[type=submit]").click()
        page.wait_for_selector("tr[data-item]")
        upload = page.locator('[data-form="upload"]')
        upload.locator("input[type=file]").set_input_files([
            {"name": "borealis-spec.txt", "mimeType": "text/plain", "buffer": SPEC.encode()},
            {"name": "borealis-notes.md", "mimeType": "text/markdown", "buffer": ("# Notes\n\n" + SPEC[::-1]).encode()},
        ])
        upload.locator("button[type=submit]").click()
        expect(page.locator("tr[data-item]")).to_have_count(3)
        expect(page.locator("ul.uploads li[data-file] .upload-state.ok")).to_have_count(2)  # each file's progress, done
        assert all(v == "1" for v in page.locator("ul.uploads li[data-file] progress").evaluate_all(
            "bars => bars.map(b => String(b.value))"))
        form = page.locator('[data-form="register-text"]')
        form.locator("[name=title]").fill("口頭説明メモ")
        form.locator("[name=category]").select_option("oral")
        form.locator("[name=text]").fill("来期の蒸留計画では生徒モデルを六つに増やし、温度の上限を三まで上げる予定である。")
        form.locator("button[type=submit]").click()
        page.wait_for_selector("tr.row-provisional")
        assert words["days_left"] in page.locator("tr.row-provisional").inner_text()
        # The written notice of the oral disclosure arrives (Article 2(1)(6)).
        page.click('tr.row-provisional [data-action="confirm-notice"]')
        page.locator("dialog [name=on]").fill(dt.date.today().isoformat())
        page.locator("dialog button[type=submit]").click()
        expect(page.locator("tr.row-provisional")).to_have_count(0)
        # An exclusion (Article 2(2)) and a record set matched as exact data.
        exclusion = page.locator('[data-form="exclusion"]')
        exclusion.locator("[name=text]").fill("蒸留は広く知られた手法であり、教師モデルの出力を生徒モデルが模倣する。")
        exclusion.locator("[name=reason]").select_option("public_at_disclosure")
        exclusion.locator("button[type=submit]").click()
        page.wait_for_selector("tr[data-exclusion]")
        records = page.locator('[data-form="record-set"]')
        records.locator("input[type=file]").set_input_files([{"name": "customers.csv", "mimeType": "text/csv",
            "buffer": "氏名,メール,電話\n山田太郎,taro@example.co.jp,03-1234-5678\n佐藤花子,hanako@example.jp,06-9876-5432\n"
                      .encode()}])
        records.locator("[name=columns]").fill("氏名, メール")
        records.locator("button[type=submit]").click()
        page.wait_for_selector("tr[data-record-set]")
        assert "customers.csv" in page.inner_text("tr[data-record-set]")
        items = gateway.admin.get(f"/admin/v1/agreements/{nda}/items").json()["data"]
        assert sorted(i["title"] for i in items) == sorted(["Aurora 設計書", "borealis-spec.txt", "borealis-notes.md",
                                                           "口頭説明メモ"])
        assert all(i["fingerprints"] > 0 for i in items)
        assert [i["written_notice_at"][:10] for i in items if i["provisional"]] == [dt.date.today().isoformat()]
        assert gateway.admin.get(f"/admin/v1/agreements/{nda}/record-sets").json()["data"][0]["rows"] == 2
        for item in items:  # the fingerprint counts shown are the stored ones
            assert f"{item['fingerprints']:,}" in page.locator(f'tr[data-item="{item["id"]}"]').inner_text()
        shots(page, "material")

        # An employee and a key, issued from the console (shown once).
        go(page, "principals")
        page.click('[data-action="add-principal"]')
        page.locator("dialog [name=id]").fill("hanako@example.co.jp")
        page.locator("dialog [name=groups]").fill("rd")
        page.locator("dialog button[type=submit]").click()
        page.wait_for_selector("text=hanako@example.co.jp")
        shots(page, "principals")
        go(page, "keys/hanako@example.co.jp")
        page.click('[data-action="issue-key"]')
        key = page.locator("code.secret").inner_text()
        assert key.startswith("sk-shuhi-")
        shots(page, "key-shown-once")
        go(page, "keys")
        assert key not in page.inner_text("main")  # shown once only

        # The employee's call is refused and raises a consent request.
        client = gateway.closing(openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0, timeout=15))
        with pytest.raises(openai.PermissionDeniedError) as refused:
            client.chat.completions.create(model="gpt-4o-mini", messages=ask(EXCERPT))
        body = refused.value.body
        assert isinstance(body, dict) and body["code"] == "consent_required"
        request_id = body["consent_request_id"]

        # Legal approves it in two clicks (plus the evidence reference).
        go(page, "consents")
        card = page.locator(f'[data-request="{request_id}"]')
        assert "hanako@example.co.jp" in card.inner_text() and "fake-openai" in card.inner_text()
        shots(page, "consent-queue")
        card.locator('[data-action="approve"]').click()
        card.locator("[name=reference]").fill("ミライ研究所 同意書 2026-11-27")
        card.locator("[name=granted_by]").fill("法務部 佐藤")
        card.locator('[data-action="confirm-approve"]').click()
        page.wait_for_selector(f"text={words['approved']}")
        page.wait_for_selector("tr[data-consent]")
        assert page.locator(f'[data-request="{request_id}"]').count() == 0
        shots(page, "consent-approved")

        # The retry passes, marked confidential; its audit entry appears, with spans and never text.
        raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=ask(EXCERPT))
        decision_id = raw.headers["x-gateway-decision-id"]
        assert raw.headers["x-gateway-decision"] == "allow_marked"
        go(page, "audit")
        page.wait_for_selector(f'tr[data-id="{decision_id}"]')
        assert page.locator("tr[data-seq]").first.get_attribute("data-id").startswith("out_")  # newest first
        shots(page, "audit-latest")
        page.click(f'tr[data-id="{decision_id}"]')
        detail = page.locator("dialog [data-record]")
        assert detail.get_attribute("data-record") == decision_id
        text = detail.inner_text()
        assert "4(3)" in text and nda in text and "messages[0].content" in text and re.search(r"\[\d+, \d+\)", text)
        assert EXCERPT[:10] not in page.content()
        shots(page, "audit-detail")
        page.locator("dialog button[type=submit]").click()

        # Export the month's log (CSV and JSONL), then verify the chain: green.
        page.click('[data-action="this-month"]')
        page.wait_for_selector("tr[data-seq]")
        with page.expect_download() as caught:
            page.click('[data-action="export-csv"]')
        exported = tmp_path / caught.value.suggested_filename
        caught.value.save_as(exported)
        rows = list(csv.DictReader(io.StringIO(exported.read_text(encoding="utf-8"))))
        assert decision_id in {r["id"] for r in rows} and exported.name.endswith(".csv")
        assert EXCERPT[:10] not in exported.read_text(encoding="utf-8")
        with page.expect_download() as caught:
            page.click('[data-action="export-jsonl"]')
        lines = [json.loads(line) for line in caught.value.path().read_text(encoding="utf-8").splitlines()]
        assert any(r["id"] == decision_id and r["decision"] == "allow_marked" for r in lines)
        page.click('[data-action="verify"]')
        page.wait_for_selector('[data-verify="ok"]')
        assert words["verify_ok"] in page.inner_text('[data-verify="ok"]')
        shots(page, "audit-verified")

        # The dashboard counts what happened.
        go(page, "dashboard")
        assert page.inner_text('[data-kpi="consent_required"]') == "1"
        assert page.inner_text('[data-kpi="allow_marked"]') == "1"
        assert page.locator("svg.chart rect").count() >= 2
        shots(page, "dashboard")

        # The playground shows the matching spans and the decision for a chosen destination and principal.
        go(page, "playground")
        page.fill("[data-form=scan] [name=text]", f"前置き。{EXCERPT}。後書き。")
        page.select_option("[data-form=scan] [name=destination]", "fake-openai")
        page.select_option("[data-form=scan] [name=principal]", "hanako@example.co.jp")
        page.click("[data-form=scan] button[type=submit]")
        page.wait_for_selector("[data-decision]")
        dry_run = gateway.admin.post("/admin/v1/scan", json={
            "text": f"前置き。{EXCERPT}。後書き。", "destination": "fake-openai", "principal": "hanako@example.co.jp"}).json()
        assert page.get_attribute("[data-decision]", "data-decision") == dry_run["decision"]
        design_id = next(i["id"] for i in items if i["title"] == "Aurora 設計書")
        assert design_id in page.inner_text("main")
        assert page.locator("tr[data-match]").count() == len(dry_run["matches"])
        assert page.locator("[data-role=highlight] mark").count() >= 1
        shots(page, "playground")
        page.select_option("[data-form=scan] [name=principal]", "")  # nobody in particular, to an in-house model
        page.select_option("[data-form=scan] [name=destination]", "fake-anthropic")
        page.click("[data-form=scan] button[type=submit]")
        page.wait_for_selector('[data-decision="consent_required"]')
        assert words["consent_required"] in page.inner_text("[data-decision]")

        go(page, "destinations")
        assert "fake-openai" in page.inner_text("main")
        shots(page, "destinations")

        # Revoke the consent: the employee's call needs consent again.
        go(page, "consents")
        page.click('tr[data-consent] [data-action="revoke"]')
        page.locator("dialog button[type=submit]").click()
        expect(page.locator('tr[data-consent] [data-action="revoke"]')).to_have_count(0)
        assert all(c["revoked_at"] for c in gateway.admin.get("/admin/v1/consents").json()["data"])
        with pytest.raises(openai.PermissionDeniedError) as again:
            client.chat.completions.create(model="gpt-4o-mini", messages=ask(EXCERPT))
        assert isinstance(again.value.body, dict) and again.value.body["code"] == "consent_required"
        shots(page, "consent-revoked")

        # Amend and terminate the agreement; the timeline follows.
        go(page, f"agreements/{nda}")
        page.click('[data-action="terminate"]')
        page.locator("dialog [name=terminated_at]").fill("2026-10-31")
        page.locator("dialog button[type=submit]").click()
        page.wait_for_selector(f"text={words['terminated']}")
        assert gateway.admin.get(f"/admin/v1/agreements/{nda}").json()["terminated_at"].startswith("2026-10-31")
        shots(page, "agreement-terminated")
        go(page, "agreements")
        assert words["terminated"] in page.inner_text(f'a[href="#/agreements/{nda}"] >> xpath=ancestor::tr')
        shots(page, "agreements")

        # Destroy the material; the certificate shows and opens printable.
        go(page, "destruction")
        page.locator(f'tr[data-agreement="{nda}"] [data-action="destroy"]').click()
        page.locator("dialog [name=requested_by]").fill("株式会社ミライ研究所 法務部")
        page.locator("dialog [name=reason]").fill("契約終了に伴う廃棄の依頼")
        page.locator("dialog [name=confirm_id]").fill(nda)
        shots(page, "destruction-confirm")
        page.locator("dialog button[type=submit]").click()
        page.wait_for_selector("[data-certificate]")
        certificate_id = page.get_attribute("[data-certificate]", "data-certificate")
        assert words["certificate"] in page.inner_text("main") and words["destroyed"] in page.inner_text("main")
        shots(page, "destruction-certificate")
        with context.expect_page() as opened:
            page.click('[data-action="print"]')
        printable = opened.value
        printable.wait_for_load_state()
        assert certificate_id in printable.content() and "第8条" in printable.content()
        shots(printable, "certificate-printable")
        assert gateway.admin.get(f"/admin/v1/agreements/{nda}/items").json()["data"] == []
        assert errors == []
    finally:
        context.close()
