"""Personal information in request text: Presidio's `AnalyzerEngine`, in process, Japanese and English.

One `PiiAnalyzer` is built at start-up and shared by every request (it is
thread-safe and meant to run in a worker thread, never on the event loop).
For each text part the pattern recognizers run once over the width-folded
text; names are looked for only when the policy asks for PERSON, language run
by language run. Findings become `Match(kind="pii")` with an entity, a
location and a span: the value itself is never kept.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from presidio_analyzer import AnalyzerEngine, RecognizerRegistry, RecognizerResult

from gateway.domain import Match, TextPart
from gateway.pii import recognizers_en, recognizers_ja
from gateway.pii.entities import NER_ENTITIES, PATTERN_ENTITIES, PERSON
from gateway.pii.language import runs
from gateway.pii.nlp import GatewayNlpEngine, person_recognizers
from gateway.pii.widths import fold

LANGUAGES = ("ja", "en")
DEFAULT_MIN_SCORE = 0.5


@dataclass(frozen=True, slots=True)
class Lookup:
    """What one request is searched for, taken from the policy: entities, their minimum scores, words to ignore."""

    entities: frozenset[str]
    min_scores: Mapping[str, float] = field(default_factory=dict)
    deny_list: frozenset[str] = frozenset()  # casefolded technical words that are never PII ("s3", "c4")
    japanese_ner: bool = False


class PiiAnalyzer:
    """Presidio's engine with the Japanese and international recognizers and the gateway's NLP engine."""

    def __init__(self, english_ner: bool = True, japanese_ner: bool = False) -> None:
        self.nlp = GatewayNlpEngine(english_ner=english_ner, japanese_ner=japanese_ner)
        self.nlp.load()
        registry = RecognizerRegistry(supported_languages=list(LANGUAGES))
        for language in LANGUAGES:
            for recognizer in [*recognizers_ja.recognizers(language), *recognizers_en.recognizers(language),
                               *person_recognizers([language])]:
                registry.add_recognizer(recognizer)
        self.engine = AnalyzerEngine(registry=registry, nlp_engine=self.nlp, supported_languages=list(LANGUAGES))
        self._empty = {language: self.nlp.artifacts("", language, persons=False) for language in LANGUAGES}

    def analyze(self, parts: Sequence[TextPart], lookup: Lookup) -> list[Match]:
        """Every PII finding in `parts` that reaches its entity's minimum score and is not a listed word."""
        found: list[Match] = []
        for part in parts:
            for result in self.analyze_text(part.text, lookup):
                found.append(Match(kind="pii", location=part.location, start=result.start, end=result.end,
                                   entity=result.entity_type, score=round(result.score, 3)))
        return found

    def analyze_text(self, text: str, lookup: Lookup) -> list[RecognizerResult]:
        """The findings in one text, overlaps resolved (the stronger, then the longer, wins)."""
        if not text or not lookup.entities:
            return []
        results: list[RecognizerResult] = []
        folded = fold(text)
        patterns = sorted(lookup.entities & PATTERN_ENTITIES)
        if patterns:
            results += self.engine.analyze(folded, language="en", entities=patterns,
                                           nlp_artifacts=self._empty["en"])
        if lookup.entities & NER_ENTITIES:
            for run in runs(text):
                piece = text[run.start:run.end]
                artifacts = self.nlp.artifacts(piece, run.language, persons=True, japanese_ner=lookup.japanese_ner)
                for result in self.engine.analyze(folded[run.start:run.end], language=run.language,
                                                  entities=[PERSON], nlp_artifacts=artifacts):
                    result.start += run.start
                    result.end += run.start
                    results.append(result)
        kept = [r for r in results if r.score >= lookup.min_scores.get(r.entity_type, DEFAULT_MIN_SCORE)
                and _trimmed(text, r) and text[r.start:r.end].strip().casefold() not in lookup.deny_list]
        return _resolve(kept)


def _trimmed(text: str, result: RecognizerResult) -> bool:
    """Spans lose surrounding whitespace, so a placeholder never swallows a separator."""
    value = text[result.start:result.end]
    result.start += len(value) - len(value.lstrip())
    result.end -= len(value) - len(value.rstrip())
    return result.end > result.start


def _resolve(results: list[RecognizerResult]) -> list[RecognizerResult]:
    """Overlapping findings of different entities: the higher score wins, then the longer span."""
    ranked = sorted(results, key=lambda r: (-r.score, -(r.end - r.start), r.start))
    kept: list[RecognizerResult] = []
    for result in ranked:
        if all(result.end <= k.start or k.end <= result.start for k in kept):
            kept.append(result)
    return sorted(kept, key=lambda r: (r.start, r.end))
