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
from presidio_analyzer.predefined_recognizers import CreditCardRecognizer, EmailRecognizer, IbanRecognizer

from gateway.pii.entities import PHONE_NUMBER
from gateway.pii.patterns import CheckedPatternRecognizer

_OFFLINE_SUFFIXES = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)
_EDGE_BEFORE = r"(?<![\w.+\-])"
_EDGE_AFTER = r"(?![\w\-]|\.\d)"
_EXTENSION = r"(?:\s?(?:x|ext\.?|#)\s?\d{1,5})?"


class OfflineEmailRecognizer(EmailRecognizer):
    """Presidio's email recognizer with the bundled public suffix list only."""

    def validate_result(self, pattern_text: str) -> bool:
        """An address whose domain has a known public suffix."""
        return _OFFLINE_SUFFIXES(pattern_text.rsplit("@", 1)[-1]).fqdn != ""


def recognizers(language: str) -> list[EntityRecognizer]:
    """The international recognizers for one analyzer language (they run on text of either language)."""
    return [
        OfflineEmailRecognizer(supported_language=language),
        CreditCardRecognizer(supported_language=language),
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
