"""A process stores material while its own refresh loop reads the change log: each item is loaded once.

The refresh loop (`RegistryService.apply`) may see an item's `item_added` event between the moment the
registering call committed it and the moment that call loads it into memory. Whichever comes first loads
it; the other must neither fail nor load it twice.
"""

from __future__ import annotations

import threading

import sqlalchemy as sa

from gateway.domain import Category, TextPart
from gateway.registration import Material, RegistryService
from gateway.storage import changes
from tests.conftest import STORE_AGREEMENT

SECRET = b"k" * 32
TEXTS = [f"設計書 第{n}版: 蒸留の温度は層ごとに {n} 度ずつ上げ、四つの生徒モデルの間に相互学習の損失を加える。"
         f"Revision {n} raises the distillation temperature layer by layer and weights it at {n} tenths."
         for n in range(12)]


def test_items_registered_while_the_change_log_is_applied_are_loaded_once(agreement_store: sa.Engine) -> None:
    service = RegistryService(agreement_store, SECRET)
    service.load()
    seq = changes.last_change(agreement_store)
    done = threading.Event()
    failures: list[BaseException] = []

    def refresh_loop() -> None:
        nonlocal seq
        try:
            while not done.is_set():
                found = changes.changes_since(agreement_store, seq)
                service.apply(found)
                if found:
                    seq = max(int(row.seq) for row in found)
        except BaseException as exc:  # reported below: a failing loop is the bug this test looks for
            failures.append(exc)

    loop = threading.Thread(target=refresh_loop)
    loop.start()
    try:
        items = [service.register_item(STORE_AGREEMENT, Material(title=f"v{n}", category=Category.AI_TECHNOLOGY,
                                                            text=text, terms=(f"Aurora-{n}",)))
                 for n, text in enumerate(TEXTS)]
    finally:
        done.set()
        loop.join()
    assert not failures, failures
    for n, (item, text) in enumerate(zip(items, TEXTS, strict=True)):
        found = {m.item_id for m in service.scan([TextPart(location="messages[0].content", text=text)])}
        assert item["id"] in found
        assert service.registry.item_size(item["id"]) == item["fingerprints"] > 0
        term_hits = [m for m in service.scan([TextPart(location="messages[0].content", text=f"see Aurora-{n} now")])
                     if m.item_id == item["id"]]
        assert len(term_hits) == 1, term_hits


def test_a_gateway_starting_on_a_full_store_scans_one_merged_index_with_the_same_matches(
        agreement_store: sa.Engine) -> None:
    """Loaded item by item at start, the index would stay in its merge cascade's several segments, each
    read per fingerprint looked up; the loaded registry is one segment, and finds what the registering
    process found."""
    def revision(n: int) -> str:
        return (f"設計書 第{n}版: 蒸留の温度は層ごとに {n * 7} 度ずつ上げ、生徒モデル {n} 体の間に相互学習の損失を加える。"
                f"Revision {n} raises the distillation temperature by {n * 3} tenths for each of {n + 4} layers.")

    # A large item, then smaller ones: the merge cascade keeps the large one apart.
    texts = [" ".join(revision(n) for n in range(40)), " ".join(revision(n) for n in range(40, 44)), revision(44)]
    writer = RegistryService(agreement_store, SECRET)
    writer.load()
    items = [writer.register_item(STORE_AGREEMENT, Material(title=f"v{n}", category=Category.AI_TECHNOLOGY, text=text))
             for n, text in enumerate(texts)]
    assert len(writer.registry.index._segments) > 1  # what registering one item at a time leaves
    prompts = [[TextPart(location="messages[0].content", text=f"前置き。{revision(n)} 後書き。")] for n in (3, 41, 44)]

    started = RegistryService(agreement_store, SECRET)
    started.load()
    assert len(started.registry.index._segments) == 1
    for n, parts in enumerate(prompts):
        found = [(m.item_id, m.start, m.end, m.item_coverage) for m in started.scan(parts)]
        assert found == [(m.item_id, m.start, m.end, m.item_coverage) for m in writer.scan(parts)]
        assert items[n]["id"] in {item_id for item_id, *_ in found}
