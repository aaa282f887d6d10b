"""A Presidio pattern recognizer with a check function and context words read from just before the match.

Presidio's own context enhancer compares lemmas, which Japanese text written
without spaces rarely gives it; here the context is a regular expression over
the characters just before the match, which works the same in both languages.
"""

from __future__ import annotations

from collections.abc import Callable

import regex
from presidio_analyzer import Pattern, PatternRecognizer, RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts

FLAGS = regex.DOTALL | regex.MULTILINE


class CheckedPatternRecognizer(PatternRecognizer):
    """Patterns whose matches a check function may refuse and a nearby context word may strengthen."""

    def __init__(self, entity: str, name: str, patterns: list[Pattern], language: str, *,
                 check: Callable[[str], bool] | None = None, context: str | None = None,
                 boost: float = 0.35, window: int = 24, refute: str | None = None) -> None:
        super().__init__(supported_entity=entity, name=name, supported_language=language, patterns=patterns,
                         global_regex_flags=FLAGS)
        self._check = check
        self._context = regex.compile(context, regex.IGNORECASE) if context else None
        self._refute = regex.compile(refute) if refute else None
        self._boost = boost
        self._window = window

    def invalidate_result(self, pattern_text: str) -> bool | None:
        """A failed check digit drops the match; the pattern's own score stands otherwise."""
        return self._check is not None and not self._check(pattern_text)

    def analyze(self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None,
                regex_flags: int | None = None) -> list[RecognizerResult]:
        """Presidio's pattern matching, then scores raised by context and matches refuted by what precedes."""
        results = super().analyze(text, entities, nlp_artifacts, regex_flags)
        kept = []
        for result in results:
            before = text[max(0, result.start - self._window):result.start]
            if self._refute is not None and self._refute.search(before):
                continue
            if self._context is not None and self._context.search(before):
                result.score = min(1.0, result.score + self._boost)
            kept.append(result)
        return kept
