from __future__ import annotations

import numpy as np

from gateway.detection.accumulate import PrincipalWindow
from gateway.detection.index import FingerprintIndex, from_bytes, to_bytes
from gateway.detection.registry import Registry
from gateway.domain import Category, TextPart

from .conftest import EN_PLAN


def test_index_adds_looks_up_removes_and_compacts() -> None:
    rng = np.random.default_rng(7)
    index = FingerprintIndex()
    items = {slot: rng.integers(0, 2**63, size=500, dtype=np.uint64) for slot in range(40)}
    shared = np.uint64(123456789)
    for slot, keys in items.items():
        index.add(slot, np.append(keys, shared))
    assert len(index) == 40 * 501
    hits = index.lookup(np.array([items[3][10], items[39][499], shared, 42], dtype=np.uint64))
    pairs = sorted(zip(hits.queries.tolist(), hits.slots.tolist()))
    assert pairs[:2] == [(0, 3), (1, 39)]
    assert sorted(s for q, s in pairs if q == 2) == list(range(40))
    for slot in range(30):
        index.remove(slot)
    hits = index.lookup(np.array([items[3][10], items[35][0], shared], dtype=np.uint64))
    assert sorted(zip(hits.queries.tolist(), hits.slots.tolist()))[0] == (1, 35)
    assert sorted(s for q, s in zip(hits.queries.tolist(), hits.slots.tolist()) if q == 2) == list(range(30, 40))
    index.compact()
    assert len(index) == 10 * 501
    assert np.array_equal(index.item_fingerprints(35), np.unique(np.append(items[35], shared)))
    assert index.bytes_per_fingerprint() <= 16


def test_fingerprint_bytes_round_trip() -> None:
    values = np.array([5, 1, 2**64 - 1, 1], dtype=np.uint64)
    assert np.array_equal(from_bytes(to_bytes(values)), np.array([1, 5, 2**64 - 1], dtype=np.uint64))


def test_principal_window_accumulates_within_the_window_only(registry: Registry) -> None:
    registry.add_item("plan", "nda-1", Category.BUSINESS, EN_PLAN)
    now = [1000.0]
    window = PrincipalWindow(600, registry.item_size, clock=lambda: now[0])
    third = len(EN_PLAN) // 3
    covered = []
    for i in range(3):
        result = registry.scan([TextPart("m", EN_PLAN[i * third : (i + 1) * third])])
        covered.append(window.observe("alice", result.item_hits)["plan"])
        now[0] += 60
    assert covered[0] < covered[1] < covered[2]
    assert window.coverage("bob") == {}
    now[0] += 3600
    assert window.coverage("alice") == {}


def test_a_key_held_by_too_many_items_becomes_common() -> None:
    index = FingerprintIndex(max_postings=5)
    shared = np.uint64(99)
    for slot in range(10):
        index.add(slot, np.array([shared, 1000 + slot], dtype=np.uint64))
    index.compact()
    hits = index.lookup(np.array([shared, 1003], dtype=np.uint64), common=True)
    assert hits.common.tolist() == [0]
    assert list(zip(hits.queries.tolist(), hits.slots.tolist())) == [(1, 3)]
    assert index.common_keys == 1
    assert index.lookup(np.array([shared], dtype=np.uint64)).common.size == 0  # only listed when asked for


def test_lookup_returns_exactly_the_pairs_a_dictionary_would() -> None:
    """Every (query, live slot) pair, in query order, over several segments, dead slots and empty buckets."""
    rng = np.random.default_rng(11)
    index = FingerprintIndex(max_postings=6)
    held: dict[int, set[int]] = {}
    shared = rng.integers(0, 2**64 - 1, 40, dtype=np.uint64, endpoint=True)  # some held by more than 6 items
    for slot in range(120):
        keys = np.concatenate([rng.integers(0, 2**64 - 1, int(rng.integers(1, 400)), dtype=np.uint64, endpoint=True),
                               shared[rng.integers(0, 40, 3)]])
        index.add(slot, keys)
        for key in keys.tolist():
            held.setdefault(key, set()).add(slot)
    for slot in range(0, 120, 7):
        index.remove(slot)
    alive = {slot for slot in range(120) if slot % 7}
    stored = np.fromiter(held, np.uint64)
    for size in (1, 3, 2000):
        queries = np.concatenate([stored[rng.integers(0, stored.shape[0], size)],
                                  rng.integers(0, 2**64 - 1, size, dtype=np.uint64, endpoint=True)])
        hits = index.lookup(queries, common=True)
        common = set(hits.common.tolist())
        got = list(zip(hits.queries.tolist(), hits.slots.tolist(), strict=True))
        want = [(q, s) for q, key in enumerate(queries.tolist()) if q not in common
                for s in held.get(key, ()) if s in alive]
        assert sorted(got) == sorted(want)
    assert index.common_keys and len(index._segments) > 1


def test_merges_stay_exact_when_a_segments_arrays_are_held_elsewhere() -> None:
    """A merge grows the older segment's arrays in place; where something else holds them it copies instead."""
    rng = np.random.default_rng(5)
    index = FingerprintIndex()
    held: dict[int, int] = {}
    kept_alive = []  # references of the kind a lookup in progress holds
    for slot in range(60):
        keys = np.unique(rng.integers(0, 2**64 - 1, int(rng.integers(50, 3000)), dtype=np.uint64, endpoint=True))
        if slot % 2:
            kept_alive.extend((seg.keys, seg.slots) for seg in index._segments)
        index.add(slot, keys)
        held.update((int(key), slot) for key in keys)
    for slot in range(0, 60, 5):
        index.remove(slot)
    lowest = sorted(held)[:10]
    index.add(60, np.array(lowest, np.uint64))  # merges with dead entries to drop
    queries = np.fromiter(held, np.uint64)
    hits = index.lookup(queries)
    got = sorted(zip(hits.queries.tolist(), hits.slots.tolist()))
    want = sorted([(q, held[int(key)]) for q, key in enumerate(queries) if held[int(key)] % 5]
                  + [(q, 60) for q, key in enumerate(queries) if int(key) in lowest])
    assert got == want
    assert all(np.all(arrays[0][1:] >= arrays[0][:-1]) for arrays in kept_alive)  # what they held was not disturbed


def test_segments_of_tens_of_megabytes_grow_shrink_and_answer_exactly() -> None:
    """Past 32 MB a segment's arrays keep spare room (whole huge pages); only its first `count` entries count."""
    rng = np.random.default_rng(17)
    index = FingerprintIndex()
    big = np.unique(rng.integers(0, 2**64 - 1, 4_500_000, dtype=np.uint64, endpoint=True))
    newer = np.unique(rng.integers(0, 2**64 - 1, 1_200_000, dtype=np.uint64, endpoint=True))
    small = np.unique(rng.integers(0, 2**64 - 1, 1_000, dtype=np.uint64, endpoint=True))
    index.add(0, big)
    index.add(1, newer)  # a quarter of the first: merged into its arrays
    index.add(2, small)
    assert len(index._segments) == 2 and len(index) == big.shape[0] + newer.shape[0] + small.shape[0]
    assert index._segments[0].keys.shape[0] >= len(index._segments[0])
    queries = np.concatenate([big[::5000], newer[::5000], small[::50], rng.integers(0, 2**63, 100, dtype=np.uint64)])
    hits = index.lookup(queries)
    owners = [0] * big[::5000].shape[0] + [1] * newer[::5000].shape[0] + [2] * small[::50].shape[0]
    assert sorted(zip(hits.queries.tolist(), hits.slots.tolist())) == list(enumerate(owners))
    index.remove(0)  # more than half the entries dead: compacted, the arrays shrink to what is left
    assert len(index._segments) == 1 and len(index) == newer.shape[0] + small.shape[0]
    hits = index.lookup(queries)
    assert sorted(zip(hits.queries.tolist(), hits.slots.tolist())) == list(enumerate(owners))[big[::5000].shape[0]:]
    assert np.array_equal(index.item_fingerprints(1), newer)
    assert index.bytes_per_fingerprint() <= 16
