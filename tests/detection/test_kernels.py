"""Each compiled kernel of `gateway.detection.kernels` against a plain-Python restatement of its definition.

The restatements use Python ints and lists only, written from the kernels'
docstrings (not from their loops), and are compared on many seeded random
inputs. `siphash13` is compared with a reference in
test_fingerprint_winnowing.py; the last tests check the whole text pipeline of
`Fingerprinter.text` against a restatement built from these pieces.
"""

from __future__ import annotations

import bisect
import json
import random
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from gateway.detection import fingerprint, kernels
from gateway.detection.fingerprint import CHANNEL_TEXT, TEXT_PARAMS, Fingerprinter

from .conftest import SECRET
from .test_fingerprint_winnowing import _siphash_reference

M64 = (1 << 64) - 1
POS_BITS = 20
POS_MASK = (1 << POS_BITS) - 1
HIGH_MASK = M64 ^ POS_MASK
NO_FLAGS = np.zeros(0, np.bool_)
FP = Fingerprinter(SECRET)


# -- plain-Python restatements ----------------------------------------------------------------------------


def mix(x: int) -> int:
    """splitmix64's finalizer on a Python int, modulo 2**64."""
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & M64
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def winnow_reference(hashes: list[int], select_key: int, window: int, barred: list[bool]) -> list[int]:
    """Robust winnowing as documented: smallest selection key per window, rightmost on ties, barred never kept."""
    m = len(hashes)
    is_barred = barred if barred else [False] * m
    keys = []
    for i, h in enumerate(hashes):
        high = HIGH_MASK if is_barred[i] else mix(h ^ select_key) & HIGH_MASK
        keys.append(high | (POS_MASK - (i % (1 << POS_BITS))))
    if m == 0:
        return []
    windows = [range(m)] if m <= window else [range(s, s + window) for s in range(m - window + 1)]
    chosen: list[int] = []
    for positions in windows:
        best = min(positions, key=lambda i: keys[i])
        if not chosen or chosen[-1] != best:
            chosen.append(best)
    return [i for i in chosen if not is_barred[i]]


_CJK_BMP_RANGES = ((0x3040, 0x3100), (0x3400, 0xA000), (0xAC00, 0xD7B0), (0xF900, 0xFB00))


def is_cjk(cp: int) -> bool:
    """Kana, CJK ideographs (BMP and planes 2-3 up to 0x3134F), Hangul, compatibility ideographs."""
    return any(lo <= cp < hi for lo, hi in _CJK_BMP_RANGES) or 0x20000 <= cp < 0x31350


def cjk_table() -> np.ndarray:
    """`is_cjk` over the BMP, as the boolean table `gram_hashes` takes."""
    table = np.zeros(0x10000, np.bool_)
    for lo, hi in _CJK_BMP_RANGES:
        table[lo:hi] = True
    return table


def gram_hashes_reference(symbols: list[int], char_key: int, base: int, gram_weight: int,
                          cjk_weight: int | None) -> tuple[list[int], list[int]]:
    """Hash and end of the shortest run from each position whose weight reaches `gram_weight`.

    `cjk_weight` None: every symbol weighs 1. Hash of symbols i..e-1 is
    sum(mix(symbol ^ char_key) * base**(j - i)) mod 2**64.
    """
    n = len(symbols)
    values = [mix(s ^ char_key) for s in symbols]
    weights = [cjk_weight if cjk_weight is not None and is_cjk(s) else 1 for s in symbols]
    hashes, ends = [], []
    for i in range(n):
        end, weight = i, 0
        while end < n and weight < gram_weight:
            weight += weights[end]
            end += 1
        if weight < gram_weight:
            break
        hashes.append(sum(values[j] * pow(base, j - i, 1 << 64) for j in range(i, end)) & M64)
        ends.append(end)
    return hashes, ends


def merge_reference(a: list[tuple[int, int]], b: list[tuple[int, int]], alive: list[bool],
                    max_postings: int) -> tuple[list[int], list[int], bool]:
    """Stable sort by key of a's entries then b's, dead slots dropped.

    The flag: some key is held by more than `max_postings` of the entries kept.
    """
    merged = sorted(a + b, key=lambda entry: entry[0])
    kept = [(k, s) for k, s in merged if not alive or alive[s]]
    counts: dict[int, int] = {}
    for k, _ in kept:
        counts[k] = counts.get(k, 0) + 1
    return [k for k, _ in kept], [s for _, s in kept], any(c > max_postings for c in counts.values())


def bucket_starts_reference(keys: list[int], bits: int) -> list[int]:
    """directory[b] = index of the first key whose top `bits` bits are >= b, for every b; then len(keys)."""
    tops = [k >> (64 - bits) for k in keys]
    return [bisect.bisect_left(tops, b) for b in range(1 << bits)] + [len(keys)]


def bmp_table(char_key: int) -> np.ndarray:
    """mix(symbol ^ char_key) for every BMP symbol, vectorised as `_Channel.grams` builds it."""
    x = np.arange(0x10000, dtype=np.uint64) ^ np.uint64(char_key)
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def power_tables(base: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """base**j and base**-j modulo 2**64 for j = 0..n."""
    inverse = pow(base, -1, 1 << 64)
    return (np.array([pow(base, j, 1 << 64) for j in range(n + 1)], np.uint64),
            np.array([pow(inverse, j, 1 << 64) for j in range(n + 1)], np.uint64))


def test_the_restated_mix_matches_the_known_splitmix64_output() -> None:
    """splitmix64 seeded with 0 outputs mix(0x9E3779B97F4A7C15) first: 0xE220A8397B1DCDAF."""
    assert mix(0x9E3779B97F4A7C15) == 0xE220A8397B1DCDAF


# -- winnow ------------------------------------------------------------------------------------------------


def _winnow_cases(rng: random.Random) -> Iterator[tuple[list[int], int, int, list[bool]]]:
    for window in range(1, 7):
        for length in list(range(0, 14)) + [rng.randrange(14, 301) for _ in range(40)] + [300]:
            for tie_heavy in (False, True):
                if tie_heavy:
                    hashes = [rng.randrange(4) for _ in range(length)]
                else:
                    hashes = [rng.getrandbits(64) for _ in range(length)]
                share = rng.choice([0.0, 0.2, 0.6, 1.0])
                barred = rng.choice([[], [rng.random() < share for _ in range(length)]])
                yield hashes, rng.getrandbits(64), window, barred


def test_winnow_keeps_the_smallest_selection_key_of_each_window_as_documented() -> None:
    rng = random.Random(20240601)
    cases = 0
    for hashes, select_key, window, barred in _winnow_cases(rng):
        got = kernels.winnow(np.array(hashes, np.uint64), np.uint64(select_key), window, np.array(barred, np.bool_))
        expected = winnow_reference(hashes, select_key, window, barred)
        assert got.tolist() == expected, (hashes, select_key, window, barred)
        assert got.dtype == np.int64
        cases += 1
    assert cases == 6 * 55 * 2


@pytest.mark.parametrize("window", range(1, 7))
@pytest.mark.parametrize("length", [1, 2, 3, 5, 6, 7, 40])
def test_winnow_breaks_ties_between_equal_grams_by_keeping_the_rightmost(window: int, length: int) -> None:
    """A run of one repeated gram keeps the last gram of each window: every position from window-1 on."""
    got = kernels.winnow(np.full(length, 7, np.uint64), np.uint64(12345), window, NO_FLAGS)
    assert got.tolist() == (list(range(window - 1, length)) if length > window else [length - 1])


def test_winnow_never_keeps_barred_grams_even_when_a_window_holds_nothing_else() -> None:
    rng = random.Random(7)
    hashes = np.array([rng.getrandbits(64) for _ in range(60)], np.uint64)
    barred = np.zeros(60, np.bool_)
    barred[10:30] = True  # windows entirely inside keep nothing
    got = kernels.winnow(hashes, np.uint64(99), 4, barred).tolist()
    assert got and not any(10 <= i < 30 for i in got)
    assert kernels.winnow(hashes, np.uint64(99), 4, np.ones(60, np.bool_)).tolist() == []
    assert kernels.winnow(hashes[:3], np.uint64(99), 4, np.ones(3, np.bool_)).tolist() == []


def test_winnow_with_no_barred_grams_equals_winnow_with_an_empty_barred_array() -> None:
    rng = random.Random(8)
    for length in range(0, 80):
        hashes = np.array([rng.getrandbits(64) for _ in range(length)], np.uint64)
        none = kernels.winnow(hashes, np.uint64(5), 4, NO_FLAGS)
        clear = kernels.winnow(hashes, np.uint64(5), 4, np.zeros(length, np.bool_))
        assert none.tolist() == clear.tolist()


# -- gram_hashes -------------------------------------------------------------------------------------------

_TEXT_POOL = (
    [ord(c) for c in "abc xyz019,.-"]
    + [0x3041, 0x3042, 0x30A2, 0x30FC, 0x30FF, 0x3040, 0x3100, 0x303F]  # kana and the edges of its range
    + [0x4E00, 0x79D8, 0x5BC6, 0x9FFF, 0xA000, 0x3400, 0x33FF]  # kanji and edges
    + [0xAC00, 0xD7AF, 0xD7B0, 0xF900, 0xFAFF, 0xFB00, 0xFF21, 0xFFFF, 0xD800]  # Hangul, compatibility, others
    + [0x10000, 0x1F600, 0x1FFFF, 0x20000, 0x20BB7, 0x2A6DF, 0x3134F, 0x31350, 0x10FFFF]  # astral
)


def _random_symbols(rng: random.Random, dtype: type, n: int) -> list[int]:
    if dtype is np.uint8:
        return [rng.randrange(256) for _ in range(n)]
    if dtype is np.uint32:
        return [rng.choice(_TEXT_POOL) for _ in range(n)]
    # token values: mostly full-width 64-bit words, some small ones (BMP table path) and CJK-range ones
    return [rng.choice([rng.getrandbits(64), rng.randrange(0x10000), rng.choice(_TEXT_POOL)]) for _ in range(n)]


def _check_gram_hashes(rng: random.Random, dtype: type, weighted: bool,
                       symbols_of: Callable[[random.Random, type, int], list[int]] | None = None) -> int:
    """Compare `kernels.gram_hashes` with the restatement on random inputs; returns how many grams were compared."""
    compared = 0
    table = cjk_table()
    for _ in range(150):
        char_key, base = rng.getrandbits(64), rng.getrandbits(64) | 1
        bmp = bmp_table(char_key)
        n = rng.randrange(0, 50)
        symbols = (symbols_of or _random_symbols)(rng, dtype, n)
        gram_weight = rng.randrange(1, 9)
        cjk_weight = rng.randrange(1, 4) if weighted else 1
        powers, inverse = power_tables(base, n)
        got_hashes, got_ends = kernels.gram_hashes(np.array(symbols, dtype), np.uint64(char_key), bmp, powers, inverse,
                                                   gram_weight, table if weighted else NO_FLAGS, cjk_weight)
        expected_hashes, expected_ends = gram_hashes_reference(symbols, char_key, base, gram_weight,
                                                               cjk_weight if weighted else None)
        context = (dtype.__name__, symbols, char_key, base, gram_weight, cjk_weight if weighted else None)
        assert got_ends.tolist() == expected_ends, context
        assert got_hashes.tolist() == expected_hashes, context
        compared += len(expected_hashes)
    return compared


@pytest.mark.parametrize("weighted", [False, True], ids=["every-symbol-weighs-1", "cjk-weighted"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint32], ids=["ascii-bytes", "code-points"])
def test_gram_hashes_are_the_polynomial_hash_of_the_shortest_run_reaching_the_gram_weight(
        dtype: type, weighted: bool) -> None:
    assert _check_gram_hashes(random.Random(f"{dtype.__name__}-{weighted}"), dtype, weighted) > 500


def test_gram_hashes_of_token_values_equal_the_restatement() -> None:
    """Code tokens: 64-bit words, every token weighs 1 (how the code channel calls it)."""
    assert _check_gram_hashes(random.Random("tokens"), np.uint64, False) > 500


def test_gram_hashes_of_token_values_below_2_63_weigh_cjk_code_points_as_documented() -> None:
    def symbols_of(rng: random.Random, dtype: type, n: int) -> list[int]:
        return [rng.choice([rng.getrandbits(63), rng.randrange(0x10000), rng.choice(_TEXT_POOL)]) for _ in range(n)]

    assert _check_gram_hashes(random.Random("tokens-weighted"), np.uint64, True, symbols_of) > 500


_CHILD = """
import json, sys
import numpy as np
from gateway.detection import kernels
symbols, char_key, gram_weight, cjk_weight = json.loads(sys.stdin.read())
table = np.zeros(0x10000, np.bool_)
table[0x3040:0x3100] = True
n = len(symbols)
ones = np.ones(n + 1, np.uint64)
bmp = np.zeros(0x10000, np.uint64)
hashes, ends = kernels.gram_hashes(np.array(symbols, np.uint64), np.uint64(char_key), bmp, ones, ones,
                                   gram_weight, table, cjk_weight)
print(json.dumps(ends.tolist()))
"""


def test_gram_hashes_weigh_token_values_of_2_63_and_above_as_non_cjk() -> None:
    """A 64-bit token value is not a CJK code point whatever its top bit: it weighs 1.

    Run in a child process: the kernel reads its `cjk` table at the value
    taken as a signed integer, which for values >= 2**63 lies far outside it.
    """
    symbols = [2**63 + 5, 2**64 - 1, 7, 0x3042, 2**63, 3]
    child = subprocess.run([sys.executable, "-c", _CHILD], input=json.dumps([symbols, 1, 2, 2]),
                           capture_output=True, text=True, timeout=300, cwd=Path(__file__).resolve().parents[2])
    assert child.returncode == 0, (
        f"gram_hashes on uint64 symbols {symbols} with a cjk table ended the process "
        f"(return code {child.returncode}): {child.stderr[-500:]}")
    # weights 1 1 1 2 1 1: grams of weight 2 end after two symbols, or one for the kana
    assert json.loads(child.stdout) == [2, 3, 4, 4, 6]


# -- merge -------------------------------------------------------------------------------------------------

_KEY_POOL = [0, 1, 2, 5, 2**32, 2**63 - 1, 2**63, 2**63 + 1, 2**64 - 2, 2**64 - 1]


def _sorted_run(rng: random.Random, n: int, slots: int, wide: bool) -> list[tuple[int, int]]:
    keys = sorted(rng.getrandbits(64) if wide and rng.random() < 0.3 else rng.choice(_KEY_POOL) for _ in range(n))
    return [(k, rng.randrange(slots)) for k in keys]


def _capped(run: list[tuple[int, int]], max_postings: int) -> list[tuple[int, int]]:
    """`run` with no key more than `max_postings` times (merge_into's precondition on its first run)."""
    seen: dict[int, int] = {}
    kept = []
    for key, slot in run:
        seen[key] = seen.get(key, 0) + 1
        if seen[key] <= max_postings:
            kept.append((key, slot))
    return kept


def _merged(a: list[tuple[int, int]], b: list[tuple[int, int]], alive: list[bool] | np.ndarray,
            max_postings: int, room: int = 0) -> tuple[list[int], list[int], bool]:
    """Run merge_into on arrays holding `a` with room for `b` (and `room` spare entries of garbage)."""
    keys = np.full(len(a) + len(b) + room, 0xDEAD, np.uint64)
    slots = np.full(len(a) + len(b) + room, 7, np.uint32)
    keys[: len(a)] = [k for k, _ in a]
    slots[: len(a)] = [s for _, s in a]
    kept, crowded = kernels.merge_into(keys, slots, len(a), np.array([k for k, _ in b], np.uint64),
                                       np.array([s for _, s in b], np.uint32), np.asarray(alive, np.bool_),
                                       max_postings)
    assert keys.dtype == np.uint64 and slots.dtype == np.uint32
    return keys[:kept].tolist(), slots[:kept].tolist(), bool(crowded)


def test_merge_into_equals_a_stable_sort_of_both_runs_without_dead_slots() -> None:
    rng = random.Random(31337)
    for case in range(3000):
        slots = rng.randrange(1, 12)
        max_postings = rng.choice([1, 2, 3, 4, 6, 1000])
        a = _capped(_sorted_run(rng, rng.randrange(0, 25), slots, case % 2 == 0), max_postings)
        b = _sorted_run(rng, rng.randrange(0, 25), slots, case % 3 == 0)
        alive = [] if rng.random() < 0.4 else [rng.random() < 0.7 for _ in range(slots)]
        got = _merged(a, b, alive, max_postings, room=rng.randrange(0, 3))
        assert got == merge_reference(a, b, alive, max_postings), (a, b, alive, max_postings)


def test_merge_into_puts_the_first_runs_entries_first_among_equal_keys() -> None:
    a, b = [(4, 0), (4, 1)], [(4, 2), (4, 3)]
    assert _merged(a, b, NO_FLAGS, 4) == ([4, 4, 4, 4], [0, 1, 2, 3], False)
    assert _merged(a, b, NO_FLAGS, 3)[2]


def test_merge_into_counts_the_first_runs_entries_below_the_second_run_towards_the_limit() -> None:
    # b's smallest key equals the top of a's untouched part: the run spans both.
    a = [(1, 0), (5, 1), (5, 2), (9, 3)]
    assert _merged(a, [(5, 4), (9, 5)], NO_FLAGS, 3) == ([1, 5, 5, 5, 9, 9], [0, 1, 2, 4, 3, 5], False)
    assert _merged(a, [(5, 4), (5, 6), (9, 5)], NO_FLAGS, 3)[2]


def test_merge_into_does_not_count_dead_entries_towards_the_posting_limit() -> None:
    alive = np.array([True, False, True])
    assert _merged([(9, 0), (9, 1), (9, 2)], [], alive, 2) == ([9, 9], [0, 2], False)


def test_merge_into_leaves_the_first_run_in_place_when_the_second_is_empty() -> None:
    a = [(3, 1), (8, 2)]
    assert _merged(a, [], NO_FLAGS, 1) == ([3, 8], [1, 2], False)
    assert _merged([], [], NO_FLAGS, 1) == ([], [], False)


def test_drop_crowded_keeps_exactly_the_keys_within_the_posting_limit() -> None:
    rng = random.Random(2718)
    for _ in range(1500):
        run = _sorted_run(rng, rng.randrange(0, 40), 9, rng.random() < 0.5)
        max_postings = rng.choice([1, 2, 3, 5, 1000])
        keys = np.array([k for k, _ in run], np.uint64)
        slots = np.array([s for _, s in run], np.uint32)
        kept, dropped = kernels.drop_crowded(keys, slots, max_postings)
        counts: dict[int, int] = {}
        for key, _ in run:
            counts[key] = counts.get(key, 0) + 1
        want = [(k, s) for k, s in run if counts[k] <= max_postings]
        assert list(zip(keys[:kept].tolist(), slots[:kept].tolist())) == want, (run, max_postings)
        assert dropped.tolist() == sorted(k for k, c in counts.items() if c > max_postings)
        assert dropped.dtype == np.uint64


# -- bucket_starts -----------------------------------------------------------------------------------------


def test_bucket_starts_point_at_the_first_key_of_each_top_bits_value() -> None:
    rng = random.Random(4242)
    for case in range(400):
        n = rng.randrange(0, 120)
        pool = [rng.getrandbits(64) for _ in range(max(1, n // 3))] + [0, 2**64 - 1, 2**63]
        keys = sorted(rng.getrandbits(64) if case % 2 else rng.choice(pool) for _ in range(n))
        bits = rng.randrange(0, 13)
        got = np.full((1 << bits) + 1 + rng.randrange(0, 3), 77, np.uint32)  # longer than needed, not zeroed
        kernels.bucket_starts(np.array(keys, np.uint64), bits, got)
        assert got[: (1 << bits) + 1].tolist() == bucket_starts_reference(keys, bits), (keys, bits)
        assert got.dtype == np.uint32


@pytest.mark.parametrize("n", [0, 1, 5])
def test_bucket_starts_with_zero_bits_is_one_bucket_holding_every_key(n: int) -> None:
    directory = np.full(2, 9, np.uint32)
    kernels.bucket_starts(np.arange(n, dtype=np.uint64), 0, directory)
    assert directory.tolist() == [0, n]


# -- the whole text pipeline -------------------------------------------------------------------------------


def text_fingerprints_reference(text: str, every_gram: bool = False) -> tuple[list[int], list[int], list[int]]:
    """`Fingerprinter(SECRET).text(text)` restated: grams of code points, winnowing, SipHash-1-3, channel tag."""
    channel = fingerprint._Channel(SECRET, "text", CHANNEL_TEXT)
    hashes, ends = gram_hashes_reference([ord(c) for c in text], int(channel.char_key), channel.base,
                                         TEXT_PARAMS.gram_weight, TEXT_PARAMS.cjk_weight)
    if every_gram:
        chosen = list(range(len(hashes)))
    else:
        chosen = winnow_reference(hashes, int(channel.select_key), TEXT_PARAMS.window, [])
    key = int(channel.sip_k0).to_bytes(8, "little") + int(channel.sip_k1).to_bytes(8, "little")
    tag = int(channel.tag)
    values = [(_siphash_reference(key, hashes[i].to_bytes(8, "little"), 1, 3) & ((1 << 62) - 1)) | tag
              for i in chosen]
    return values, chosen, [ends[i] for i in chosen]


_TEXTS = {
    "ascii": "the pricing engine recomputes every enterprise quote overnight and flags margins below 18%.",
    "one-latin-gram": "x" * 35 + "y",
    "too-short": "a short prompt of thirty-five chars",
    "japanese": "本システムの推論サーバーは、受信したリクエストを優先度付きキューに格納し、gpuごとに処理する。",
    "kana-only": "あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほまみむめも",
    "mixed": "モデルの重みは half precision で保持し、𠮷野家の注文 api は 8 ミリ秒以内に応答する。"
             "the churn model is retrained monthly on support tickets.",
    "hangul-and-emoji": "추론 서버는 요청을 우선순위 큐에 저장한다 🙂 then batches them per gpu 사용",
}


@pytest.mark.parametrize("every_gram", [False, True], ids=["winnowed", "every-gram"])
@pytest.mark.parametrize("name", list(_TEXTS))
def test_text_fingerprints_equal_the_plain_python_pipeline(name: str, every_gram: bool) -> None:
    text = _TEXTS[name]
    prints = FP.text(text, every_gram=every_gram)
    values, starts, ends = text_fingerprints_reference(text, every_gram)
    assert prints.values.tolist() == values
    assert prints.starts.tolist() == starts
    assert prints.ends.tolist() == ends
    if name == "too-short":
        assert values == []
    else:
        assert values
