from __future__ import annotations

import hashlib

import pytest

from gateway.detection.registry import Registry
from gateway.domain import Category, TextPart

from .conftest import EN_PLAN, EN_UNRELATED, JA_DESIGN, JA_UNRELATED, PY_SOURCE, SECRET


def _fingerprint_matches(registry: Registry, parts: list[TextPart]) -> list:
    return [m for m in registry.scan(parts).matches if m.kind == "fingerprint"]


def test_add_item_reports_stats_and_hashes_the_original(registry: Registry) -> None:
    stats = registry.add_item("item-ja", "nda-1", Category.AI_TECHNOLOGY, JA_DESIGN)
    assert stats.item_id == "item-ja"
    assert stats.chars == len(JA_DESIGN)
    assert stats.sha256 == hashlib.sha256(JA_DESIGN.encode()).hexdigest()
    assert stats.fingerprints > 10


@pytest.mark.parametrize(
    ("item", "excerpt_slice", "wrapper"),
    [
        (JA_DESIGN, slice(40, 120), JA_UNRELATED),
        (EN_PLAN, slice(60, 260), EN_UNRELATED),
        (JA_DESIGN, slice(100, 180), EN_UNRELATED),  # Japanese quoted in an English prompt
    ],
)
def test_when_an_excerpt_is_pasted_into_unrelated_text_then_it_is_found_with_its_span(
    registry: Registry, item: str, excerpt_slice: slice, wrapper: str
) -> None:
    registry.add_item("item", "nda-1", Category.BUSINESS, item)
    excerpt = item[excerpt_slice]
    half = len(wrapper) // 2
    prompt = wrapper[:half] + "\n\n" + excerpt + "\n\n" + wrapper[half:]
    matches = _fingerprint_matches(registry, [TextPart("messages[0].content", prompt)])
    assert len(matches) == 1
    match = matches[0]
    lo = prompt.index(excerpt)
    hi = lo + len(excerpt)
    assert lo <= match.start < match.end <= hi
    assert match.end - match.start >= len(excerpt) - 2 * 40
    assert match.item_id == "item" and match.agreement_id == "nda-1" and match.category == "business"
    assert 0 < match.item_coverage < 1 and 0 < match.request_coverage <= 1


def test_when_the_excerpt_is_reformatted_and_spoofed_then_it_is_still_found(registry: Registry) -> None:
    registry.add_item("plan", "nda-1", Category.BUSINESS, EN_PLAN)
    spoofed = EN_PLAN.upper().replace(" ", "  \n").replace("A", "А").replace("O", "Ο").replace(".", " .\u200b")
    matches = _fingerprint_matches(registry, [TextPart("m", spoofed)])
    assert matches and matches[0].item_coverage > 0.9


def test_unrelated_prompts_do_not_match(registry: Registry) -> None:
    registry.add_item("ja", "nda-1", Category.AI_TECHNOLOGY, JA_DESIGN)
    registry.add_item("en", "nda-1", Category.BUSINESS, EN_PLAN)
    assert registry.scan([TextPart("a", EN_UNRELATED), TextPart("b", JA_UNRELATED)]).matches == ()


def test_when_fragments_are_spread_over_parts_then_coverage_adds_up(registry: Registry) -> None:
    registry.add_item("plan", "nda-1", Category.BUSINESS, EN_PLAN)
    third = len(EN_PLAN) // 3
    parts = [TextPart(f"messages[{i}].content", EN_PLAN[i * third : (i + 1) * third]) for i in range(3)]
    singles = [_fingerprint_matches(registry, [p])[0].item_coverage for p in parts]
    together = _fingerprint_matches(registry, parts)
    assert {m.location for m in together} == {p.location for p in parts}
    total = together[0].item_coverage
    assert all(m.item_coverage == total for m in together)
    assert total == pytest.approx(sum(singles), abs=0.02)
    assert total > max(singles)


def test_source_code_is_found_after_renaming_reformatting_and_comment_removal(registry: Registry) -> None:
    registry.add_item("lr", "nda-2", Category.SOURCE_CODE, PY_SOURCE, source_code=True, language="python")
    disguised = (
        "Can you review this?\n```python\nimport math\n"
        "def lr(s, w=4000, b=3e-4, d=0.5):\n"
        "  if s < w: return b * s / w\n"
        "  k = math.sqrt(w / s)\n"
        "  return b * k ** d\n"
        "def clip(gs, m=1.0):\n"
        "  t = math.sqrt(sum(float(x * x) for x in gs))\n"
        "  if t > m:\n"
        "    f = m / (t + 1e-6)\n"
        "    return [x * f for x in gs]\n"
        "  return gs\n```\n"
    )
    matches = _fingerprint_matches(registry, [TextPart("m", disguised)])
    assert len(matches) == 1 and matches[0].item_id == "lr"
    assert disguised.index("if s < w") >= matches[0].start - 40
    assert matches[0].item_coverage > 0.3


def test_terms_match_on_word_boundaries_only(registry: Registry) -> None:
    registry.add_terms("codenames", "nda-1", Category.BUSINESS, ["Atlas", "db-prod-07.corp.internal", "極光計画"])
    text = "Ask about ATLAS and db‐prod‐07．corp．internal; the 極光計画 kickoff. That last atlases nothing."
    matches = [m for m in registry.scan([TextPart("m", text)]).matches if m.kind == "term"]
    spans = sorted(text[m.start : m.end] for m in matches)
    assert spans == sorted(["ATLAS", "db‐prod‐07．corp．internal", "極光計画"])
    assert all(m.item_id == "codenames" and m.item_coverage == 1.0 for m in matches)


CUSTOMERS = [
    ["山田 太郎", "東京都", "090-1234-5678", "yamada@example.jp"],
    ["Jane Smith", "Tokyo", "+1 415 555 0100", "jane.smith@example.com"],
    ["佐藤 花子", "大阪府", "080-9876-5432", "hanako.sato@example.jp"],
]


def test_two_cells_of_one_row_match_as_a_record(registry: Registry) -> None:
    registry.add_record_set("customers", "nda-3", CUSTOMERS, ["name", "prefecture", "phone", "email"], min_cells=2)
    text = "Please draft a renewal email to Jane Smith (jane.smith@example.com) in Tokyo."
    matches = [m for m in registry.scan([TextPart("m", text)]).matches if m.kind == "record"]
    assert {m.entity for m in matches} == {"name", "email", "prefecture"}
    assert all(m.item_id == "customers" and m.category == "data" for m in matches)
    assert "Jane Smith" in [text[m.start : m.end] for m in matches]


def test_a_common_cell_alone_or_cells_of_different_rows_do_not_match(registry: Registry) -> None:
    registry.add_record_set("customers", "nda-3", CUSTOMERS, ["name", "prefecture", "phone", "email"], min_cells=2)
    for text in ["Our office moved to Tokyo last year.", "東京都の山田さんと、大阪府の佐藤さん", "Call 090-1234-5678 now? (Jane Doe)"]:
        assert [m for m in registry.scan([TextPart("m", text)]).matches if m.kind == "record"] == []


def test_record_cells_in_japanese_match_across_parts(registry: Registry) -> None:
    registry.add_record_set("customers", "nda-3", CUSTOMERS, ["name", "prefecture", "phone", "email"], min_cells=2)
    parts = [TextPart("a", "担当は山田太郎さんです。"), TextPart("b", "電話は０９０−１２３４−５６７８まで")]
    matches = [m for m in registry.scan(parts).matches if m.kind == "record"]
    assert {(m.location, m.entity) for m in matches} == {("a", "name"), ("b", "phone")}


def test_exclusions_never_match(registry: Registry) -> None:
    public = "The pricing engine recomputes every enterprise quote overnight. It pulls the previous quarter's usage"
    registry.add_item("plan", "nda-1", Category.BUSINESS, EN_PLAN)
    registry.add_terms("plan", "nda-1", Category.BUSINESS, ["enterprise quote"])
    registry.add_exclusion("public-blog", "nda-1", public)
    assert registry.scan([TextPart("m", "From the blog: " + public)]).matches == ()
    # The confidential remainder still matches, and only outside the excluded text.
    rest = EN_PLAN[len(public) :]
    matches = registry.scan([TextPart("m", public + rest)]).matches
    assert matches and all(m.kind == "fingerprint" for m in matches)
    assert all(m.end > len(public) for m in matches)


def test_exclusions_of_another_agreement_do_not_apply(registry: Registry) -> None:
    registry.add_item("plan", "nda-1", Category.BUSINESS, EN_PLAN)
    registry.add_exclusion("other", "nda-9", EN_PLAN)
    assert registry.scan([TextPart("m", EN_PLAN)]).matches


def test_boilerplate_shared_by_many_items_does_not_match_on_its_own() -> None:
    registry = Registry(SECRET, max_item_share=3)
    clause = "This document is confidential and intended solely for the use of the individual to whom it is addressed."
    for i in range(5):
        registry.add_item(f"memo-{i}", "nda-1", Category.MARKED, f"Memo {i}: quarterly figures for region {i * 7}. " + clause)
    assert registry.scan([TextPart("m", "Footer: " + clause)]).matches == ()


def test_background_text_does_not_match_on_its_own(registry: Registry) -> None:
    legal = "Nothing in this agreement shall be construed as granting any license or right under any patent or copyright."
    registry.add_item("nda-text", "nda-1", Category.MARKED, EN_PLAN + " " + legal)
    assert registry.scan([TextPart("m", legal)]).matches
    registry.add_background(legal)
    assert registry.scan([TextPart("m", legal)]).matches == ()
    assert registry.scan([TextPart("m", EN_PLAN)]).matches


def test_remove_item_and_agreement_stop_matching(registry: Registry) -> None:
    registry.add_item("plan", "nda-1", Category.BUSINESS, EN_PLAN)
    registry.add_item("design", "nda-2", Category.AI_TECHNOLOGY, JA_DESIGN)
    registry.add_terms("names", "nda-2", Category.BUSINESS, ["極光計画"])
    assert registry.remove_item("plan")
    assert registry.scan([TextPart("m", EN_PLAN)]).matches == ()
    assert sorted(registry.remove_agreement("nda-2")) == ["design", "names"]
    assert registry.scan([TextPart("m", JA_DESIGN + "極光計画")]).matches == ()


def test_exported_fingerprints_load_into_a_fresh_registry(registry: Registry) -> None:
    registry.add_item("plan", "nda-1", Category.BUSINESS, EN_PLAN)
    blob = registry.item_fingerprints("plan")
    assert len(blob) == 8 * registry.item_size("plan")
    restored = Registry(SECRET)
    restored.load_item("plan", "nda-1", Category.BUSINESS, blob)
    before = registry.scan([TextPart("m", EN_PLAN[50:300])]).matches
    after = restored.scan([TextPart("m", EN_PLAN[50:300])]).matches
    assert before == after and before


def test_a_passage_pasted_many_times_or_spread_over_many_messages_is_still_found(registry: Registry) -> None:
    """Boilerplate is a fingerprint many items share, not one the request repeats."""
    registry.add_item("plan", "nda-1", Category.BUSINESS, EN_PLAN)
    passage = EN_PLAN[40:240]
    pasted = _fingerprint_matches(registry, [TextPart("m", "\n\n".join([passage] * 12))])
    assert pasted and {m.item_id for m in pasted} == {"plan"}
    spread = _fingerprint_matches(registry, [TextPart(f"messages[{i}].content", passage) for i in range(9)])
    assert {m.location for m in spread} == {f"messages[{i}].content" for i in range(9)}
