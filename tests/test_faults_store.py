"""PostgreSQL down, hung or slow (through a fault-injecting proxy; the shared server is never touched).

Rules checked: nothing is forwarded that was not decided and audited (the fake provider sees no
call while the store is away); the refusal is a 503 in the provider's shape that says why;
`/readyz` turns red naming the store; the gateway recovers by itself when the store returns;
afterwards the audit chain verifies and every answered call has exactly one decision record.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from gateway.app import create_app
from tests.conftest import ADMIN_TOKEN, UPSTREAM_KEYS, ServerThread, eventually, gateway_settings
from tests.faultproxy import FaultProxy
from tests.cluster import decision_records, postgres_schema

ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}

pytestmark = pytest.mark.slow


class StoreBehind:
    """A gateway whose PostgreSQL is reached through a FaultProxy."""

    def __init__(self, url: str, proxy: FaultProxy, engine: sa.Engine, database_url: str, upstream: Any) -> None:
        self.url, self.proxy, self.engine, self.database_url, self.upstream = url, proxy, engine, database_url, upstream
        self.client = httpx.Client(timeout=30)
        self.answered: list[tuple[int, str]] = []  # (status, decision id) of every call made

    def chat(self, key: str, text: str = "hello", stream: bool = False) -> httpx.Response:
        with self.client.stream("POST", self.url + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                                json={"model": "gpt-4o-mini", "stream": stream,
                                      "messages": [{"role": "user", "content": text}]}) as response:
            response.read()
        self.answered.append((response.status_code, response.headers.get("x-gateway-decision-id", "")))
        return response

    def forwarded(self) -> int:
        return len(httpx.get(self.upstream.url + "/_fake/requests").json()["data"])


@pytest.fixture
def store_behind(upstream: Any) -> Iterator[StoreBehind]:
    with postgres_schema() as (database_url, engine):
        proxy = FaultProxy("127.0.0.1", 5432).start()
        proxied = database_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
        assert proxied != database_url
        server = ServerThread(create_app(gateway_settings(proxied, upstream), environ=dict(UPSTREAM_KEYS)))
        server.start()
        made = StoreBehind(server.url, proxy, engine, database_url, upstream)
        try:
            yield made
        finally:
            proxy.restore()
            made.client.close()
            server.stop()
            proxy.stop()


def employee(gateway: StoreBehind, name: str = "hanako") -> str:
    httpx.post(gateway.url + "/admin/v1/principals", json={"id": name, "groups": ["rd"]}, headers=ADMIN)
    return str(httpx.post(gateway.url + "/admin/v1/keys", json={"principal": name}, headers=ADMIN).json()["key"])


def check_after_recovery(gateway: StoreBehind) -> None:
    """The chain verifies; every call answered 2xx/403 has exactly one decision record; none has two."""
    verify = httpx.get(gateway.url + "/admin/v1/audit/verify", headers=ADMIN, timeout=30).json()
    assert verify["ok"] is True, verify
    records = decision_records(gateway.engine, gateway.database_url)
    assert all(count == 1 for count in records.values())
    assert all(records.get(i) == 1 for status, i in gateway.answered if status in (200, 403))


@pytest.mark.parametrize("fault", ["cut", "pause"])
def test_store_down_refuses_with_503_forwards_nothing_and_recovers(store_behind: StoreBehind, fault: str) -> None:
    g = store_behind
    key = employee(g)
    assert [g.chat(key).status_code for _ in range(3)] == [200] * 3
    assert httpx.get(g.url + "/readyz").status_code == 200
    httpx.delete(g.upstream.url + "/_fake/requests")
    getattr(g.proxy, fault)()
    started = time.monotonic()
    refused = [g.chat(key, stream=i % 2 == 1) for i in range(4)]
    assert all(r.status_code == 503 for r in refused), [r.status_code for r in refused]
    for response in refused:
        error = response.json()["error"]
        assert error["code"] in ("audit_unavailable", "store_unavailable")
        assert "/" in error["message"] and ("audit" in error["message"] or "store" in error["message"])
    assert time.monotonic() - started < 4 * 12  # each refusal within the audit timeout, never a hang
    ready = httpx.get(g.url + "/readyz", timeout=10)
    assert ready.status_code == 503 and any(p.startswith("store:") for p in ready.json()["problems"])
    assert g.forwarded() == 0  # fail closed: nothing left while nothing could be audited
    g.proxy.restore()
    eventually(lambda: g.chat(key).status_code == 200, 30, step=0.1)  # recovered without a restart
    eventually(lambda: httpx.get(g.url + "/readyz", timeout=10).status_code == 200, 10, step=0.1)
    assert [g.chat(key, stream=i % 2 == 1).status_code for i in range(4)] == [200] * 4
    check_after_recovery(g)


def test_slow_store_makes_calls_slower_not_wrong(store_behind: StoreBehind) -> None:
    g = store_behind
    key = employee(g)
    g.proxy.slow(0.05)
    statuses = [g.chat(key, stream=i % 2 == 1).status_code for i in range(6)]
    assert statuses == [200] * 6
    assert httpx.get(g.url + "/readyz", timeout=10).status_code == 200
    g.proxy.restore()
    check_after_recovery(g)


def test_three_replicas_under_load_when_the_store_goes_and_returns(tmp_path: Any) -> None:
    """Three `shuhi serve` processes share one store through the proxy; it is cut for 3 s under mixed load."""
    from gateway.demo.upstream import UpstreamServer
    from tests.test_articles_e2e import DESIGN, NDA
    from tests.cluster import Cluster, Load, start_gateways

    upstream = UpstreamServer()
    upstream.start()
    with postgres_schema() as (database_url, engine):
        proxy = FaultProxy("127.0.0.1", 5432).start()
        replicas = start_gateways(3, tmp_path, upstream,
                                  database_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}"))
        c = Cluster(replicas, upstream, engine, database_url)
        try:
            c.admin(0, "POST", "/admin/v1/principals", json={"id": "load", "groups": ["sales"]})
            load_key = c.admin(1, "POST", "/admin/v1/keys", json={"principal": "load"}).json()["key"]
            c.admin(0, "POST", "/admin/v1/agreements", json=NDA)
            c.admin(2, "POST", f"/admin/v1/agreements/{NDA['id']}/items",
                    json={"title": "設計書", "category": "ai_technology", "text": DESIGN})
            time.sleep(1)
            with Load(c, load_key) as load:
                time.sleep(1.5)
                proxy.cut()
                cut_at = time.monotonic()
                time.sleep(1.5)
                readiness = [httpx.get(url + "/readyz", timeout=10).status_code for url in c.urls]
                httpx.delete(upstream.url + "/_fake/requests")
                time.sleep(1.5)
                during = httpx.get(upstream.url + "/_fake/requests").json()["data"]
                proxy.restore()
                restored_at = time.monotonic()
                eventually(lambda: all(httpx.get(url + "/readyz", timeout=10).status_code == 200
                                       for url in c.urls), 30, step=0.1)
                time.sleep(2)
            assert readiness == [503, 503, 503]
            assert during == []  # nothing reached the provider while nothing could be audited
            statuses = {a[2] for a in load.answered}
            assert statuses <= {200, 403, 503}, statuses
            assert any(a[2] == 503 for a in load.answered if cut_at < a[0] < restored_at)
            assert any(a[2] == 200 for a in load.answered if a[0] > restored_at + 1)  # recovered, no restart
            assert not [a for a in load.answered if a[1] == "confidential" and a[2] == 200 and a[0] > cut_at - 3]
            records = decision_records(engine, database_url)
            assert all(n == 1 for n in records.values())
            assert all(records.get(a[3]) == 1 for a in load.answered if a[2] in (200, 403))
            verify = c.admin(0, "GET", "/admin/v1/audit/verify").json()
            assert verify["ok"] is True, verify
        finally:
            c.client.close()
            for replica in replicas:
                replica.stop()
            proxy.stop()
            upstream.stop()
