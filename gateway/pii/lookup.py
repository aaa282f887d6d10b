"""What the policy asks the analyzer to look for, per destination kind (no Presidio import: cheap to use)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from gateway.policy.schema import PiiRule

DEFAULT_MIN_SCORE = 0.5


@dataclass(frozen=True, slots=True)
class Lookup:
    """What one request is searched for: entities, their minimum scores, words never taken for PII."""

    entities: frozenset[str]
    min_scores: Mapping[str, float] = field(default_factory=dict)
    deny_list: frozenset[str] = frozenset()  # casefolded technical words that are never PII ("s3", "c4")
    japanese_ner: bool = False


_MADE: dict[tuple[int, str], tuple[PiiRule, Lookup | None]] = {}  # per policy object and destination kind


def lookup_for(rule: PiiRule, kind: str) -> Lookup | None:
    """The entities whose action towards `kind` is not `allow`; None when there is nothing to look for.

    Asked on every request, answered from a cache per policy object: a policy is replaced, never
    changed in place, so a new policy is a new key (the entry keeps its rule, so an id is never reused).
    """
    made = _MADE.get((id(rule), kind))
    if made is not None and made[0] is rule:
        return made[1]
    if len(_MADE) > 64:
        _MADE.clear()
    lookup = _make(rule, kind)
    _MADE[(id(rule), kind)] = (rule, lookup)
    return lookup


def _make(rule: PiiRule, kind: str) -> Lookup | None:
    wanted = frozenset(e for e in rule.entities if rule.action_for(e, kind) != "allow")
    if not wanted:
        return None
    scores = {e: r.min_score for e, r in rule.entities.items() if r.min_score is not None}
    return Lookup(wanted, scores, frozenset(w.strip().casefold() for w in rule.deny_list), rule.japanese_ner)
