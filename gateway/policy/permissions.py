"""Who may send an agreement's material where: need-to-know staff (Article 3(3)) and recorded consents (4(1), 4(2)).

Inside the company an agreement may list the principals and groups who need
its material for the Purpose; anyone else is refused, whatever the
destination. An agreement that lists nobody leaves everyone authorized, as
API.md promises.

Towards a third party or a training run, a consent covers a call when all of these hold:

* it was given under the same agreement;
* it names no items (the whole agreement), or it names every matched item of
  that agreement; a consent for item A says nothing about item B;
* it names the destination by id: consent to one provider is not consent to
  another;
* its purpose fits: `inference` for input to a model (4(2)), `training` for
  fine-tuning or a destination that trains on its inputs (4(1)); a training
  consent also covers the input that training needs, never the reverse;
* at `now` it has started (`valid_from`), not expired (`valid_until`,
  exclusive) and not been revoked (`revoked_at`).

Matches that name no item (an agreement-level term, say) are covered only by a
consent for the whole agreement.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable

from gateway.domain import Agreement, Consent, ConsentPurpose, Principal
from gateway.policy.validity import as_utc

__all__ = ["consent_applies", "covering_consent", "is_authorized", "purposes_for"]

_INFERENCE_ONLY = (ConsentPurpose.INFERENCE,)
_TRAINING_ONLY = (ConsentPurpose.TRAINING,)


def is_authorized(agreement: Agreement, principal: Principal) -> bool:
    """Article 3(3): listed by id or by group; an agreement that lists nobody authorizes everyone."""
    if not agreement.authorized_principals and not agreement.authorized_groups:
        return True
    if principal.id in agreement.authorized_principals:
        return True
    return any(group in agreement.authorized_groups for group in principal.groups)


def purposes_for(training: bool) -> tuple[ConsentPurpose, ...]:
    """The consent purposes that may cover a call: training needs a training consent, inference an inference one.

    A training consent does not stand in for an inference consent: the
    discloser agreed to have a model trained, not to every prompt to the
    same provider. It does cover the upload that training consists of.
    """
    return _TRAINING_ONLY if training else _INFERENCE_ONLY


def consent_applies(consent: Consent, destination_id: str, purposes: tuple[ConsentPurpose, ...],
                    now: datetime.datetime) -> bool:
    """True when the consent is in force at `now` for this destination and one of these purposes."""
    if consent.purpose not in purposes or destination_id not in consent.destinations:
        return False
    if consent.revoked_at is not None and as_utc(consent.revoked_at) <= now:
        return False
    if consent.valid_from is not None and as_utc(consent.valid_from) > now:
        return False
    if consent.valid_until is not None and as_utc(consent.valid_until) <= now:
        return False
    return True


def covering_consent(consents: Iterable[Consent], agreement_id: str, item_ids: frozenset[str], whole: bool,
                     destination_id: str, purposes: tuple[ConsentPurpose, ...],
                     now: datetime.datetime) -> Consent | None:
    """The first consent covering every matched item of the agreement, or None.

    `whole` is True when some match names no item, so only an agreement-wide
    consent will do. Consents are tried in the order given; a whole-agreement
    consent and an item consent are equally good, the first wins, so the
    audit log names the same consent for the same inputs every time.
    """
    now = as_utc(now)
    for consent in consents:
        if consent.agreement_id != agreement_id:
            continue
        if consent.item_ids and (whole or not item_ids.issubset(consent.item_ids)):
            continue
        if consent_applies(consent, destination_id, purposes, now):
            return consent
    return None
