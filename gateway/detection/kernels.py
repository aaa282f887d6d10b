"""The inner loops of detection, compiled with Numba.

Why compiled: NumPy runs one pass over its arrays per call, so a step made
of ninety calls (SipHash written as array operations) pays ninety call
overheads on a few thousand values, and a merge done as concatenate, argsort
and take writes three times the memory it keeps. As plain loops each runs in
one pass (a merge in place, into the older run's own grown arrays).

Index lookups stay in NumPy (`index.py`): its gathers are tight loops that
keep many cache misses in flight, which a compiled loop that also compares
and branches was measured not to beat.

Every function here is a pure function of its arrays (no text, no keys kept),
releases the GIL, and is cached on disk after its first compilation (in
``NUMBA_CACHE_DIR`` when set, else beside this module, else in the user's
cache directory; where none is writable it is compiled in memory at each
start, about 3 s).
`warm` compiles (or loads) them all, so a gateway pays that before it
reports ready, not on a user's first request.

All arithmetic is on ``uint64`` and wraps modulo 2**64, as in the NumPy
definitions these replace (`tests/detection/test_kernels.py` restates each one
in plain Python and compares).
"""

from __future__ import annotations

import functools

import numba
import numpy as np
import numpy.typing as npt

__all__ = ["bucket_starts", "drop_crowded", "gram_hashes", "merge_into", "siphash13", "warm", "winnow"]

U64 = np.uint64
_HIGH_MASK = U64(((1 << 64) - 1) ^ ((1 << 20) - 1))  # selection key bits above the position bits
_POS_MASK = U64((1 << 20) - 1)


def _jit(function):  # type: ignore[no-untyped-def]
    """Compiled, GIL released, cached on disk; compiled in memory at each start where no cache directory is writable."""
    try:
        return numba.njit(cache=True, nogil=True, boundscheck=False)(function)
    except RuntimeError:  # numba found no writable cache directory (read-only package and home)
        return numba.njit(nogil=True, boundscheck=False)(function)


@_jit
def _rotl(x: np.uint64, bits: int) -> np.uint64:
    return (x << U64(bits)) | (x >> U64(64 - bits))


@_jit
def siphash13(k0: np.uint64, k1: np.uint64, words: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """SipHash-1-3 (the variant CPython uses for str hashing) of each 64-bit word, as an 8-byte message."""
    out = np.empty(words.shape[0], np.uint64)
    last = U64(8 << 56)
    for i in range(words.shape[0]):
        m = words[i]
        v0 = k0 ^ U64(0x736F6D6570736575)
        v1 = k1 ^ U64(0x646F72616E646F6D)
        v2 = k0 ^ U64(0x6C7967656E657261)
        v3 = k1 ^ U64(0x7465646279746573)
        for block in range(2):
            b = m if block == 0 else last
            v3 ^= b
            v0 += v1; v1 = _rotl(v1, 13) ^ v0; v0 = _rotl(v0, 32)  # noqa: E702
            v2 += v3; v3 = _rotl(v3, 16) ^ v2  # noqa: E702
            v0 += v3; v3 = _rotl(v3, 21) ^ v0  # noqa: E702
            v2 += v1; v1 = _rotl(v1, 17) ^ v2; v2 = _rotl(v2, 32)  # noqa: E702
            v0 ^= b
        v2 ^= U64(0xFF)
        for _ in range(3):
            v0 += v1; v1 = _rotl(v1, 13) ^ v0; v0 = _rotl(v0, 32)  # noqa: E702
            v2 += v3; v3 = _rotl(v3, 16) ^ v2  # noqa: E702
            v0 += v3; v3 = _rotl(v3, 21) ^ v0  # noqa: E702
            v2 += v1; v1 = _rotl(v1, 17) ^ v2; v2 = _rotl(v2, 32)  # noqa: E702
        out[i] = v0 ^ v1 ^ v2 ^ v3
    return out


@_jit
def _mix(x: np.uint64) -> np.uint64:
    """splitmix64's finalizer."""
    x ^= x >> U64(30)
    x *= U64(0xBF58476D1CE4E5B9)
    x ^= x >> U64(27)
    x *= U64(0x94D049BB133111EB)
    return x ^ (x >> U64(31))


@_jit
def winnow(hashes: npt.NDArray[np.uint64], select_key: np.uint64, window: int,
           barred: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
    """Positions of the grams robust winnowing keeps, in order.

    Each gram's selection key is its keyed mix with the low 20 bits replaced
    by ``POS_MASK - position`` (so ties go to the rightmost gram); every
    window of `window` grams keeps the one with the smallest key, and a gram
    kept by consecutive windows is listed once. `barred` grams (code idioms;
    an empty array means none) get the largest high bits and are never
    listed, even when a window holds nothing else. Texts of fewer than
    `window` grams keep their one smallest.
    """
    m = hashes.shape[0]
    any_barred = barred.shape[0] == m
    keys = np.empty(m, np.uint64)
    for i in range(m):
        key = (_mix(hashes[i] ^ select_key) & _HIGH_MASK) | (_POS_MASK - (U64(i) & _POS_MASK))
        if any_barred and barred[i]:
            key |= _HIGH_MASK
        keys[i] = key
    chosen = np.empty(max(m, 1), np.int64)
    count = 0
    if m == 0:
        return chosen[:0]
    if m <= window:
        best = 0
        for i in range(1, m):
            if keys[i] < keys[best]:
                best = i
        chosen[0] = best
        count = 1
    else:
        # Branch-free: the smallest key of each window names its own position in its low bits (positions
        # within a window differ there, even past 2**20), so each step is minimums and one store.
        chosen[0] = -1
        for start in range(m - window + 1):
            smallest = keys[start]
            for i in range(start + 1, start + window):
                smallest = min(smallest, keys[i])
            low = _POS_MASK - (smallest & _POS_MASK)
            best = start + np.int64((low - U64(start)) & _POS_MASK)
            previous = chosen[count - 1] if count else -1
            chosen[count] = best
            count += best != previous
    if any_barred:
        kept = 0
        for i in range(count):
            if not barred[chosen[i]]:
                chosen[kept] = chosen[i]
                kept += 1
        count = kept
    return chosen[:count].copy()


@_jit
def _move_down(keys: npt.NDArray[np.uint64], slots: npt.NDArray[np.uint32], start: int, end: int, w: int) -> int:
    """Move entries ``start..end-1`` to ``w..`` (``w <= start``); returns the place after them.

    Nothing moves while nothing has been dropped before them (``w == start``).
    """
    if w == start:
        return end
    for x in range(start, end):
        keys[w] = keys[x]
        slots[w] = slots[x]
        w += 1
    return w


@_jit
def _keep_down(src_keys: npt.NDArray[np.uint64], src_slots: npt.NDArray[np.uint32], top: int,
               keys: npt.NDArray[np.uint64], slots: npt.NDArray[np.uint32], w: int, alive: npt.NDArray[np.bool_],
               max_postings: int, run: int, prev: np.uint64, crowded: bool) -> tuple[int, int, np.uint64, bool]:
    """`merge_into`'s tail: the live entries ``src[top], src[top - 1], ..., src[0]`` written down from ``keys[w]``.

    `src` may be `keys` itself (the rest of run `a`): ``w >= top`` always,
    so each entry is read before its place is written. Carries the count of
    the run of equal keys on; returns the next place, the run and the flag.
    """
    check = alive.shape[0] > 0
    for r in range(top, -1, -1):
        key, slot = src_keys[r], src_slots[r]
        if not check or alive[slot]:
            run = run + 1 if run > 0 and key == prev else 1
            crowded |= run > max_postings
            prev = key
            keys[w] = key
            slots[w] = slot
            w -= 1
    return w, run, prev, crowded


@_jit
def merge_into(keys: npt.NDArray[np.uint64], slots: npt.NDArray[np.uint32], na: int, b_keys: npt.NDArray[np.uint64],
               b_slots: npt.NDArray[np.uint32], alive: npt.NDArray[np.bool_], max_postings: int) -> tuple[int, bool]:
    """Merge sorted run `b` into the sorted run `a` held in ``keys[:na]``, ``slots[:na]``, in place.

    Why in place: the index's merges move hundreds of megabytes, and on the
    machines measured each first touch of fresh memory cost more than the
    merge itself. `keys` and `slots` have room for ``na + len(b)`` entries
    (the caller grows `a`'s own arrays); entries are written from the back,
    which never overtakes an entry of `a` not yet read, and `a` comes first
    among equal keys. Where nothing is dropped, the entries of `a` below
    `b`'s smallest key are already in place and are not touched. Dead slots
    (`alive` empty: none) are dropped and what is kept is moved to the front.

    Returns how many entries are kept and whether some key is held by more
    than `max_postings` of them, given that `a` alone holds no such key (no
    segment of the index does: such keys leave when a merge finds them).
    """
    nb = b_keys.shape[0]
    check = alive.shape[0] > 0
    i = na - 1
    j = nb - 1
    w = na + nb - 1
    run = 0
    prev = U64(0)
    crowded = False
    while i >= 0 and j >= 0:
        # Branch-free: which run gives the next entry is a coin toss for keys spread at random.
        from_a = keys[i] > b_keys[j]
        key = keys[i] if from_a else b_keys[j]
        slot = slots[i] if from_a else b_slots[j]
        i -= np.int64(from_a)
        j -= np.int64(not from_a)
        keep = not check or alive[slot]
        same = run > 0 and key == prev
        counted = run + 1 if same else 1
        run = counted if keep else run
        crowded |= keep and counted > max_postings
        prev = key if keep else prev
        keys[w] = key
        slots[w] = slot
        w -= np.int64(keep)
    w, run, prev, crowded = _keep_down(b_keys, b_slots, j, keys, slots, w, alive, max_postings, run, prev, crowded)
    if not check:
        # Nothing dropped, so the rest of `a` is in place: only the run it may share with what was written counts.
        while i >= 0 and run > 0 and keys[i] == prev and run <= max_postings:
            run += 1
            i -= 1
        return na + nb, crowded or run > max_postings
    w, run, prev, crowded = _keep_down(keys, slots, i, keys, slots, w, alive, max_postings, run, prev, crowded)
    return _move_down(keys, slots, w + 1, na + nb, 0), crowded  # what was kept, to the front


@_jit
def drop_crowded(keys: npt.NDArray[np.uint64], slots: npt.NDArray[np.uint32],
                 max_postings: int) -> tuple[int, npt.NDArray[np.uint64]]:
    """Drop, in place, every key held by more than `max_postings` entries of sorted `keys`.

    The kept entries move to the front; returns how many there are and the
    dropped keys, sorted. A crowded key shows as ``keys[i] == keys[i -
    max_postings]``, a test with a branch that is almost never taken; only
    the entries after the first crowded run move. This runs on a merged
    segment of any size (a quarter of a billion entries at 1 GB of text)
    whenever `merge_into` reports a crowded key, under the registry's writer
    lock: a walk run by run had taken 3.7 s there.
    """
    n = keys.shape[0]
    dropped = np.empty(16, np.uint64)
    count = 0
    w = 0  # next place to keep an entry
    t = 0  # first entry not yet kept or dropped
    i = max_postings
    while True:
        while i < n and keys[i] != keys[i - max_postings]:
            i += 1
        if i >= n:
            break
        key = keys[i]
        start = i - max_postings
        while start > t and keys[start - 1] == key:
            start -= 1
        end = i + 1
        while end < n and keys[end] == key:
            end += 1
        w = _move_down(keys, slots, t, start, w)
        if count == dropped.shape[0]:
            dropped = np.concatenate((dropped, np.empty(count, np.uint64)))
        dropped[count] = key
        count += 1
        t = end
        i = end + max_postings
    return _move_down(keys, slots, t, n, w), dropped[:count].copy()


@_jit
def bucket_starts(keys: npt.NDArray[np.uint64], bits: int, directory: npt.NDArray[np.uint32]) -> None:
    """Write into ``directory[:2**bits + 1]`` where the keys with each value of their top `bits` bits start.

    `keys` sorted; the last entry written is ``len(keys)``. `directory` may
    be longer (the index reuses a merged segment's, grown in place) and is
    overwritten. Counted per bucket, then summed: a walk that writes each
    bucket's start as the keys pass it branches on every key (buckets hold
    one to three), and was measured three to four times slower.
    """
    buckets = 1 << bits
    n = keys.shape[0]
    for b in range(buckets + 1):
        directory[b] = 0
    if bits == 0:
        directory[1] = n
        return
    shift = U64(64 - bits)
    for i in range(n):
        directory[np.int64(keys[i] >> shift) + 1] += 1
    total = np.uint32(0)
    for b in range(buckets + 1):
        total += directory[b]
        directory[b] = total


@_jit
def _heavy(symbol: np.uint64, cjk: npt.NDArray[np.bool_]) -> bool:
    """A CJK code point: `cjk` says for the BMP; the ideograph planes 2 and 3 above it."""
    if symbol < U64(0x10000):
        return cjk[np.int64(symbol)]
    return U64(0x20000) <= symbol < U64(0x31350)


@_jit
def gram_hashes(symbols: npt.NDArray[np.unsignedinteger], char_key: np.uint64, bmp: npt.NDArray[np.uint64],
                powers: npt.NDArray[np.uint64], inverse: npt.NDArray[np.uint64], gram_weight: int,
                cjk: npt.NDArray[np.bool_], cjk_weight: int) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.int64]]:
    """Polynomial hash of the gram starting at each position, and where each gram ends (exclusive).

    A symbol's keyed value is ``mix(symbol ^ char_key)`` (`bmp` holds it for
    symbols below 0x10000). The hash of symbols ``i..e-1`` is
    ``sum(value[j] * base**(j - i))``, from prefix sums times the inverse
    power of `i`. A gram is the shortest run whose weight reaches
    `gram_weight`; with `cjk` empty every symbol weighs 1, else CJK code
    points (`cjk` for the BMP, the ideograph planes above) weigh `cjk_weight`.
    """
    n = symbols.shape[0]
    prefix = np.empty(n + 1, np.uint64)
    prefix[0] = 0
    acc = U64(0)
    for j in range(n):
        s = U64(symbols[j])
        value = bmp[s] if s < U64(0x10000) else _mix(s ^ char_key)
        acc += value * powers[j]
        prefix[j + 1] = acc
    if cjk.shape[0] == 0:
        m = max(0, n - gram_weight + 1)
        hashes = np.empty(m, np.uint64)
        ends = np.empty(m, np.int64)
        for i in range(m):
            hashes[i] = (prefix[i + gram_weight] - prefix[i]) * inverse[i]
            ends[i] = i + gram_weight
        return hashes, ends
    hashes = np.empty(n, np.uint64)
    ends = np.empty(n, np.int64)
    end = 0
    weight = 0  # of symbols i..end-1
    m = 0
    for i in range(n):
        while end < n and weight < gram_weight:
            weight += cjk_weight if _heavy(U64(symbols[end]), cjk) else 1
            end += 1
        if weight < gram_weight:
            break
        hashes[i] = (prefix[end] - prefix[i]) * inverse[i]
        ends[i] = end
        m += 1
        weight -= cjk_weight if _heavy(U64(symbols[i]), cjk) else 1
    return hashes[:m].copy(), ends[:m].copy()


@functools.cache
def warm() -> None:
    """Compile (or load from the cache) every kernel for the types the detection engine uses; once per process."""
    words = np.arange(8, dtype=np.uint64)
    siphash13(U64(1), U64(2), words)
    winnow(words, U64(3), 4, np.zeros(0, np.bool_))
    winnow(words, U64(3), 4, np.zeros(8, np.bool_))
    slots = np.zeros(8, np.uint32)
    merge_into(words.copy(), slots.copy(), 0, words, slots, np.zeros(0, np.bool_), 64)
    drop_crowded(words.copy(), slots.copy(), 64)
    bucket_starts(words, 2, np.empty(5, np.uint32))
    table, cjk = np.zeros(0x10000, np.uint64), np.zeros(0x10000, np.bool_)
    # Text symbols come read-only from `np.frombuffer`, a type of their own for numba.
    samples = (np.frombuffer(bytes(8), np.uint8), np.frombuffer(bytes(32), np.uint32),
               words.astype(np.uint8), words.astype(np.uint32), words)
    for symbols in samples:
        gram_hashes(symbols, U64(1), table, words, words, 2, cjk[:0], 1)
        gram_hashes(symbols, U64(1), table, words, words, 2, cjk, 2)
