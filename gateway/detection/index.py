"""A compact in-memory map from fingerprint to the item slots that hold it.

Why this shape: a prompt's 1-2 thousand fingerprints must be looked up in one
vectorised call whose cost does not grow with the registry, and a stored
fingerprint should cost at most 16 bytes.

* Entries live in *segments*: a sorted ``uint64`` key array, a parallel
  ``uint32`` slot array (12 bytes per entry) and a directory of bucket starts
  indexed by the top bits of the key (one ``uint32`` per four entries). Keys
  are uniformly distributed (PRF outputs, rotated so the channel tag sits in
  the low bits: `_rotate`), so a lookup is one
  directory read plus a scan of a bucket of about four entries: constant
  time, and all queries of a prompt are handled by the same few numpy calls.
* Adding an item appends a small segment; segments of similar size are merged
  (an LSM-style cascade with ratio 4), so there are O(log n) segments and
  registration stays amortised O(log n) per fingerprint. `compact` merges
  everything into one segment after a bulk load.
* A key held by more than ``max_postings`` items (boilerplate: a licence
  header, a stock phrase) is moved to a small *common* set when segments
  merge, so one such key cannot turn a lookup into a scan of thousands of
  entries. Lookups report it as common, not per item; the registry treats it
  as boilerplate anyway.
* Removing an item marks its slot dead; lookups ignore dead slots, and the
  dead entries are dropped when they make up half the index.

The index never sees text: only keyed 64-bit values and integer slots. Which
item a slot stands for is the registry's business.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

__all__ = ["FingerprintIndex", "Hits", "from_bytes", "sorted_unique", "to_bytes"]

UInt64Array = npt.NDArray[np.uint64]
UInt32Array = npt.NDArray[np.uint32]
IntArray = npt.NDArray[np.int64]

_BUCKET = 2  # target entries per directory bucket (a uint32 per two entries: 2 bytes per fingerprint)
_MERGE_RATIO = 4


def sorted_unique(values: UInt64Array) -> UInt64Array:
    """`np.unique` by sorting: numpy's hash-based unique is several times slower on a registration's values."""
    ordered = np.sort(np.asarray(values, dtype=np.uint64))
    if ordered.shape[0] < 2:
        return ordered
    keep = np.empty(ordered.shape[0], bool)
    keep[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep]


def to_bytes(values: UInt64Array) -> bytes:
    """An item's fingerprints as bytes for the storage layer: sorted, unique, little-endian uint64."""
    return sorted_unique(values).astype("<u8").tobytes()


def from_bytes(blob: bytes) -> UInt64Array:
    """The inverse of `to_bytes`."""
    if len(blob) % 8:
        raise ValueError("fingerprint blob length is not a multiple of 8")
    return np.frombuffer(blob, dtype="<u8").astype(np.uint64)


_TAG_BITS = np.uint64(2)
_ROTATE_BACK = np.uint64(62)


def _rotate(values: UInt64Array) -> UInt64Array:
    """Keys as the index holds them: rotated left by two bits.

    Fingerprints carry their channel (text, code) in the top two bits, so most
    of them sit in one quarter of the key space; rotated, their top bits are
    uniform again and every directory bucket holds about `_BUCKET` entries.
    """
    return (values << _TAG_BITS) | (values >> _ROTATE_BACK)


def _unrotate(values: UInt64Array) -> UInt64Array:
    return (values >> _TAG_BITS) | (values << _ROTATE_BACK)


def _member(values: UInt64Array, ordered: UInt64Array) -> npt.NDArray[np.bool_]:
    """Membership in a sorted unique array by binary search (`np.isin` re-sorts it on every call)."""
    found = np.searchsorted(ordered, values)
    found[found == ordered.shape[0]] = 0
    return ordered[found] == values


@dataclass(frozen=True, slots=True)
class Hits:
    """Result of a batch lookup: query ``queries[i]`` is held by slot ``slots[i]``.

    ``common`` lists the queries whose key is held by too many items to be
    listed (see `FingerprintIndex`).
    """

    queries: IntArray
    slots: UInt32Array
    common: IntArray = field(default_factory=lambda: np.empty(0, np.int64))


class _Segment:
    __slots__ = ("keys", "slots", "directory", "shift")

    def __init__(self, keys: UInt64Array, slots: UInt32Array, ordered: bool = False) -> None:
        if ordered:  # keys already sorted (a new item's unique keys, a merge's result): skip the argsort
            self.keys, self.slots = keys, slots
        else:
            order = np.argsort(keys, kind="stable")
            self.keys = keys[order]
            self.slots = slots[order]
        bits = max(0, int(np.floor(np.log2(max(1, keys.shape[0] // _BUCKET)))))
        self.shift = np.uint64(64 - bits)
        prefixes = (self.keys >> self.shift).astype(np.int64) if bits else np.zeros(keys.shape[0], np.int64)
        counts = np.bincount(prefixes, minlength=1 << bits)
        self.directory = np.zeros((1 << bits) + 1, np.uint32)
        np.cumsum(counts, out=self.directory[1:])

    def __len__(self) -> int:
        return int(self.keys.shape[0])

    @property
    def nbytes(self) -> int:
        return int(self.keys.nbytes + self.slots.nbytes + self.directory.nbytes)

    def lookup(self, queries: UInt64Array) -> tuple[IntArray, UInt32Array]:
        if not len(self):
            return np.empty(0, np.int64), np.empty(0, np.uint32)
        if self.shift == 64:
            buckets = np.zeros(queries.shape[0], np.int64)
        else:
            buckets = (queries >> self.shift).astype(np.int64)
        lo = self.directory[buckets].astype(np.int64)
        counts = self.directory[buckets + 1].astype(np.int64) - lo
        total = int(counts.sum())
        if total == 0:
            return np.empty(0, np.int64), np.empty(0, np.uint32)
        owner = np.repeat(np.arange(queries.shape[0]), counts)
        offsets = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
        candidates = np.repeat(lo, counts) + offsets
        found = self.keys[candidates] == queries[owner]
        return owner[found], self.slots[candidates[found]]


class FingerprintIndex:
    """fingerprint (uint64) → item slots (uint32), with add, remove and batch lookup."""

    def __init__(self, max_postings: int = 64) -> None:
        self.max_postings = max_postings
        self._common = np.empty(0, np.uint64)
        self._segments: list[_Segment] = []
        self._alive = np.zeros(0, bool)
        self._counts = np.zeros(0, np.int64)
        self._dead_entries = 0

    def __len__(self) -> int:
        """Live entries (fingerprint, slot) in the index."""
        return int(self._counts[self._alive[: self._counts.shape[0]]].sum()) if self._counts.shape[0] else 0

    @property
    def nbytes(self) -> int:
        """Memory held by the index arrays."""
        return sum(seg.nbytes for seg in self._segments) + int(self._alive.nbytes + self._counts.nbytes)

    def _grow(self, slot: int) -> None:
        if slot >= self._alive.shape[0]:
            size = max(slot + 1, 2 * self._alive.shape[0], 64)
            self._alive = np.concatenate([self._alive, np.zeros(size - self._alive.shape[0], bool)])
            self._counts = np.concatenate([self._counts, np.zeros(size - self._counts.shape[0], np.int64)])

    def add(self, slot: int, values: UInt64Array) -> int:
        """Index the fingerprints of one item under `slot` (a fresh slot); returns how many."""
        self._grow(slot)
        if self._alive[slot] or self._counts[slot]:
            raise ValueError("slot already used")
        keys = sorted_unique(_rotate(np.asarray(values, dtype=np.uint64)))
        self._alive[slot] = True
        self._counts[slot] = keys.shape[0]
        if self._common.shape[0]:
            keys = keys[~np.isin(keys, self._common)]
        if keys.shape[0]:
            self._segments.append(_Segment(keys, np.full(keys.shape[0], slot, np.uint32), ordered=True))
            self._cascade()
        return int(keys.shape[0])

    def _cascade(self) -> None:
        segs = self._segments
        while len(segs) >= 2 and len(segs[-1]) * _MERGE_RATIO >= len(segs[-2]):
            b, a = segs.pop(), segs.pop()
            segs.append(self._merge([a, b]))

    @property
    def common_keys(self) -> int:
        """How many keys are too common to be listed per item."""
        return int(self._common.shape[0])

    def _merge(self, parts: list[_Segment]) -> _Segment:
        keys = np.concatenate([p.keys for p in parts])
        slots = np.concatenate([p.slots for p in parts])
        if self._dead_entries:
            live = self._alive[slots]
            keys, slots = keys[live], slots[live]
        order = np.argsort(keys, kind="stable")
        keys, slots = keys[order], slots[order]
        if keys.shape[0] > self.max_postings:
            # A key in more than max_postings entries spans that many positions in sorted order.
            crowded = keys[self.max_postings :] == keys[: -self.max_postings]
            if crowded.any():
                common = np.unique(keys[self.max_postings :][crowded])
                self._common = np.union1d(self._common, common)
                keep = ~np.isin(keys, common)
                keys, slots = keys[keep], slots[keep]
        return _Segment(keys, slots, ordered=True)

    def remove(self, slot: int) -> None:
        """Forget an item: its entries stop matching at once and are dropped at the next compaction."""
        if slot < self._alive.shape[0] and self._alive[slot]:
            self._alive[slot] = False
            self._dead_entries += int(self._counts[slot])
            if self._dead_entries * 2 > sum(len(s) for s in self._segments):
                self.compact()

    def compact(self) -> None:
        """Merge all segments into one and drop dead entries (after a bulk load or many removals)."""
        if self._segments:
            merged = self._merge(self._segments)
            self._segments = [merged] if len(merged) else []
        self._dead_entries = 0

    def lookup(self, queries: UInt64Array) -> Hits:
        """All (query position, live slot) pairs, for every query at once."""
        queries = _rotate(np.asarray(queries, dtype=np.uint64))
        common = np.flatnonzero(_member(queries, self._common)) if self._common.shape[0] else np.empty(0, np.int64)
        owners: list[IntArray] = []
        slots: list[UInt32Array] = []
        for seg in self._segments:
            o, s = seg.lookup(queries)
            owners.append(o)
            slots.append(s)
        if not owners:
            return Hits(np.empty(0, np.int64), np.empty(0, np.uint32), common)
        owner = np.concatenate(owners)
        slot = np.concatenate(slots)
        if self._dead_entries:
            live = self._alive[slot]
            owner, slot = owner[live], slot[live]
        return Hits(owner, slot, common)

    def item_fingerprints(self, slot: int) -> UInt64Array:
        """The fingerprints stored for `slot`, sorted (a full scan: for export, not the hot path).

        Keys that have since become common are no longer listed per item;
        export right after registration to keep them.
        """
        parts = [seg.keys[seg.slots == slot] for seg in self._segments]
        return sorted_unique(_unrotate(np.concatenate(parts))) if parts else np.empty(0, np.uint64)

    def item_count(self, slot: int) -> int:
        """How many fingerprints `slot` holds (the denominator of item coverage)."""
        return int(self._counts[slot]) if slot < self._counts.shape[0] else 0

    def bytes_per_fingerprint(self) -> float:
        """Index memory divided by live entries (the ≤ 16 bytes target)."""
        live = len(self)
        return self.nbytes / live if live else 0.0
