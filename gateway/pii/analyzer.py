"""Personal information in request text: Presidio's `AnalyzerEngine`, in process, Japanese and English.

One `PiiAnalyzer` is built at start-up and shared by every request (it is
thread-safe and meant to run in a worker thread, never on the event loop).
For each text part the pattern recognizers run once over the width-folded
text; names are looked for only when the policy asks for PERSON, language run
by language run. Findings become `Match(kind="pii")` with an entity, a
location and a span: the value itself is never kept.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence

from presidio_analyzer import AnalyzerEngine, EntityRecognizer, RecognizerRegistry, RecognizerResult
from presidio_analyzer.context_aware_enhancers import ContextAwareEnhancer
from presidio_analyzer.nlp_engine import NlpArtifacts

from gateway.domain import Match, TextPart
from gateway.pii import recognizers_en, recognizers_ja
from gateway.pii.entities import NER_ENTITIES, PATTERN_ENTITIES, PERSON
from gateway.pii.language import runs
from gateway.pii.lookup import DEFAULT_MIN_SCORE, Lookup
from gateway.pii.nlp import GatewayNlpEngine, person_recognizers
from gateway.pii.widths import fold

LANGUAGES = ("ja", "en")
CACHE_SIZE = 4096
# What each pattern entity cannot do without: its recognizer runs only on text that has it.
_DIGITS = re.compile(r"\d{3}")
_TRIGGERS = {
    "EMAIL_ADDRESS": re.compile("@"), "JP_ADDRESS": re.compile("[都道府県]"), "IBAN_CODE": re.compile(r"[A-Z]{2}\d\d"),
    "CREDIT_CARD": re.compile(r"\d{4}"), "JP_POSTAL_CODE": _DIGITS, "PHONE_NUMBER": _DIGITS, "JP_MY_NUMBER": _DIGITS,
    "JP_CORPORATE_NUMBER": _DIGITS, "JP_BANK_ACCOUNT": _DIGITS,
}
_NAME_WORD = re.compile(r"(?:[A-Z]\.?|[A-Z][a-z]+\.?|[A-Z][a-z]+(?:[-'][A-Z]?[a-z]+)+|(?:Mc|Mac|O')[A-Z][a-z]+),?")
_NAME_EDGES = " \t\n\u3000「」『』【】（）()[]\"'“”‘’、。,;:・"
_NAME_SUFFIXES = frozenset({"MD", "PhD", "DDS", "DVM", "II", "III", "IV", "Jr", "Sr", "Esq", "CPA", "RN"})


class PiiAnalyzer:
    """Presidio's engine with the Japanese and international recognizers and the gateway's NLP engine."""

    def __init__(self, english_ner: bool = True, japanese_ner: bool = False) -> None:
        self._salt = os.urandom(16)  # cache keys are keyed digests: no text, and not guessable from outside
        self.nlp = GatewayNlpEngine(english_ner=english_ner, japanese_ner=japanese_ner)
        self.nlp.load()
        registry = RecognizerRegistry(supported_languages=list(LANGUAGES))
        self._persons: dict[str, EntityRecognizer] = {}
        for language in LANGUAGES:
            persons = person_recognizers([language])
            self._persons[language] = persons[0]
            for recognizer in [*recognizers_ja.recognizers(language), *recognizers_en.recognizers(language), *persons]:
                registry.add_recognizer(recognizer)
        self.engine = AnalyzerEngine(registry=registry, nlp_engine=self.nlp, supported_languages=list(LANGUAGES),
                                     context_aware_enhancer=_OwnContext())
        self._empty = {language: self.nlp.artifacts("", language, persons=False) for language in LANGUAGES}
        self._cache: OrderedDict[tuple[object, ...], tuple[tuple[str, int, int, float], ...]] = OrderedDict()
        self._cache_lock = threading.Lock()

    def analyze(self, parts: Sequence[TextPart], lookup: Lookup) -> list[Match]:
        """Every PII finding in `parts` that reaches its entity's minimum score and is not a listed word."""
        found: list[Match] = []
        for part in parts:
            for result in self.analyze_text(part.text, lookup):
                found.append(Match(kind="pii", location=part.location, start=result.start, end=result.end,
                                   entity=result.entity_type, score=round(result.score, 3)))
        return found

    def analyze_text(self, text: str, lookup: Lookup) -> list[RecognizerResult]:
        """The findings in one text, overlaps resolved (the stronger, then the longer, wins).

        Results are remembered by a keyed digest of the text (never the text) for the last
        `CACHE_SIZE` texts: chat clients send the same system prompt and history on every turn."""
        if not text or not lookup.entities:
            return []
        key = (hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16, key=self._salt).digest(),
               lookup.entities, tuple(sorted(lookup.min_scores.items())), lookup.deny_list, lookup.japanese_ner)
        with self._cache_lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
        if cached is None:
            cached = tuple((r.entity_type, r.start, r.end, r.score) for r in self._analyze(text, lookup))
            with self._cache_lock:
                self._cache[key] = cached
                if len(self._cache) > CACHE_SIZE:
                    self._cache.popitem(last=False)
        return [RecognizerResult(entity, start, end, score) for entity, start, end, score in cached]

    def _analyze(self, text: str, lookup: Lookup) -> list[RecognizerResult]:
        results: list[RecognizerResult] = []
        folded = fold(text)
        patterns = sorted(e for e in lookup.entities & PATTERN_ENTITIES if _TRIGGERS[e].search(folded))
        if patterns:
            results += self.engine.analyze(folded, language="en", entities=patterns,
                                           nlp_artifacts=self._empty["en"])
        if lookup.entities & NER_ENTITIES:
            for run in runs(text):
                piece = text[run.start:run.end]
                artifacts = self.nlp.artifacts(piece, run.language, persons=True, japanese_ner=lookup.japanese_ner)
                # names come straight from the registered person recognizer: the engine's pass adds nothing here
                for result in self._persons[run.language].analyze(piece, [PERSON], artifacts):
                    result.start += run.start
                    result.end += run.start
                    results.append(result)
        kept = [r for r in results if r.score >= lookup.min_scores.get(r.entity_type, DEFAULT_MIN_SCORE)
                and _trimmed(text, r) and text[r.start:r.end].casefold() not in lookup.deny_list
                and not (r.entity_type == PERSON and _not_a_name(text[r.start:r.end], lookup.deny_list))]
        return _resolve(kept)


class _OwnContext(ContextAwareEnhancer):
    """No second context pass: the gateway's recognizers read their own context words (patterns.py), and
    Presidio's lemma-based pass finds no lemmas in Japanese text written without spaces."""

    def __init__(self) -> None:
        super().__init__(context_similarity_factor=0.0, min_score_with_context_similarity=0.0,
                         context_prefix_count=0, context_suffix_count=0)

    def enhance_using_context(self, text: str, raw_results: list[RecognizerResult], nlp_artifacts: NlpArtifacts,
                              recognizers: list[EntityRecognizer], context: list[str] | None = None
                              ) -> list[RecognizerResult]:
        return raw_results


def _not_a_name(value: str, deny_list: frozenset[str]) -> bool:
    """English NER takes capitalized technical words for people ("Git", "Linux libc", "Beneficiary IBAN"): an
    English name needs two capitalized words, and none may be an acronym, hold a digit or be a listed word."""
    words = value.split()
    if any(any(c.isdigit() for c in w) or w.casefold() in deny_list for w in words):
        return True
    if "\n" in value or value.isascii() and (len(words) < 2 or not all(
            _NAME_WORD.fullmatch(w) or w in _NAME_SUFFIXES for w in words)):
        return True
    caps = [w.isupper() and len(w) > 1 for w in words if w.isascii() and w.isalpha() and w not in _NAME_SUFFIXES]
    return any(caps) and not all(caps)


def _trimmed(text: str, result: RecognizerResult) -> bool:
    """Spans lose surrounding whitespace (and a name its brackets), so a placeholder never swallows a separator."""
    value = text[result.start:result.end]
    strip = _NAME_EDGES if result.entity_type == PERSON else None
    result.start += len(value) - len(value.lstrip(strip))
    result.end -= len(value) - len(value.rstrip(strip))
    return result.end > result.start


def _resolve(results: list[RecognizerResult]) -> list[RecognizerResult]:
    """Overlapping findings of different entities: the higher score wins, then the longer span."""
    ranked = sorted(results, key=lambda r: (-r.score, -(r.end - r.start), r.start))
    kept: list[RecognizerResult] = []
    for result in ranked:
        if all(result.end <= k.start or k.end <= result.start for k in kept):
            kept.append(result)
    return sorted(kept, key=lambda r: (r.start, r.end))


@functools.lru_cache(maxsize=2)
def shared_analyzer(japanese_ner: bool = False) -> PiiAnalyzer:
    """One analyzer per process and configuration: the models load once, however many apps start."""
    return PiiAnalyzer(japanese_ner=japanese_ner)
