"""When material binds: the agreement's term and survival (Article 11), provisional oral items (Article 2(1)(6)).

Both answers are "does this count at `now`, and if not, why": the reason is a
short code kept in the decision's explanation and the audit log, so an auditor
can see that a match was dropped because the obligations had ended, not
because the scanner missed it.

All times are compared in UTC. A naive datetime is read as UTC rather than
refused, because the stores hand back naive UTC timestamps on some backends.
Dates (an agreement's effective date) start at 00:00 UTC.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from gateway.domain import Agreement, Category, ItemInfo

__all__ = [
    "AgreementPeriod",
    "add_years",
    "agreement_period",
    "agreement_status",
    "as_utc",
    "is_provisional",
    "item_status",
]

UTC = datetime.timezone.utc


def as_utc(moment: datetime.datetime) -> datetime.datetime:
    """The same instant in UTC; a naive value is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def add_years(moment: datetime.datetime, years: int) -> datetime.datetime:
    """`moment` moved by whole calendar years; 29 February becomes 28 February, as a contract would read it."""
    try:
        return moment.replace(year=moment.year + years)
    except ValueError:
        return moment.replace(year=moment.year + years, day=28)


@dataclass(frozen=True, slots=True)
class AgreementPeriod:
    """The three instants of Article 11: in force from `starts`, term over at `term_ends`, bound until `survival_ends`.

    Kept as one value so the admin API and the audit log can show why a
    match stopped counting without redoing the date arithmetic.
    """

    starts: datetime.datetime
    term_ends: datetime.datetime
    survival_ends: datetime.datetime


def agreement_period(agreement: Agreement) -> AgreementPeriod:
    """Article 11(1)-(2): the term ends after `term_years` or at termination, whichever is first;
    the obligations survive `survival_years` after that."""
    effective = agreement.effective_date
    starts = datetime.datetime(effective.year, effective.month, effective.day, tzinfo=UTC)
    term_ends = add_years(starts, agreement.term_years)
    if agreement.terminated_at is not None:
        term_ends = min(term_ends, as_utc(agreement.terminated_at))
    return AgreementPeriod(starts, term_ends, add_years(term_ends, agreement.survival_years))


def agreement_status(agreement: Agreement, now: datetime.datetime) -> str | None:
    """None while the agreement binds at `now`; otherwise why it does not.

    `not_yet_effective` before the effective date, `survival_ended` once the
    Article 11(2) survival period is over. During survival the material still
    counts: the term has ended but the confidentiality obligations have not.
    """
    period = agreement_period(agreement)
    now = as_utc(now)
    if now < period.starts:
        return "not_yet_effective"
    if now >= period.survival_ends:
        return "survival_ended"
    return None


def is_provisional(item: ItemInfo) -> bool:
    """Article 2(1)(6): oral disclosures are provisional until confirmed in writing, whatever the flag says."""
    return item.provisional or item.category is Category.ORAL


def item_status(item: ItemInfo, now: datetime.datetime, window_days: int = 30) -> str | None:
    """None while the item counts at `now`; otherwise why it does not.

    A provisional item counts from disclosure. It keeps counting if the
    written notice was recorded within `window_days` of `disclosed_at`, and
    lapses (`provisional_lapsed`) at the end of the window otherwise, a late
    notice included. An item without a disclosure time cannot lapse: the
    gateway cannot tell when the window started, so it fails closed.
    """
    if not is_provisional(item) or item.disclosed_at is None:
        return None
    disclosed = as_utc(item.disclosed_at)
    deadline = disclosed + datetime.timedelta(days=window_days)
    if item.written_notice_at is not None and as_utc(item.written_notice_at) <= deadline:
        return None
    if as_utc(now) >= deadline:
        return "provisional_lapsed"
    return None
