"""Terms and record sets: exact phrases found by one Aho-Corasick pass per part.

Terms are what fingerprints cannot catch because they are short: project code
names, internal host names. Record sets are rows of structured data (a
customer list, a dataset): one cell alone ("Tokyo", a common surname) says
nothing, so a row matches only when at least ``min_cells`` of *its* cells
occur in the same request.

Patterns are matched on normalized text (so case, width, lookalikes, spaces
and punctuation do not matter: ``Project-Atlas`` finds ``projectatlas``), and
a pattern that begins or ends with a Latin letter or digit must sit on a word
boundary of the *original* text, else ``atlas`` would fire inside
``that last`` once spaces are folded away. Japanese has no word boundaries,
so CJK ends are not checked.

Unlike fingerprints, the automaton holds the normalized patterns themselves:
multi-pattern matching needs them. They stay in memory only.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import ahocorasick

from gateway.normalize import Normalized, fold

__all__ = ["PhraseHit", "PhraseMatcher", "pattern_weight"]

MIN_TERM_WEIGHT = 3
MIN_CELL_WEIGHT = 4
MAX_ANCHOR_ROWS = 256  # a cell value in more rows than this cannot single out a row by itself


def pattern_weight(key: str) -> int:
    """Information weight of a normalized pattern: CJK characters count double."""
    return sum(2 if ("\u3040" <= ch < "\ua000" or "\uac00" <= ch < "\ud7b0") else 1 for ch in key)


def _word_end(ch: str) -> bool:
    return ch.isascii() and ch.isalnum()


@dataclass(frozen=True, slots=True)
class PhraseHit:
    """One occurrence of a term or of a cell of a matched row."""

    kind: str  # "term" | "record"
    part: int
    owner_id: str
    agreement_id: str
    category: str
    start: int
    end: int
    entity: str | None = None
    score: float = 1.0
    coverage: float = 0.0


@dataclass(slots=True)
class _TermOwner:
    owner_id: str
    agreement_id: str
    category: str


@dataclass(slots=True)
class _RecordSet:
    agreement_id: str
    category: str
    columns: tuple[str, ...]
    rows: list[tuple[str | None, ...]]
    min_cells: int


ExcludedFn = Callable[[int, str, int, int], bool]


class PhraseMatcher:
    """Terms and record-set cells of all agreements in one automaton."""

    def __init__(self) -> None:
        self._terms: dict[str, list[_TermOwner]] = {}
        self._term_counts: dict[str, int] = {}
        self._record_sets: dict[str, _RecordSet] = {}
        self._postings: dict[str, list[tuple[str, int, int]]] = {}
        self._automaton: ahocorasick.Automaton | None = None

    def __bool__(self) -> bool:
        return bool(self._terms or self._postings)

    def add_terms(self, owner_id: str, agreement_id: str, category: str, terms: Iterable[str]) -> int:
        """Add an item's terms; terms too short to be specific are skipped. Returns how many were kept."""
        kept = 0
        for term in terms:
            key = fold(term)
            if pattern_weight(key) < MIN_TERM_WEIGHT:
                continue
            owners = self._terms.setdefault(key, [])
            if not any(o.owner_id == owner_id for o in owners):
                owners.append(_TermOwner(owner_id, agreement_id, category))
                kept += 1
        self._term_counts[owner_id] = self._term_counts.get(owner_id, 0) + kept
        self._automaton = None
        return kept

    def add_record_set(self, record_set_id: str, agreement_id: str, category: str, rows: Iterable[Sequence[object]],
                       columns: Sequence[str], min_cells: int) -> int:
        """Add a record set; returns how many rows have at least `min_cells` usable cells."""
        if min_cells < 2:
            raise ValueError("min_cells must be at least 2: one cell alone is not a record")
        if record_set_id in self._record_sets:
            raise ValueError("record set already registered")
        stored: list[tuple[str | None, ...]] = []
        usable = 0
        for row_index, row in enumerate(rows):
            cells: list[str | None] = []
            for col, value in enumerate(row):
                key = fold(str(value)) if value is not None else ""
                if pattern_weight(key) < MIN_CELL_WEIGHT:
                    cells.append(None)
                    continue
                cells.append(key)
                self._postings.setdefault(key, []).append((record_set_id, row_index, col))
            stored.append(tuple(cells))
            usable += sum(c is not None for c in cells) >= min_cells
        self._record_sets[record_set_id] = _RecordSet(agreement_id, category, tuple(columns), stored, min_cells)
        self._automaton = None
        return usable

    def remove_owner(self, owner_id: str) -> bool:
        """Drop an item's terms or a record set; returns whether anything was removed."""
        removed = False
        for key in list(self._terms):
            owners = [o for o in self._terms[key] if o.owner_id != owner_id]
            if len(owners) != len(self._terms[key]):
                removed = True
                if owners:
                    self._terms[key] = owners
                else:
                    del self._terms[key]
        self._term_counts.pop(owner_id, None)
        if self._record_sets.pop(owner_id, None) is not None:
            removed = True
            for key in list(self._postings):
                postings = [p for p in self._postings[key] if p[0] != owner_id]
                if postings:
                    self._postings[key] = postings
                else:
                    del self._postings[key]
        if removed:
            self._automaton = None
        return removed

    def remove_agreement(self, agreement_id: str) -> list[str]:
        """Drop all terms and record sets of an agreement; returns their owner ids."""
        owners = {o.owner_id for lst in self._terms.values() for o in lst if o.agreement_id == agreement_id}
        owners |= {rid for rid, rs in self._record_sets.items() if rs.agreement_id == agreement_id}
        for owner in owners:
            self.remove_owner(owner)
        return sorted(owners)

    def _build(self) -> ahocorasick.Automaton:
        if self._automaton is None:
            automaton = ahocorasick.Automaton()
            for key in set(self._terms) | set(self._postings):
                automaton.add_word(key, key)
            automaton.make_automaton()
            self._automaton = automaton
        return self._automaton

    def find(self, norms: Sequence[Normalized], excluded: ExcludedFn | None = None) -> list[PhraseHit]:
        """Terms found in the parts, and cells of rows that match across the whole request."""
        if not self:
            return []
        automaton = self._build()
        hits: list[PhraseHit] = []
        found_terms: dict[str, set[str]] = {}
        cells: dict[str, list[tuple[int, int, int, int, int]]] = {}  # key -> (part, start, end, nstart, nend)
        for part_index, norm in enumerate(norms):
            if not norm.text:
                continue
            for last, key in automaton.iter(norm.text):
                nstart, nend = last - len(key) + 1, last + 1
                start, end = norm.original_span(nstart, nend)
                if not _on_boundaries(norm.original, start, end, key):
                    continue
                for owner in self._terms.get(key, ()):
                    if excluded is not None and excluded(part_index, owner.agreement_id, nstart, nend):
                        continue
                    found_terms.setdefault(owner.owner_id, set()).add(key)
                    hits.append(PhraseHit("term", part_index, owner.owner_id, owner.agreement_id, owner.category,
                                          start, end))
                if key in self._postings:
                    cells.setdefault(key, []).append((part_index, start, end, nstart, nend))
        hits = [
            PhraseHit(h.kind, h.part, h.owner_id, h.agreement_id, h.category, h.start, h.end, None, 1.0,
                      round(len(found_terms[h.owner_id]) / max(1, self._term_counts.get(h.owner_id, 1)), 4))
            for h in hits
        ]
        if cells:
            hits.extend(self._record_hits(cells, excluded))
        return hits

    def _record_hits(self, cells: dict[str, list[tuple[int, int, int, int, int]]],
                     excluded: ExcludedFn | None) -> list[PhraseHit]:
        candidates: set[tuple[str, int]] = set()
        for key in cells:
            postings = self._postings[key]
            if len(postings) <= MAX_ANCHOR_ROWS:
                candidates.update((rs_id, row) for rs_id, row, _ in postings)
        matched_rows: dict[str, set[int]] = {}
        hits: list[PhraseHit] = []
        for rs_id, row_index in sorted(candidates):
            record_set = self._record_sets[rs_id]
            row = record_set.rows[row_index]
            present: list[tuple[int, str, list[tuple[int, int, int, int, int]]]] = []
            for col, key in enumerate(row):
                if key is None or key not in cells:
                    continue
                places = [c for c in cells[key]
                          if excluded is None or not excluded(c[0], record_set.agreement_id, c[3], c[4])]
                if places:
                    present.append((col, key, places))
            if len(present) < record_set.min_cells:
                continue
            matched_rows.setdefault(rs_id, set()).add(row_index)
            usable = sum(k is not None for k in row)
            for col, _key, places in present:
                column = record_set.columns[col] if col < len(record_set.columns) else f"column_{col}"
                for part, start, end, _, _ in places:
                    hits.append(PhraseHit("record", part, rs_id, record_set.agreement_id, record_set.category,
                                          start, end, column, round(len(present) / max(1, usable), 4)))
        return [
            PhraseHit(h.kind, h.part, h.owner_id, h.agreement_id, h.category, h.start, h.end, h.entity, h.score,
                      round(len(matched_rows[h.owner_id]) / max(1, len(self._record_sets[h.owner_id].rows)), 4))
            for h in _dedupe(hits)
        ]


def _dedupe(hits: list[PhraseHit]) -> list[PhraseHit]:
    seen: set[tuple[int, str, int, int, str | None]] = set()
    out = []
    for h in hits:
        key = (h.part, h.owner_id, h.start, h.end, h.entity)
        if key not in seen:
            seen.add(key)
            out.append(h)
    return out


def _invisible(ch: str) -> bool:
    return unicodedata.category(ch) in ("Cf", "Mn", "Me")


def _on_boundaries(original: str, start: int, end: int, key: str) -> bool:
    """Whether a Latin-ended match does not continue a word of the original text."""
    if _word_end(key[0]):
        i = start
        while i > 0 and _invisible(original[i - 1]):
            i -= 1
        if i > 0:
            before = fold(original[i - 1])
            if before and _word_end(before[-1]):
                return False
    if _word_end(key[-1]):
        j = end
        while j < len(original) and _invisible(original[j]):
            j += 1
        if j < len(original):
            after = fold(original[j])
            if after and _word_end(after[0]):
                return False
    return True
