"""Three `shuhi serve` processes on the real PostgreSQL and Redis: what one replica changes holds on all within 1 s.

Registration, consent, revocation and key deletion are each made on one replica while the
others are asked, every 20 ms, whether it holds yet; after that second, a burst of mixed calls
(streaming and not) on every replica must be refused, and the fake provider must have seen none
of them. Under mixed load throughout, every call that was answered has exactly one decision
record, and no replica's log carries the confidential text.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable

import httpx
import orjson

from tests.cluster import (  # noqa: F401  (cluster, own_upstream, postgres_schema: fixtures)
    BAR_SECONDS, Cluster, Load, call, cluster, decision_records, embed, lag_on_all, own_upstream, postgres_schema,
    seed,
)
from tests.test_articles_e2e import DESIGN, EXCERPT, NDA


def test_changes_on_one_replica_hold_on_all_three_within_a_second(cluster: Cluster) -> None:
    c = cluster
    seeded = seed(c, item=False, consent=None)  # the item and the consent are the changes measured below
    key, load_key = seeded.key, seeded.load_key
    lags: dict[str, list[float]] = {}

    def status_is(expected: int) -> Callable[[httpx.Client, str], bool]:
        return lambda client, url: embed(client, url, key, EXCERPT).status_code == expected

    def burst(expected: int) -> None:
        with concurrent.futures.ThreadPoolExecutor(12) as pool, httpx.Client(timeout=10) as client:
            statuses = list(pool.map(lambda i: call(client, c.urls[i % 3], key, EXCERPT, stream=i % 2 == 0,
                                                    anthropic=i % 3 == 1).status_code, range(60)))
        assert statuses == [expected] * 60, statuses

    with Load(c, load_key) as load:
        # registration on replica 0: the excerpt is held for consent everywhere
        c.admin(0, "POST", f"/admin/v1/agreements/{NDA['id']}/items",
                json={"title": "設計書", "category": "ai_technology", "text": DESIGN})
        registered = time.monotonic()
        lags["registration"] = lag_on_all(c.urls, status_is(403), registered)
        # consent on replica 1: the excerpt passes everywhere
        consent = c.admin(1, "POST", "/admin/v1/consents", json={
            "agreement_id": NDA["id"], "destinations": ["fake-openai", "fake-anthropic"], "purpose": "inference",
            "evidence": {"reference": "同意書 2026-11-27"}, "granted_by": "法務部"}).json()
        lags["consent"] = lag_on_all(c.urls, status_is(200), time.monotonic())
        time.sleep(0.5)  # the load runs with the consent in force for a while
        # revocation on replica 2: refused everywhere within the second, and nothing passes after it
        c.admin(2, "DELETE", f"/admin/v1/consents/{consent['id']}")
        revoked = time.monotonic()
        lags["revocation"] = lag_on_all(c.urls, status_is(403), revoked)
        time.sleep(max(0.0, revoked + BAR_SECONDS - time.monotonic()))
        httpx.delete(c.upstream.url + "/_fake/requests")
        burst(403)
        leaked = [r for r in httpx.get(c.upstream.url + "/_fake/requests").json()["data"]
                  if EXCERPT in orjson.dumps(r.get("json")).decode()]
        # key deletion on replica 0: 401 everywhere within the second, and after it
        c.admin(0, "DELETE", f"/admin/v1/keys/{seeded.key_id}")
        deleted = time.monotonic()
        lags["key deletion"] = lag_on_all(c.urls, status_is(401), deleted)
        time.sleep(max(0.0, deleted + BAR_SECONDS - time.monotonic()))
        burst(401)
    print({name: [round(x, 3) for x in found] for name, found in lags.items()})
    for name, found in lags.items():
        assert max(found) <= BAR_SECONDS, f"{name}: {found}"
    assert leaked == []
    assert not [a for a in load.answered if a[1] == "confidential" and a[2] == 200 and a[0] > registered + BAR_SECONDS]
    assert {a[2] for a in load.answered} <= {200, 403}
    # every answered call has exactly one decision record
    records = decision_records(c.engine, c.database_url)
    answered_ids = [a[3] for a in load.answered if a[2] in (200, 403)]
    assert len(answered_ids) > 50
    missing = [i for i in answered_ids if records.get(i) != 1]
    assert missing == []


def test_revocation_holds_after_many_consented_answers(cluster: Cluster) -> None:
    c = cluster
    seeded = seed(c, consent=("fake-openai",))
    key, consent = seeded.key, seeded.consent
    assert consent is not None
    with httpx.Client(timeout=10) as client:
        assert [call(client, c.urls[i % 3], key, EXCERPT).status_code for i in range(12)] == [200] * 12
        c.admin(2, "DELETE", f"/admin/v1/consents/{consent['id']}")
        time.sleep(BAR_SECONDS)
        assert [call(client, url, key, EXCERPT).status_code for url in c.urls] == [403] * 3
