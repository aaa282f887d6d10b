"""A consent lets a call through only for its agreement, items, destination, purpose and time."""

from __future__ import annotations

import datetime

import pytest

from gateway.decide import consent_scope, decide, evaluate
from gateway.domain import Consent, ConsentPurpose, DecisionKind, Endpoint
from gateway.policy import ConsentScope, Policy

from .conftest import ANTHROPIC, NOW, OPENAI, SALES, UTC, consent, make_input, match


def test_when_consent_covers_agreement_destination_and_time_then_allow_marked(default_policy: Policy) -> None:
    decision = decide(make_input(match("itm_arch"), match("itm_sales"), consents=[consent()]), default_policy)
    assert (decision.kind, decision.consent_id) == (DecisionKind.ALLOW_MARKED, "cns_1")


@pytest.mark.parametrize("granted", [
    pytest.param(consent(destinations=("anthropic",)), id="wrong destination"),
    pytest.param(consent(purpose=ConsentPurpose.TRAINING), id="wrong purpose"),
    pytest.param(consent(agreement_id="agr_speech"), id="other agreement"),
    pytest.param(consent(valid_until=datetime.datetime(2026, 6, 1, tzinfo=UTC)), id="expired"),
    pytest.param(consent(valid_until=NOW), id="expires exactly now"),
    pytest.param(consent(valid_from=datetime.datetime(2026, 7, 1, tzinfo=UTC)), id="not yet valid"),
    pytest.param(consent(revoked_at=datetime.datetime(2026, 6, 10, tzinfo=UTC)), id="revoked"),
    pytest.param(consent(item_ids=("itm_sales",)), id="item consent for another item"),
])
def test_when_consent_does_not_cover_the_call_then_still_held(default_policy: Policy, granted: Consent) -> None:
    decision = decide(make_input(match("itm_arch"), consents=[granted]), default_policy)
    assert (decision.kind, decision.code, decision.consent_id) == \
        (DecisionKind.CONSENT_REQUIRED, "consent_required", None)


def test_when_revocation_is_in_the_future_then_consent_still_applies(default_policy: Policy) -> None:
    granted = consent(revoked_at=datetime.datetime(2026, 7, 1, tzinfo=UTC))
    assert decide(make_input(match("itm_arch"), consents=[granted]), default_policy).kind is DecisionKind.ALLOW_MARKED


def test_when_consent_has_no_end_then_it_stays_valid(default_policy: Policy) -> None:
    granted = consent(valid_from=None, valid_until=None)
    later = datetime.datetime(2029, 1, 1, tzinfo=UTC)
    assert decide(make_input(match("itm_arch"), consents=[granted], now=later), default_policy).kind \
        is DecisionKind.ALLOW_MARKED


def test_when_item_consent_covers_only_one_of_two_matched_items_then_held(default_policy: Policy) -> None:
    granted = consent(item_ids=("itm_arch",))
    request = make_input(match("itm_arch"), match("itm_sales"), consents=[granted])
    result = evaluate(request, default_policy)
    assert result.decision.kind is DecisionKind.CONSENT_REQUIRED
    assert result.consent_scopes == (ConsentScope("agr_forecast", ("itm_arch", "itm_sales"), "openai",
                                                  ConsentPurpose.INFERENCE),)


def test_when_item_consent_lists_every_matched_item_then_allow_marked(default_policy: Policy) -> None:
    granted = consent(item_ids=("itm_arch", "itm_sales", "itm_plan"))
    decision = decide(make_input(match("itm_arch"), match("itm_sales"), consents=[granted]), default_policy)
    assert decision.kind is DecisionKind.ALLOW_MARKED


def test_when_match_names_no_item_then_only_an_agreement_wide_consent_covers_it(default_policy: Policy) -> None:
    term = match(None, agreement_id="agr_forecast", kind="term", category="ai_technology", end=12)
    item_scoped = consent(item_ids=("itm_arch",))
    assert decide(make_input(term, consents=[item_scoped]), default_policy).kind is DecisionKind.CONSENT_REQUIRED
    assert decide(make_input(term, consents=[consent()]), default_policy).kind is DecisionKind.ALLOW_MARKED


def test_when_consent_covers_one_agreement_then_the_other_still_decides(default_policy: Policy) -> None:
    request = make_input(match("itm_arch"), match("itm_asr_api"), consents=[consent()])
    result = evaluate(request, default_policy)
    assert result.decision.kind is DecisionKind.CONSENT_REQUIRED
    assert result.decision.agreements[0] == "agr_speech"
    assert [s.agreement_id for s in result.consent_scopes] == ["agr_speech"]


def test_when_consents_cover_both_agreements_then_allow_marked_naming_a_consent(default_policy: Policy) -> None:
    both = [consent(), consent("cns_2", agreement_id="agr_speech", destinations=("openai", "anthropic"))]
    decision = decide(make_input(match("itm_arch"), match("itm_asr_api"), consents=both), default_policy)
    assert decision.kind is DecisionKind.ALLOW_MARKED
    assert decision.consent_id in {"cns_1", "cns_2"}
    assert set(decision.agreements) == {"agr_forecast", "agr_speech"}


def test_consent_scope_names_agreement_items_destination_and_purpose(default_policy: Policy) -> None:
    request = make_input(match("itm_arch"), match("itm_code"), destination=ANTHROPIC)
    assert consent_scope(request, default_policy) == (
        ConsentScope("agr_forecast", ("itm_arch", "itm_code"), "anthropic", ConsentPurpose.INFERENCE),)


def test_consent_scope_for_training_asks_for_a_training_consent(default_policy: Policy) -> None:
    request = make_input(match("itm_sales"), endpoint=Endpoint.FINE_TUNING_JOBS)
    assert consent_scope(request, default_policy) == (
        ConsentScope("agr_forecast", ("itm_sales",), "openai", ConsentPurpose.TRAINING),)


def test_consent_scope_is_empty_when_another_agreement_blocks(default_policy: Policy) -> None:
    # suzuki is not authorized for the forecast NDA: no consent for the speech NDA would help.
    request = make_input(match("itm_sales"), match("itm_asr_api"), principal=SALES)
    assert consent_scope(request, default_policy) == ()
    assert consent_scope(make_input(match("itm_arch"), consents=[consent()]), default_policy) == ()


def test_when_consent_is_on_record_for_another_destination_then_openai_is_still_held(
        default_policy: Policy) -> None:
    granted = consent(destinations=("anthropic",))
    assert decide(make_input(match("itm_arch"), consents=[granted], destination=ANTHROPIC), default_policy).kind \
        is DecisionKind.ALLOW_MARKED
    assert decide(make_input(match("itm_arch"), consents=[granted], destination=OPENAI), default_policy).kind \
        is DecisionKind.CONSENT_REQUIRED
