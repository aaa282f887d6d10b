"""Items fingerprinted under an older scheme cannot be found: the gateway says so instead of passing them.

Fingerprints are only comparable when made the same way, and the material's text is never kept, so an
upgrade that changes the scheme cannot recompute them. A replica that loads such items reports them on
/readyz (red) and on each item, until legal staff register the material again.
"""

from __future__ import annotations

import httpx
import sqlalchemy as sa

from gateway.app import create_app
from gateway.detection.fingerprint import FINGERPRINT_SCHEME
from gateway.storage.database import open_engine
from gateway.storage.tables import items
from tests.conftest import ADMIN_TOKEN, UPSTREAM_KEYS, Gateway, ServerThread, eventually, gateway_settings
from tests.test_articles_e2e import DESIGN, NDA

ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}


def ready_within(url: str, seconds: float = 5.0) -> bool:
    """Readiness also depends on the change log being read lately: on a loaded machine, allow a moment."""
    eventually(lambda: httpx.get(url + "/readyz").status_code == 200, seconds, step=0.1)
    return True


def test_items_of_an_older_scheme_turn_readiness_red_until_registered_again(gateway: Gateway) -> None:
    assert gateway.admin.post("/admin/v1/agreements", json=NDA).status_code == 201
    item = gateway.admin.post(f"/admin/v1/agreements/{NDA['id']}/items",
                              json={"title": "設計書", "category": "ai_technology", "text": DESIGN}).json()
    assert item["fingerprint_scheme"] == FINGERPRINT_SCHEME
    assert ready_within(gateway.url)
    engine = open_engine(gateway.settings.database_url)
    try:
        with engine.begin() as conn:  # as an item stored by an earlier release would be
            conn.execute(sa.update(items).where(items.c.id == item["id"]).values(fingerprint_scheme=1))
    finally:
        engine.dispose()
    replica = ServerThread(create_app(gateway_settings(gateway.settings.database_url, gateway.upstream),
                                      environ=dict(UPSTREAM_KEYS)))
    replica.start()
    try:
        ready = httpx.get(replica.url + "/readyz")
        assert ready.status_code == 503
        problem = next(p for p in ready.json()["problems"] if p.startswith("registry"))
        assert "1 items" in problem and "register them again" in problem and DESIGN[:20] not in problem
        shown = httpx.get(replica.url + f"/admin/v1/items/{item['id']}", headers=ADMIN).json()
        assert shown["fingerprint_scheme"] == 1
        assert httpx.delete(replica.url + f"/admin/v1/items/{item['id']}", headers=ADMIN).status_code == 200
        again = httpx.post(replica.url + f"/admin/v1/agreements/{NDA['id']}/items", headers=ADMIN,
                           json={"title": "設計書", "category": "ai_technology", "text": DESIGN})
        assert again.status_code == 201 and again.json()["fingerprint_scheme"] == FINGERPRINT_SCHEME
        assert ready_within(replica.url)
    finally:
        replica.stop()
