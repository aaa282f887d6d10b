"""Refusal messages and labels: both languages, agreement and article named, matched text never."""

from __future__ import annotations

import pytest

from gateway.decide import decide
from gateway.domain import Decision, DecisionKind, Endpoint
from gateway.policy import Policy, UnscannablePart, article_ja, policy_from_dict, render_label, render_refusal

from .conftest import FORECAST, SALES, SPEECH, make_input, match, pii_match

AGREEMENTS = {FORECAST.id: FORECAST, SPEECH.id: SPEECH}


@pytest.mark.parametrize(("article", "ja"), [
    ("4(2)", "第4条第2項"), ("2(1)(6)", "第2条第1項第6号"), ("11", "第11条"), ("weird", "weird"),
])
def test_article_ja_reads_like_a_japanese_contract(article: str, ja: str) -> None:
    assert article_ja(article) == ja


@pytest.mark.parametrize(("request_kwargs", "code", "article"), [
    ({}, "consent_required", "4(2)"),
    ({"principal": SALES}, "not_authorized", "3(3)"),
    ({"endpoint": Endpoint.FINE_TUNING_JOBS}, "training_consent_required", "4(1)"),
])
def test_refusal_message_names_agreement_and_article_in_both_languages(
        default_policy: Policy, request_kwargs: dict[str, object], code: str, article: str) -> None:
    decision = decide(make_input(match("itm_sales"), **request_kwargs), default_policy)  # type: ignore[arg-type]
    assert decision.code == code
    message = render_refusal(decision, AGREEMENTS, default_policy, destination="openai")
    ja, en = message.split(" / ", 1)
    assert "agr_forecast" in ja and "agr_forecast" in en
    assert article_ja(article) in ja and f"Article {article}" in en
    assert "北星リテール株式会社" in message
    assert any("\u3040" <= ch <= "\u30ff" for ch in ja)  # kana: the Japanese half is Japanese
    assert en.isascii() or "北星" in en


def test_blocked_message_names_the_destination(strict_policy: Policy) -> None:
    decision = decide(make_input(match("itm_asr_api")), strict_policy)
    message = render_refusal(decision, AGREEMENTS, strict_policy, destination="openai")
    assert "agr_speech" in message and "openai" in message and "第4条第2項" in message and "4(2)" in message


def test_unscannable_message_needs_no_agreement(default_policy: Policy) -> None:
    decision = decide(make_input(unscannable=[UnscannablePart("messages[0].content[1]", "audio")]), default_policy)
    message = render_refusal(decision, AGREEMENTS, default_policy, destination="openai")
    assert "openai" in message and "第4条第2項" in message and " / " in message


def test_pii_block_is_explained_without_an_agreement(strict_policy: Policy) -> None:
    decision = decide(make_input(pii_match("JP_MY_NUMBER")), strict_policy)
    message = render_refusal(decision, AGREEMENTS, strict_policy, destination="openai")
    assert "個人情報" in message and "personal data" in message and "第2条第1項第4号" in message
    assert "JP_MY_NUMBER" not in message


def test_when_an_agreement_and_pii_both_block_then_the_agreement_is_named(strict_policy: Policy) -> None:
    decision = decide(make_input(pii_match(), match("itm_asr_api")), strict_policy)
    assert decision.articles[0] == "4(2)"
    assert "agr_speech" in render_refusal(decision, AGREEMENTS, strict_policy, destination="openai")


def test_custom_template_is_used_and_cannot_reference_matched_text() -> None:
    policy = policy_from_dict({"messages": {"blocked": {
        "ja": "{agreement_id}（{article_ja}）により拒否", "en": "Refused under {agreement_id}, Article {article}"}}})
    decision = Decision("dec_1", DecisionKind.BLOCK, ("4(2)",), "blocked", agreements=("agr_speech",))
    assert render_refusal(decision, AGREEMENTS, policy) == \
        "agr_speech（第4条第2項）により拒否 / Refused under agr_speech, Article 4(2)"


def test_message_never_contains_the_matched_span(default_policy: Policy) -> None:
    decision = decide(make_input(match("itm_arch", start=17, end=342)), default_policy)
    message = render_refusal(decision, AGREEMENTS, default_policy)
    assert "342" not in message and "messages[1]" not in message


def test_unknown_agreement_renders_with_placeholders_filled(default_policy: Policy) -> None:
    decision = Decision("dec_2", DecisionKind.CONSENT_REQUIRED, ("4(2)",), "consent_required",
                        agreements=("agr_gone",))
    message = render_refusal(decision, {}, default_policy)
    assert "agr_gone" in message and "{" not in message


def test_label_only_when_the_policy_asks(default_policy: Policy, strict_policy: Policy) -> None:
    decision = Decision("dec_3", DecisionKind.ALLOW_MARKED, ("3(3)", "4(3)"), agreements=("agr_forecast",))
    assert render_label(decision, default_policy) is None
    label = render_label(decision, strict_policy)
    assert label is not None
    assert "agr_forecast" in label and "第4条第3項" in label and "Article 4(3)" in label
