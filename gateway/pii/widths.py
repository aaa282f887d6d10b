"""Full-width digits, letters and dashes folded to ASCII without moving any offset.

Japanese text often writes phone numbers as ０３－１２３４－５６７８ or with the
long-vowel mark between digits; the recognizers read one form. Every fold maps
one character to one character, so a span found in the folded text is the same
span in the text the client sent.
"""

from __future__ import annotations

import re

_TABLE = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)}
_TABLE.update({ord(c): ord("-") for c in "‐‑‒–—―−﹣"})
_TABLE[0x3000] = ord(" ")
_LONG_MARK_BETWEEN_DIGITS = re.compile(r"(?<=\d)[ーｰ](?=\d)")


_FOLDABLE = re.compile("[\uff01-\uff5e\u3000‐‑‒–—―−﹣ーｰ]")


def fold(text: str) -> str:
    """The same text with ASCII digits, letters and hyphens; `len(fold(t)) == len(t)`."""
    if not _FOLDABLE.search(text):
        return text
    folded = text.translate(_TABLE)
    if "ー" in folded or "ｰ" in folded:
        folded = _LONG_MARK_BETWEEN_DIGITS.sub("-", folded)
    return folded
