"""The registry: everything registered under agreements, and the scan against it.

A `Registry` holds, in memory and without the material's text:

* document fingerprints of items (`add_item`), looked up through one
  `FingerprintIndex`;
* exclusions (Article 2(2), `add_exclusion`): every gram of the excluded text,
  so any gram a prompt shares with it is recognised, whatever winnowing kept;
* a background corpus of ordinary text (`add_background`) and a cap on how
  many items may share a fingerprint (`max_item_share`): such fingerprints are
  boilerplate and never make a match on their own;
* an evidence rule (`run_fingerprints`): a match needs several distinct
  distinctive fingerprints of the item within one contiguous run, because one
  or two shared grams are as often a phrase every document of a field repeats
  as a copy (see `Registry`);
* terms (`add_terms`) and record sets (`add_record_set`), matched by
  `gateway.detection.terms.PhraseMatcher` (these do hold normalized terms and
  cells in memory: multi-pattern matching needs the patterns).

`scan` turns a request's `TextPart`s into `Match`es whose spans are offsets in
the parts' original strings, with coverage computed over the whole request so
that an item cut into several messages adds up. Persisting anything is the
storage layer's job: it keeps `item_fingerprints` bytes and calls `load_item`
at start-up.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from gateway.detection.fingerprint import (
    CHANNEL_CODE,
    CHANNEL_TEXT,
    CODE_PARAMS,
    TEXT_PARAMS,
    Fingerprinter,
    Fingerprints,
    WinnowParams,
    code_points,
    strip_comments,
)
from gateway.detection.idioms import idiom_fingerprints
from gateway.detection.index import FingerprintIndex, from_bytes, sorted_unique, to_bytes
from gateway.detection.terms import PhraseMatcher
from gateway.domain import Category, Match, TextPart
from gateway.normalize import Normalized, length_table, normalize

__all__ = ["ItemStats", "Registry", "ScanResult"]

UInt64Array = npt.NDArray[np.uint64]
_LENGTH_LIMIT, _LENGTH_BYTES = length_table()
_LENGTHS = np.frombuffer(_LENGTH_BYTES, np.uint8)
_ASCII_LENGTHS = _LENGTH_BYTES[:128] + bytes(128)  # a `bytes.translate` table: output length of each ASCII byte
_ASCII_ONE_EACH = max(_ASCII_LENGTHS) <= 1  # an ASCII character folds to itself, its lower case, or nothing


def _joined(arrays: list[npt.NDArray[np.int64]]) -> npt.NDArray[np.int64]:
    """The arrays one after the other; a single one as it is (most requests are one part: no copy)."""
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


@dataclass(frozen=True, slots=True)
class ItemStats:
    """What registering an item produced: enough for the audit trail and the storage layer."""

    item_id: str
    fingerprints: int
    chars: int
    sha256: str
    code_fingerprints: int = 0


@dataclass(frozen=True, slots=True)
class ScanResult:
    """Matches of one request, plus the raw material for cross-request accumulation.

    ``item_hits`` maps each matched item to the distinct fingerprints of it
    seen in this request (see `gateway.detection.accumulate`).
    """

    matches: tuple[Match, ...]
    request_fingerprints: int = 0
    item_hits: dict[str, UInt64Array] = field(default_factory=dict)


@dataclass(slots=True)
class _Item:
    item_id: str
    agreement_id: str
    category: str
    counts: tuple[int, int]  # fingerprints per channel (text, code)


@dataclass(slots=True)
class _Part:
    """Per-part scan state; the normalized text is built once and shared."""

    part: TextPart
    norm: Normalized
    prints: list[tuple[int, Fingerprints]]
    excluded: dict[str | None, npt.NDArray[np.bool_]] = field(default_factory=dict)
    _prefix: npt.NDArray[np.int64] | None = None
    _kept: npt.NDArray[np.int64] | bool | None = None

    def original_span(self, start: int, end: int) -> tuple[int, int]:
        """`Normalized.original_span` through `map_spans` (arrays built once per part, not a Python loop)."""
        if not self.norm.simple:
            return self.norm.original_span(start, end)
        firsts, lasts = self.map_spans(np.array([start], np.int64), np.array([end], np.int64))
        return int(firsts[0]), int(lasts[0])

    def map_spans(self, starts: npt.NDArray[np.int64], ends: npt.NDArray[np.int64]
                  ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """`original_span` of every (start, end) pair, as two arrays."""
        if not self.norm.simple:
            pairs = [self.norm.original_span(s, e) for s, e in zip(starts.tolist(), ends.tolist())]
            mapped = np.asarray(pairs, np.int64).reshape(-1, 2)
            return mapped[:, 0], mapped[:, 1]
        kept = self._kept_positions()
        if kept is not None and bool(np.all(starts < ends)) and int(ends.max(initial=0)) <= kept.shape[0]:
            # Each normalized character came from one original character: look the ends up directly.
            return kept.take(starts), kept.take(ends - 1) + 1
        prefix = self._prefix_lengths()
        firsts = np.searchsorted(prefix, starts, side="right") - 1
        lasts = np.searchsorted(prefix, ends - 1, side="right")
        return firsts, np.where(ends > starts, lasts, firsts)

    def _lengths(self) -> npt.NDArray[np.uint8]:
        """How many normalized characters each original character produced."""
        if self.norm.original.isascii():  # one C pass over bytes instead of a gather per code point
            return np.frombuffer(self.norm.original.encode("ascii").translate(_ASCII_LENGTHS), np.uint8)
        cps = code_points(self.norm.original)
        if cps.shape[0] and int(cps.max()) >= _LENGTH_LIMIT:
            return np.frombuffer(self.norm.output_lengths(), np.uint8)
        return _LENGTHS.take(cps)

    def _kept_positions(self) -> npt.NDArray[np.int64] | None:
        """Original offset of every normalized character, if each original character produced at most one."""
        if self._kept is None:
            lengths = self._lengths()
            one_each = ((_ASCII_ONE_EACH and self.norm.original.isascii()) or not lengths.shape[0]
                        or int(lengths.max()) <= 1)
            self._kept = np.flatnonzero(lengths.view(np.bool_)) if one_each else False
        return None if self._kept is False else self._kept

    def _prefix_lengths(self) -> npt.NDArray[np.int64]:
        """Normalized offset at which each original character begins (and the total at the end)."""
        if self._prefix is None:
            lengths = self._lengths()
            prefix = np.zeros(lengths.shape[0] + 1, np.int64)
            np.cumsum(lengths, out=prefix[1:])
            self._prefix = prefix
        return self._prefix


def _category(category: Category | str) -> str:
    return category.value if isinstance(category, Category) else str(category)


def _items_sharing(values: UInt64Array, slots: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """For each hit (value, share key), how many distinct share keys hold its value.

    Boilerplate is a fingerprint many *items* share; the same passage pasted
    twelve times into one request, or spread over nine messages, repeats a
    fingerprint of one item and must still be found. The caller passes share
    keys, not slots: all derived items of one agreement count as one item.
    """
    if values.shape[0] == 0:
        return np.zeros(0, np.int64)
    order = np.lexsort((slots, values))
    v, s = values[order], slots[order]
    new_value = np.concatenate(([True], v[1:] != v[:-1]))
    new_pair = new_value | np.concatenate(([True], s[1:] != s[:-1]))
    group = np.cumsum(new_value) - 1
    distinct = np.bincount(group, weights=new_pair).astype(np.int64)
    result = np.empty(values.shape[0], np.int64)
    result[order] = distinct[group]
    return result


_LIFT = 1 << 36  # above every offset in a request (far fewer than 2**35 characters) and below 2**63 / hits


def _changes(*keys: npt.NDArray[np.generic]) -> npt.NDArray[np.bool_]:
    """Where sorted rows begin a new group: the first row, and every row whose keys differ from the row before."""
    fresh = np.ones(keys[0].shape[0], bool)
    if fresh.shape[0] > 1:
        fresh[1:] = keys[0][1:] != keys[0][:-1]
        for key in keys[1:]:
            fresh[1:] |= key[1:] != key[:-1]
    return fresh


def _breaks(new_group: npt.NDArray[np.bool_], starts: npt.NDArray[np.int64],
            ends: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    """Where runs begin in intervals sorted by (group, start): a new group, or a start past every earlier end of it.

    Earlier ends are one running maximum over all rows, each group lifted
    `_LIFT` above the one before so that no end of it reaches the next (every
    end is at least its start, so a group's running maximum is its current
    run's end).
    """
    result = new_group.copy()
    if result.shape[0] > 1:
        lift = np.cumsum(new_group, dtype=np.int64)
        lift *= _LIFT
        reach = np.maximum.accumulate(lift + ends)
        lift += starts
        result[1:] |= lift[1:] > reach[:-1]
    return result


_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[^\n]*\n(.*?)(?:^[ \t]*\1|\Z)", re.M | re.S)
_MIN_CODE_CHARS = 40
_GAP_LINES = 2  # lines without a sign of code (`return x`, `pass`) between two code lines belong to the block


def _byte_table(chars: str) -> npt.NDArray[np.bool_]:
    table = np.zeros(256, bool)
    table[[ord(c) for c in chars]] = True
    return table


# Signs of code anywhere on a line: operators, brackets, statement ends (no sentence holds `=` or `{`).
_SIGN = _byte_table("=;{}[]()<>|&")
# Signs of code at the end of a line: Python's block colon, a trailing comma, a continuation.
_END_SIGN = _byte_table(":,\\({[")
_VISIBLE = ~_byte_table(" \t\r\n")


def _code_text(text: str) -> str | None:
    """The code-like blocks of `text` at their own offsets, everything else blanked; None if there are none.

    The code channel is decided per block, not per part: a fenced block, or a
    run of lines that lex as code (an operator or bracket on the line, or a
    line ending as Python block openers and continued lists do), with up to
    `_GAP_LINES` plain lines between two such lines (``return x``, ``pass``)
    and one plain indented line after a run, so a function pasted between two
    paragraphs of prose gets the channel and the prose around it adds no
    tokens. Blanking keeps offsets, so spans found in the result are spans of
    `text`. A few numpy passes over one byte per character.
    """
    n = len(text)
    if n < _MIN_CODE_CHARS:
        return None
    raw = np.frombuffer(text.encode("ascii", "replace"), np.uint8)  # one byte per character, offsets kept
    newlines = np.flatnonzero(raw == 10)
    line_starts = np.concatenate(([0], newlines + 1))
    line_ends = np.append(newlines, n)
    signs = np.flatnonzero(_SIGN[raw])
    code = np.zeros(line_starts.shape[0], bool)
    code[np.searchsorted(newlines, signs)] = True
    visible = np.flatnonzero(_VISIBLE[raw])
    if visible.shape[0] == 0:
        return None
    # The last visible character of each line: a colon, comma or open bracket there is a sign of code.
    last_pos = visible[np.maximum(np.searchsorted(visible, line_ends) - 1, 0)]
    non_blank = last_pos >= line_starts
    code |= non_blank & _END_SIGN[raw[last_pos]]
    if "```" in text or "~~~" in text:
        for fence in _FENCE.finditer(text):
            lo, hi = fence.span(2)
            if hi > lo:
                code[np.searchsorted(newlines, lo) : np.searchsorted(newlines, hi - 1) + 1] = True
    if not code.any():
        return None
    # Runs over non-blank lines: close short gaps, and take the indented line that ends a block.
    rows = np.flatnonzero(non_blank)
    marked = code[rows]
    hits = np.flatnonzero(marked)
    gaps = np.diff(hits)
    for at, gap in zip(hits[:-1][(gaps > 1) & (gaps <= _GAP_LINES + 1)].tolist(),
                       gaps[(gaps > 1) & (gaps <= _GAP_LINES + 1)].tolist()):
        marked[at : at + gap] = True
    after = hits + 1
    after = after[after < rows.shape[0]]
    after = after[raw[line_starts[rows[after]]] <= 32]  # indented: starts with a space or tab
    marked[after] = True
    code[rows] = marked
    keep = np.repeat(code, line_ends - line_starts + 1)[:n]
    if int(np.count_nonzero(keep & _VISIBLE[raw])) < _MIN_CODE_CHARS:
        return None
    if keep.all():
        return text
    cps = code_points(text)
    return np.where(keep, cps, np.uint32(32)).astype(np.uint32).tobytes().decode("utf-32-le", "surrogatepass")


def _member(values: UInt64Array, ordered: UInt64Array) -> npt.NDArray[np.bool_]:
    """`np.isin` against a set kept sorted and unique: a binary search per value, no re-sorting of the set.

    The background corpus and the exclusions are sorted once when they change;
    `np.isin` would sort them again on every scan.
    """
    if ordered.shape[0] == 0 or values.shape[0] == 0:
        return np.zeros(values.shape[0], bool)
    found = np.searchsorted(ordered, values)
    found[found == ordered.shape[0]] = 0
    return ordered[found] == values


def _looks_like_code(text: str) -> bool:
    """Whether any block of `text` lexes as code (see `_code_text`)."""
    return _code_text(text) is not None


class Registry:
    """Registered material of all agreements, and the scan of requests against it.

    ``secret`` is the deployment secret keying every fingerprint (at least 16
    bytes; changing it invalidates stored fingerprints). ``max_item_share``:
    a fingerprint held by more items than this is boilerplate.

    ``text_run`` / ``code_run`` (n, per channel): an item matches only where
    one contiguous run of the request (one part, one channel) holds at least n
    distinct fingerprints of it that are not boilerplate. Why: a lone shared
    gram (k = 36 Latin / 18 CJK characters, 28 code tokens) cannot be told from
    a phrase that documents of one field all repeat ("リアルタイムスケジューリング
    ポリシー", "the third ioctl(2) argument is an unsigned long"): on the
    evaluation corpus such single-gram matches were 84% of the false positives
    on unrelated text (1.68% of prompts), and beside the single-gram hits of
    real excerpts ("system calls that return", "a thread in a threaded group
    can be attached") they are made of the same ordinary words, so a model of
    word commonness has nothing to tell them apart by. Two grams still matched phrases of 37-42 characters
    two manual pages share ("the kernel source file Documentation/admin-guide")
    and code idioms of several lines. A run of ``n * window`` grams holds n
    disjoint winnowing windows, so both sides keep n distinct grams of it: the
    guarantee becomes ``T = k + n * window - 1`` (`guarantee`). On the
    evaluation corpus (bench/detection_eval.py, 7,812 unrelated prompts) false
    positives were 1.68% with n = 1, 0.29% with n = 2 and 0.18% with n = 3
    (the same prompts' hits rescored), and 0.03% with n = 3 and the code idioms
    of `gateway.detection.idioms` as background (the shipped default); verbatim
    recall stays 100% at each T, renamed identifiers 99.4%. The price is T =
    47 Latin / 29 CJK characters and 39 code tokens instead of 39 / 21 / 31
    (still under the 50 characters of commercial "exact match"
    fingerprinting), and scripted paraphrases found less often (60% en, 65%
    ja, from 67% / 76%). Changing n changes no stored fingerprint.
    """

    def __init__(self, secret: bytes, *, max_item_share: int = 8, text_params: WinnowParams = TEXT_PARAMS,
                 code_params: WinnowParams = CODE_PARAMS, text_run: int = 3, code_run: int = 3,
                 code_idioms: bool = True) -> None:
        if text_run < 1 or code_run < 1:
            raise ValueError("a match needs at least one fingerprint per run")
        self.fingerprinter = Fingerprinter(secret, text=text_params, code=code_params)
        self.max_item_share = max_item_share
        self.run_fingerprints = {CHANNEL_TEXT: text_run, CHANNEL_CODE: code_run}
        self.index = FingerprintIndex()
        self._items: list[_Item | None] = []
        self._slots: dict[str, int] = {}
        # Who a slot counts as when deciding boilerplate: itself, or (derived items) its agreement's derived
        # group. Answers generated from an excerpt repeat it; counted one by one, a few of them would make
        # the excerpt "shared by many items" and hide it (Article 4(3) outputs diluting their own source).
        self._share_keys: list[int] = []
        self._share_array: npt.NDArray[np.int64] | None = None
        self._derived_groups: dict[str, int] = {}
        self._code_items = 0
        self._exclusions: dict[str, tuple[str | None, UInt64Array]] = {}
        self._exclusion_sets: dict[str | None, UInt64Array] | None = None
        # Code idioms shared by unrelated projects are background from the start (`gateway.detection.idioms`).
        self._background = (idiom_fingerprints(secret, self.fingerprinter) if code_idioms
                            else np.empty(0, np.uint64))
        self.phrases = PhraseMatcher()

    def guarantee(self, channel: int = CHANNEL_TEXT, cjk: bool = False) -> int:
        """Shortest shared run always found under the evidence rule: ``k + n * window - 1`` (characters or tokens)."""
        params = self.fingerprinter.text_params if channel == CHANNEL_TEXT else self.fingerprinter.code_params
        k = params.k_cjk if cjk else params.k_latin
        return k + self.run_fingerprints[channel] * params.window - 1

    # -- registration ------------------------------------------------------
    def add_item(self, item_id: str, agreement_id: str, category: Category | str, text: str, *,
                 source_code: bool = False, language: str | None = None, filename: str | None = None,
                 derived: bool = False) -> ItemStats:
        """Register an item's text; source code also gets the token channel.

        `language` (a Pygments alias) or `filename` lets Pygments strip the
        code's comments exactly; otherwise its language is guessed.
        """
        if item_id in self._slots:
            raise ValueError("item already registered")
        text_prints = self.fingerprinter.text(normalize(text).text)
        values = [text_prints.values]
        code_count = 0
        if source_code:
            code_prints = self.fingerprinter.code(strip_comments(text, language, filename))
            values.append(code_prints.values)
            code_count = int(sorted_unique(code_prints.values).shape[0])
        self._store(item_id, agreement_id, category, np.concatenate(values), derived)
        return ItemStats(item_id=item_id, fingerprints=self.index.item_count(self._slots[item_id]), chars=len(text),
                         sha256=hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest(),
                         code_fingerprints=code_count)

    def _store(self, item_id: str, agreement_id: str, category: Category | str, values: UInt64Array,
               derived: bool = False) -> None:
        values = sorted_unique(values)
        channels = values >> np.uint64(62)
        counts = (int(np.count_nonzero(channels == CHANNEL_TEXT)), int(np.count_nonzero(channels == CHANNEL_CODE)))
        slot = len(self._items)
        self._items.append(_Item(item_id, agreement_id, _category(category), counts))
        self._slots[item_id] = slot
        if derived:  # negative keys never meet a slot number
            key = self._derived_groups.setdefault(agreement_id, -1 - len(self._derived_groups))
        else:
            key = slot
        self._share_keys.append(key)
        self._share_array = None
        self.index.add(slot, values)
        if counts[1]:
            self._code_items += 1

    def item_fingerprints(self, item_id: str) -> bytes:
        """The item's stored fingerprints, for the storage layer to persist (see `load_item`)."""
        return to_bytes(self.index.item_fingerprints(self._slots[item_id]))

    def item_size(self, item_id: str) -> int:
        """How many fingerprints an item holds (0 if unknown): the denominator of item coverage."""
        slot = self._slots.get(item_id)
        return self.index.item_count(slot) if slot is not None else 0

    def load_item(self, item_id: str, agreement_id: str, category: Category | str, fingerprints: bytes, *,
                  derived: bool = False) -> None:
        """Restore an item from persisted fingerprints, without its text."""
        if item_id in self._slots:
            raise ValueError("item already registered")
        self._store(item_id, agreement_id, category, from_bytes(fingerprints), derived)

    def novel_fingerprints(self, agreement_id: str, fingerprints: bytes) -> bytes:
        """Those of `fingerprints` that no live item of the agreement holds yet.

        A derived item (Article 4(3)) is an answer generated from the agreement's material; what it repeats
        of that material is found through the source items already, so it keeps only what is new. Stored
        whole, every echo of an excerpt would add one more holder of its fingerprints until they count as
        boilerplate and the excerpt itself is no longer found.
        """
        values = from_bytes(fingerprints)
        hits = self.index.lookup(values)
        held = [q for q, s in zip(hits.queries.tolist(), hits.slots.tolist(), strict=True)
                if (item := self._items[s]) is not None and item.agreement_id == agreement_id]
        if not held:
            return fingerprints
        keep = np.ones(values.shape[0], bool)
        keep[held] = False
        return to_bytes(values[keep])

    def _share_key_array(self) -> npt.NDArray[np.int64]:
        if self._share_array is None:
            self._share_array = np.asarray(self._share_keys, np.int64)
        return self._share_array

    def compact(self) -> None:
        """Merge the index into one segment (after a bulk load): each lookup then reads one segment."""
        self.index.compact()

    def remove_item(self, item_id: str) -> bool:
        """Stop matching an item (fingerprints and terms); returns whether it was known."""
        known = self.phrases.remove_owner(item_id)
        slot = self._slots.pop(item_id, None)
        if slot is None:
            return known
        item = self._items[slot]
        if item is not None and item.counts[1]:
            self._code_items -= 1
        self._items[slot] = None
        self.index.remove(slot)
        return True

    def remove_agreement(self, agreement_id: str) -> list[str]:
        """Remove every item, term list, record set and exclusion of an agreement (Article 8)."""
        removed = [it.item_id for it in self._items if it is not None and it.agreement_id == agreement_id]
        for item_id in removed:
            self.remove_item(item_id)
        removed.extend(self.phrases.remove_agreement(agreement_id))
        for exclusion_id in [e for e, (a, _) in self._exclusions.items() if a == agreement_id]:
            self.remove_exclusion(exclusion_id)
        return sorted(set(removed))

    def add_exclusion(self, exclusion_id: str, agreement_id: str | None, text: str, *, source_code: bool = False) -> int:
        """Register text that must never match (Article 2(2)); ``agreement_id=None`` applies to all.

        Every gram is kept, not only the winnowed ones, so a gram a prompt
        shares with the excluded text is recognised whatever the context.
        """
        values = [self.fingerprinter.text(normalize(text).text, every_gram=True).values]
        if source_code or _looks_like_code(text):
            values.append(self.fingerprinter.code(text, every_gram=True).values)
        merged = np.unique(np.concatenate(values))
        self._exclusions[exclusion_id] = (agreement_id, merged)
        self._exclusion_sets = None
        return int(merged.shape[0])

    def remove_exclusion(self, exclusion_id: str) -> None:
        """Forget an exclusion."""
        if self._exclusions.pop(exclusion_id, None) is not None:
            self._exclusion_sets = None

    def is_background(self, values: UInt64Array) -> npt.NDArray[np.bool_]:
        """Which of `values` are background fingerprints (ordinary text, code idioms): boilerplate, never a match alone."""
        return _member(np.asarray(values, np.uint64), self._background)

    def add_background(self, text: str) -> None:
        """Add ordinary text whose fingerprints are boilerplate (never a match on their own)."""
        values = [self.fingerprinter.text(normalize(text).text, every_gram=True).values,
                  self.fingerprinter.code(text, every_gram=True).values]
        self._background = np.union1d(self._background, np.concatenate(values))

    def add_terms(self, item_id: str, agreement_id: str, category: Category | str, terms: Iterable[str]) -> int:
        """Register exact terms (code names, host names) of an item; returns how many are usable."""
        return self.phrases.add_terms(item_id, agreement_id, _category(category), terms)

    def add_record_set(self, record_set_id: str, agreement_id: str, rows: Iterable[Sequence[object]],
                       columns: Sequence[str], min_cells: int = 2,
                       category: Category | str = Category.DATA) -> int:
        """Register structured rows; a row matches when `min_cells` of its cells occur in one request."""
        return self.phrases.add_record_set(record_set_id, agreement_id, _category(category), rows, columns,
                                           min_cells)

    # -- scanning ----------------------------------------------------------
    def _exclusion_set(self, agreement_id: str | None) -> UInt64Array | None:
        if self._exclusion_sets is None:
            grouped: dict[str | None, list[UInt64Array]] = {}
            for agreement, values in self._exclusions.values():
                grouped.setdefault(agreement, []).append(values)
            self._exclusion_sets = {a: np.unique(np.concatenate(v)) for a, v in grouped.items()}
            # Each agreement's set already holds the exclusions that apply to all, sorted once here.
            common = self._exclusion_sets.get(None)
            if common is not None:
                for agreement in grouped:
                    if agreement is not None:
                        self._exclusion_sets[agreement] = np.union1d(self._exclusion_sets[agreement], common)
        return self._exclusion_sets.get(agreement_id, self._exclusion_sets.get(None))

    def scan(self, parts: Sequence[TextPart]) -> ScanResult:
        """Find registered material in a request's parts."""
        states: list[_Part] = []
        chunks: list[tuple[int, int, Fingerprints]] = []
        code_on = self._code_items > 0
        for i, part in enumerate(parts):
            norm = normalize(part.text)
            prints = [(CHANNEL_TEXT, self.fingerprinter.text(norm.text))]
            code = _code_text(part.text) if code_on else None
            if code is not None:
                prints.append((CHANNEL_CODE, self.fingerprinter.code(code)))
            states.append(_Part(part, norm, prints))
            chunks.extend((i, ch, p) for ch, p in prints if len(p))
        matches: list[Match] = []
        item_hits: dict[str, UInt64Array] = {}
        request_total = 0
        if chunks and len(self.index):
            values = np.concatenate([p.values for _, _, p in chunks])
            distinct = sorted_unique(values)
            request_total = int(distinct.shape[0])
            code_values = int(np.count_nonzero((distinct >> np.uint64(62)) == CHANNEL_CODE))
            request_values = {CHANNEL_TEXT: request_total - code_values, CHANNEL_CODE: code_values}
            matches, item_hits = self._fingerprint_matches(states, chunks, values, request_values)
        if self.phrases:
            matches.extend(self._phrase_matches(states))
        matches.sort(key=lambda m: (m.location, m.start, m.kind, m.item_id or ""))
        return ScanResult(tuple(matches), request_total, item_hits)

    def _fingerprint_matches(self, states: list[_Part], chunks: list[tuple[int, int, Fingerprints]],
                             values: UInt64Array, request_values: dict[int, int]
                             ) -> tuple[list[Match], dict[str, UInt64Array]]:
        """Turn the index's hits into matches: per item, its runs of hits, their spans and its coverage.

        A 600-character excerpt brings about two hundred hits, and a NumPy call
        costs a few microseconds whatever its size, so the hits are sorted once
        by (item, part, channel, position) and every later step is a pass over
        that order: the Python work is per matched item and span, not per hit.
        """
        hits = self.index.lookup(values)
        if hits.queries.shape[0] == 0:
            return [], {}
        queries = hits.queries
        slots = hits.slots.astype(np.int64)
        hit_values = values.take(queries)
        common = self._boilerplate(hit_values, slots)
        nparts = len(states)
        group = slots * (2 * nparts)  # item, part and channel in one key
        if len(chunks) == 1:
            group += 2 * chunks[0][0] + chunks[0][1]
        else:
            group += np.concatenate([np.full(len(p), 2 * i + ch, np.int64) for i, ch, p in chunks]).take(queries)
        starts = _joined([p.starts for _, _, p in chunks]).take(queries)
        order = np.lexsort((starts, group))
        # Items with at least one distinctive, non-excluded hit; each keeps all its non-excluded hits.
        kept = self._not_excluded(hit_values, slots) if self._exclusions else None
        ranked = slots.take(order)
        first = np.flatnonzero(_changes(ranked))
        items = [self._items[s] for s in ranked.take(first).tolist()]
        missing = any(item is None for item in items)
        if common is not None or kept is not None or missing:
            useful = np.ones(order.shape[0], bool) if common is None else ~common.take(order)
            if kept is not None:
                useful &= kept.take(order)
            wanted = np.logical_or.reduceat(useful, first)
            if missing:
                wanted &= np.asarray([item is not None for item in items])
            chosen = np.repeat(wanted, np.diff(first, append=order.shape[0]))
            if kept is not None:
                chosen &= kept.take(order)
            if not chosen.all():
                order = order[chosen]
                if order.shape[0] == 0:
                    return [], {}
                ranked = slots.take(order)
                first = np.flatnonzero(_changes(ranked))
                items = [self._items[s] for s in ranked.take(first).tolist()]
        n = order.shape[0]
        group, starts = group.take(order), starts.take(order)
        ends = _joined([p.ends for _, _, p in chunks]).take(queries.take(order))
        value = hit_values.take(order)
        distinctive = None if common is None else ~common.take(order)
        new_item = np.zeros(n, bool)
        new_item[first] = True
        item_of = np.cumsum(new_item) - 1
        # Each item's distinct values: hits below the evidence rule still add up across requests
        # (`accumulate`) for a later match.
        by_value = np.lexsort((value, item_of))
        held = value.take(by_value)
        fresh = new_item.copy()
        fresh[1:] |= held[1:] != held[:-1]
        repeats = not fresh.all()
        if repeats:  # where each item's distinct values begin among all the distinct values
            begins = np.flatnonzero(fresh).searchsorted(first)
            held = held[fresh]
        else:
            begins = first
        bounds = [*begins.tolist(), held.shape[0]]
        owners = [item for item in items if item is not None]  # all of them, once orphaned slots are dropped
        # Coverage counts every distinct hit of the item per channel, boilerplate included.
        channel = group & 1
        found = np.bincount((item_of * 2 + channel).take(by_value)[fresh] if repeats else item_of * 2 + channel,
                            minlength=2 * len(owners)).reshape(-1, 2).tolist()
        spans = self._spans(states, group, channel, starts, ends, distinctive, value if repeats else None)
        # Items in the order of their first hit, as the lookup reported them.
        listed = np.argsort(np.minimum.reduceat(order, first), kind="stable").tolist()
        span_item = (spans[0] // nparts).tolist()
        span_part = (spans[0] % nparts).tolist()
        span_starts, span_ends = spans[1].tolist(), spans[2].tolist()
        slot_numbers = ranked.take(first).tolist()
        per_item: dict[int, list[int]] = {}
        for k, slot in enumerate(span_item):
            per_item.setdefault(slot, []).append(k)
        matches: list[Match] = []
        for j in listed:
            item = owners[j]
            reported = per_item.get(slot_numbers[j])
            if not reported:
                continue  # no run holds enough distinctive fingerprints: below the guarantee, not a match
            best_item, best_request = 0.0, 0.0
            for ch in (CHANNEL_TEXT, CHANNEL_CODE):
                if not item.counts[ch]:
                    continue
                count = found[j][ch]
                if count and count / item.counts[ch] > best_item:
                    best_item, best_request = count / item.counts[ch], count / max(1, request_values[ch])
            score = max(best_item, best_request)
            for k in reported:
                matches.append(Match(kind="fingerprint", location=states[span_part[k]].part.location,
                                     start=span_starts[k], end=span_ends[k], agreement_id=item.agreement_id,
                                     item_id=item.item_id, category=item.category, score=round(score, 4),
                                     item_coverage=round(min(1.0, best_item), 4),
                                     request_coverage=round(min(1.0, best_request), 4)))
        return matches, {owners[j].item_id: held[bounds[j] : bounds[j + 1]].copy() for j in listed}

    def _boilerplate(self, hit_values: UInt64Array, slots: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_] | None:
        """Which hits are boilerplate (held by too many items, or background); None when none is."""
        common = None
        ordered = np.sort(hit_values)
        share = self.max_item_share
        # A value needs more than `share` hits to have more than `share` holders: usually none has.
        if share < 1 or (ordered.shape[0] > share and bool(np.any(ordered[share:] == ordered[:-share]))):
            common = _items_sharing(hit_values, self._share_key_array().take(slots)) > share
        # Background values are sorted: hits all below the smallest (text hits against the code idioms) are none.
        if self._background.shape[0] and int(hit_values.max()) >= int(self._background[0]):
            background = _member(hit_values, self._background)
            if background.any():
                common = background if common is None else common | background
        return common

    def _not_excluded(self, hit_values: UInt64Array, slots: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        """Which hits no exclusion of their item's agreement covers (one vectorised test per agreement)."""
        slot_ids, slot_of_hit = np.unique(slots, return_inverse=True)
        agreements = [it.agreement_id if (it := self._items[s]) is not None else "" for s in slot_ids.tolist()]
        names = sorted(set(agreements))
        code = np.asarray([names.index(a) for a in agreements], np.int64)[slot_of_hit]
        keep = np.ones(hit_values.shape[0], bool)
        for j, agreement in enumerate(names):
            excluded = self._exclusion_set(agreement)
            if excluded is not None:
                mine = code == j
                keep[mine] &= ~_member(hit_values[mine], excluded)
        return keep

    def _spans(self, states: list[_Part], group: npt.NDArray[np.int64], channel: npt.NDArray[np.int64],
               starts: npt.NDArray[np.int64], ends: npt.NDArray[np.int64],
               distinctive: npt.NDArray[np.bool_] | None, value: UInt64Array | None
               ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Merge hits into one original-text span per contiguous run of one item and part.

        Hits come sorted by `group` (item, part and channel in one key, the
        channel its low bit) and start, with whether each is distinctive (None:
        all are) and, when an item may hold a value at several places, the
        values. The result is (item and part as ``slot * parts + part``, start,
        end) of every reported span, sorted. Kept grams of a copied run are at most
        one window apart, so hits of one group closer than that belong to the
        same run. A run is reported only when it holds `run_fingerprints`
        distinct fingerprints of its channel that are not boilerplate (a run of
        boilerplate alone never is). Text runs are mapped to the client's
        string, then the runs of both channels of one part are merged where
        they overlap or touch there.
        """
        nparts = len(states)
        text_only = not channel.any()
        window = self.fingerprinter.text_params.window
        gap = window if text_only else np.where(channel == CHANNEL_TEXT, window, 0)
        breaks = _breaks(_changes(group), starts - gap, ends)
        run_first = np.flatnonzero(breaks)
        if value is None:  # no value repeats within an item: a run's distinct fingerprints are its hits
            distinct = (np.diff(run_first, append=starts.shape[0]) if distinctive is None
                        else np.add.reduceat(distinctive.astype(np.int64), run_first))
        else:
            run = np.cumsum(breaks) - 1
            if distinctive is not None:
                run, value = run[distinctive], value[distinctive]
            pair = np.lexsort((value, run))
            run, value = run.take(pair), value.take(pair)
            distinct = np.bincount(run[_changes(run, value)], minlength=run_first.shape[0])
        run_group = group.take(run_first)
        run_start, run_end = starts.take(run_first), np.maximum.reduceat(ends, run_first)
        text_runs = True if text_only else (run_group & 1) == CHANNEL_TEXT
        if text_only:
            ok = distinct >= self.run_fingerprints[CHANNEL_TEXT]
        else:
            ok = distinct >= np.where(text_runs, self.run_fingerprints[CHANNEL_TEXT],
                                      self.run_fingerprints[CHANNEL_CODE])
        run_group >>= 1  # slot * parts + part
        if nparts == 1 and text_only:
            run_start, run_end = states[0].map_spans(run_start, run_end)
        else:
            run_part = run_group % nparts
            for index in np.unique(run_part).tolist():
                at = np.flatnonzero((run_part == index) & text_runs)
                if at.shape[0]:
                    run_start[at], run_end[at] = states[index].map_spans(run_start.take(at), run_end.take(at))
        # Channels may overlap in one part: merge in original coordinates. Mapping keeps the order of a
        # part's text runs, so only code runs need sorting in.
        if not text_only:
            order = np.lexsort((ok, run_end, run_start, run_group))
            run_group, run_start, run_end, ok = (a.take(order) for a in (run_group, run_start, run_end, ok))
        merged = np.flatnonzero(_breaks(_changes(run_group), run_start, run_end))
        reported = np.logical_or.reduceat(ok, merged)
        merged_end = np.maximum.reduceat(run_end, merged)[reported]
        merged = merged[reported]
        return run_group.take(merged), run_start.take(merged), merged_end

    def _excluded_chars(self, state: _Part, agreement_id: str) -> npt.NDArray[np.bool_] | None:
        """Normalized characters of a part covered by grams of the agreement's exclusions."""
        excluded = self._exclusion_set(agreement_id)
        if excluded is None:
            return None
        if agreement_id not in state.excluded:
            prints = self.fingerprinter.text(state.norm.text, every_gram=True)
            mask = np.zeros(len(state.norm.text) + 1, np.int64)
            inside = _member(prints.values, excluded)
            np.add.at(mask, prints.starts[inside], 1)
            np.add.at(mask, prints.ends[inside], -1)
            state.excluded[agreement_id] = np.cumsum(mask)[:-1] > 0
        return state.excluded[agreement_id]

    def _phrase_matches(self, states: list[_Part]) -> list[Match]:
        def excluded(part: int, agreement_id: str, start: int, end: int) -> bool:
            mask = self._excluded_chars(states[part], agreement_id)
            return mask is not None and bool(mask[start:end].all())

        hits = self.phrases.find([st.norm for st in states], excluded if self._exclusions else None)
        return [Match(kind=h.kind, location=states[h.part].part.location, start=h.start, end=h.end,
                      agreement_id=h.agreement_id, item_id=h.owner_id, category=h.category, entity=h.entity,
                      score=h.score, item_coverage=h.coverage) for h in hits]
