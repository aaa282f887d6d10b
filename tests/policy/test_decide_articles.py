"""One test per article rule of PRODUCT.md that `decide()` enforces, under the shipped default policy."""

from __future__ import annotations

import datetime
from dataclasses import replace

import pytest

from gateway.decide import decide, evaluate
from gateway.domain import Category, ConsentPurpose, DecisionKind, Destination, Endpoint, Principal
from gateway.policy import Policy, agreement_period, policy_from_dict

from .conftest import (
    FORECAST, INTERNAL, ITEMS, ML_ENGINEER, OPENAI, SALES, SPEECH, TRAINER, UTC, consent, make_input, match,
    with_item,
)


def at(year: int, month: int, day: int) -> datetime.datetime:
    return datetime.datetime(year, month, day, 12, tzinfo=UTC)


def test_when_no_match_then_allow(default_policy: Policy) -> None:
    decision = decide(make_input(), default_policy)
    assert decision.kind is DecisionKind.ALLOW
    assert decision.code is None and decision.matches == ()


# Article 11: term and survival.

def test_article_11_period_is_term_then_survival() -> None:
    period = agreement_period(FORECAST)
    assert period.starts == datetime.datetime(2026, 4, 1, tzinfo=UTC)
    assert period.term_ends == datetime.datetime(2028, 4, 1, tzinfo=UTC)
    assert period.survival_ends == datetime.datetime(2031, 4, 1, tzinfo=UTC)


def test_article_11_termination_shortens_the_term_and_survival_follows() -> None:
    terminated = replace(FORECAST, terminated_at=at(2026, 9, 30))
    period = agreement_period(terminated)
    assert period.term_ends == at(2026, 9, 30)
    assert period.survival_ends == at(2029, 9, 30)


@pytest.mark.parametrize(("now", "kind"), [
    (at(2026, 3, 31), DecisionKind.ALLOW),  # before the effective date
    (at(2026, 4, 1), DecisionKind.CONSENT_REQUIRED),
    (at(2029, 6, 1), DecisionKind.CONSENT_REQUIRED),  # term over, obligations survive (11(2))
    (at(2031, 3, 31), DecisionKind.CONSENT_REQUIRED),
    (at(2031, 4, 1), DecisionKind.ALLOW),  # survival ended
])
def test_article_11_material_counts_from_effective_date_until_survival_ends(
        default_policy: Policy, now: datetime.datetime, kind: DecisionKind) -> None:
    decision = decide(make_input(match("itm_arch"), now=now), default_policy)
    assert decision.kind is kind


def test_when_survival_ended_then_allow_and_the_reason_is_kept(default_policy: Policy) -> None:
    ended = replace(SPEECH, terminated_at=at(2025, 12, 1))  # survival 2 years: until 2027-12-01
    result = evaluate(make_input(match("itm_asr_api"), agreements=(FORECAST, ended), now=at(2028, 1, 5)),
                      default_policy)
    assert result.decision.kind is DecisionKind.ALLOW
    assert result.decision.articles == ("11",)
    [dropped] = result.dropped
    assert (dropped.reason, dropped.article) == ("survival_ended", "11")


# Article 2(1)(6): provisional oral disclosures.

@pytest.mark.parametrize(("notice", "now", "kind"), [
    (None, at(2026, 6, 20), DecisionKind.CONSENT_REQUIRED),  # day 19 of 30: enforced provisionally
    (None, at(2026, 7, 2), DecisionKind.ALLOW),  # day 31 without written notice: lapsed
    (at(2026, 6, 25), at(2026, 9, 1), DecisionKind.CONSENT_REQUIRED),  # confirmed in writing on day 24
    (at(2026, 7, 10), at(2026, 9, 1), DecisionKind.ALLOW),  # notice came too late
])
def test_article_2_1_6_provisional_item_lapses_without_timely_written_notice(
        default_policy: Policy, notice: datetime.datetime | None, now: datetime.datetime, kind: DecisionKind) -> None:
    items = with_item("itm_plan", category=Category.ORAL, provisional=True, disclosed_at=at(2026, 6, 1),
                      written_notice_at=notice)
    result = evaluate(make_input(match("itm_plan"), items=items, now=now), default_policy)
    assert result.decision.kind is kind
    if kind is DecisionKind.ALLOW:
        assert result.decision.articles == ("2(1)(6)",)
        assert result.dropped[0].reason == "provisional_lapsed"
    else:
        assert "2(1)(6)" in result.decision.articles


def test_article_2_1_6_window_comes_from_the_policy(default_policy: Policy) -> None:
    items = with_item("itm_plan", provisional=True, disclosed_at=at(2026, 6, 1))
    longer = policy_from_dict({**default_policy.model_dump(mode="json"), "provisional_window_days": 45})
    assert decide(make_input(match("itm_plan"), items=items, now=at(2026, 7, 10)), default_policy).kind \
        is DecisionKind.ALLOW
    assert decide(make_input(match("itm_plan"), items=items, now=at(2026, 7, 10)), longer).kind \
        is DecisionKind.CONSENT_REQUIRED


# Article 3(3): need-to-know.

@pytest.mark.parametrize("destination", [OPENAI, INTERNAL])
def test_article_3_3_unauthorized_principal_is_blocked_even_internally(default_policy: Policy,
                                                                       destination: Destination) -> None:
    decision = decide(make_input(match("itm_sales"), principal=SALES, destination=destination), default_policy)
    assert (decision.kind, decision.code) == (DecisionKind.BLOCK, "not_authorized")
    assert decision.articles[0] == "3(3)"
    assert decision.agreements == ("agr_forecast",)


def test_article_3_3_listed_principal_id_is_authorized(default_policy: Policy) -> None:
    listed = replace(FORECAST, authorized_principals=("suzuki",))
    decision = decide(make_input(match("itm_sales"), principal=SALES, destination=INTERNAL,
                                 agreements=(listed, SPEECH)), default_policy)
    assert decision.kind is DecisionKind.ALLOW_MARKED


def test_article_3_3_agreement_listing_nobody_authorizes_everyone(default_policy: Policy) -> None:
    decision = decide(make_input(match("itm_asr_api"), principal=Principal("intern"), destination=INTERNAL),
                      default_policy)
    assert decision.kind is DecisionKind.ALLOW_MARKED


def test_article_3_3_consent_does_not_cure_missing_authorization(default_policy: Policy) -> None:
    decision = decide(make_input(match("itm_sales"), principal=SALES, consents=[consent()]), default_policy)
    assert decision.code == "not_authorized"


# Article 4(1): training.

@pytest.mark.parametrize(("destination", "endpoint", "training"), [
    (OPENAI, Endpoint.FINE_TUNING_JOBS, False),
    (OPENAI, Endpoint.FILES, True),  # upload with purpose fine-tune
    (TRAINER, Endpoint.CHAT_COMPLETIONS, False),  # trains_on_inputs
    (INTERNAL, Endpoint.FINE_TUNING_JOBS, False),  # 4(1) binds internal training as well
])
def test_article_4_1_training_needs_a_training_consent(default_policy: Policy, destination: Destination,
                                                        endpoint: Endpoint, training: bool) -> None:
    request = make_input(match("itm_sales"), destination=destination, endpoint=endpoint, training=training)
    result = evaluate(request, default_policy)
    assert (result.decision.kind, result.decision.code) == (DecisionKind.CONSENT_REQUIRED, "training_consent_required")
    assert result.decision.articles[0] == "4(1)"
    assert result.consent_scopes[0].purpose is ConsentPurpose.TRAINING


def test_article_4_1_training_consent_lets_it_through_marked(default_policy: Policy) -> None:
    granted = consent(destinations=("freetier",), purpose=ConsentPurpose.TRAINING)
    decision = decide(make_input(match("itm_sales"), destination=TRAINER, consents=[granted]), default_policy)
    assert (decision.kind, decision.consent_id) == (DecisionKind.ALLOW_MARKED, "cns_1")
    assert decision.articles == ("4(1)", "4(3)")


def test_article_4_1_inference_consent_is_not_a_training_consent(default_policy: Policy) -> None:
    granted = consent(destinations=("freetier",), purpose=ConsentPurpose.INFERENCE)
    decision = decide(make_input(match("itm_sales"), destination=TRAINER, consents=[granted]), default_policy)
    assert decision.code == "training_consent_required"


def test_article_4_1_strict_policy_blocks_training(strict_policy: Policy) -> None:
    decision = decide(make_input(match("itm_sales"), endpoint=Endpoint.FINE_TUNING_JOBS), strict_policy)
    assert (decision.kind, decision.code) == (DecisionKind.BLOCK, "training_consent_required")


# Article 4(2): third parties.

def test_article_4_2_third_party_is_held_for_consent(default_policy: Policy) -> None:
    result = evaluate(make_input(match("itm_arch")), default_policy)
    assert (result.decision.kind, result.decision.code) == (DecisionKind.CONSENT_REQUIRED, "consent_required")
    assert result.decision.articles == ("4(2)",)
    assert result.consent_possible


def test_article_4_2_strict_policy_blocks(strict_policy: Policy) -> None:
    result = evaluate(make_input(match("itm_arch")), strict_policy)
    assert (result.decision.kind, result.decision.code) == (DecisionKind.BLOCK, "blocked")
    assert not result.consent_possible and result.consent_scopes == ()


def test_article_4_2_permissive_policy_redacts_the_spans(permissive_policy: Policy) -> None:
    arch = match("itm_arch", start=0, end=300)
    result = evaluate(make_input(arch), permissive_policy)
    assert result.decision.kind is DecisionKind.REDACT
    assert result.redactions == (arch,)
    assert result.marked_agreements == ()  # nothing confidential left in what is forwarded


def test_article_4_2_inference_consent_lets_it_through_marked(default_policy: Policy) -> None:
    decision = decide(make_input(match("itm_arch"), consents=[consent()]), default_policy)
    assert (decision.kind, decision.consent_id, decision.code) == (DecisionKind.ALLOW_MARKED, "cns_1", None)
    assert decision.articles == ("4(2)", "4(3)")


# Article 4(3): internal use is marked; derived items are material too.

def test_article_4_3_internal_destination_allows_marked(default_policy: Policy) -> None:
    result = evaluate(make_input(match("itm_code"), destination=INTERNAL, principal=ML_ENGINEER), default_policy)
    assert result.decision.kind is DecisionKind.ALLOW_MARKED
    assert result.decision.articles == ("3(3)", "4(3)")
    assert result.marked_agreements == ("agr_forecast",)


def test_article_4_3_derived_item_is_enforced_like_its_agreement(default_policy: Policy) -> None:
    items = {**ITEMS, "itm_out": replace(ITEMS["itm_arch"], id="itm_out", derived_from="dec_earlier",
                                         title="")}
    result = evaluate(make_input(match("itm_out", agreement_id="agr_forecast"), items=items), default_policy)
    assert result.decision.kind is DecisionKind.CONSENT_REQUIRED
    assert "4(3)" in result.decision.articles
    assert result.verdicts[0].category == "derived"
