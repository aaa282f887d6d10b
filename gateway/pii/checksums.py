"""Check digits that tell an identifier from any other run of digits of the same length."""

from __future__ import annotations


def digits_of(text: str) -> str:
    """The ASCII digits of `text`, separators dropped (full-width digits are folded before this)."""
    return "".join(c for c in text if "0" <= c <= "9")


def my_number_valid(text: str) -> bool:
    """個人番号 (My Number): 12 digits, the last one a check digit (mod 11, weights 2-7 then 2-6 from the right)."""
    digits = digits_of(text)
    if len(digits) != 12 or len(set(digits)) == 1:
        return False
    body = digits[:11][::-1]
    total = sum(int(d) * (n + 1 if n <= 6 else n - 5) for n, d in enumerate(body, start=1))
    rest = total % 11
    check = 0 if rest <= 1 else 11 - rest
    return check == int(digits[11])


def corporate_number_valid(text: str) -> bool:
    """法人番号 (corporate number): 13 digits, the first one a check digit (mod 9, weights 1 and 2 alternating)."""
    digits = digits_of(text)
    if len(digits) != 13 or len(set(digits)) == 1:
        return False
    body = digits[1:][::-1]
    total = sum(int(d) * (1 if n % 2 else 2) for n, d in enumerate(body, start=1))
    return int(digits[0]) == 9 - total % 9


def luhn_valid(text: str) -> bool:
    """Payment card numbers: the Luhn sum is a multiple of 10."""
    digits = digits_of(text)
    if not 12 <= len(digits) <= 19:
        return False
    total = 0
    for n, d in enumerate(reversed(digits)):
        value = int(d) * (2 if n % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def my_number_check_digit(first_eleven: str) -> str:
    """The check digit that completes 11 digits into a valid My Number (used to build test data)."""
    for last in "0123456789":
        if my_number_valid(first_eleven + last):
            return last
    raise ValueError("no check digit completes these digits")


def corporate_number_check_digit(last_twelve: str) -> str:
    """The check digit that completes 12 digits into a valid corporate number (used to build test data)."""
    body = last_twelve[::-1]
    total = sum(int(d) * (1 if n % 2 else 2) for n, d in enumerate(body, start=1))
    return str(9 - total % 9)
