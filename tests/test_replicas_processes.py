"""Three `shuhi serve` processes on the real PostgreSQL and Redis: what one replica changes holds on all within 1 s.

Registration, consent, revocation and key deletion are each made on one replica while the
others are asked, every 20 ms, whether it holds yet; after that second, a burst of mixed calls
(streaming and not) on every replica must be refused, and the fake provider must have seen none
of them. Under mixed load throughout, every call that was answered has exactly one decision
record, and no replica's log carries the confidential text.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa
import yaml

from gateway.demo.upstream import UpstreamServer
from tests.conftest import ADMIN_TOKEN, POSTGRES_URL, SECRET_KEY, UPSTREAM_KEYS
from tests.test_articles_e2e import DESIGN, EXCERPT, NDA

REDIS_URL = os.environ.get("SHUHI_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}
SHUHI = str(Path(sys.executable).with_name("shuhi"))
BAR_SECONDS = 1.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class GatewayProcess:
    """One `shuhi serve` subprocess, its URL and its captured log."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def start_gateways(count: int, workdir: Path, upstream: UpstreamServer, database_url: str,
                   redis_url: str | None = REDIS_URL, **env: str) -> list[GatewayProcess]:
    """Start `count` gateway processes on one store and wait until every one answers /readyz."""
    config = workdir / "shuhi.yaml"
    config.write_text(yaml.safe_dump({"destinations": [
        {"id": "fake-openai", "base_url": upstream.openai_base_url, "api_format": "openai",
         "models": ["gpt-4o-mini", "text-embedding-3-small"], "api_key_env": "FAKE_OPENAI_KEY",
         "timeout_seconds": 5},
        {"id": "fake-anthropic", "base_url": upstream.anthropic_base_url, "api_format": "anthropic",
         "models": ["claude-sonnet-4-6"], "api_key_env": "FAKE_ANTHROPIC_KEY", "timeout_seconds": 5}]}))
    base = {k: v for k, v in os.environ.items() if not k.startswith("SHUHI_")}
    base.update(UPSTREAM_KEYS)
    base.update({"SHUHI_CONFIG": str(config), "SHUHI_DATABASE_URL": database_url, "SHUHI_ADMIN_TOKEN": ADMIN_TOKEN,
                 "SHUHI_SECRET_KEY": SECRET_KEY, "SHUHI_LOG_LEVEL": "info"})
    if redis_url:
        base["SHUHI_REDIS_URL"] = redis_url
    base.update(env)
    started = []
    for n in range(count):
        port = free_port()
        log = workdir / f"replica-{n}.log"
        with log.open("wb") as out:
            process = subprocess.Popen([SHUHI, "serve", "--host", "127.0.0.1", "--port", str(port)], env=base,
                                       stdout=out, stderr=subprocess.STDOUT, cwd=workdir)
        started.append(GatewayProcess(f"http://127.0.0.1:{port}", process, log))
    deadline = time.monotonic() + 90
    try:
        for gateway in started:
            while True:
                if gateway.process.poll() is not None:
                    raise RuntimeError(f"gateway exited: {gateway.log.read_text(errors='replace')[-2000:]}")
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(gateway.url + "/healthz", timeout=1).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise RuntimeError("gateway did not start")
                time.sleep(0.1)
    except BaseException:
        for gateway in started:
            gateway.stop()
        raise
    return started


@contextlib.contextmanager
def postgres_schema() -> Iterator[tuple[str, sa.Engine]]:
    """A fresh schema in the shared PostgreSQL: (URL for the gateways, engine to inspect it)."""
    schema = "t_" + secrets.token_hex(6)
    engine = sa.create_engine(POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}", engine
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        engine.dispose()


def decision_records(engine: sa.Engine, database_url: str) -> dict[str, int]:
    """Decision record id → how many times it is in the audit log."""
    schema = database_url.rsplit("%3D", 1)[1]
    with engine.connect() as conn:
        rows = conn.execute(sa.text(f"SELECT id, count(*) FROM {schema}.audit_log WHERE kind = 'decision' "
                                    "GROUP BY id")).all()
    return {str(r[0]): int(r[1]) for r in rows}


@pytest.fixture(scope="module")
def own_upstream() -> Iterator[UpstreamServer]:
    server = UpstreamServer()
    server.start()
    yield server
    server.stop()


@dataclass
class Cluster:
    replicas: list[GatewayProcess]
    upstream: UpstreamServer
    engine: sa.Engine
    database_url: str
    client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=10))

    @property
    def urls(self) -> list[str]:
        return [r.url for r in self.replicas]

    def admin(self, replica: int, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self.client.request(method, self.urls[replica] + path, headers=ADMIN, **kwargs)
        assert response.status_code < 300, response.text
        return response


@pytest.fixture
def cluster(tmp_path: Path, own_upstream: UpstreamServer) -> Iterator[Cluster]:
    with postgres_schema() as (database_url, engine):
        replicas = start_gateways(3, tmp_path, own_upstream, database_url)
        made = Cluster(replicas, own_upstream, engine, database_url)
        try:
            yield made
        finally:
            made.client.close()
            for replica in replicas:
                replica.stop()
            for replica in replicas:  # logs carry no confidential text (Article 5(3))
                text = replica.log.read_text(encoding="utf-8", errors="replace")
                assert EXCERPT[:20] not in text and DESIGN[:20] not in text


def call(client: httpx.Client, url: str, key: str, text: str, *, stream: bool = False,
         anthropic: bool = False) -> httpx.Response:
    """One employee call; a stream is read to its end."""
    if anthropic:
        path, body = "/v1/messages", {"model": "claude-sonnet-4-6", "max_tokens": 50, "stream": stream,
                                      "messages": [{"role": "user", "content": text}]}
        headers = {"x-api-key": key, "anthropic-version": "2023-06-01"}
    else:
        path, body = "/v1/chat/completions", {"model": "gpt-4o-mini", "stream": stream,
                                              "messages": [{"role": "user", "content": text}]}
        headers = {"authorization": f"Bearer {key}"}
    with client.stream("POST", url + path, json=body, headers=headers) as response:
        response.read()
    return response


def embed(client: httpx.Client, url: str, key: str, text: str) -> httpx.Response:
    """An embeddings call: decided like any other, but its answer holds no text, so it never becomes a derived
    item (a cheap call whose decision is all that is measured)."""
    return client.post(url + "/v1/embeddings", headers={"authorization": f"Bearer {key}"},
                       json={"model": "text-embedding-3-small", "input": text})


def lag_on_all(urls: list[str], holds: Callable[[httpx.Client, str], bool], started: float,
               limit: float = 3.0) -> list[float]:
    """For each replica: seconds from `started` until `holds` is first true (polled every 20 ms)."""
    def watch(url: str) -> float:
        with httpx.Client(timeout=5) as client:
            while time.monotonic() - started < limit:
                if holds(client, url):
                    return time.monotonic() - started
                time.sleep(0.02)
        return float("inf")

    with concurrent.futures.ThreadPoolExecutor(len(urls)) as pool:
        return list(pool.map(watch, urls))


class Load:
    """Mixed background calls on every replica (clean and confidential, streaming and not, both shapes)."""

    def __init__(self, cluster: Cluster, key: str) -> None:
        self.cluster, self.key = cluster, key
        self.answered: list[tuple[float, str, int, str]] = []  # (time, kind, status, decision id)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(3)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)

    def _run(self, n: int) -> None:
        with httpx.Client(timeout=10) as client:
            i = 0
            while not self._stop.is_set():
                url = self.cluster.urls[(n + i) % 3]
                confidential = i % 2 == 0
                text = EXCERPT if confidential else f"clean question {i}"
                with contextlib.suppress(httpx.HTTPError):
                    response = call(client, url, self.key, text, stream=i % 3 == 0, anthropic=i % 4 == 1)
                    self.answered.append((time.monotonic(), "confidential" if confidential else "clean",
                                          response.status_code, response.headers.get("x-gateway-decision-id", "")))
                i += 1
                time.sleep(0.01)


def test_changes_on_one_replica_hold_on_all_three_within_a_second(cluster: Cluster) -> None:
    c = cluster
    c.admin(0, "POST", "/admin/v1/principals", json={"id": "hanako", "groups": ["rd"]})
    issued = c.admin(1, "POST", "/admin/v1/keys", json={"principal": "hanako"}).json()
    key = issued["key"]
    # the background load's principal is outside the agreement's group: its confidential calls are refused
    # whatever the consents say (3(3)), so its answers never become derived items
    c.admin(2, "POST", "/admin/v1/principals", json={"id": "load", "groups": ["sales"]})
    load_key = c.admin(2, "POST", "/admin/v1/keys", json={"principal": "load"}).json()["key"]
    c.admin(0, "POST", "/admin/v1/agreements", json=NDA)
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
        c.admin(0, "DELETE", f"/admin/v1/keys/{issued['id']}")
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
    c.admin(0, "POST", "/admin/v1/principals", json={"id": "hanako", "groups": ["rd"]})
    key = c.admin(0, "POST", "/admin/v1/keys", json={"principal": "hanako"}).json()["key"]
    c.admin(0, "POST", "/admin/v1/agreements", json=NDA)
    c.admin(0, "POST", f"/admin/v1/agreements/{NDA['id']}/items",
            json={"title": "設計書", "category": "ai_technology", "text": DESIGN})
    consent = c.admin(1, "POST", "/admin/v1/consents", json={
        "agreement_id": NDA["id"], "destinations": ["fake-openai"], "purpose": "inference",
        "evidence": {"reference": "同意書"}, "granted_by": "法務部"}).json()
    time.sleep(BAR_SECONDS)
    with httpx.Client(timeout=10) as client:
        assert [call(client, c.urls[i % 3], key, EXCERPT).status_code for i in range(12)] == [200] * 12
        c.admin(2, "DELETE", f"/admin/v1/consents/{consent['id']}")
        time.sleep(BAR_SECONDS)
        assert [call(client, url, key, EXCERPT).status_code for url in c.urls] == [403] * 3
