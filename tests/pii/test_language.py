"""Language runs: Japanese and English pieces of one text go to their own models."""

from __future__ import annotations

from gateway.pii.language import language_of, runs


def test_a_mixed_text_is_cut_into_runs_that_cover_it() -> None:
    text = "お世話になっております。山田です。\nThe error was: KeyError in foo.\n住所は東京都港区です。Call me."
    found = runs(text)
    assert [r.language for r in found] == ["ja", "en", "ja", "en"]
    assert found[0].start == 0 and found[-1].end == len(text)
    assert all(a.end == b.start for a, b in zip(found, found[1:], strict=False))


def test_japanese_with_a_few_latin_words_stays_japanese() -> None:
    assert language_of("S3 バケットの設定を確認しました。") == "ja"
    assert language_of("Please check the 設定 of the bucket.") == "en"
    assert runs("plain English only") == runs("plain English only")[:1] and runs("") == []
