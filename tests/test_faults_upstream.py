"""Three `shuhi serve` replicas under mixed load while the provider times out, resets, answers 500 or garbage,
cuts streams, and clients vanish mid-stream or read slowly.

Checked together: the provider receives no call that was not decided and audited (its request count
never exceeds the forwarding decisions on record); every answered call has exactly one decision
record; a consent revoked on one replica holds on all three within a second and nothing passes
after it; the audit chain verifies; a slow reader holds up nobody else.
"""

from __future__ import annotations

import concurrent.futures
import threading
import time

import httpx
import pytest
import sqlalchemy as sa

from tests.test_articles_e2e import EXCERPT
from tests.cluster import (  # noqa: F401  (fixtures)
    BAR_SECONDS, Cluster, Load, call, cluster, decision_records, embed, lag_on_all, own_upstream, seed,
)

FORWARDING = ("allow", "allow_marked", "redact")
FAULTS = [{"kind": "slow", "delay_ms": 8000}, {"kind": "drop"}, {"kind": "error", "status": 500},
          {"kind": "garbage"}, {"kind": "drop_mid_stream", "after_chunks": 1}]


def forwarding_decisions(c: Cluster) -> int:
    schema = c.database_url.rsplit("%3D", 1)[1]
    with c.engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {schema}.audit_log WHERE kind = 'decision' "
                                        "AND decision IN ('allow', 'allow_marked', 'redact')")).scalar_one())


def slow_reader(url: str, key: str, stats: dict[str, float]) -> None:
    """A client that takes a second per streamed event."""
    started = time.monotonic()
    with httpx.Client(timeout=30) as client, client.stream(
            "POST", url + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
            json={"model": "gpt-4o-mini", "stream": True,
                  "messages": [{"role": "user", "content": "a slow reader " * 20}]}) as response:
        for _ in response.iter_raw(256):
            time.sleep(0.3)
    stats["slow_seconds"] = time.monotonic() - started


def vanishing(url: str, key: str) -> int:
    """A client that reads the first bytes of a stream and goes away."""
    with httpx.Client(timeout=10) as client, client.stream(
            "POST", url + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
            json={"model": "gpt-4o-mini", "stream": True,
                  "messages": [{"role": "user", "content": "vanishing " * 30}]}) as response:
        for _ in response.iter_raw(16):
            break
        return response.status_code


@pytest.mark.slow
def test_replicas_under_provider_and_client_faults(cluster: Cluster) -> None:
    c = cluster
    seeded = seed(c)
    key, load_key, consent = seeded.key, seeded.load_key, seeded.consent
    assert consent is not None
    httpx.delete(c.upstream.url + "/_fake/stats")
    forwarded_before = forwarding_decisions(c)
    slow: dict[str, float] = {}
    with Load(c, load_key) as load:
        reader = threading.Thread(target=slow_reader, args=(c.urls[0], load_key, slow))
        reader.start()
        time.sleep(0.5)
        with httpx.Client(timeout=10) as client:
            started = time.monotonic()
            quick = [call(client, c.urls[0], load_key, "while a slow reader reads") for _ in range(3)]
            assert time.monotonic() - started < 5 and reader.is_alive()
            assert all(r.status_code == 200 for r in quick)
        for _ in range(3):
            httpx.post(c.upstream.url + "/_fake/behaviors", json={"behaviors": FAULTS})
            assert all(vanishing(url, load_key) in (200, 500, 502, 504) for url in c.urls)
            time.sleep(1.0)
        with httpx.Client(timeout=10) as client:
            assert embed(client, c.urls[2], key, EXCERPT).status_code in (200, 500, 502, 504)
        c.admin(2, "DELETE", f"/admin/v1/consents/{consent['id']}")
        revoked = time.monotonic()
        lags = lag_on_all(c.urls, lambda client, url: embed(client, url, key, EXCERPT).status_code == 403, revoked)
        time.sleep(max(0.0, revoked + BAR_SECONDS - time.monotonic()))
        with concurrent.futures.ThreadPoolExecutor(6) as pool, httpx.Client(timeout=10) as client:
            after = list(pool.map(lambda i: call(client, c.urls[i % 3], key, EXCERPT, stream=i % 2 == 0,
                                                 anthropic=i % 3 == 1).status_code, range(30)))
        reader.join(60)
    assert max(lags) <= BAR_SECONDS, lags
    assert after == [403] * 30
    statuses = {a[2] for a in load.answered}
    assert statuses <= {200, 403, 500, 502, 504}, statuses
    assert statuses & {500, 502, 504}  # the faults were met
    received = int(httpx.get(c.upstream.url + "/_fake/stats").json()["requests"])
    assert received <= forwarding_decisions(c) - forwarded_before  # nothing reached the provider undecided
    records = decision_records(c.engine, c.database_url)
    assert all(n == 1 for n in records.values())
    assert all(records.get(a[3]) == 1 for a in load.answered)
    assert slow.get("slow_seconds", 0) > 2
    verify = c.admin(0, "GET", "/admin/v1/audit/verify").json()
    assert verify["ok"] is True
