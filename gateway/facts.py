"""What the decision engine needs to know, held in memory for the hot path and swapped whole on refresh.

Agreements, items and consents change rarely and are read on every request, so
each process keeps a copy: refreshed at once in the process that made a change,
and within a second everywhere else (the background refresh in `app.py`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from gateway.domain import Agreement, Consent, ItemInfo


@dataclass(frozen=True, slots=True)
class Facts:
    """One consistent snapshot; never mutated, only replaced."""

    agreements: dict[str, Agreement] = field(default_factory=dict)
    items: dict[str, ItemInfo] = field(default_factory=dict)
    consents: tuple[Consent, ...] = ()


class FactsHolder:
    """The current snapshot, replaced atomically (one attribute assignment)."""

    def __init__(self) -> None:
        self.current = Facts()

    def replace(self, agreements: Iterable[Agreement] | None = None, items: Iterable[ItemInfo] | None = None,
                consents: Iterable[Consent] | None = None) -> None:
        now = self.current
        self.current = Facts(
            agreements={a.id: a for a in agreements} if agreements is not None else now.agreements,
            items={i.id: i for i in items} if items is not None else now.items,
            consents=tuple(consents) if consents is not None else now.consents,
        )

    def add_items(self, items: Iterable[ItemInfo]) -> None:
        """New items (derived ones, registered here) without reloading the rest."""
        now = self.current
        self.current = Facts(agreements=now.agreements, items={**now.items, **{i.id: i for i in items}},
                             consents=now.consents)
