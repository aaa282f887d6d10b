"""The PII entity names the gateway recognizes, as API.md and the policy spell them."""

from __future__ import annotations

PERSON = "PERSON"
EMAIL_ADDRESS = "EMAIL_ADDRESS"
PHONE_NUMBER = "PHONE_NUMBER"
CREDIT_CARD = "CREDIT_CARD"
IBAN_CODE = "IBAN_CODE"
JP_MY_NUMBER = "JP_MY_NUMBER"
JP_CORPORATE_NUMBER = "JP_CORPORATE_NUMBER"
JP_POSTAL_CODE = "JP_POSTAL_CODE"
JP_ADDRESS = "JP_ADDRESS"
JP_BANK_ACCOUNT = "JP_BANK_ACCOUNT"

# Found by patterns and check digits: cheap, run on every text part.
PATTERN_ENTITIES = frozenset({
    EMAIL_ADDRESS, PHONE_NUMBER, CREDIT_CARD, IBAN_CODE, JP_MY_NUMBER, JP_CORPORATE_NUMBER, JP_POSTAL_CODE,
    JP_ADDRESS, JP_BANK_ACCOUNT,
})
# Found by a language model: paid for only when the policy asks for them.
NER_ENTITIES = frozenset({PERSON})
ALL_ENTITIES = PATTERN_ENTITIES | NER_ENTITIES
