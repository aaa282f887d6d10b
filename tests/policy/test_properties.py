"""Properties that must hold for any input: consents and fewer matches never make things worse, and so on."""

from __future__ import annotations

import datetime
import random
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.decide import decide, evaluate
from gateway.domain import (
    Agreement, Consent, ConsentPurpose, Decision, DecisionKind, Destination, Endpoint, Match, Principal,
)
from gateway.policy import SEVERITY, DecisionInput, Policy, UnscannablePart, agreement_period, load_policy

from .conftest import (
    ANTHROPIC, FORECAST, INTERNAL, ITEMS, ML_ENGINEER, OPENAI, POLICIES, SALES, SPEECH, TRAINER, UTC, make_input,
    match, pii_match,
)

POLICIES_UNDER_TEST = [load_policy(POLICIES / f"{n}.yaml") for n in ("default", "strict", "permissive")]
AGREEMENTS = (FORECAST, SPEECH)
AGREEMENT_ITEMS = {a.id: [i for i in ITEMS.values() if i.agreement_id == a.id] for a in AGREEMENTS}

moments = st.datetimes(min_value=datetime.datetime(2025, 1, 1), max_value=datetime.datetime(2033, 1, 1),
                       timezones=st.just(UTC))
policies = st.sampled_from(POLICIES_UNDER_TEST)
destinations = st.sampled_from([OPENAI, ANTHROPIC, INTERNAL, TRAINER])
principals = st.sampled_from([ML_ENGINEER, SALES, Principal("intern")])
endpoints = st.sampled_from([Endpoint.CHAT_COMPLETIONS, Endpoint.MESSAGES, Endpoint.FINE_TUNING_JOBS])


@st.composite
def matches(draw: st.DrawFn) -> Match:
    """A fingerprint, term or record match of a registered item, an agreement-level term, or PII."""
    choice = draw(st.sampled_from([*ITEMS, "term", "pii"]))
    if choice == "pii":
        return pii_match(draw(st.sampled_from(["PERSON", "PHONE_NUMBER", "JP_MY_NUMBER"])),
                         draw(st.floats(0, 1)))
    start = draw(st.integers(0, 400))
    end = start + draw(st.integers(1, 400))
    if choice == "term":
        return match(None, agreement_id=draw(st.sampled_from(["agr_forecast", "agr_speech"])), kind="term",
                     category="ai_technology", start=start, end=end)
    return match(choice, kind=draw(st.sampled_from(["fingerprint", "term", "record"])), start=start, end=end,
                 score=draw(st.floats(0, 1)), item_coverage=draw(st.floats(0, 1)),
                 request_coverage=draw(st.floats(0, 1)))


@st.composite
def consents(draw: st.DrawFn) -> Consent:
    """Any consent: right or wrong agreement, items, destination, purpose, validity, revocation."""
    agreement = draw(st.sampled_from(AGREEMENTS))
    items = draw(st.lists(st.sampled_from([i.id for i in AGREEMENT_ITEMS[agreement.id]]), unique=True))
    start = draw(st.one_of(st.none(), moments))
    end = draw(st.one_of(st.none(), moments))
    return Consent(id=f"cns_{draw(st.integers(0, 10_000))}", agreement_id=agreement.id,
                   destinations=tuple(draw(st.lists(st.sampled_from(["openai", "anthropic", "onprem", "freetier"]),
                                                    min_size=1, unique=True))),
                   purpose=draw(st.sampled_from(list(ConsentPurpose))), item_ids=tuple(items), valid_from=start,
                   valid_until=end, revoked_at=draw(st.one_of(st.none(), moments)))


@st.composite
def inputs(draw: st.DrawFn) -> DecisionInput:
    """A whole request: matches, consents, who, where, when, maybe an image."""
    image = (UnscannablePart("messages[0].content[1]", "image"),)
    return make_input(
        *draw(st.lists(matches(), max_size=6)),
        destination=draw(destinations), principal=draw(principals), consents=draw(st.lists(consents(), max_size=3)),
        now=draw(moments), endpoint=draw(endpoints), unscannable=image if draw(st.booleans()) else ())


def severity(decision: Decision) -> int:
    return SEVERITY[decision.kind]


@settings(max_examples=300, deadline=None)
@given(inputs(), consents(), policies)
def test_adding_a_consent_never_makes_a_decision_more_severe(request: DecisionInput, extra: Consent,
                                                             policy: Policy) -> None:
    before = decide(request, policy)
    after = decide(replace(request, consents=(*request.consents, extra)), policy)
    assert severity(after) <= severity(before)
    if before.kind is DecisionKind.ALLOW:
        assert after.kind is DecisionKind.ALLOW


@settings(max_examples=300, deadline=None)
@given(inputs(), st.data(), policies)
def test_removing_matches_never_makes_a_decision_more_severe(request: DecisionInput, data: st.DataObject,
                                                             policy: Policy) -> None:
    kept = tuple(m for m in request.matches if data.draw(st.booleans()))
    assert severity(decide(replace(request, matches=kept), policy)) <= severity(decide(request, policy))


@settings(max_examples=200, deadline=None)
@given(inputs(), policies, st.integers(0, 2000))
def test_an_agreement_past_survival_never_refuses(request: DecisionInput, policy: Policy, days: int) -> None:
    agreement_only = tuple(m for m in request.matches if m.kind != "pii")
    ends = max(agreement_period(a).survival_ends for a in AGREEMENTS)
    later = replace(request, matches=agreement_only, unscannable=(), now=ends + datetime.timedelta(days=days))
    result = evaluate(later, policy)
    assert result.decision.kind is DecisionKind.ALLOW
    assert not any(v.counts for v in result.verdicts)
    assert {v.reason for v in result.verdicts if not (v.reason or "").startswith("below_threshold")} <= \
        {"survival_ended"}


@settings(max_examples=300, deadline=None)
@given(inputs(), policies)
def test_a_principal_authorized_everywhere_is_never_refused_as_not_authorized(request: DecisionInput,
                                                                              policy: Policy) -> None:
    everyone: dict[str, Agreement] = {a.id: replace(a, authorized_groups=(*a.authorized_groups, "legal-ok"))
                                      for a in AGREEMENTS}
    vip = replace(request.principal, groups=(*request.principal.groups, "legal-ok"))
    decision = decide(replace(request, agreements=everyone, principal=vip), policy)
    assert decision.code != "not_authorized"


@settings(max_examples=200, deadline=None)
@given(inputs(), policies, st.randoms(use_true_random=False))
def test_the_order_of_matches_does_not_change_the_decision(request: DecisionInput, policy: Policy,
                                                           rnd: random.Random) -> None:
    shuffled = list(request.matches)
    rnd.shuffle(shuffled)
    a, b = decide(request, policy), decide(replace(request, matches=tuple(shuffled)), policy)
    assert (a.kind, a.code, a.articles, set(a.agreements), a.consent_id) == \
        (b.kind, b.code, b.articles, set(b.agreements), b.consent_id)


@settings(max_examples=300, deadline=None)
@given(inputs(), policies)
def test_every_decision_is_well_formed(request: DecisionInput, policy: Policy) -> None:
    result = evaluate(request, policy)
    decision = result.decision
    refused = decision.kind in (DecisionKind.BLOCK, DecisionKind.CONSENT_REQUIRED)
    assert (decision.code is not None) == refused
    if decision.kind is not DecisionKind.ALLOW:
        assert decision.articles
    if refused:
        assert decision.consent_id is None and result.redactions == ()
    assert (decision.kind is DecisionKind.REDACT) == bool(result.redactions)
    assert set(decision.matches) <= set(request.matches)
    assert result.consent_possible == (decision.kind is DecisionKind.CONSENT_REQUIRED and bool(result.consent_scopes))
    for scope in result.consent_scopes:
        assert scope.destination_id == request.destination.id


def test_destination_type_is_used_not_only_its_id() -> None:
    # a destination that is not third party but trains on inputs is still training (Article 4(1))
    internal_trainer = Destination("lab", "http://lab/v1", OPENAI.api_format, ("x",), third_party=False,
                                   trains_on_inputs=True)
    decision = decide(make_input(match("itm_arch"), destination=internal_trainer), POLICIES_UNDER_TEST[0])
    assert decision.code == "training_consent_required"
