"""Which language each stretch of a text is in, so that each stretch goes to the right language model.

Prompts mix languages: a Japanese request quotes an English error message, an
English mail signs off with a Japanese address. A text is cut at sentence and
line ends; each piece is Japanese when kana or kanji make up a fifth of its
letters, English otherwise; neighbouring pieces of one language are joined.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_PIECE = re.compile(r"[^\n。！？!?]*(?:[\n。！？!?]+|$)")
_JAPANESE = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uff66-\uff9f]")
_LATIN = re.compile(r"[A-Za-z]")
JAPANESE_SHARE = 0.2


@dataclass(frozen=True, slots=True)
class Run:
    """`text[start:end]` is in `language` (`ja` or `en`)."""

    start: int
    end: int
    language: str


def language_of(piece: str) -> str:
    """`ja` when kana and kanji make up at least a fifth of the letters, else `en`."""
    japanese = len(_JAPANESE.findall(piece))
    if not japanese:
        return "en"
    latin = len(_LATIN.findall(piece))
    return "ja" if japanese >= JAPANESE_SHARE * (japanese + latin) else "en"


def runs(text: str) -> list[Run]:
    """The text cut into runs of one language each, covering it whole and in order."""
    if not _JAPANESE.search(text):
        return [Run(0, len(text), "en")] if text else []
    found: list[Run] = []
    for piece in _PIECE.finditer(text):
        start, end = piece.span()
        if start == end:
            continue
        language = language_of(piece.group())
        if not _LATIN.search(piece.group()) and not _JAPANESE.search(piece.group()) and found:
            language = found[-1].language  # digits and punctuation belong with what came before
        if found and found[-1].language == language and found[-1].end == start:
            found[-1] = Run(found[-1].start, end, language)
        else:
            found.append(Run(start, end, language))
    return found
