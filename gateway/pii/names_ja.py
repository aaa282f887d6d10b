"""Japanese person names from Sudachi, the morphological analyser under GiNZA, and optionally GiNZA's NER.

Sudachi's dictionary tags surnames (人名・姓) and given names (人名・名). A
surname followed by a given name, or a surname or given name followed by an
honorific (様, さん, 部長…), is a person; a surname alone is not, because
company names start with one (中村銀行). GiNZA's NER, when enabled, reads the
sentences that hold a name and adds the persons it finds; it costs a model
pass, so it runs only on those sentences.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any

from sudachipy import Dictionary, SplitMode

HONORIFICS = frozenset({
    "様", "さま", "さん", "氏", "殿", "先生", "君", "くん", "ちゃん", "部長", "課長", "係長", "社長", "専務",
    "常務", "会長", "主任", "室長", "所長", "店長", "教授", "弁護士", "医師", "選手",
})
PLACE_SUFFIXES = frozenset({"川", "町", "村", "区", "市", "郡", "駅", "店", "橋", "通り", "丁目", "山", "島", "台", "谷",
                            "沢", "坂", "銀行", "印刷", "商事", "工業", "建設", "病院", "商店"})
_SURNAME = re.compile(r"[一-龥々]{1,3}")
_GIVEN = re.compile(r"[一-龥々ぁ-ゖァ-ヺー]{1,4}")
MAX_CHUNK = 4000  # Sudachi refuses very long inputs; cut at line or sentence ends
_CUT = re.compile(r"(?<=[\n。！？])")


@dataclass(frozen=True, slots=True)
class NameSpan:
    """A person name at `text[start:end]`, with how sure the reading is."""

    start: int
    end: int
    score: float


class JapaneseNames:
    """Finds person names; one Sudachi tokenizer per thread (they are not thread-safe), GiNZA behind a lock."""

    def __init__(self, ginza: Any = None) -> None:
        self._dictionary = Dictionary(dict="core")
        self._local = threading.local()
        self._ginza = ginza
        self._ginza_lock = threading.Lock()
        self._pos_cache: dict[int, tuple[str, ...]] = {}

    def _tokenizer(self) -> Any:
        tokenizer = getattr(self._local, "tokenizer", None)
        if tokenizer is None:
            tokenizer = self._local.tokenizer = self._dictionary.create(SplitMode.C)
        return tokenizer

    def find(self, text: str, use_ner: bool = False) -> list[NameSpan]:
        """Every person name in `text`, by dictionary and honorifics, plus GiNZA's persons if `use_ner`."""
        found: list[NameSpan] = []
        sentences: list[tuple[int, int]] = []
        for offset, chunk in _chunks(text):
            names = self._by_dictionary(chunk)
            found += [NameSpan(n.start + offset, n.end + offset, n.score) for n in names]
            if use_ner and names:
                sentences += _sentences_with(chunk, offset, names)
        if use_ner and self._ginza is not None and sentences:
            found = _union(found, self._by_ner(text, sentences))
        return found

    def _by_dictionary(self, text: str) -> list[NameSpan]:
        listed = self._tokenizer().tokenize(text)
        ids = [m.part_of_speech_id() for m in listed]  # an int per morpheme: cheap; the rest only near names
        people = [i for i, pid in enumerate(ids) if self._pos(pid)[2] == "人名"]
        if not people:
            return []
        morphemes = _Morphemes(listed, ids, self._pos)
        found: list[NameSpan] = []
        floor = 0
        for index in people:
            if index < floor:
                continue
            start, end, _, pos = morphemes[index]
            after = index + 1
            if after < len(morphemes) and morphemes[after][3][0] == "空白" and len(morphemes[after][2]) == 1:
                after += 1
            spaced = after > index + 1
            following = morphemes[after] if after < len(morphemes) else None
            then = morphemes[after + 1] if after + 1 < len(morphemes) else None
            if pos[3] == "姓" and following is not None and then is not None and then[2] in PLACE_SUFFIXES:
                floor = after + 1  # 西小来川, 中村町: a place named after a family, not a person
                continue
            if pos[3] == "姓" and following is not None and following[3][2:4] == ("人名", "名"):
                honored = then is not None and then[2] in HONORIFICS
                found.append(NameSpan(start, following[1], 0.95 if honored else 0.85))
                floor = after + 1
                continue
            if pos[3] == "姓" and following is not None and _GIVEN.fullmatch(following[2]) \
                    and following[3][0] == "名詞" and (then is None or then[2] in HONORIFICS or (
                        spaced and then[3][0] in ("助詞", "助動詞", "補助記号", "空白"))):
                # a given name the dictionary does not know: 山田 舞です, 山田零様
                honored = then is not None and then[2] in HONORIFICS
                found.append(NameSpan(start, following[1], 0.8 if honored or spaced else 0.7))
                floor = after + 1
                continue
            before = morphemes[index - 2] if index >= 2 and morphemes[index - 1][3][0] == "空白" else None
            if pos[3] == "名" and before is not None and before[3][0] == "名詞" and _SURNAME.fullmatch(before[2]) \
                    and not (found and found[-1].end > before[0]):
                found.append(NameSpan(before[0], end, 0.75))  # 林 明美: a surname the dictionary reads as a word
                continue
            if index + 1 < len(morphemes) and morphemes[index + 1][2] in HONORIFICS:
                found.append(NameSpan(start, end, 0.75))
        return found

    def _pos(self, pid: int) -> tuple[str, ...]:
        found = self._pos_cache.get(pid)
        if found is None:
            found = self._pos_cache[pid] = tuple(self._dictionary.pos_of(pid))
        return found

    def _by_ner(self, text: str, sentences: list[tuple[int, int]]) -> list[NameSpan]:
        with self._ginza_lock, self._ginza.memory_zone():  # the words of this text are not kept (see nlp.py)
            docs = self._ginza.pipe(text[s:e] for s, e in sentences)
            return [NameSpan(s + ent.start_char, s + ent.end_char, 0.85)
                    for (s, _), doc in zip(sentences, docs, strict=True) for ent in doc.ents if ent.label_ == "Person"]


class _Morphemes:
    """Sudachi's morphemes read lazily: (begin, end, surface, part of speech), built only when asked for."""

    def __init__(self, listed: Any, ids: list[int], pos: Any) -> None:
        self._listed, self._ids, self._pos = listed, ids, pos
        self._memo: dict[int, tuple[int, int, str, tuple[str, ...]]] = {}

    def __len__(self) -> int:
        return len(self._ids)

    def __getitem__(self, index: int) -> tuple[int, int, str, tuple[str, ...]]:
        found = self._memo.get(index)
        if found is None:
            m = self._listed[index]
            found = self._memo[index] = (m.begin(), m.end(), m.surface(), self._pos(self._ids[index]))
        return found


def _chunks(text: str) -> list[tuple[int, str]]:
    """Pieces of at most MAX_CHUNK characters, cut at line or sentence ends where possible."""
    if len(text) <= MAX_CHUNK:
        return [(0, text)]
    pieces: list[tuple[int, str]] = []
    start = 0
    current = ""
    for part in _CUT.split(text):
        while len(part) > MAX_CHUNK:
            if current:
                pieces.append((start, current))
                start += len(current)
                current = ""
            pieces.append((start, part[:MAX_CHUNK]))
            start += MAX_CHUNK
            part = part[MAX_CHUNK:]
        if len(current) + len(part) > MAX_CHUNK:
            pieces.append((start, current))
            start += len(current)
            current = ""
        current += part
    if current:
        pieces.append((start, current))
    return pieces


def _sentences_with(chunk: str, offset: int, names: list[NameSpan]) -> list[tuple[int, int]]:
    bounds = [0] + [m.end() for m in _CUT.finditer(chunk)] + [len(chunk)]
    spans = sorted({(a, b) for a, b in zip(bounds, bounds[1:], strict=False) if a < b
                    for n in names if a <= n.start < b})
    return [(a + offset, b + offset) for a, b in spans]


def _union(first: list[NameSpan], second: list[NameSpan]) -> list[NameSpan]:
    kept = list(first)
    for span in second:
        if not any(s.start < span.end and span.start < s.end for s in first):
            kept.append(span)
    return sorted(kept, key=lambda s: s.start)
