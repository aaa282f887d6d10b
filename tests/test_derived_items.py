"""Answers generated from an excerpt (Article 4(3) derived items) never hide the excerpt they repeat.

A derived item keeps only the fingerprints its agreement does not hold yet; however many answers echo an
excerpt, the excerpt's fingerprints keep one holder and are never taken for boilerplate shared by many items.
"""

from __future__ import annotations

import sqlalchemy as sa

from gateway.domain import Category, TextPart
from gateway.registration import Material, RegistryService
from tests.conftest import STORE_AGREEMENT
from tests.test_articles_e2e import DESIGN, EXCERPT

SECRET = b"d" * 32
NEW = ("The four student models exchange their logits every second step, and the teacher's temperature "
       "is lowered again once the validation loss stops falling for three evaluations in a row.")


def found(service: RegistryService, text: str) -> set[str]:
    return {m.item_id for m in service.scan([TextPart(location="messages[0].content", text=text)]) if m.item_id}


def test_many_echoes_of_an_excerpt_leave_it_findable(agreement_store: sa.Engine) -> None:
    service = RegistryService(agreement_store, SECRET)
    service.load()
    source = service.register_item(STORE_AGREEMENT, Material(title="設計書", category=Category.AI_TECHNOLOGY,
                                                              text=DESIGN))
    echoes = [service.register_item(STORE_AGREEMENT, Material(
        title=f"output {n}", category=Category.AI_TECHNOLOGY, text=f"echo: {EXCERPT}", derived_from=f"dec_{n}"))
        for n in range(70)]  # more than the index keeps per fingerprint before calling it common
    # the first answer adds only the grams that span its "echo: " prefix; the others add nothing at all
    assert echoes[0]["fingerprints"] < source["fingerprints"] // 4
    assert all(echo["fingerprints"] == 0 for echo in echoes[1:])
    assert source["id"] in found(service, EXCERPT)
    # a fresh replica loading the same store agrees
    replica = RegistryService(agreement_store, SECRET)
    replica.load()
    assert source["id"] in found(replica, EXCERPT)


def test_a_derived_item_keeps_what_the_answer_added(agreement_store: sa.Engine) -> None:
    service = RegistryService(agreement_store, SECRET)
    service.load()
    service.register_item(STORE_AGREEMENT, Material(title="設計書", category=Category.AI_TECHNOLOGY, text=DESIGN))
    derived = service.register_item(STORE_AGREEMENT, Material(title="output", category=Category.AI_TECHNOLOGY,
                                                         text=f"{EXCERPT}\n{NEW}", derived_from="dec_1"))
    assert derived["fingerprints"] > 0
    assert derived["id"] in found(service, NEW)


def test_derived_items_of_one_agreement_count_as_one_holder() -> None:
    """Stored before derived items kept only what is new, copies still count once among the holders."""
    from gateway.detection.registry import Registry

    registry = Registry(SECRET)
    registry.add_item("source", STORE_AGREEMENT, Category.AI_TECHNOLOGY, DESIGN)
    for n in range(12):
        registry.add_item(f"copy-{n}", STORE_AGREEMENT, Category.AI_TECHNOLOGY, DESIGN, derived=True)
    held = {m.item_id for m in registry.scan([TextPart(location="m", text=EXCERPT)]).matches}
    assert "source" in held
    for n in range(12):  # twelve unrelated documents holding the same text is what boilerplate looks like
        registry.add_item(f"other-{n}", f"nda-{n}", Category.AI_TECHNOLOGY, DESIGN)
    assert not registry.scan([TextPart(location="m", text=EXCERPT)]).matches
