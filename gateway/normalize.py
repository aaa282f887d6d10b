"""Fold text so that reformatting and lookalike letters do not change fingerprints.

Registered material and prompts pass through the same `normalize()`, and the
detection engine hashes only its output, so anything folded here is something
an employee cannot use to slip confidential text past the gateway:

* compatibility forms (NFKC: full/half width, ligatures, circled digits);
* case (full Unicode case folding, ``ß`` → ``ss``);
* diacritics and other combining marks, except the kana voicing marks
  (``が`` stays ``が``; ``ｶﾞ`` and ``か゛`` become ``が``);
* format characters (zero-width space/joiners, bidi controls, soft hyphens,
  tag characters) and control characters;
* all whitespace, punctuation and symbols: dropping them, rather than folding
  runs to one space, makes Japanese (which has no spaces) and English behave
  alike and makes re-wrapping, bullet lists, Markdown and table pipes
  irrelevant;
* letters that look like ASCII letters/digits, kana or kanji (Unicode TR39
  confusables: Cyrillic ``а`` → ``a``, Greek ``ο`` → ``o``, katakana ``ロ`` →
  kanji ``口``), from a table generated once from UTS #39 13.0.0 by
  ``bench/detection_gen_confusables.py``. ASCII itself is never remapped, so
  English keeps its letters and digits.

Each character is folded on its own through one table; only text holding
combining marks that survive folding takes a slower per-cluster path. The
per-character table is computed at import from ``unicodedata`` for every code
point outside the big ideograph/syllable blocks (about 30 ms). Applying it
costs no Python work per character: ASCII text goes through one
``bytes.translate``, other text through a numpy lookup of single-character
folds when numpy is loaded (the detection engine loads it; this module does not,
so light importers stay light); ``str.translate`` with the full table, which
calls back into Python for every character, is left for the rest.

Registered fingerprints depend on this exact folding: any change must bump
`NORMALIZATION_VERSION` so stored fingerprints can be recomputed.
"""

from __future__ import annotations

import bisect
import re
import sys
import unicodedata
from typing import Any

__all__ = ["NORMALIZATION_VERSION", "Normalized", "fold", "length_table", "normalize"]

NORMALIZATION_VERSION = 2

# Categories whose characters vanish: separators, punctuation, symbols, controls, format, private use.
_DROP = frozenset("Zs Zl Zp Pc Pd Ps Pe Pi Pf Po Sm Sc Sk So Cc Cf Co".split())
_KANA_VOICING = frozenset("\u3099\u309a")
# Blocks with only plain letters that fold to themselves (CJK ideographs, Hangul syllables).
_PLAIN_BLOCKS = ((0x3400, 0x4DC0), (0x4E00, 0xA000), (0xAC00, 0xD7A4), (0x20000, 0x2F800), (0x30000, 0x31350))
_TABLE_RANGES = ((0, 0x3400), (0x4DC0, 0x4E00), (0xA000, 0xAC00), (0xD7A4, 0xD800), (0xE000, 0x20000),
                 (0x2F800, 0x30000), (0xE0000, 0xE01F0))


def _fold_once(s: str) -> str:
    # Lookalikes before and after case folding: Cyrillic "Т" looks like "T", its lower case "т" not like "t".
    s = "".join(_CONFUSABLE_MAP.get(ch, ch) for ch in unicodedata.normalize("NFKC", s)).casefold()
    s = unicodedata.normalize("NFD", s)
    s = "".join(ch for ch in s if ch in _KANA_VOICING or unicodedata.category(ch) not in ("Mn", "Me"))
    s = _voiced_lookalikes(s)
    s = unicodedata.normalize("NFC", s)
    s = "".join(ch for ch in s if unicodedata.category(ch) not in _DROP)
    return "".join(_CONFUSABLE_MAP.get(ch, ch) for ch in s)


def _voiced_lookalikes(decomposed: str) -> str:
    """Map a kana base followed by a voicing mark through the lookalike table, as UTS #39 skeletons do.

    The voiced katakana "ベ" (ヘ + mark) then meets the entry "ヘ" -> "へ" and
    recomposes to hiragana "べ". Where the mapped base takes no voicing mark
    ("ガ" is カ + mark, and カ looks like the kanji 力), the kana is kept.
    """
    if "\u3099" not in decomposed and "\u309a" not in decomposed:
        return decomposed
    chars = list(decomposed)
    for i in range(len(chars) - 1):
        if chars[i + 1] in _KANA_VOICING and chars[i] in _CONFUSABLE_MAP:
            mapped = _CONFUSABLE_MAP[chars[i]]
            if len(mapped) == 1 and len(unicodedata.normalize("NFC", mapped + chars[i + 1])) == 1:
                chars[i] = mapped
    return "".join(chars)


def _fold_string(s: str) -> str:
    for _ in range(6):
        folded = _fold_once(s)
        if folded == s:
            return folded
        s = folded
    return s


def _load_confusables() -> dict[str, str]:
    """The lookalike table, each entry folding to what the ASCII character it imitates folds to.

    UTS #39 gives capital ``I`` the prototype ``l``, so its lookalikes (Greek
    ``Ι``, Cyrillic ``І``, ``Ӏ``) would fold to ``l`` while the ``I`` they
    stand for is case-folded to ``i``. An upper-case letter imitating ``l``
    imitates ``I``: it folds to ``i``.
    """
    table: dict[str, str] = {}
    for entry in _CONFUSABLES.split(";"):
        if entry:
            dst, srcs = entry.split(":")
            target = "".join(chr(int(h, 16)) for h in dst.split())
            for h in srcs.split():
                source = chr(int(h, 16))
                upper = unicodedata.category(source) == "Lu" or source.lower() != source
                table[source] = "i" if target == "l" and upper else target
    return table


_TABLE_SIZE = 0x20000  # a list indexed by code point; rarer astral characters fall back to a dict lookup
_SENTINEL = "\ue000"  # private use, so folded away from any input: marks text that needs the cluster path


def _build_tables() -> tuple[list[int | str | None], list[str], dict[int, str | None], str]:
    fold_list: list[int | str | None] = list(range(_TABLE_SIZE))
    len_list = ["\x01"] * _TABLE_SIZE
    astral: dict[int, str | None] = {}
    # Hangul vowel and trailing jamo compose algorithmically with the jamo before them.
    seconds = {chr(cp) for cp in range(0x1161, 0x1176)} | {chr(cp) for cp in range(0x11A8, 0x11C3)}
    candidates: list[str] = []
    for lo, hi in _TABLE_RANGES:
        for cp in range(lo, hi):
            ch = chr(cp)
            category = unicodedata.category(ch)
            decomposition = unicodedata.decomposition(ch)
            if not decomposition:
                if category in _DROP:
                    if cp < _TABLE_SIZE:
                        fold_list[cp], len_list[cp] = None, "\x00"
                    else:
                        astral[cp] = None
                    continue
                if category in ("Cn", "Cs") or (category not in ("Mn", "Me") and ch not in _CONFUSABLE_MAP
                                                and ch.casefold() == ch):
                    continue  # folds to itself
            elif not decomposition.startswith("<"):
                pieces = decomposition.split()
                if len(pieces) == 2:
                    seconds.add(chr(int(pieces[1], 16)))
            candidates.append(ch)
    candidates.extend(ch for ch in _CONFUSABLE_MAP if unicodedata.decomposition(ch) == "" and ch.casefold() == ch
                      and not any(lo <= ord(ch) < hi for lo, hi in _TABLE_RANGES))
    joiners: set[str] = set()
    for ch in candidates:
        folded = _fold_string(ch)
        if folded and (unicodedata.combining(folded[0]) or folded[0] in seconds):
            joiners.add(ch)
            folded = _SENTINEL + folded
        if folded != ch:
            if ord(ch) < _TABLE_SIZE:
                fold_list[ord(ch)] = folded or None
                len_list[ord(ch)] = chr(len(folded.replace(_SENTINEL, "")))
            else:
                astral[ord(ch)] = folded or None
    for ch in seconds:  # seconds that fold to themselves still join the character before them
        if ch not in joiners and _fold_string(ch) == ch:
            joiners.add(ch)
            if ord(ch) < _TABLE_SIZE:
                fold_list[ord(ch)] = _SENTINEL + ch
    return fold_list, len_list, astral, "".join(re.escape(ch) for ch in sorted(joiners))


def _fold_astral(match: re.Match[str]) -> str:
    return _ASTRAL.get(ord(match.group()), match.group()) or ""


def _length_astral(match: re.Match[str]) -> str:
    folded = _ASTRAL.get(ord(match.group()), match.group())
    return chr(len(folded or ""))


def _has_astral(text: str) -> bool:
    """Whether `text` holds characters beyond the list tables (cheaper than a regex scan)."""
    return not text.isascii() and len(text.encode("utf-16-le", "surrogatepass")) != 2 * len(text)


class Normalized:
    """A folded text that still knows where each of its characters came from.

    Matches are found in `text` but must be reported in the client's own
    string, so `original_span` maps a span of `text` back to `original`. The
    offset map is built only when first asked for: most prompts match nothing.
    """

    __slots__ = ("original", "text", "_prefix", "_cluster_end")

    def __init__(self, original: str, text: str, prefix: list[int] | None = None,
                 cluster_end: dict[int, int] | None = None) -> None:
        self.original = original
        self.text = text
        self._prefix = prefix
        self._cluster_end = cluster_end or {}

    def __repr__(self) -> str:
        return f"Normalized(len(original)={len(self.original)}, len(text)={len(self.text)})"

    @property
    def simple(self) -> bool:
        """Whether every original character folded on its own (no combining clusters)."""
        return not self._cluster_end

    def output_lengths(self) -> bytes:
        """How many normalized characters each original character produced, one byte each.

        Lets callers holding numpy map many spans at once; on the cluster path
        (`simple` false) use `original_span`.
        """
        lengths_text = self.original.translate(_LENGTHS)
        if _has_astral(lengths_text):
            lengths_text = _BEYOND_TABLE.sub(_length_astral, lengths_text)
        return lengths_text.encode("latin-1")

    def _offsets(self) -> list[int]:
        if self._prefix is None:
            prefix = [0]
            prefix.extend(_accumulate(self.output_lengths()))
            self._prefix = prefix
        return self._prefix

    def original_span(self, start: int, end: int) -> tuple[int, int]:
        """Map ``text[start:end]`` to the smallest span of `original` that produced it.

        Folded-away characters inside the span are included; those just before
        or after it are not.
        """
        if not 0 <= start <= end <= len(self.text):
            raise ValueError("span outside the normalized text")
        prefix = self._offsets()
        first = bisect.bisect_right(prefix, start) - 1
        if end == start:
            return first, first
        last = bisect.bisect_right(prefix, end - 1) - 1
        return first, self._cluster_end.get(last, last + 1)


def _accumulate(lengths: bytes) -> list[int]:
    import itertools

    return list(itertools.accumulate(lengths))


def length_table() -> tuple[int, bytes]:
    """Output length of every code point below the returned limit, one byte each.

    For callers with numpy that map offsets of many characters at once; code
    points at or above the limit need `Normalized.output_lengths`.
    """
    return _TABLE_SIZE, "".join(_LENGTHS).encode("latin-1")


def _fold_simple(text: str) -> str | None:
    """`text` folded character by character, or None when a character needs `str.translate` or clusters.

    ASCII folds to its lower-case letters and digits (everything else is
    dropped); other text is mapped through `_single_table` when every
    character folds to at most one character below the astral limit of the
    tables.
    """
    if text.isascii():
        return text.encode("ascii").translate(_ASCII_LOWER, _ASCII_DROP).decode("ascii")
    np = sys.modules.get("numpy")
    if np is None:
        return None
    points = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), np.uint32)
    if int(points.max()) >= _TABLE_SIZE:
        return None
    folded = _single_table(np).take(points)
    if int(folded.max()) == _MANY:
        return None
    result: str = folded[folded != _GONE].tobytes().decode("utf-32-le", "surrogatepass")
    return result


def fold(text: str) -> str:
    """The normalized form of `text`, without the offset map (terms, record cells)."""
    simple = _fold_simple(text)
    if simple is not None:
        return simple
    folded = text.translate(_FOLD)
    if _has_astral(folded):
        folded = _BEYOND_TABLE.sub(_fold_astral, folded)
    if _SENTINEL in folded:
        return normalize(text).text
    return folded


def normalize(text: str) -> Normalized:
    """Fold `text` for hashing and keep the way back to the client's offsets."""
    simple = _fold_simple(text)
    if simple is not None:
        return Normalized(text, simple)
    folded = text.translate(_FOLD)
    if _has_astral(folded):
        folded = _BEYOND_TABLE.sub(_fold_astral, folded)
    if _SENTINEL not in folded:
        return Normalized(text, folded)
    pieces: list[str] = []
    prefix = [0]
    cluster_end: dict[int, int] = {}
    total = 0
    for match in _CLUSTER.finditer(text):
        start, end = match.span()
        piece = _fold_string(match.group())
        pieces.append(piece)
        total += len(piece)
        prefix.append(total)
        prefix.extend([total] * (end - start - 1))
        if end - start > 1:
            cluster_end[start] = end
    return Normalized(text, "".join(pieces), prefix, cluster_end)


def _single_table(np: Any) -> Any:
    """Code point -> its fold when that is one character (`_GONE`: dropped, `_MANY`: anything else).

    Built on first use (about 30 ms), from `_FOLD`.
    """
    if _SINGLE:
        return _SINGLE[0]
    table = np.arange(_TABLE_SIZE, dtype=np.uint32)
    for cp, folded in enumerate(_FOLD):
        if folded is None:
            table[cp] = _GONE
        elif isinstance(folded, str):
            single = len(folded) == 1 and folded != _SENTINEL and ord(folded) < _TABLE_SIZE
            table[cp] = ord(folded) if single else _MANY
        elif folded != cp:
            table[cp] = folded if folded < _TABLE_SIZE else _MANY
    _SINGLE.append(table)
    return table


# Generated by bench/detection_gen_confusables.py from UTS #39 confusables.txt 13.0.0:
# "target code points:source code points;" with the target already NFKC-casefolded.
_CONFUSABLES = (
    "32:1a7 3e8 14bf a644 a6ef a75a;32 6c 65e5:33f4;32 6c 70b9:336d;32 6f 65e5:33f3;"
    "32 6f 70b9:336c;33:1b7 21c 417 4e0 2ccc a76a a7ab 118ca 16f3b;33 6c 65e5:33fe;"
    "33 6f 65e5:33fd;34:13ce 118af;35:1bc 118bb;36:431 13ee 2cd2 118d5;37:104d2 118c6;"
    "38:222 223 9ea a6a b03 1031a 1e8cb;39:9ed a67 b68 d6d 2cca a76e 118ac 118cc 118d6;"
    "61:251 391 3b1 410 430 13aa 15c5 a4ee 102a0 16f40 1d6a8 1d6c2 1d6e2 1d6fc 1d71c 1d736 1d756 1d770 1d790 1d7aa;"
    "61 61:a732 a733;61 65:c6 e6 4d4 4d5;61 6f:a734 a735;61 75:a736 a737;"
    "61 76:a738 a739 a73a a73b;61 79:a73c a73d;"
    "62:184 392 412 42c 13cf 13f4 1472 15af 15f7 a4d0 a7b4 10282 102a1 10301 1d6a9 1d6e3 1d71d 1d757 1d791;"
    "62 6c:42b;"
    "63:3f2 3f9 421 441 13df 1d04 2ca4 2ca5 a4da abaf 102a2 10302 10415 1043d 1051c 118e9 118f2;"
    "64:501 13a0 13e7 146f 15de 15ea a4d2 a4d3;64 7a:2a3;"
    "65:395 415 435 4bd 13ac 2d39 a4f0 ab32 10286 118a6 118ae 1d6ac 1d6e6 1d720 1d75a 1d794;"
    "66:17f 3dc 584 15b4 1e9d a4dd a798 a799 ab35 10287 102a5 10525 118a2 118c2 1d7ca;"
    "67:18d 261 50c 581 13c0 13f3 1d83 1da2 a4d6;"
    "68:397 41d 4bb 570 13bb 13c2 157c 1d78 2c8e a4e7 102cf 1d6ae 1d6e8 1d722 1d75c 1d796;"
    "69:131 269 26a 3b9 456 4cf 13a5 1fbe 24db a647 ab75 118c3 1d6a4 1d6ca 1d704 1d73e 1d778 1d7b2;"
    "6a:37f 3f3 408 458 13ab 148d a4d9 a7b2;"
    "6b:39a 41a 13e6 16d5 2c94 a4d7 10518 1d6b1 1d6eb 1d725 1d75f 1d799;"
    "6c:196 1c0 399 406 4c0 5d5 5df 627 661 6f1 7ca 13de 14aa 16c1 2110 2111 2160 2c92 2cd0 2d4f a4e1 a4f2 fe8d fe8e ff29 1028a 10309 10320 1041b 10526 118a3 118b2 16f16 16f28 1d408 1d43c 1d470 1d4d8 1d540 1d574 1d5a8 1d5dc 1d610 1d644 1d678 1d6b0 1d6ea 1d724 1d75e 1d798 1d7cf 1d7d9 1d7e3 1d7ed 1d7f7 1e8c7 1ee00 1ee80 1fbf1;"
    "6c 32 65e5:33eb;6c 32 6708:32cb;6c 32 70b9:3364;6c 33 65e5:33ec;6c 33 70b9:3365;"
    "6c 34 65e5:33ed;6c 34 70b9:3366;6c 35 65e5:33ee;6c 35 70b9:3367;6c 36 65e5:33ef;"
    "6c 36 70b9:3368;6c 37 65e5:33f0;6c 37 70b9:3369;6c 38 65e5:33f1;6c 38 70b9:336a;"
    "6c 39 65e5:33f2;6c 39 70b9:336b;6c 6a:132;6c 6c:1c1 5f0 2161;6c 6c 6c:2162;6c 6c 65e5:33ea;"
    "6c 6c 6708:32ca;6c 6c 70b9:3363;6c 6f:42e;6c 6f 65e5:33e9;6c 6f 6708:32c9;6c 6f 70b9:3362;"
    "6c 73:2aa;6c 76:2163;6c 78:2168;6c 7a:2ab;6c 65e5:33e0;6c 6708:32c0;6c 70b9:3359;"
    "6d:39c 3fa 41c 13b7 15f0 16d6 2c98 a4df 102b0 10311 1d6b3 1d6ed 1d727 1d761 1d79b;"
    "6e:39d 578 57c 2c9a a4e0 10513 1d6b4 1d6ee 1d728 1d762 1d79c;"
    "6f:39f 3bf 3c3 41e 43e 555 585 5e1 647 665 6be 6c1 6d5 6f5 7c0 966 9e6 a66 ae6 b20 b66 be6 c02 c66 c82 ce6 d02 d20 d66 d82 e50 ed0 101d 1040 10ff 12d0 1d0f 1d11 2070 2c9e 2c9f 2d54 3007 a4f3 ab3d fba6 fba7 fba8 fba9 fbaa fbab fbac fbad fee9 feea feeb feec 10292 102ab 10404 1042c 104c2 104ea 10516 114d0 118b5 118c8 118d7 118e0 1d6b6 1d6d0 1d6d4 1d6f0 1d70a 1d70e 1d72a 1d744 1d748 1d764 1d77e 1d782 1d79e 1d7b8 1d7bc 1d7ce 1d7d8 1d7e2 1d7ec 1d7f6 1ee24 1ee64 1ee84 1fbf0;"
    "6f 65:152 153;6f 6f:a698 a699 a74e a74f;6f 70b9:3358;"
    "70:3a1 3c1 3f1 420 440 13e2 146d 2ca2 2ca3 a4d1 10295 1d6b8 1d6d2 1d6e0 1d6f2 1d70c 1d71a 1d72c 1d746 1d754 1d766 1d780 1d78e 1d7a0 1d7ba 1d7c8;"
    "71:51b 563 566 2d55;72:1a6 433 13a1 13d2 1587 1d26 2c85 a4e3 ab47 ab48 ab81 104b4 16f35;"
    "72 6e:217f 11700 118e3 1d426 1d45a 1d48e 1d4c2 1d4f6 1d52a 1d55e 1d592 1d5c6 1d5fa 1d62e 1d662 1d696;"
    "73:1bd 405 455 54f 13d5 13da a4e2 a731 abaa 10296 10420 10448 118c1 16f3a;"
    "73 73:3b2 3d0 13f0 a7b5 1d6c3 1d6fd 1d737 1d771 1d7ab;"
    "74:3a4 422 13a2 2ca6 a4d4 10297 102b1 10315 118bc 16f0a 1d6bb 1d6f5 1d72f 1d769 1d7a3;"
    "74 33:a728;74 66:a777;74 73:2a6;"
    "75:28b 3c5 54d 57d 1200 144c 1d1c a4f4 a79f ab4e ab52 104ce 104f6 118b8 118d8 16f42 1d6d6 1d710 1d74a 1d784 1d7be;"
    "75 65:1d6b;75 6f:ab63;"
    "76:3bd 474 475 5d8 667 6f7 13d9 142f 1d20 2d38 a4e6 a6df aba9 1051d 11706 118a0 118c0 16f08 1d6ce 1d708 1d742 1d77c 1d7b6;"
    "76 6c:2165;76 6c 6c:2166;76 6c 6c 6c:2167;"
    "77:26f 461 51c 51d 561 13b3 13d4 1d21 a4ea ab83 1170a 1170e 1170f 118e6 118ef;"
    "78:3a7 425 445 1541 157d 16b7 2cac 2d5d a4eb a7b3 10290 102b4 10317 10322 10527 118ec 1d6be 1d6f8 1d732 1d76c 1d7a6;"
    "78 6c:216a;78 6c 6c:216b;"
    "79:263 28f 3a5 3b3 3d2 423 443 4ae 4af 10e7 13a9 13bd 1d8c 1eff 213d 2ca8 a4ec ab5a 102b2 118a4 118dc 16f43 1d6bc 1d6c4 1d6f6 1d6fe 1d730 1d738 1d76a 1d772 1d7a4 1d7ac;"
    "7a:396 13c3 1d22 a4dc ab93 102f5 118a9 118c4 118e5 1d6ad 1d6e7 1d721 1d75b 1d795;3078:30d8;"
    "30fc:1173 2f00 3161 4e00 a7f7;30fc 30fc:1196;30fc 4e28:1174 3162;4e28:1175 3163;"
    "4e28 30fc:119c;4e28 4e28:d7c4;4e8c:30cb;4ebb:30a4;4f75:5002 2f807;5024:503c;516b:30cf;"
    "529b:30ab;535c:30c8;53e3:2f1e 30ed 56d7;5553:555f;571f:2f20 58eb;5861:586b;58ab:58ff;"
    "5915:30bf;5aaf:5b00;5de5:30a8;5e21:5e32;6236:6238;665a:6669;670c:80a6;670f:80d0;6710:80ca;"
    "6713:8101;6718:8127;6723:81a7;676e:67ff;699d:6a27;6e88:6f59;7814:784f;7d55:7d76;80fc:8141;"
    "848d:853f;8637:8641;8a2e:8a7d;8b86:8b8f;8c5c:8c63;8d7f:8d86;8de5:8dfa;8e97:8e9b;8eff:8f27;"
    "90ce:90de fa2e;93ad:93ae;96b7:96b8 f9b8;9e42:9e43;9ed1:9ed2;"
)
_CONFUSABLE_MAP = _load_confusables()
_FOLD, _LENGTHS, _ASTRAL, _JOINER_CLASS = _build_tables()
_GONE, _MANY = 0xFFFFFFFE, 0xFFFFFFFF  # _MANY is the largest value: one max() finds it
_SINGLE: list[Any] = []  # the numpy table of `_single_table`, once built
_ASCII_LOWER = bytes.maketrans(bytes(range(65, 91)), bytes(range(97, 123)))
_ASCII_DROP = bytes(c for c in range(128) if not chr(c).isalnum())
_BEYOND_TABLE = re.compile(f"[{chr(_TABLE_SIZE)}-\U0010ffff]")
# A cluster: one character and the joiners/combining marks that follow it.
_COMBINING_CLASS = "".join(re.escape(chr(cp)) for lo, hi in _TABLE_RANGES for cp in range(lo, hi)
                           if unicodedata.combining(chr(cp)))
_CLUSTER = re.compile(f"(?s).[{_JOINER_CLASS}{_COMBINING_CLASS}]*")
