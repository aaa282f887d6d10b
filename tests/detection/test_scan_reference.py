"""The registry's scan gives exactly what the evidence rule, applied hit by hit, gives.

`Registry._fingerprint_matches` works on all hits at once (sorts and passes
over arrays) because that is what keeps a scan fast. This file restates the
rule plainly, one hit at a time in Python, and checks that both agree on every
match (span, item, scores) and on the hits kept for accumulation, over
requests that exercise every branch: boilerplate by item count and by
background, exclusions of one agreement and of all, source code beside prose,
derived items, items left in the index without a registry entry, text whose
normalization is not one character for one, passages repeated within a run,
and several parts.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from gateway.detection.fingerprint import CHANNEL_CODE, CHANNEL_TEXT
from gateway.detection.index import sorted_unique
from gateway.detection.registry import Registry, ScanResult, _code_text, _Part
from gateway.domain import Category, Match, TextPart
from gateway.normalize import normalize

from .conftest import EN_PLAN, EN_UNRELATED, JA_DESIGN, JA_UNRELATED, PY_SOURCE, SECRET


def _reference_scan(registry: Registry, parts: list[TextPart], background: set[int]) -> ScanResult:
    """`Registry.scan` restricted to fingerprints, each hit handled on its own (`background`: its values)."""
    states = []
    located: list[tuple[int, int, int, int, int]] = []  # part, channel, start, end, value
    for i, part in enumerate(parts):
        norm = normalize(part.text)
        prints = [(CHANNEL_TEXT, registry.fingerprinter.text(norm.text))]
        code = _code_text(part.text) if registry._code_items else None
        if code is not None:
            prints.append((CHANNEL_CODE, registry.fingerprinter.code(code)))
        states.append(_Part(part, norm, prints))
        for channel, p in prints:
            located.extend((i, channel, s, e, v) for s, e, v in zip(p.starts.tolist(), p.ends.tolist(),
                                                                    p.values.tolist(), strict=True))
    if not located or not len(registry.index):
        return ScanResult((), 0, {})
    values = np.asarray([v for *_, v in located], np.uint64)
    distinct = sorted_unique(values)
    code_count = sum(1 for v in distinct.tolist() if v >> 62 == CHANNEL_CODE)
    request_values = {CHANNEL_TEXT: len(distinct) - code_count, CHANNEL_CODE: code_count}
    hits = registry.index.lookup(values)
    pairs = list(zip(hits.queries.tolist(), hits.slots.tolist(), strict=True))
    # Boilerplate: a value whose hits belong to more than max_item_share share keys, or a background value.
    holders: dict[int, set[int]] = {}
    for q, slot in pairs:
        holders.setdefault(located[q][4], set()).add(registry._share_keys[slot])
    common = [len(holders[located[q][4]]) > registry.max_item_share or located[q][4] in background for q, _ in pairs]
    kept = []
    for q, slot in pairs:
        item = registry._items[slot]
        excluded = registry._exclusion_set(item.agreement_id if item is not None else "")
        kept.append(excluded is None or located[q][4] not in set(excluded.tolist()))
    wanted = {slot for (q, slot), c, k in zip(pairs, common, kept, strict=True) if k and not c}
    members: dict[int, list[int]] = {}
    for i, (q, slot) in enumerate(pairs):
        if kept[i] and slot in wanted and registry._items[slot] is not None:
            members.setdefault(slot, []).append(i)
    matches: list[Match] = []
    item_hits: dict[str, npt.NDArray[np.uint64]] = {}
    for slot, chosen in members.items():
        item = registry._items[slot]
        assert item is not None
        item_hits[item.item_id] = np.unique(np.asarray([located[pairs[i][0]][4] for i in chosen], np.uint64))
        spans = _reference_spans(registry, states, [(located[pairs[i][0]], not common[i]) for i in chosen])
        if not spans:
            continue
        best_item = best_request = 0.0
        for ch in (CHANNEL_TEXT, CHANNEL_CODE):
            found = len({located[pairs[i][0]][4] for i in chosen if located[pairs[i][0]][1] == ch})
            if item.counts[ch] and found and found / item.counts[ch] > best_item:
                best_item, best_request = found / item.counts[ch], found / max(1, request_values[ch])
        for p, start, end in spans:
            matches.append(Match(kind="fingerprint", location=parts[p].location, start=start, end=end,
                                 agreement_id=item.agreement_id, item_id=item.item_id, category=item.category,
                                 score=round(max(best_item, best_request), 4),
                                 item_coverage=round(min(1.0, best_item), 4),
                                 request_coverage=round(min(1.0, best_request), 4)))
    matches.sort(key=lambda m: (m.location, m.start, m.kind, m.item_id or ""))
    return ScanResult(tuple(matches), len(distinct), item_hits)


def _reference_spans(registry: Registry, states: list[_Part],
                     hits: list[tuple[tuple[int, int, int, int, int], bool]]) -> list[tuple[int, int, int]]:
    """Runs of one item's hits: sorted by place, a hit joins the run whose end it is within a window of."""
    gap = {CHANNEL_TEXT: registry.fingerprinter.text_params.window, CHANNEL_CODE: 0}
    runs: list[list[int]] = []  # part, channel, start, end
    seen: list[set[int]] = []
    for (p, ch, s, e, value), distinctive in sorted(hits):
        if not (runs and runs[-1][0] == p and runs[-1][1] == ch and s <= runs[-1][3] + gap[ch]):
            runs.append([p, ch, s, e])
            seen.append(set())
        runs[-1][3] = max(runs[-1][3], e)
        if distinctive:
            seen[-1].add(value)
    spans = []
    for (p, ch, s, e), values in zip(runs, seen, strict=True):
        if ch == CHANNEL_TEXT:
            s, e = states[p].norm.original_span(s, e)
        spans.append((p, s, e, len(values) >= registry.run_fingerprints[ch]))
    spans.sort()
    merged: list[list[int]] = []
    for p, s, e, ok in spans:
        if merged and merged[-1][0] == p and s <= merged[-1][2]:
            merged[-1][2] = max(merged[-1][2], e)
            merged[-1][3] = merged[-1][3] or ok
        else:
            merged.append([p, s, e, ok])
    return [(p, s, e) for p, s, e, ok in merged if ok]


def _fingerprints_only(result: ScanResult) -> ScanResult:
    return ScanResult(tuple(m for m in result.matches if m.kind == "fingerprint"), result.request_fingerprints,
                      result.item_hits)


def _assert_same(got: ScanResult, want: ScanResult) -> None:
    assert got.matches == want.matches
    assert got.request_fingerprints == want.request_fingerprints
    assert list(got.item_hits) == list(want.item_hits)  # same items, in the order their first hits came
    for item_id, values in want.item_hits.items():
        assert got.item_hits[item_id].dtype == np.uint64
        assert np.array_equal(got.item_hits[item_id], values)


def _sentences(rng: np.random.Generator, words: list[str], count: int, joiner: str) -> str:
    return "".join(joiner.join(rng.choice(words, int(rng.integers(6, 14)))) + ". " for _ in range(count))


def test_the_scan_matches_the_rule_applied_hit_by_hit() -> None:
    rng = np.random.default_rng(20261127)
    en_words = sorted(set((EN_PLAN + " " + EN_UNRELATED).replace(".", " ").replace(",", " ").split()))
    ja_chars = sorted(set(JA_DESIGN + JA_UNRELATED) - set("、。"))
    registry = Registry(SECRET, max_item_share=3)
    texts = []
    for i in range(40):
        if i % 2:
            text = "".join(rng.choice(ja_chars, 900)) + "。"
        else:
            text = _sentences(rng, en_words, 30, " ")
        if i % 6 == 0 and texts:
            text += texts[0][:400]  # one passage in many items: boilerplate by item count
        texts.append(text)
        registry.add_item(f"item-{i}", f"nda-{i % 4}", Category.BUSINESS, text, derived=i % 9 == 4)
    registry.add_item("code", "nda-1", Category.SOURCE_CODE, PY_SOURCE, source_code=True)
    registry.add_item("plan", "nda-2", Category.BUSINESS, EN_PLAN)
    registry.add_item("design", "nda-3", Category.AI_TECHNOLOGY, JA_DESIGN)
    registry.add_exclusion("x-one", "nda-2", texts[2][100:500])
    registry.add_exclusion("x-all", None, texts[3][50:300])
    registry.add_background(texts[4][:300])
    registry.remove_item("item-9")
    sources = [*texts, PY_SOURCE, EN_PLAN, JA_DESIGN]
    background = set(registry._background.tolist())
    with_matches = 0
    for trial in range(160):
        if trial == 120:
            registry._items[registry._slots["item-8"]] = None  # in the index, gone from the registry
        parts = []
        for j in range(int(rng.integers(1, 4))):
            pieces = []
            for _ in range(int(rng.integers(1, 5))):
                source = sources[int(rng.integers(0, len(sources)))]
                start = int(rng.integers(0, max(1, len(source) - 60)))
                piece = source[start : start + int(rng.integers(30, 700))]
                pieces.append(piece * int(rng.integers(1, 3)))  # a passage twice in a row: values repeat in a run
                pieces.append(_sentences(rng, en_words, int(rng.integers(0, 3)), " "))
            text = "\n".join(pieces)
            if rng.random() < 0.25:  # folds that are not one character for one, and format characters
                text = text.replace("fi", "\ufb01").replace(" ", " \u200b").replace("1", "\u2460")
            parts.append(TextPart(f"messages[{j}].content", text))
        want = _reference_scan(registry, parts, background)
        _assert_same(_fingerprints_only(registry.scan(parts)), want)
        with_matches += bool(want.matches)
    assert with_matches > 100
