"""The PII evaluation with its bar: recall and precision per entity on Faker values in real sentences, and
no finding on real technical text.

Bar (issue 6): recall >= 95% and precision >= 95% for every pattern entity; >= 85% for Japanese person
names. The minimum scores are the shipped default policy's. `bench/pii_eval.py` prints the same figures
on a larger set.
"""

from __future__ import annotations

import pytest

from gateway.pii.analyzer import PiiAnalyzer
from gateway.pii.entities import PATTERN_ENTITIES, PERSON
from gateway.pii.lookup import Lookup
from tests.detection import corpus as C

from .labelled import samples, tally
from .technical import passages

PATTERN_BAR = 0.95
JAPANESE_NAME_BAR = 0.85


@pytest.fixture(scope="module")
def measured(analyzer: PiiAnalyzer, everything: Lookup) -> dict[str, dict[str, tuple[float, float]]]:
    labelled = samples(per_template=20, seed=7)
    results: dict[str, dict[str, tuple[float, float]]] = {}
    for lang in ("ja", "en"):
        mine = [s for s in labelled if s.lang == lang]
        findings = [[(r.entity_type, r.start, r.end) for r in analyzer.analyze_text(s.text, everything)] for s in mine]
        results[lang] = {e: (t.recall, t.precision) for e, t in tally(mine, findings).items()}
    return results


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_pattern_entities_reach_95_percent_recall_and_precision(
        measured: dict[str, dict[str, tuple[float, float]]], lang: str) -> None:
    below = {e: v for e, v in measured[lang].items() if e in PATTERN_ENTITIES
             and (v[0] < PATTERN_BAR or v[1] < PATTERN_BAR)}
    assert below == {}, f"below the bar ({lang}): {below}"
    assert {"PHONE_NUMBER", "EMAIL_ADDRESS", "CREDIT_CARD"} <= set(measured[lang])


def test_japanese_person_names_reach_85_percent(measured: dict[str, dict[str, tuple[float, float]]]) -> None:
    recall, precision = measured["ja"][PERSON]
    assert recall >= JAPANESE_NAME_BAR and precision >= JAPANESE_NAME_BAR, (recall, precision)


def test_english_person_names_reach_85_percent(measured: dict[str, dict[str, tuple[float, float]]]) -> None:
    recall, precision = measured["en"][PERSON]
    assert recall >= JAPANESE_NAME_BAR and precision >= JAPANESE_NAME_BAR, (recall, precision)


def test_real_technical_text_produces_no_finding(analyzer: PiiAnalyzer, everything: Lookup) -> None:
    try:
        texts = passages(200)
    except C.CorpusUnavailable as exc:
        pytest.skip(f"detection corpus unavailable: {exc}")
    pattern_hits = []
    with_names = 0
    for lang, source, text in texts:
        results = analyzer.analyze_text(text, everything)
        pattern_hits += [(source, r.entity_type) for r in results if r.entity_type in PATTERN_ENTITIES]
        with_names += any(r.entity_type == PERSON for r in results)
    assert pattern_hits == []
    # English NER still reads a few capitalized phrases as people ("Computing Science"); some of what it
    # finds are real people quoted in the manuals. Bounded here, reported in bench/pii_eval.py.
    assert with_names <= 0.03 * len(texts), with_names
