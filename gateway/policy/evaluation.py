"""What goes into a decision and what comes out of it, with the reasons kept.

`DecisionInput` is everything `decide()` may look at, gathered by the caller
from the scanner and the stores, so the engine itself does no I/O and can be
tested with plain values. `Evaluation` is the decision together with its
explanation: which matches counted and which were dropped (and why), what each
agreement contributed, which spans to redact and what a consent request would
need. Presidio's `AnalysisExplanation` is the model: a result that can say how
it was reached.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from gateway.domain import (
    Agreement, Consent, ConsentPurpose, Decision, DecisionKind, Destination, Endpoint, ItemInfo, Match, Principal,
)

__all__ = [
    "SEVERITY",
    "AgreementOutcome",
    "ConsentScope",
    "DecisionInput",
    "Evaluation",
    "MatchVerdict",
    "UnscannablePart",
    "destination_kind",
]

# block > consent_required > redact > allow_marked > allow: the most severe outcome wins.
SEVERITY: Mapping[DecisionKind, int] = {
    DecisionKind.ALLOW: 0,
    DecisionKind.ALLOW_MARKED: 1,
    DecisionKind.REDACT: 2,
    DecisionKind.CONSENT_REQUIRED: 3,
    DecisionKind.BLOCK: 4,
}


@dataclass(frozen=True, slots=True)
class UnscannablePart:
    """A part of the request the scanner could not read: `kind` is `image`, `audio`, `file`, `file_id`…"""

    location: str
    kind: str


@dataclass(frozen=True, slots=True)
class DecisionInput:
    """Everything one decision rests on, collected before deciding so that deciding needs no store.

    `agreements` and `items` need only hold the ids the matches mention;
    `consents` may be every consent on record, the engine picks the ones that
    apply. `training` is set by the caller for a file upload with purpose
    `fine-tune`; the fine-tuning endpoint and a `trains_on_inputs` destination
    count as training on their own.
    """

    decision_id: str
    principal: Principal
    destination: Destination
    endpoint: Endpoint
    matches: Sequence[Match]
    now: datetime.datetime
    agreements: Mapping[str, Agreement] = field(default_factory=dict)
    items: Mapping[str, ItemInfo] = field(default_factory=dict)
    consents: Sequence[Consent] = ()
    unscannable: Sequence[UnscannablePart] = ()
    training: bool = False


def destination_kind(request: DecisionInput) -> str:
    """`training`, `third_party` or `internal`: which column of the policy's action table applies.

    Training comes first: Article 4(1) binds even an internal fine-tuning
    cluster, and a third party that trains on its inputs is training.
    """
    if request.training or request.endpoint is Endpoint.FINE_TUNING_JOBS or request.destination.trains_on_inputs:
        return "training"
    return "third_party" if request.destination.third_party else "internal"


@dataclass(frozen=True, slots=True)
class MatchVerdict:
    """One scanner match and whether it counted; `reason` says why a dropped match was dropped.

    Reasons: `below_threshold:<field>`, `not_yet_effective` and
    `survival_ended` (Article 11), `provisional_lapsed` (Article 2(1)(6)).
    """

    match: Match
    counts: bool
    reason: str | None = None
    article: str | None = None
    category: str | None = None


@dataclass(frozen=True, slots=True)
class AgreementOutcome:
    """What one agreement's counting matches led to, before the most severe outcome was picked.

    `agreement_id` is None for PII (no agreement) and for the unscannable rule.
    """

    agreement_id: str | None
    kind: DecisionKind
    articles: tuple[str, ...]
    code: str | None = None
    item_ids: tuple[str, ...] = ()
    consent_id: str | None = None
    consent_purpose: ConsentPurpose | None = None
    matches: tuple[Match, ...] = ()


@dataclass(frozen=True, slots=True)
class ConsentScope:
    """What a consent request must ask the discloser for so that the refused call could pass.

    Empty `item_ids` means the whole agreement (matches that name no item).
    """

    agreement_id: str
    item_ids: tuple[str, ...]
    destination_id: str
    purpose: ConsentPurpose


@dataclass(frozen=True, slots=True)
class Evaluation:
    """A decision with its explanation; `decide()` returns only `.decision`.

    `redactions` are the matches to replace with placeholders when the
    decision is `redact`; `marked_agreements` are the agreements whose
    material leaves the gateway (Article 4(3) marking and derived items);
    `consent_scopes` are non-empty only when a consent could unblock the call.
    """

    decision: Decision
    destination_kind: str
    verdicts: tuple[MatchVerdict, ...]
    outcomes: tuple[AgreementOutcome, ...]
    redactions: tuple[Match, ...] = ()
    marked_agreements: tuple[str, ...] = ()
    consent_scopes: tuple[ConsentScope, ...] = ()

    @property
    def refused(self) -> bool:
        """True when nothing may be forwarded (HTTP 403)."""
        return self.decision.kind in (DecisionKind.BLOCK, DecisionKind.CONSENT_REQUIRED)

    @property
    def consent_possible(self) -> bool:
        """True when recording a consent would let this call through (API.md `consent_possible`)."""
        return self.decision.kind is DecisionKind.CONSENT_REQUIRED and bool(self.consent_scopes)

    @property
    def dropped(self) -> tuple[MatchVerdict, ...]:
        """The matches that did not count, each with its reason."""
        return tuple(v for v in self.verdicts if not v.counts)
