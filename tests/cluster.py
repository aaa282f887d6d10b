"""A cluster of `shuhi serve` processes on the real PostgreSQL and Redis, for the tests that need several replicas.

Each replica is a subprocess on its own port sharing one fresh PostgreSQL schema; the fake provider is a real
HTTP server. `seed` makes the principals, keys, agreement, item and consent those tests start from; `Load`
sends mixed calls to every replica in the background; `lag_on_all` measures how long a change takes to hold
on each replica.
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
    """A provider for one test module: the faults a module queues on it reach no other module's tests."""
    with UpstreamServer() as server:
        yield server


@dataclass
class Cluster:
    """The running replicas, the provider they forward to, and the store they share (to count audit records)."""

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


@contextlib.contextmanager
def running_cluster(workdir: Path, upstream: UpstreamServer, **start: Any) -> Iterator[Cluster]:
    """Three gateway processes on a fresh PostgreSQL schema; on the way out, their logs must hold no confidential
    text (Article 5(3)). `start` goes to `start_gateways` (another Redis URL, environment)."""
    with postgres_schema() as (database_url, engine):
        replicas = start_gateways(3, workdir, upstream, database_url, **start)
        made = Cluster(replicas, upstream, engine, database_url)
        try:
            yield made
        finally:
            made.client.close()
            for replica in replicas:
                replica.stop()
        for replica in replicas:
            text = replica.log.read_text(encoding="utf-8", errors="replace")
            assert EXCERPT[:20] not in text and DESIGN[:20] not in text


@pytest.fixture
def cluster(tmp_path: Path, own_upstream: UpstreamServer) -> Iterator[Cluster]:
    with running_cluster(tmp_path, own_upstream) as made:
        yield made


@dataclass
class Seeded:
    """What `seed` made: hanako's key (group rd, inside the agreement), the load principal's key (group sales,
    outside it: its confidential calls are refused whatever the consents say, 3(3), so its answers never become
    derived items), and the consent when one was given."""

    key: str
    key_id: str
    load_key: str
    consent: dict[str, Any] | None


def seed(c: Cluster, *, item: bool = True,
         consent: tuple[str, ...] | None = ("fake-openai", "fake-anthropic")) -> Seeded:
    """The state every cluster test starts from, made through the admin API of different replicas: two principals
    with a key each and the NDA; with `item`, its design document; with `consent`, a consent to those
    destinations, then a wait of `BAR_SECONDS` so that every replica holds it."""
    c.admin(0, "POST", "/admin/v1/principals", json={"id": "hanako", "groups": ["rd"]})
    issued = c.admin(1, "POST", "/admin/v1/keys", json={"principal": "hanako"}).json()
    c.admin(2, "POST", "/admin/v1/principals", json={"id": "load", "groups": ["sales"]})
    load_key = c.admin(2, "POST", "/admin/v1/keys", json={"principal": "load"}).json()["key"]
    c.admin(0, "POST", "/admin/v1/agreements", json=NDA)
    if item:
        c.admin(0, "POST", f"/admin/v1/agreements/{NDA['id']}/items",
                json={"title": "設計書", "category": "ai_technology", "text": DESIGN})
    given = None
    if consent is not None:
        given = c.admin(1, "POST", "/admin/v1/consents", json={
            "agreement_id": NDA["id"], "destinations": list(consent), "purpose": "inference",
            "evidence": {"reference": "同意書"}, "granted_by": "法務部"}).json()
        time.sleep(BAR_SECONDS)
    return Seeded(str(issued["key"]), str(issued["id"]), str(load_key), given)


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
