"""Deciding one request under the policy: which matches count, what each agreement allows, the most severe wins.

The steps, each citing the article it enforces:

1. drop matches below the policy's thresholds, matches of agreements not in
   force (Article 11) and of provisional items that lapsed (Article 2(1)(6));
   every dropped match keeps its reason for the explanation;
2. per agreement with counting matches: a principal outside its
   need-to-know list is blocked even towards an internal model (3(3));
   training needs a training consent (4(1)); a third-party destination takes
   the policy's action unless an inference consent covers the call (4(2));
   an internal destination lets material through, marked (4(3));
3. PII (no agreement) and unscannable parts follow their own policy rules;
4. the most severe outcome wins: block > consent_required > redact >
   allow_marked > allow.

No I/O, no HTTP, no SQL: everything arrives in `DecisionInput`.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable

from gateway.domain import Decision, DecisionKind, ItemInfo, Match
from gateway.policy.permissions import covering_consent, is_authorized, purposes_for
from gateway.policy.evaluation import (
    SEVERITY, AgreementOutcome, ConsentScope, DecisionInput, Evaluation, MatchVerdict, UnscannablePart,
    destination_kind,
)
from gateway.policy.schema import Action, Policy, Threshold
from gateway.policy.validity import agreement_status, as_utc, is_provisional, item_status

__all__ = ["DecisionInput", "UnscannablePart", "consent_scope", "decide", "evaluate", "is_authorized"]

_KIND_OF = {
    Action.BLOCK: DecisionKind.BLOCK,
    Action.CONSENT_REQUIRED: DecisionKind.CONSENT_REQUIRED,
    Action.REDACT: DecisionKind.REDACT,
    Action.ALLOW_MARKED: DecisionKind.ALLOW_MARKED,
    Action.ALLOW: DecisionKind.ALLOW,
}
# Among outcomes of equal severity, the one whose code the employee most needs to hear about is reported.
_CODE_RANK = {"not_authorized": 0, "training_consent_required": 1, "blocked": 2, "unscannable_content": 3,
              "consent_required": 4, None: 5}
# The article each destination kind rests on: 4(1) training, 4(2) third parties, 3(3) need-to-know inside.
_ARTICLE = {"training": "4(1)", "third_party": "4(2)", "internal": "3(3)"}
_REFUSED = (DecisionKind.BLOCK, DecisionKind.CONSENT_REQUIRED)


def _below(threshold: Threshold, match: Match) -> str | None:
    if match.score < threshold.min_score:
        return "below_threshold:min_score"
    if match.item_coverage < threshold.min_item_coverage:
        return "below_threshold:min_item_coverage"
    if match.request_coverage < threshold.min_request_coverage:
        return "below_threshold:min_request_coverage"
    if match.end - match.start < threshold.min_chars:
        return "below_threshold:min_chars"
    return None


class _Group:
    """The counting matches of one agreement (None: matches that name no agreement)."""

    __slots__ = ("agreement_id", "entries", "provisional", "derived")

    def __init__(self, agreement_id: str | None) -> None:
        self.agreement_id = agreement_id
        self.entries: list[tuple[Match, str]] = []
        self.provisional = False
        self.derived = False


def _category(match: Match, item: ItemInfo | None) -> str:
    if (item is not None and item.derived_from is not None) or match.category == "derived":
        return "derived"
    if item is not None:
        return item.category.value
    return match.category or "default"


def _sort_matches(request: DecisionInput, policy: Policy, now: datetime.datetime
                  ) -> tuple[list[MatchVerdict], dict[str | None, _Group], list[Match]]:
    """Step 1: thresholds, Article 11, Article 2(1)(6); counting matches grouped by agreement."""
    verdicts: list[MatchVerdict] = []
    groups: dict[str | None, _Group] = {}
    pii: list[Match] = []
    statuses: dict[str, str | None] = {}
    window = policy.provisional_window_days
    for match in request.matches:
        threshold = policy.threshold(match.kind)
        reason = _below(threshold, match) if threshold is not None else None
        if reason is not None:
            verdicts.append(MatchVerdict(match, False, reason))
            continue
        item = request.items.get(match.item_id) if match.item_id is not None else None
        agreement_id = match.agreement_id or (item.agreement_id if item is not None else None)
        if agreement_id is None and match.kind == "pii":
            pii.append(match)
            verdicts.append(MatchVerdict(match, True, category="pii"))
            continue
        note = None
        if agreement_id is not None:
            agreement = request.agreements.get(agreement_id)
            if agreement is None:
                note = "agreement_not_supplied"  # counted: unknown is not the same as expired
            else:
                if agreement_id not in statuses:
                    statuses[agreement_id] = agreement_status(agreement, now)
                status = statuses[agreement_id]
                if status is not None:
                    verdicts.append(MatchVerdict(match, False, status, "11"))
                    continue
        if item is not None:
            lapsed = item_status(item, now, window)
            if lapsed is not None:
                verdicts.append(MatchVerdict(match, False, lapsed, "2(1)(6)"))
                continue
        category = _category(match, item)
        group = groups.get(agreement_id)
        if group is None:
            group = groups[agreement_id] = _Group(agreement_id)
        group.entries.append((match, category))
        group.provisional = group.provisional or (item is not None and is_provisional(item))
        group.derived = group.derived or category == "derived"
        verdicts.append(MatchVerdict(match, True, note, category=category))
    return verdicts, groups, pii


def _judge(group: _Group, request: DecisionInput, policy: Policy, kind: str, now: datetime.datetime
           ) -> tuple[AgreementOutcome, tuple[Match, ...]]:
    """Step 2 for one agreement: its outcome, and the matches to redact if it is `redact`."""
    agreement_id = group.agreement_id
    matches = tuple(m for m, _ in group.entries)
    item_ids = tuple(sorted({m.item_id for m in matches if m.item_id is not None}))
    extra = (("2(1)(6)",) if group.provisional else ()) + (("4(3)",) if group.derived else ())

    def outcome(decision: DecisionKind, articles: tuple[str, ...], code: str | None = None,
                consent_id: str | None = None) -> AgreementOutcome:
        return AgreementOutcome(agreement_id, decision, articles + extra, code, item_ids, consent_id,
                                purposes_for(kind == "training")[0] if consent_id else None, matches)

    agreement = request.agreements.get(agreement_id) if agreement_id is not None else None
    if agreement is not None and not is_authorized(agreement, request.principal):
        return outcome(DecisionKind.BLOCK, ("3(3)",), "not_authorized"), ()
    actions = [(m, policy.action(category, kind)) for m, category in group.entries]
    worst = max((a for _, a in actions), key=lambda a: SEVERITY[_KIND_OF[a]])
    article = _ARTICLE[kind]
    if worst is Action.ALLOW_MARKED:
        return outcome(DecisionKind.ALLOW_MARKED, (article, "4(3)")), ()
    if agreement_id is not None:
        whole = len(item_ids) == 0 or any(m.item_id is None for m in matches)
        consent = covering_consent(request.consents, agreement_id, frozenset(item_ids), whole,
                                   request.destination.id, purposes_for(kind == "training"), now)
        if consent is not None:
            return outcome(DecisionKind.ALLOW_MARKED, (article, "4(3)"), consent_id=consent.id), ()
    if kind == "training":
        if worst is Action.CONSENT_REQUIRED and agreement_id is not None:
            return outcome(DecisionKind.CONSENT_REQUIRED, (article,), "training_consent_required"), ()
        return outcome(DecisionKind.BLOCK, (article,), "training_consent_required"), ()
    if worst is Action.BLOCK or (worst is Action.CONSENT_REQUIRED and agreement_id is None):
        return outcome(DecisionKind.BLOCK, (article,), "blocked"), ()
    if worst is Action.CONSENT_REQUIRED:
        return outcome(DecisionKind.CONSENT_REQUIRED, (article,), "consent_required"), ()
    redact = tuple(m for m, a in actions if a is Action.REDACT)
    return outcome(DecisionKind.REDACT, (article, "4(3)") if len(redact) < len(matches) else (article,)), redact


def _judge_pii(pii: list[Match], policy: Policy, kind: str) -> tuple[AgreementOutcome, tuple[Match, ...]]:
    """Step 3: PII has no agreement to consent under; the policy's PII rules decide alone, entity by entity
    (`reversible` is a redaction whose values come back in the answer)."""
    actions = [(m, _KIND_OF[Action("redact" if a == "reversible" else a)])
               for m in pii for a in (policy.pii.action_for(m.entity, kind),)]
    decision = max((d for _, d in actions), key=lambda d: SEVERITY[d])
    articles = ("2(1)(4)", _ARTICLE[kind])
    code = "blocked" if decision is DecisionKind.BLOCK else None
    redact = tuple(m for m, d in actions if d is DecisionKind.REDACT) if decision is DecisionKind.REDACT else ()
    return AgreementOutcome(None, decision, articles, code, matches=tuple(pii)), redact


def _ordered(outcomes: Iterable[AgreementOutcome]) -> list[AgreementOutcome]:
    # On a tie an agreement's outcome goes first: the refusal message then names the agreement.
    return sorted(outcomes, key=lambda o: (-SEVERITY[o.kind], _CODE_RANK.get(o.code, 5), o.agreement_id is None,
                                           o.agreement_id or ""))


def _unique(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))


def evaluate(request: DecisionInput, policy: Policy) -> Evaluation:
    """The decision with its explanation: counted and dropped matches, per-agreement outcomes, redactions,
    consent scopes. Use this where the reasons matter (audit, `/admin/v1/scan`); `decide()` otherwise."""
    now = as_utc(request.now)
    kind = destination_kind(request)
    verdicts, groups, pii = _sort_matches(request, policy, now)
    outcomes: list[AgreementOutcome] = []
    redactions: list[Match] = []
    for group in groups.values():
        judged, redact = _judge(group, request, policy, kind, now)
        outcomes.append(judged)
        redactions.extend(redact)
    if pii:
        judged, redact = _judge_pii(pii, policy, kind)
        outcomes.append(judged)
        redactions.extend(redact)
    if request.unscannable and policy.action("unscannable", kind) is Action.BLOCK:
        outcomes.append(AgreementOutcome(None, DecisionKind.BLOCK, (_ARTICLE[kind],), "unscannable_content"))
    ranked = _ordered(outcomes)
    counted = tuple(v.match for v in verdicts if v.counts)
    if not ranked or ranked[0].kind is DecisionKind.ALLOW:
        articles = _unique(v.article for v in verdicts if v.article is not None)
        decision = Decision(request.decision_id, DecisionKind.ALLOW, articles, None, counted,
                            _unique(o.agreement_id for o in ranked if o.agreement_id is not None))
        return Evaluation(decision, kind, tuple(verdicts), tuple(ranked))
    top = ranked[0]
    winners = [o for o in ranked if o.kind is top.kind]
    articles = _unique(a for o in winners for a in o.articles)
    agreements = _unique(o.agreement_id for o in ranked if o.agreement_id is not None)
    refused = top.kind in _REFUSED
    consent_id = None if refused else next((o.consent_id for o in ranked if o.consent_id), None)
    decision = Decision(request.decision_id, top.kind, articles, top.code if refused else None, counted,
                        agreements, consent_id)
    scopes: tuple[ConsentScope, ...] = ()
    if top.kind is DecisionKind.CONSENT_REQUIRED:
        purpose = purposes_for(kind == "training")[0]
        scopes = tuple(ConsentScope(o.agreement_id, o.item_ids, request.destination.id, purpose)
                       for o in winners if o.agreement_id is not None)
    redacted = {id(m) for m in redactions}
    marked: tuple[str, ...] = ()
    if not refused:
        marked = _unique(o.agreement_id for o in ranked if o.agreement_id is not None and o.kind is not
                         DecisionKind.ALLOW and any(id(m) not in redacted for m in o.matches))
    return Evaluation(decision, kind, tuple(verdicts), tuple(ranked),
                      tuple(redactions) if top.kind is DecisionKind.REDACT else (), marked, scopes)


def decide(request: DecisionInput, policy: Policy) -> Decision:
    """One decision for one request, with the articles it rests on; see the module docstring for the rules."""
    return evaluate(request, policy).decision


def consent_scope(request: DecisionInput, policy: Policy) -> tuple[ConsentScope, ...]:
    """What consent requests would let this call through: one per agreement held for consent.

    Empty when the call passes, or when it is blocked outright (no consent
    would help, e.g. `not_authorized`, or another agreement blocks anyway).
    """
    return evaluate(request, policy).consent_scopes
