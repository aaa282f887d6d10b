"""Real technical text for the false-positive side of the evaluation.

Passages of the detection corpus (`tests/detection/corpus.py`: Debian's Japanese
and English manuals and man pages, Python's standard library), with the lines
that credit real people removed: authors, translators, copyright holders and
mail addresses are personal information, and finding them is right. What is
left is technical prose and code that must produce no finding.
"""

from __future__ import annotations

import random
import re

from tests.detection import corpus as C

_CREDITS = re.compile(
    r"@|\bat\b.*\bdot\b|copyright|©|\(c\)|author|maintain|written by|contributed by|thanks|translat|"
    r"著者|作者|翻訳|訳者|著作権|謝辞|原著|報告|by [A-Z][a-z]+ [A-Z]|[A-Z][a-z]+ [A-Z]\. [A-Z][a-z]+|"
    r"\b(?:Mr|Ms|Dr)\. |<[^>]*>$", re.IGNORECASE)


def passages(count: int, size: int = 1500, seed: int = 11) -> list[tuple[str, str, str]]:
    """(language, source, text) of `count` passages of about `size` characters, credit lines removed."""
    documents = C.load_documents(C.corpus_dir())
    rng = random.Random(seed)
    chosen = rng.sample(documents, min(count, len(documents)))
    out = []
    for document in chosen:
        lines = [line for line in document.text.splitlines() if not _CREDITS.search(line)]
        text = "\n".join(lines)
        start = rng.randrange(max(1, len(text) - size))
        out.append((document.lang, document.source, text[start:start + size]))
    return out
