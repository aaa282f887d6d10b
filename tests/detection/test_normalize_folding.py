from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.normalize import fold, normalize


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ＡＩモデル　ｖ２", "aiモデルv2"),  # full width letters, digits and space
        ("ｶﾞｲﾄﾞﾗｲﾝ", fold("ガイドライン")),  # half-width katakana with voicing marks
        ("か゛いと゛", "がいど"),  # spacing voicing marks
        ("秘\u200b密\u200d情\ufeff報", "秘密情報"),  # zero-width characters
        ("con\u00adfiden\u2060tial", "confidential"),  # soft hyphen, word joiner
        ("Рrоjесt Аtlаs", "projectatlas"),  # Cyrillic lookalikes
        ("πrοtοcοl", fold("πrotocol")),  # Greek omicron
        ("Straße", "strasse"),
        ("Café  déjà-vu!", "cafedejavu"),
        ("e\u0301te\u0301", "ete"),  # decomposed accents
        ("The\n\n  model,\tis   trained.", "themodelistrained"),
        ("「秘密情報」とは、", "秘密情報とは"),
        ("ℌ𝔢𝔩𝔩𝔬 ①②", "hello12"),
        ("tag\U000e0041\U000e0042s", "tags"),  # invisible tag characters
        ("FΙLE ІNFO", "fileinfo"),  # Greek and Cyrillic capital I look like I, not like l
        ("べース ぺージ", fold("ベース ページ")),  # voiced kana meet their base's lookalike entry
        ("ﾍﾞｰｽ", fold("ベース")),
    ],
)
def test_when_text_is_reformatted_then_it_folds_to_the_same_form(raw: str, expected: str) -> None:
    assert normalize(raw).text == expected
    assert fold(raw) == expected


def test_when_lookalikes_are_substituted_then_folding_is_identical() -> None:
    honest = "The pricing engine recomputes every enterprise quote overnight."
    spoofed = "Тhе рriсing еnginе rеcоmputеs еvеry еntеrprisе quоtе оvеrnight."
    assert normalize(spoofed).text == normalize(honest).text


def test_original_span_maps_back_through_dropped_and_expanded_characters() -> None:
    raw = "Ｔｈｅ  ﬁnal\u200b report: Straße"
    norm = normalize(raw)
    i = norm.text.index("final")
    start, end = norm.original_span(i, i + len("final"))
    assert raw[start:end] == "ﬁnal"
    j = norm.text.index("strasse")
    start, end = norm.original_span(j, j + len("strasse"))
    assert raw[start:end] == "Straße"


def test_original_span_covers_a_whole_cluster() -> None:
    raw = "xｶﾞy"
    norm = normalize(raw)
    assert norm.text == "xガy"
    assert norm.original_span(1, 2) == (1, 3)


_ALPHABET = st.sampled_from(
    list("abcXYZ019 ,.-\n\t") + list("秘密情報のモデルがガｶﾞﾟ゛") + list("аеорсΟοΑ") + ["\u200b", "\u0301", "\u3099", "ß", "ﬁ", "Ａ"]
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_ALPHABET, max_size=40).map("".join), st.data())
def test_every_normalized_span_maps_to_an_original_span_that_folds_back(raw: str, data: st.DataObject) -> None:
    norm = normalize(raw)
    n = len(norm.text)
    start = data.draw(st.integers(0, n))
    end = data.draw(st.integers(start, n))
    o_start, o_end = norm.original_span(start, end)
    assert 0 <= o_start <= o_end <= len(raw)
    # The original span, folded on its own, contains the normalized span.
    assert norm.text[start:end] in normalize(raw[o_start:o_end]).text


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_normalization_is_idempotent(raw: str) -> None:
    once = normalize(raw).text
    assert normalize(once).text == once
    assert fold(raw) == once


def test_voiced_kana_lookalikes_map_back_to_their_own_characters() -> None:
    text = "見出しはﾍﾟｰｼﾞ上部"
    norm = normalize(text)
    start = norm.text.index(fold("ページ"))
    assert norm.original_span(start, start + len(fold("ページ"))) == (text.index("ﾍ"), text.index("上"))
