"""One analyzer for the whole PII test package: the models load once."""

from __future__ import annotations

import pytest

from gateway.pii.analyzer import PiiAnalyzer, shared_analyzer
from gateway.pii.entities import ALL_ENTITIES
from gateway.pii.lookup import Lookup, lookup_for
from gateway.policy.loader import PolicyStore
from gateway.services import DEFAULT_POLICY


@pytest.fixture(scope="session")
def analyzer() -> PiiAnalyzer:
    return shared_analyzer(False)


@pytest.fixture(scope="session")
def everything() -> Lookup:
    """Every entity, with the minimum scores and deny list of the shipped default policy."""
    default = lookup_for(PolicyStore(DEFAULT_POLICY).current.pii, "third_party")
    assert default is not None
    return Lookup(frozenset(ALL_ENTITIES), default.min_scores, default.deny_list)


def found(analyzer: PiiAnalyzer, lookup: Lookup, text: str) -> list[tuple[str, str]]:
    """(entity, value) of every finding, in order."""
    return [(r.entity_type, text[r.start:r.end]) for r in analyzer.analyze_text(text, lookup)]
