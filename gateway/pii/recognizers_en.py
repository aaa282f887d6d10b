"""Presidio's own recognizers for email, payment cards (Luhn) and IBAN, set up to work offline; phone patterns.

Presidio's email check asks `tldextract`, which by default fetches the public
suffix list from the network on first use; here it reads only the snapshot the
package ships, so the gateway never reaches out at run time. Presidio's phone recognizer asks
`phonenumbers` to try every region on every run of digits (20 ms for a 4 KB
prompt); North American and international layouts are matched here by pattern
instead, with context words to lift the ambiguous ones.
"""

from __future__ import annotations

import tldextract
from presidio_analyzer import EntityRecognizer, Pattern
from presidio_analyzer.predefined_recognizers import EmailRecognizer, IbanRecognizer

from gateway.pii.checksums import luhn_valid
from gateway.pii.entities import CREDIT_CARD, PHONE_NUMBER
from gateway.pii.patterns import CheckedPatternRecognizer

_OFFLINE_SUFFIXES = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)
_EDGE_BEFORE = r"(?<![\w.+\-])"
_EDGE_AFTER = r"(?![\w\-]|\.\d)"
_EXTENSION = r"(?:\s?(?:x|ext\.?|#)\s?\d{1,5})?"


_CARD_PREFIXES = (r"(?:4\d{3}|5[1-5]\d{2}|2(?:2[2-9]\d|[3-6]\d{2}|7[01]\d|720)|6(?:011|5\d{2}|4[4-9]\d)|"
                  r"35\d{2})")


class OfflineEmailRecognizer(EmailRecognizer):
    """Presidio's email recognizer with the bundled public suffix list only, and ASCII edges: in Japanese text
    an address runs straight into kana (`…@example.comまで`), where Presidio's word boundary never falls."""

    PATTERNS = [Pattern("email (ascii edges)", r"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]+@(?:[A-Za-z0-9\-]+\.)+"
                        r"[A-Za-z]{2,24}(?![A-Za-z0-9\-])", 0.5)]

    def validate_result(self, pattern_text: str) -> bool:
        """An address whose domain has a known public suffix."""
        return _OFFLINE_SUFFIXES(pattern_text.rsplit("@", 1)[-1]).fqdn != ""


def recognizers(language: str) -> list[EntityRecognizer]:
    """The international recognizers for one analyzer language (they run on text of either language)."""
    return [
        OfflineEmailRecognizer(supported_language=language),
        CheckedPatternRecognizer(
            CREDIT_CARD, "CreditCardRecognizer", [
                Pattern("card grouped", r"(?<![\d\-])" + _CARD_PREFIXES + r"([- ])\d{4}\1\d{4}\1\d{4}(?![\d\-])", 0.7),
                Pattern("amex grouped", r"(?<![\d\-])3[47]\d{2}([- ])\d{6}\1\d{5}(?![\d\-])", 0.7),
                Pattern("card", r"(?<![\d\-])(?:" + _CARD_PREFIXES + r"\d{12}(?:\d{3})?|3[47]\d{13}|3(?:0[0-5]|[68]\d)\d{11})"
                        r"(?![\d\-])", 0.6),
            ], language, check=luhn_valid,
            context=r"card|カード|決済|credit|visa|master|amex|jcb|クレジット", boost=0.35, window=24),
        IbanRecognizer(supported_language=language),
        CheckedPatternRecognizer(
            PHONE_NUMBER, "PhoneRecognizer", [
                Pattern("north american", _EDGE_BEFORE + r"(?:\+1[-. ]?|1[-. ]|001[-. ])?(?:\([2-9]\d{2}\) ?|[2-9]\d{2}"
                        r"[-.])[2-9]\d{2}[-.]\d{4}" + _EXTENSION + _EDGE_AFTER, 0.6),
                Pattern("north american spaced", _EDGE_BEFORE + r"(?:\+1 )?[2-9]\d{2} [2-9]\d{2} \d{4}" + _EXTENSION
                        + _EDGE_AFTER, 0.4),
                Pattern("international", _EDGE_BEFORE + r"\+(?!81)[1-9]\d{0,2}[ -]\(?\d{1,4}\)?(?:[ -]\d{2,4}){2,3}"
                        + _EXTENSION + _EDGE_AFTER, 0.6),
                Pattern("north american contiguous", _EDGE_BEFORE + r"[2-9]\d{2}[2-9]\d{6}" + _EXTENSION + _EDGE_AFTER,
                        0.2),
            ], language, context=r"phone|tel|call|mobile|cell|fax|contact|reach", boost=0.4, window=24),
    ]
