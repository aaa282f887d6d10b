"""Each recognizer on real-looking values and on the false friends it must leave alone."""

from __future__ import annotations

import pytest

from gateway.pii.analyzer import PiiAnalyzer
from gateway.pii.lookup import Lookup

from .conftest import found

FINDS = [
    ("マイナンバーは123456789018です。", "JP_MY_NUMBER", "123456789018"),
    ("個人番号：１２３４－５６７８－９０１８", "JP_MY_NUMBER", "１２３４－５６７８－９０１８"),
    ("番号 1234 5678 9018 を控えた", "JP_MY_NUMBER", "1234 5678 9018"),
    ("取引先の法人番号は7000012050002です。", "JP_CORPORATE_NUMBER", "7000012050002"),
    ("登録番号：T7000012050002", "JP_CORPORATE_NUMBER", "T7000012050002"),
    ("電話は03-1234-5678まで", "PHONE_NUMBER", "03-1234-5678"),
    ("携帯 ０９０ー１２３４ー５６７８ です", "PHONE_NUMBER", "０９０ー１２３４ー５６７８"),
    ("フリーダイヤル 0120-123-456", "PHONE_NUMBER", "0120-123-456"),
    ("ご連絡は09012345678へ", "PHONE_NUMBER", "09012345678"),
    ("代表 +81-3-1234-5678", "PHONE_NUMBER", "+81-3-1234-5678"),
    ("TEL 045(123)4567", "PHONE_NUMBER", "045(123)4567"),
    ("〒105-0011 東京都港区", "JP_POSTAL_CODE", "〒105-0011"),
    ("郵便番号は６０６－８５０１です", "JP_POSTAL_CODE", "６０６－８５０１"),
    ("住所は大阪府大阪市北区梅田３－１－１です", "JP_ADDRESS", "大阪府大阪市北区梅田３－１－１"),
    ("北海道札幌市中央区北1条西2丁目1番地に送付", "JP_ADDRESS", "北海道札幌市中央区北1条西2丁目1番地"),
    ("振込先 みずほ銀行 渋谷支店 普通 1234567", "JP_BANK_ACCOUNT", "1234567"),
    ("口座番号：7654321", "JP_BANK_ACCOUNT", "7654321"),
    ("担当の佐藤 花子さんに伝えてください", "PERSON", "佐藤 花子"),
    ("鈴木一郎部長が承認しました", "PERSON", "鈴木一郎"),
    ("田中様より入金がありました", "PERSON", "田中"),
    ("Please send it to jane.doe@example.co.jp today", "EMAIL_ADDRESS", "jane.doe@example.co.jp"),
    ("メールはyamada@example.comまで", "EMAIL_ADDRESS", "yamada@example.com"),
    ("card 4111-1111-1111-1111 expired", "CREDIT_CARD", "4111-1111-1111-1111"),
    ("カード番号4111111111111111で決済", "CREDIT_CARD", "4111111111111111"),
    ("IBAN DE89370400440532013000 please", "IBAN_CODE", "DE89370400440532013000"),
    ("Call me at (415) 555-0132 tomorrow", "PHONE_NUMBER", "(415) 555-0132"),
    ("The customer Margaret Thompson asked for a refund.", "PERSON", "Margaret Thompson"),
]

LEAVES = [
    "S3 バケットと C4 データセット、EC2 インスタンスで学習した。",  # technical words
    "マイナンバー 123456789017 は誤記です。",  # wrong check digit
    "注文番号 123456789018 を確認",  # 12 digits with a check digit but no context and no grouping
    "arn:aws:iam::123456789018:role/admin",  # an AWS account id
    "タイムスタンプ 1732694400000 のログ",  # 13 digits, no context
    "日付は03-12-2024です。",  # a date, not a phone number (area + city code is not 6 digits)
    "バージョン 3.11.4 をポート 8080 で 10.0.0.1 に配置",
    "商品コード 123-4567 の在庫",  # looks like a postal code, no context
    "東京都内の市場では京都府の町並みが話題になった。",  # prefectures without a municipality
    "中村銀行と太田印刷に見積りを依頼した。",  # companies named after families
    "UUID 123e4567-e89b-12d3-a456-426614174000 と sha256 9f86d081884c7d659a2feaa0c55ad015",
    "Git and Linux run on the Raspberry Pi; Limited XInclude support follows.",  # technical capitals
    "order 4111111111111112 failed",  # fails Luhn
    "The job ran for 1234567 seconds at 2026-11-27 09:00.",
]


@pytest.mark.parametrize(("text", "entity", "value"), FINDS)
def test_finds(analyzer: PiiAnalyzer, everything: Lookup, text: str, entity: str, value: str) -> None:
    assert (entity, value) in found(analyzer, everything, text)


@pytest.mark.parametrize("text", LEAVES)
def test_leaves_false_friends_alone(analyzer: PiiAnalyzer, everything: Lookup, text: str) -> None:
    assert found(analyzer, everything, text) == []


def test_only_the_entities_asked_for_are_reported(analyzer: PiiAnalyzer) -> None:
    text = "山田 太郎様 090-1234-5678 yamada@example.com"
    assert found(analyzer, Lookup(frozenset({"EMAIL_ADDRESS"})), text) == [("EMAIL_ADDRESS", "yamada@example.com")]


def test_per_entity_minimum_scores_apply(analyzer: PiiAnalyzer) -> None:
    text = "ご連絡は09012345678へ"  # a contiguous mobile number with a context word scores 0.85
    assert found(analyzer, Lookup(frozenset({"PHONE_NUMBER"}), {"PHONE_NUMBER": 0.9}), text) == []
    assert found(analyzer, Lookup(frozenset({"PHONE_NUMBER"}), {"PHONE_NUMBER": 0.8}), text) != []


def test_the_deny_list_removes_technical_words_ner_takes_for_names(analyzer: PiiAnalyzer) -> None:
    text = "Please ask Jordan Lee about it."
    lookup = Lookup(frozenset({"PERSON"}))
    assert found(analyzer, lookup, text) == [("PERSON", "Jordan Lee")]
    assert found(analyzer, Lookup(frozenset({"PERSON"}), deny_list=frozenset({"jordan lee"})), text) == []


def test_mixed_language_text_finds_names_in_both(analyzer: PiiAnalyzer, everything: Lookup) -> None:
    text = "お世話になっております。高橋 一郎様の件です。\nThe customer, Margaret Thompson, called twice."
    names = [v for e, v in found(analyzer, everything, text) if e == "PERSON"]
    assert names == ["高橋 一郎", "Margaret Thompson"]


def test_long_texts_are_cut_for_sudachi_and_offsets_stay_right(analyzer: PiiAnalyzer, everything: Lookup) -> None:
    filler = "この文章は長い技術文書の一部であり、個人情報は含まれていません。" * 700  # ~22,000 characters
    text = filler + "担当は佐藤 花子さんです。" + filler
    assert [v for e, v in found(analyzer, everything, text) if e == "PERSON"] == ["佐藤 花子"]


def test_ginza_ner_adds_names_the_dictionary_does_not_know() -> None:
    from gateway.pii.analyzer import shared_analyzer

    with_ginza = shared_analyzer(True)  # loads ja_ginza once (a few seconds)
    text = "営業の佐藤さんとマイケル・ブラウンが打ち合わせをした。"
    lookup = Lookup(frozenset({"PERSON"}))
    assert found(with_ginza, lookup, text) == [("PERSON", "佐藤")]
    ner = Lookup(frozenset({"PERSON"}), japanese_ner=True)
    assert found(with_ginza, ner, text) == [("PERSON", "佐藤"), ("PERSON", "マイケル・ブラウン")]
