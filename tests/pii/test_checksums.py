"""Check digits: real-looking identifiers pass, the same digits with one changed do not."""

from __future__ import annotations

import pytest

from gateway.pii.checksums import (
    corporate_number_check_digit, corporate_number_valid, luhn_valid, my_number_check_digit, my_number_valid,
)


def test_my_number_check_digit_follows_the_published_weights() -> None:
    # 11 digits 12345678901: weights from the right 2..7, 2..6 give 11 - (sum mod 11) = 8
    assert my_number_check_digit("12345678901") == "8"
    assert my_number_valid("123456789018") and my_number_valid("1234 5678 9018")
    assert not my_number_valid("123456789017") and not my_number_valid("111111111111")


def test_corporate_number_check_digit_matches_a_published_number() -> None:
    assert corporate_number_valid("7000012050002")  # the National Tax Agency's own corporate number
    assert corporate_number_check_digit("000012050002") == "7"
    assert not corporate_number_valid("8000012050002") and not corporate_number_valid("700001205000")


@pytest.mark.parametrize("number", ["4111111111111111", "5500 0000 0000 0004", "340000000000009", "3530111333300000"])
def test_luhn_accepts_test_card_numbers(number: str) -> None:
    assert luhn_valid(number)


@pytest.mark.parametrize("number", ["4111111111111112", "1234567890123", "12345"])
def test_luhn_refuses_altered_and_short_numbers(number: str) -> None:
    assert not luhn_valid(number)
