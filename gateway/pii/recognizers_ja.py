"""Japanese identifiers Presidio does not know: My Number, corporate number, phone, postal code, address, account.

Each recognizer reads width-folded text (`widths.fold`), so full-width digits
and dashes match the same patterns. Scores are chosen so that a bare run of
digits stays below the default thresholds and only a check digit, a typical
layout or a context word (電話, 〒, 口座…) lifts it above.
"""

from __future__ import annotations

from presidio_analyzer import Pattern

from gateway.pii import entities as E
from gateway.pii.checksums import corporate_number_valid, digits_of, my_number_valid
from gateway.pii.patterns import CheckedPatternRecognizer

PREFECTURES = (
    "北海道", "青森県", "岩手県", "宮城県", "秋田県", "山形県", "福島県", "茨城県", "栃木県", "群馬県", "埼玉県",
    "千葉県", "東京都", "神奈川県", "新潟県", "富山県", "石川県", "福井県", "山梨県", "長野県", "岐阜県", "静岡県",
    "愛知県", "三重県", "滋賀県", "京都府", "大阪府", "兵庫県", "奈良県", "和歌山県", "鳥取県", "島根県", "岡山県",
    "広島県", "山口県", "徳島県", "香川県", "愛媛県", "高知県", "福岡県", "佐賀県", "長崎県", "熊本県", "大分県",
    "宮崎県", "鹿児島県", "沖縄県",
)
_NO_DIGIT_BEFORE = r"(?<![\d\-.])"
_NO_DIGIT_AFTER = r"(?![\d\-]|\.\d)"
_KANA_KANJI = "一-龥々〆ヵヶァ-ヺーぁ-ゖ"
_PLACE_FIRST = r"(?:(?![のはがをにでともへや内])[" + _KANA_KANJI + "])"  # 東京都内の市場 is no address
_PLACE = r"(?:(?![はをにでともへや])[" + _KANA_KANJI + "])"  # 日の出町, 松が谷
_TOWN = r"[" + _KANA_KANJI + "A-Za-z]"
_BUILDING = r"[" + _KANA_KANJI + "A-Za-z]"


def _phone_valid(text: str) -> bool:
    """Japanese numbering plan: mobile, IP and 0800 numbers have 11 digits, others 10; area + city code = 6."""
    digits = digits_of(text)
    if text.startswith("+81"):
        digits = "0" + digits[2:]
    if not digits.startswith("0") or digits.startswith("00"):
        return False
    if digits[:3] in ("070", "080", "090", "050") or digits.startswith("0800"):
        return len(digits) == 11
    if digits.startswith(("0120", "0570", "0990")):
        return len(digits) == 10
    if len(digits) != 10:
        return False
    groups = [g for g in text.replace("(", "-").replace(")", "-").replace(" ", "-").split("-") if g]
    if text.startswith("+81") and groups:
        groups = ["0" + groups[0][3:]] + groups[1:] if groups[0] != "+81" else ["0" + groups[1]] + groups[2:]
    if len(groups) == 3:
        return len(digits_of(groups[0])) + len(groups[1]) == 6
    return len(groups) == 1


def recognizers(language: str) -> list[CheckedPatternRecognizer]:
    """The Japanese recognizers for one analyzer language (they run on text of either language)."""
    sep = r"[- ]?"
    return [
        CheckedPatternRecognizer(
            E.JP_MY_NUMBER, "JpMyNumberRecognizer", [
                Pattern("my number grouped", r"(?<![\d\-.] ?)\d{4}([- ])\d{4}\1\d{4}(?! ?\d)" + _NO_DIGIT_AFTER, 0.6),
                Pattern("my number", _NO_DIGIT_BEFORE + r"\d{12}" + _NO_DIGIT_AFTER, 0.4),
            ], language, check=my_number_valid,
            context=r"マイナンバー|個人番号|my ?number|individual number", boost=0.35, window=30, refute=r"::$|arn:"),
        CheckedPatternRecognizer(
            E.JP_CORPORATE_NUMBER, "JpCorporateNumberRecognizer", [
                Pattern("invoice registration number", r"(?<![A-Za-z\d])T\d{13}" + _NO_DIGIT_AFTER, 0.8),
                Pattern("corporate number", _NO_DIGIT_BEFORE + r"\d{13}" + _NO_DIGIT_AFTER, 0.4),
            ], language, check=lambda t: corporate_number_valid(t.lstrip("T")),
            context=r"法人番号|登録番号|インボイス|corporate number|registration number", boost=0.45, window=30),
        CheckedPatternRecognizer(
            E.PHONE_NUMBER, "JpPhoneRecognizer", [
                Pattern("jp phone separated", _NO_DIGIT_BEFORE + r"(?:\+81[- ]?|0)\d{1,4}[- ]\d{1,4}[- ]\d{4}"
                        + _NO_DIGIT_AFTER, 0.6),
                Pattern("jp phone parenthesized", _NO_DIGIT_BEFORE + r"(?:0\d{1,4}\(\d{1,4}\)\d{4}|\(0\d{1,4}\) ?"
                        r"\d{1,4}-\d{4})" + _NO_DIGIT_AFTER, 0.6),
                Pattern("jp free dial", _NO_DIGIT_BEFORE + r"0(?:120|570|990)" + sep + r"\d{3}" + sep + r"\d{3}"
                        + _NO_DIGIT_AFTER, 0.6),
                Pattern("jp 0800", _NO_DIGIT_BEFORE + r"0800" + sep + r"\d{3}" + sep + r"\d{4}" + _NO_DIGIT_AFTER,
                        0.6),
                Pattern("jp mobile contiguous", _NO_DIGIT_BEFORE + r"0[5789]0\d{8}" + _NO_DIGIT_AFTER, 0.5),
                Pattern("jp fixed contiguous", _NO_DIGIT_BEFORE + r"0[1-9]\d{8}" + _NO_DIGIT_AFTER, 0.3),
            ], language, check=_phone_valid,
            context=r"電話|携帯|連絡|TEL|FAX|phone|call|☎|℡|番号", boost=0.35, window=20),
        CheckedPatternRecognizer(
            E.JP_POSTAL_CODE, "JpPostalCodeRecognizer", [
                Pattern("postal mark", r"〒 ?\d{3}-?\d{4}" + _NO_DIGIT_AFTER, 0.9),
                Pattern("postal code", _NO_DIGIT_BEFORE + r"\d{3}-\d{4}" + _NO_DIGIT_AFTER, 0.2),
            ], language, context=r"郵便番号|〒|住所|postal|zip", boost=0.6, window=12),
        CheckedPatternRecognizer(
            E.JP_ADDRESS, "JpAddressRecognizer", [
                Pattern("prefecture and municipality",
                        r"(?:" + "|".join(PREFECTURES) + r")" + _PLACE_FIRST + _PLACE + r"{0,6}?[市区町村郡]"
                        + r"(?:" + _PLACE_FIRST + _PLACE + r"{0,5}?[市区町村])?"
                        + r"(?:" + _TOWN + r"{1,16}?(?=\d|$|[\s、。,]))?"
                        + r"(?:\d{1,5}(?:丁目|番地|番|号|条[東西南北]?|線|-|の)?){0,4}"
                        + r"(?:(?<=[\d号])[ ]?" + _BUILDING + r"{1,15}\d{1,4}(?:号室)?(?!\d))?", 0.7),
            ], language, context=r"住所|所在地|住まい|address", boost=0.2, window=12),
        CheckedPatternRecognizer(
            E.JP_BANK_ACCOUNT, "JpBankAccountRecognizer", [
                Pattern("account after its type",
                        r"(?<=(?:普通|当座|貯蓄|総合)(?:預金)?(?:口座)?[ :：]*(?:口座番号)?[ :：は]*)\d{7}(?!\d)", 0.8),
                Pattern("account after its name", r"(?<=口座番号[ :：は]*)\d{7}(?!\d)", 0.8),
            ], language),
    ]
