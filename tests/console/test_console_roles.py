"""What each role sees in the console, the language switch, and a red chain verification."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from playwright.sync_api import expect
import sqlalchemy as sa

from gateway.storage.audit_log import audit_log
from gateway.storage.database import open_engine
from tests.conftest import Gateway
from tests.console.conftest import Shots, open_page
from tests.console.test_console_e2e import DESIGN, EXCERPT, ask, go, sign_in
from tests.console.test_stats import token_for

NDA = {"id": "nda-roles", "title": "AI技術秘密保持契約", "counterparty": "株式会社ミライ研究所", "purpose": "共同研究の検討",
       "effective_date": "2026-04-01", "term_years": 3, "survival_years": 2}


def nav_pages(page: Any) -> list[str]:
    return [str(a.get_attribute("data-page")) for a in page.locator("nav.sidebar a[data-page]").all()]


@pytest.fixture
def pending(gateway: Gateway) -> str:
    """An agreement with material and one consent request waiting."""
    assert gateway.admin.post("/admin/v1/agreements", json=NDA).status_code == 201
    gateway.admin.post(f"/admin/v1/agreements/{NDA['id']}/items",
                       json={"title": "設計書", "category": "ai_technology", "text": DESIGN}).raise_for_status()
    client = gateway.closing(openai.OpenAI(base_url=gateway.url + "/v1", api_key=gateway.employee(), max_retries=0))
    with pytest.raises(openai.PermissionDeniedError) as refused:
        client.chat.completions.create(model="gpt-4o-mini", messages=ask(EXCERPT))
    body = refused.value.body
    assert isinstance(body, dict)
    return str(body["consent_request_id"])


@pytest.mark.slow
def test_each_role_sees_only_what_it_may_do(gateway: Gateway, browser: Any, shots: Shots, pending: str) -> None:
    errors: list[str] = []
    context, page = open_page(browser, "en", errors)
    try:
        sign_in(page, gateway, token_for(gateway, "legal"))
        assert nav_pages(page) == ["dashboard", "agreements", "material", "consents", "destruction", "playground",
                                   "destinations", "principals"]
        go(page, "consents")
        assert page.locator(f'[data-request="{pending}"] [data-action="approve"]').count() == 1
        go(page, "agreements")
        assert page.locator('[data-action="new-agreement"]').count() == 1
        go(page, "principals")
        assert page.locator('[data-action="add-principal"]').count() == 0
        shots(page, "legal-principals")
        page.goto(page.url.split("#")[0] + "#/audit")  # not a legal page: the console shows the dashboard instead
        page.wait_for_selector('.page[data-page="dashboard"]')
        page.click("nav.sidebar button.btn-ghost")  # sign out
        page.wait_for_selector("form.signin")

        sign_in(page, gateway, token_for(gateway, "auditor"))
        assert nav_pages(page) == ["dashboard", "agreements", "material", "consents", "audit", "destruction",
                                   "destinations", "principals", "keys"]
        go(page, "consents")
        assert page.locator(f'[data-request="{pending}"]').count() == 1
        assert page.locator('[data-action="approve"]').count() == 0
        go(page, "agreements")
        assert page.locator('[data-action="new-agreement"]').count() == 0
        go(page, f"material/{NDA['id']}")
        assert page.locator('[data-form="upload"]').count() == 0 and page.locator("tr[data-item]").count() == 1
        go(page, "keys")
        assert page.locator('[data-action="issue-key"]').count() == 0
        shots(page, "auditor-keys")
        page.click("nav.sidebar button.btn-ghost")

        # Legal staff reject the request in two clicks, with a reason.
        sign_in(page, gateway, token_for(gateway, "legal"))
        go(page, "consents")
        card = page.locator(f'[data-request="{pending}"]')
        card.locator('[data-action="reject"]').click()
        card.locator("[name=reason]").fill("Outside the purpose of the agreement")
        card.locator('[data-action="confirm-reject"]').click()
        expect(page.locator(f'[data-request="{pending}"]')).to_have_count(0)
        assert "Rejected" in page.inner_text("main") and "Outside the purpose" in page.inner_text("main")
        assert gateway.admin.get(f"/admin/v1/consent-requests/{pending}").json()["status"] == "rejected"
        shots(page, "legal-rejected")
        assert errors == []
    finally:
        context.close()


@pytest.mark.slow
def test_language_switch_is_remembered(gateway: Gateway, browser: Any, shots: Shots) -> None:
    errors: list[str] = []
    context, page = open_page(browser, "en", errors)
    try:
        sign_in(page, gateway)
        assert page.inner_text('nav.sidebar a[data-page="consents"]').endswith("Consents")
        page.click("nav.sidebar .lang-switch button[lang=ja]")
        page.wait_for_selector('nav.sidebar a[data-page="consents"]:has-text("同意")')
        assert page.locator("html").get_attribute("lang") == "ja"
        page.reload()
        page.wait_for_selector("nav.sidebar")
        assert page.inner_text('nav.sidebar a[data-page="audit"]').endswith("監査ログ")
        assert "ダッシュボード" in page.inner_text("main h1")
        shots(page, "switched-to-japanese")
        assert errors == []
    finally:
        context.close()


@pytest.mark.slow
def test_verification_turns_red_when_a_record_was_edited(gateway: Gateway, browser: Any, shots: Shots,
                                                         pending: str) -> None:
    engine = open_engine(gateway.settings.database_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.update(audit_log).where(audit_log.c.seq == 2).values(decision="allow"))
    finally:
        engine.dispose()
    errors: list[str] = []
    context, page = open_page(browser, "ja", errors)
    try:
        sign_in(page, gateway)
        go(page, "audit")
        page.click('[data-action="verify"]')
        page.wait_for_selector('[data-verify="bad"]')
        assert "#2" in page.inner_text('[data-verify="bad"]') and "改ざんの疑い" in page.inner_text('[data-verify="bad"]')
        shots(page, "verify-red")
        assert errors == []
    finally:
        context.close()


@pytest.mark.slow
@pytest.mark.parametrize(("language", "shown", "hidden"), [("ja", "既にあります", "exists already"),
                                                           ("en", "exists already", "既にあります")],
                         ids=["ja", "en"])
def test_a_refused_change_is_explained_in_the_page_language(gateway: Gateway, browser: Any, shots: Shots,
                                                            language: str, shown: str, hidden: str) -> None:
    assert gateway.admin.post("/admin/v1/agreements", json=NDA).status_code == 201
    errors: list[str] = []
    context, page = open_page(browser, language, errors)
    try:
        sign_in(page, gateway)
        go(page, "agreements")
        page.click('[data-action="new-agreement"]')
        dialog = page.locator("dialog")
        for name in ("title", "counterparty", "purpose"):
            dialog.locator(f"[name={name}]").fill(str(NDA[name]))
        dialog.locator("[name=id]").fill(str(NDA["id"]))
        dialog.locator("button[type=submit]").click()
        toast = page.locator(".toast-bad")
        toast.wait_for()
        assert shown in toast.inner_text() and hidden not in toast.inner_text() and NDA["id"] in toast.inner_text()
        shots(page, "duplicate-agreement")
        assert [e for e in errors if "409" not in e] == []  # the browser logs the refused request itself
    finally:
        context.close()
