"""A compact in-memory map from fingerprint to the item slots that hold it.

Why this shape: a prompt's 1-2 thousand fingerprints must be looked up in one
vectorised call whose cost does not grow with the registry, and a stored
fingerprint should cost at most 16 bytes.

* Entries live in *segments*: a sorted ``uint64`` key array, a parallel
  ``uint32`` slot array (12 bytes per entry) and a directory of bucket starts
  indexed by the top bits of the key (one ``uint32`` per 1.5 to 3 entries: at
  most 14.7 bytes per entry in all, plus at most 0.5 for the spare room of a
  segment's large arrays: `_capacity`). Keys are uniformly distributed (PRF
  outputs, rotated so the channel tag sits in the low bits: `_rotate`), so a
  lookup is one directory read plus a scan of a bucket of about two entries:
  constant time, and all queries of a prompt are handled by the same few
  numpy calls. A lookup's numpy work grows with the entries it compares:
  buckets of 2 to 4 entries cost about a quarter more per lookup for 0.8
  bytes per entry less, buckets of 1 to 2 up to 16 bytes per entry.
  Once the index outgrows the caches (1 GB of text, 250 million entries),
  the directory read and the bucket read each miss; measured against that
  (6,400 queries, 250K and 250M entries) and not kept: the same search as a
  compiled loop (Numba), with or without a first pass that fetches each
  bucket's line, was at best a third faster at 250K and 15-45% slower at
  250M, its compare-and-branch loop keeping fewer misses in flight than
  NumPy's gathers; an interpolated search from a directory of one entry per 32 keys
  (17 MB at 250M, cacheable) was no faster; a table of 8-key rows placed by
  the key's top bits (one read per query, 15 bytes per entry) lost to its
  own scan loop at both sizes. Sorting the queries first did not help. Nor
  did directory entries that also carry a 32-bit mask of their bucket's
  keys, so that most absent queries skip the bucket read (compiled, 5,700
  queries at 250M: 0.23 ms against NumPy's 0.21): the directory reads
  alone, cold, are most of a lookup at that size.
* Adding an item appends a small segment; segments of similar size are merged
  (an LSM-style cascade with ratio 4), so there are O(log n) segments and
  registration stays amortised O(log n) per fingerprint. `compact` merges
  everything into one segment after a bulk load. A merge writes the newer
  entries into the older segment's own arrays, grown in place (`_grow`):
  at 1 GB of text, writing every merge to fresh memory had cost more in the
  kernel (first touch of each page) than the merging itself.
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

import ctypes
import ctypes.util
import sys
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from gateway.detection import kernels

# NumPy asks the kernel for transparent huge pages on every array of 4 MB or more. With the kernel's
# usual `defrag=madvise`, each first touch of such an array may compact memory before it is served:
# measured here (`bench/detection_scan.py`), 36-42% of registering 100 MB went to the kernel, and
# registration ran at 7.4-8.5 MB/s per core against 10.2-10.8 without the advice (sys 14-16%). Scans
# up to 100 MB cost the same either way; at 1 GB the lookups are about 15% slower at p50 without huge
# pages (3.2 against 2.8 ms) and faster at p99 (4.5 against 7.2 ms). Registration is what the advice
# slows most, so the gateway does without it (process-wide: the index is where its large arrays are).
_hugepage_advice = getattr(getattr(np, "_core", np).multiarray, "_set_madvise_hugepage", None)  # NumPy's own switch
if _hugepage_advice is not None:
    _hugepage_advice(False)

__all__ = ["FingerprintIndex", "Hits", "from_bytes", "sorted_unique", "to_bytes"]

# Huge pages for the arrays that lookups read, asked for once a segment is finished (MADV_COLLAPSE, Linux
# 6.1+): the kernel copies the pages into huge ones there and then, in the calling thread, without the
# advice above on every fresh array. At 1 GB of text a lookup reads a directory entry and a bucket of keys
# far out of cache per fingerprint, and with 4 KB pages each read also misses the TLB. Segments below
# `_HUGE_BYTES` of keys are left alone: they are merged again soon, and their reads mostly hit the cache.
_MADV_COLLAPSE = 25
_HUGE_PAGE = 1 << 21
_HUGE_BYTES = 64 << 20
_ALIGNED_BYTES = 32 << 20  # glibc maps requests of this size or more apart (its largest dynamic mmap threshold)
_MALLOC_HEADER = 32  # a separately mapped chunk's header plus the rounding of its size: 16 + 16
_madvise = None
if sys.platform.startswith("linux"):
    try:
        _madvise = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).madvise
        _madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        _madvise.restype = ctypes.c_int
    except (OSError, AttributeError):
        _madvise = None


def _collapse(array: npt.NDArray[np.generic]) -> bool:
    """Back the whole huge pages inside `array` with huge pages now; False where the kernel cannot (old kernel, THP off)."""
    if _madvise is None:
        return False
    address = array.ctypes.data
    start = -(-address // _HUGE_PAGE) * _HUGE_PAGE
    end = (address + array.nbytes) // _HUGE_PAGE * _HUGE_PAGE
    return end <= start or _madvise(start, end - start, _MADV_COLLAPSE) == 0

UInt64Array = npt.NDArray[np.uint64]
UInt32Array = npt.NDArray[np.uint32]
IntArray = npt.NDArray[np.int64]

_EVERY_SLOT = np.zeros(0, bool)  # `kernels.merge_into`'s "no dead slots"
_NO_KEYS = np.zeros(0, np.uint64)
_NO_SLOTS = np.zeros(0, np.uint32)
_BUCKET = 1.5  # a bucket holds 1.5 to 3 entries on average (a uint32 each: 1.3 to 2.7 bytes per entry)
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


def _capacity(entries: int, itemsize: int) -> int:
    """Room for `entries` in an array whose memory mapping is a whole number of huge pages.

    Arrays of 32 MB or more are mapped apart by the C library (with a
    16-byte header); Linux places a mapping whose length is a multiple of
    2 MB on a 2 MB boundary, also when `realloc` moves it with `mremap`, and
    then moves its huge pages as they are. So a segment collapsed into huge
    pages (`_collapse`) keeps them as it grows, and collapsing it again
    costs only its new tail. At most 2 MB per array is spare (a sixteenth
    at 32 MB, nothing to speak of at the sizes where it matters).
    """
    nbytes = entries * itemsize
    if nbytes < _ALIGNED_BYTES:
        return entries
    return (-(-(nbytes + _MALLOC_HEADER) // _HUGE_PAGE) * _HUGE_PAGE - _MALLOC_HEADER) // itemsize


def _grow(part: "_Segment", size: int) -> None:
    """Give a segment room for `size` entries (its count becomes `size`), in place where NumPy can.

    Growing a large array in place is a `realloc`, which Linux serves by
    remapping its pages (`mremap`) rather than copying them: only the added
    tail is fresh memory. NumPy refuses where anything else holds the array
    (a view, a reference), and then it is copied as usual. Called only on
    segments being merged, which no lookup reads meanwhile (the registry's
    writers hold its lock); a segment's lookups never read past its
    directory, so a grown but not yet merged segment still answers right.
    """
    for name in ("keys", "slots"):
        capacity = _capacity(size, getattr(part, name).itemsize)
        if capacity == getattr(part, name).shape[0]:
            continue
        try:
            getattr(part, name).resize(capacity, refcheck=True)
        except ValueError:
            old = getattr(part, name)
            grown = np.zeros(capacity, old.dtype)
            kept = min(capacity, old.shape[0])
            grown[:kept] = old[:kept]
            setattr(part, name, grown)
    part.count = size


@dataclass(frozen=True, slots=True)
class Hits:
    """Result of a batch lookup: query ``queries[i]`` is held by slot ``slots[i]``.

    ``common`` lists the queries whose key is held by too many items to be
    listed (see `FingerprintIndex`), when the lookup was asked for it.
    """

    queries: IntArray
    slots: UInt32Array
    common: IntArray = field(default_factory=lambda: np.empty(0, np.int64))


class _Segment:
    """Sorted (key, slot) entries: the first `count` of the arrays (which may have room for more: `_capacity`)."""

    __slots__ = ("keys", "slots", "count", "directory", "shift", "spare")

    def __init__(self, keys: UInt64Array, slots: UInt32Array, ordered: bool = False, *, indexed: bool = True,
                 count: int | None = None, spare: UInt32Array | None = None) -> None:
        self.count = keys.shape[0] if count is None else count
        if ordered:  # keys already sorted (a new item's unique keys, a merge's result): skip the argsort
            self.keys, self.slots = keys, slots
        else:
            order = np.argsort(keys, kind="stable")
            self.keys = keys[order]
            self.slots = slots[order]
        bits = max(0, int(np.floor(np.log2(max(1.0, self.count / _BUCKET)))))
        self.shift = np.uint64(64 - bits)
        self.directory: UInt32Array | None = None
        self.spare = spare  # the directory of the segment this one was merged into, to refill in place
        if indexed:
            self.build_directory()

    def build_directory(self) -> None:
        """Find where each prefix's keys start (once; a segment merged again at once never needs it).

        The directory may be longer than its ``2**bits + 1`` entries: it is
        the merged-into segment's, resized in place like the keys (`_grow`),
        so that it too keeps its huge pages.
        """
        if self.directory is not None:
            return
        bits = 64 - int(self.shift)
        capacity = _capacity((1 << bits) + 1, 4)
        directory, self.spare = self.spare, None
        if directory is not None:
            try:
                directory.resize(capacity, refcheck=True)  # in place, as `_grow` does
            except ValueError:
                directory = None
        if directory is None:
            directory = np.empty(capacity, np.uint32)
        kernels.bucket_starts(self.keys[: self.count], bits, directory)
        self.directory = directory
        if self.keys.nbytes >= _HUGE_BYTES:
            for array in (self.keys, self.slots, self.directory):
                _collapse(array)

    def __len__(self) -> int:
        return self.count

    @property
    def nbytes(self) -> int:
        self.build_directory()
        assert self.directory is not None
        return int(self.keys.nbytes + self.slots.nbytes + self.directory.nbytes)

    def lookup(self, queries: UInt64Array) -> tuple[IntArray, UInt32Array]:
        """(query position, slot) of every entry equal to a query (queries rotated like the keys).

        Each query's bucket holds a few entries; they are laid out one after
        the other as *candidates*, compared in one pass, and only the few
        equal ones are traced back to their query.
        """
        if not len(self) or not queries.shape[0]:
            return np.empty(0, np.int64), np.empty(0, np.uint32)
        self.build_directory()
        directory = self.directory
        assert directory is not None
        if self.shift == 64:
            buckets = np.zeros(queries.shape[0], np.int64)
        else:
            buckets = np.right_shift(queries, self.shift).view(np.int64)
        lo = directory.take(buckets).astype(np.int64)
        counts = directory[1:].take(buckets).astype(np.int64)
        counts -= lo
        ends = np.cumsum(counts)
        total = int(ends[-1])
        if total == 0:
            return np.empty(0, np.int64), np.empty(0, np.uint32)
        # Candidate i of query q sits at keys[lo[q] + i]; in the flat layout it is entry ends[q] - counts[q] + i.
        # Which query a flat entry belongs to: how many buckets end at or before it (a count and a running sum,
        # several times cheaper than repeating per-query values by their counts).
        owner = np.cumsum(np.bincount(ends, minlength=total + 1)[:total])
        lo -= ends
        lo += counts
        candidates = lo.take(owner)
        candidates += np.arange(total)
        found = np.flatnonzero(self.keys.take(candidates) == queries.take(owner))
        return owner.take(found), self.slots.take(candidates.take(found))


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
        values = np.asarray(values, dtype=np.uint64)
        if values.shape[0] > 1 and bool(np.all(values[1:] > values[:-1])):
            # Already sorted and unique (the registry's own values): rotated, they are four sorted runs, one
            # per value of the two top bits, which a stable sort merges in linear time.
            keys = np.sort(_rotate(values), kind="stable")
        else:
            keys = sorted_unique(_rotate(values))
        self._alive[slot] = True
        self._counts[slot] = keys.shape[0]
        if self._common.shape[0]:
            keys = keys[~_member(keys, self._common)]
        if keys.shape[0]:
            self._segments.append(_Segment(keys, np.full(keys.shape[0], slot, np.uint32), ordered=True, indexed=False))
            self._cascade()
        return int(keys.shape[0])

    def _cascade(self) -> None:
        """Merge the newest segments while the last is at least 1/`_MERGE_RATIO` of the one before.

        The run of merges is planned from the segment sizes and done as one
        merge of all the segments it takes in, rather than one merge after
        another that moves the same entries again; if that merge drops
        entries (dead ones, keys become common), the plan is made again from
        the sizes it leaves. Only the segment left at the end gets a
        directory: the ones merged again at once are never looked up.
        """
        segs = self._segments
        while len(segs) >= 2:
            size, taken = len(segs[-1]), 1
            while taken < len(segs) and size * _MERGE_RATIO >= len(segs[-1 - taken]):
                size += len(segs[-1 - taken])
                taken += 1
            if taken == 1:
                break
            merged = self._merge(segs[-taken:])
            del segs[-taken:]
            if len(merged):
                segs.append(merged)
        if segs:
            segs[-1].build_directory()

    @property
    def common_keys(self) -> int:
        """How many keys are too common to be listed per item."""
        return int(self._common.shape[0])

    def _merge(self, parts: list[_Segment]) -> _Segment:
        """One segment (without its directory) of the parts' live entries; the parts are used up.

        Two runs at a time from the newest (the smallest: sizes grow
        geometrically), each merged into the arrays of the older part, grown
        in place (`_grow`): the old entries of a large segment are not copied
        to fresh memory, and those below the newer run's smallest key are not
        moved at all (`kernels.merge_into`). Equal keys keep the parts' order.
        """
        alive = self._alive if self._dead_entries else _EVERY_SLOT
        crowded = False
        if len(parts) == 1:  # compaction of one segment: drop its dead entries
            crowded = self._merge_into(parts[0], _NO_KEYS, _NO_SLOTS, alive)
        for k in range(len(parts) - 2, -1, -1):
            newer = parts[k + 1]
            crowded |= self._merge_into(parts[k], newer.keys[: newer.count], newer.slots[: newer.count], alive)
            newer.keys, newer.slots = _NO_KEYS, _NO_SLOTS  # merged in: let their memory go now
        if crowded:
            n = parts[0].count
            kept, common = kernels.drop_crowded(parts[0].keys[:n], parts[0].slots[:n], self.max_postings)
            self._common = np.union1d(self._common, common)
            _grow(parts[0], kept)
        keys, slots, count, directory = parts[0].keys, parts[0].slots, parts[0].count, parts[0].directory
        parts[0].keys, parts[0].slots, parts[0].directory = _NO_KEYS, _NO_SLOTS, None
        return _Segment(keys, slots, ordered=True, indexed=False, count=count, spare=directory)

    def _merge_into(self, part: _Segment, keys: UInt64Array, slots: UInt32Array, alive: npt.NDArray[np.bool_]) -> bool:
        """Merge (keys, slots) into `part`'s own arrays, which end up holding exactly the kept entries."""
        na = len(part)
        _grow(part, na + keys.shape[0])
        kept, crowded = kernels.merge_into(part.keys, part.slots, na, keys, slots, alive, self.max_postings)
        _grow(part, kept)
        return bool(crowded)

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
            merged.build_directory()
            self._segments = [merged] if len(merged) else []
        self._dead_entries = 0

    def lookup(self, queries: UInt64Array, *, common: bool = False) -> Hits:
        """All (query position, live slot) pairs, for every query at once.

        `common`: also list the queries whose key is too common to be listed
        per item. That is a search of its own (75 µs for the 5,700 values of
        a 16 KB prompt against a set of four keys, measured at 1 GB of text),
        and the scan needs none: such keys match nothing, and its own
        boilerplate rule covers what is shared.
        """
        queries = _rotate(np.asarray(queries, dtype=np.uint64))
        held = self._common if common else _NO_KEYS
        common_queries = np.flatnonzero(_member(queries, held)) if held.shape[0] else np.empty(0, np.int64)
        owners: list[IntArray] = []
        slots: list[UInt32Array] = []
        for seg in self._segments:
            o, s = seg.lookup(queries)
            owners.append(o)
            slots.append(s)
        if not owners:
            return Hits(np.empty(0, np.int64), np.empty(0, np.uint32), common_queries)
        owner = np.concatenate(owners)
        slot = np.concatenate(slots)
        if self._dead_entries:
            live = self._alive[slot]
            owner, slot = owner[live], slot[live]
        return Hits(owner, slot, common_queries)

    def item_fingerprints(self, slot: int) -> UInt64Array:
        """The fingerprints stored for `slot`, sorted (a full scan: for export, not the hot path).

        Keys that have since become common are no longer listed per item;
        export right after registration to keep them.
        """
        parts = [seg.keys[: seg.count][seg.slots[: seg.count] == slot] for seg in self._segments]
        return sorted_unique(_unrotate(np.concatenate(parts))) if parts else np.empty(0, np.uint64)

    def item_count(self, slot: int) -> int:
        """How many fingerprints `slot` holds (the denominator of item coverage)."""
        return int(self._counts[slot]) if slot < self._counts.shape[0] else 0

    def bytes_per_fingerprint(self) -> float:
        """Index memory divided by live entries (the ≤ 16 bytes target)."""
        live = len(self)
        return self.nbytes / live if live else 0.0
