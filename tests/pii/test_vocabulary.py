"""The language models' vocabularies do not grow with the words of the prompts they read.

spaCy adds every new word it tokenizes to the model's string store, for the life of the process; a
gateway reads names, product codes and identifiers without end, so each new one would cost memory for
good (about 1 KB). The analyzer reads inside a memory zone, which forgets them after each text.
"""

from __future__ import annotations

import random
import string

from gateway.pii.analyzer import PiiAnalyzer
from gateway.pii.lookup import Lookup
from tests.pii.conftest import found


def new_word(rng: random.Random) -> str:
    return rng.choice(string.ascii_uppercase) + "".join(rng.choices(string.ascii_lowercase, k=9))


def test_english_names_are_found_and_their_words_not_kept(analyzer: PiiAnalyzer, everything: Lookup) -> None:
    english = analyzer.nlp._english
    rng = random.Random(20261127)
    texts = [f"Please forward the {new_word(rng)} report to Margaret {new_word(rng)} before Friday."
             for _ in range(300)]
    analyzer.analyze_text(texts[0], everything)  # whatever a first call loads once
    before = len(english.vocab.strings)
    persons = [found(analyzer, everything, text) for text in texts[1:]]
    assert len(english.vocab.strings) - before < 20  # without the zone: about five strings per new word
    named = [p for p in persons if any(entity == "PERSON" and value.startswith("Margaret") for entity, value in p)]
    assert len(named) > 250, persons[:5]  # the zone changes nothing of what is found


def test_the_same_text_finds_the_same_names_twice(analyzer: PiiAnalyzer, everything: Lookup) -> None:
    text = "Ask Hiroshi Tanaka and Emily Carter about the schedule."
    first = analyzer.nlp.artifacts(text, "en", persons=True)
    again = analyzer.nlp.artifacts(text, "en", persons=True)
    spans = [(e.start_char, e.end_char) for e in first.entities]
    assert spans and spans == [(e.start_char, e.end_char) for e in again.entities]
    assert [text[s:e] for s, e in spans] == ["Hiroshi Tanaka", "Emily Carter"]
