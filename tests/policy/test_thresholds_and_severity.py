"""Thresholds, the most-severe-wins rule, PII and unscannable parts."""

from __future__ import annotations

import pytest

from gateway.decide import decide, evaluate
from gateway.domain import DecisionKind, Destination, Match
from gateway.policy import Policy, UnscannablePart, policy_from_dict

from .conftest import INTERNAL, OPENAI, SALES, TRAINER, consent, make_input, match, pii_match

TIGHT = policy_from_dict({
    "name": "thresholds",
    "thresholds": {
        "fingerprint": {"min_score": 0.5, "min_item_coverage": 0.1, "min_request_coverage": 0.2, "min_chars": 50},
        "term": {"min_chars": 4},
        "record": {"min_score": 0.7},
        "pii": {"min_score": 0.6},
    },
})


@pytest.mark.parametrize(("weak", "reason"), [
    (match("itm_arch", score=0.49), "below_threshold:min_score"),
    (match("itm_arch", item_coverage=0.05), "below_threshold:min_item_coverage"),
    (match("itm_arch", request_coverage=0.1), "below_threshold:min_request_coverage"),
    (match("itm_arch", start=100, end=149), "below_threshold:min_chars"),
    (match("itm_arch", kind="term", start=5, end=8), "below_threshold:min_chars"),
    (match("itm_sales", kind="record", score=0.5), "below_threshold:min_score"),
    (pii_match(score=0.55), "below_threshold:min_score"),
])
def test_when_match_is_below_threshold_then_it_does_not_count(weak: Match, reason: str) -> None:
    result = evaluate(make_input(weak), TIGHT)
    assert result.decision.kind is DecisionKind.ALLOW
    assert result.decision.matches == ()
    assert [(v.counts, v.reason) for v in result.verdicts] == [(False, reason)]


@pytest.mark.parametrize("strong", [
    match("itm_arch", score=0.5, item_coverage=0.1, request_coverage=0.2, start=0, end=50),
    match("itm_arch", kind="term", start=5, end=9, request_coverage=0.0, item_coverage=0.0),
    match("itm_sales", kind="record", score=0.7),
])
def test_when_match_reaches_every_minimum_then_it_counts(strong: Match) -> None:
    decision = decide(make_input(strong), TIGHT)
    assert decision.kind is DecisionKind.CONSENT_REQUIRED
    assert decision.matches == (strong,)


def test_when_match_kind_is_unknown_then_it_counts_unfiltered() -> None:
    odd = match("itm_arch", kind="embedding", score=0.01, end=3)
    assert decide(make_input(odd), TIGHT).kind is DecisionKind.CONSENT_REQUIRED


def test_when_agreement_is_not_supplied_then_the_match_still_counts(default_policy: Policy) -> None:
    result = evaluate(make_input(match("itm_arch"), agreements=()), default_policy)
    assert result.decision.kind is DecisionKind.CONSENT_REQUIRED
    assert result.verdicts[0].reason == "agreement_not_supplied"


def test_most_severe_wins_block_over_consent_required(default_policy: Policy) -> None:
    # suzuki may use the speech NDA (open) but not the forecast NDA (ai-lab only).
    result = evaluate(make_input(match("itm_asr_api"), match("itm_sales"), principal=SALES), default_policy)
    assert [o.kind for o in result.outcomes] == [DecisionKind.BLOCK, DecisionKind.CONSENT_REQUIRED]
    assert (result.decision.kind, result.decision.code) == (DecisionKind.BLOCK, "not_authorized")
    assert result.decision.agreements == ("agr_forecast", "agr_speech")
    assert result.decision.articles == ("3(3)",)


def test_most_severe_wins_consent_required_over_redact_over_allow_marked(permissive_policy: Policy) -> None:
    plan = match("itm_plan")  # business: consent_required in the permissive policy
    code = match("itm_asr_api")  # source code: redact
    decision = decide(make_input(code, plan), permissive_policy)
    assert decision.kind is DecisionKind.CONSENT_REQUIRED
    assert decide(make_input(code), permissive_policy).kind is DecisionKind.REDACT
    granted = consent(item_ids=("itm_plan",))
    result = evaluate(make_input(code, plan, consents=[granted]), permissive_policy)
    assert result.decision.kind is DecisionKind.REDACT  # the plan passes by consent, the code is redacted
    assert result.redactions == (code,)
    assert result.marked_agreements == ("agr_forecast",)
    assert result.decision.consent_id == "cns_1"


def test_within_one_agreement_the_most_severe_category_decides(strict_policy: Policy) -> None:
    # strict: source code is redacted internally, data allowed marked.
    assert decide(make_input(match("itm_sales"), destination=INTERNAL), strict_policy).kind \
        is DecisionKind.ALLOW_MARKED
    result = evaluate(make_input(match("itm_sales"), match("itm_code"), destination=INTERNAL), strict_policy)
    assert result.decision.kind is DecisionKind.REDACT
    assert [m.item_id for m in result.redactions] == ["itm_code"]
    assert result.marked_agreements == ("agr_forecast",)  # the data item still leaves, marked


def test_when_pii_goes_to_a_third_party_then_default_redacts(default_policy: Policy) -> None:
    phone = pii_match()
    result = evaluate(make_input(phone), default_policy)
    assert result.decision.kind is DecisionKind.REDACT
    assert result.redactions == (phone,)
    assert result.decision.articles == ("2(1)(4)", "4(2)")


def test_when_pii_goes_internally_then_default_allows(default_policy: Policy) -> None:
    assert decide(make_input(pii_match(), destination=INTERNAL), default_policy).kind is DecisionKind.ALLOW


def test_when_pii_goes_to_a_third_party_under_strict_then_blocked(strict_policy: Policy) -> None:
    decision = decide(make_input(pii_match("JP_MY_NUMBER")), strict_policy)
    assert (decision.kind, decision.code) == (DecisionKind.BLOCK, "blocked")


IMAGE = UnscannablePart("messages[1].content[1].image_url", "image")


@pytest.mark.parametrize(("destination", "kind", "code"), [
    (OPENAI, DecisionKind.BLOCK, "unscannable_content"),
    (TRAINER, DecisionKind.BLOCK, "unscannable_content"),
    (INTERNAL, DecisionKind.ALLOW, None),
])
def test_unscannable_parts_default_refused_for_third_parties_only(default_policy: Policy, destination: Destination,
                                                                   kind: DecisionKind, code: str | None) -> None:
    decision = decide(make_input(destination=destination, unscannable=[IMAGE]), default_policy)
    assert (decision.kind, decision.code) == (kind, code)


def test_unscannable_under_permissive_goes_out(permissive_policy: Policy) -> None:
    assert decide(make_input(unscannable=[IMAGE]), permissive_policy).kind is DecisionKind.ALLOW


def test_unscannable_under_strict_refused_internally_too(strict_policy: Policy) -> None:
    decision = decide(make_input(destination=INTERNAL, unscannable=[IMAGE]), strict_policy)
    assert (decision.code, decision.articles) == ("unscannable_content", ("3(3)",))


def test_when_refused_then_no_consent_id_and_no_redactions(default_policy: Policy) -> None:
    result = evaluate(make_input(match("itm_arch"), pii_match(), unscannable=[IMAGE], consents=[consent()]),
                      default_policy)
    assert result.decision.code == "unscannable_content"
    assert result.decision.consent_id is None
    assert result.redactions == () and result.marked_agreements == ()


def test_decision_lists_every_counting_match_and_agreement(default_policy: Policy) -> None:
    matches = (match("itm_arch"), match("itm_asr_bench"), match("itm_code", score=0.2, end=10))
    decision = decide(make_input(*matches, destination=INTERNAL), default_policy)
    assert decision.matches == matches[:2]  # the 10-char one is below min_chars
    assert decision.agreements == ("agr_forecast", "agr_speech")
    assert decision.id == "dec_test"
