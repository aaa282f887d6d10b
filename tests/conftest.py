"""Shared fixtures: a real fake-provider server, a real gateway server on 127.0.0.1, a real store.

Each test gets a fresh store: a new SQLite file, or a new schema in the PostgreSQL
server on 127.0.0.1:5432 (`SHUHI_TEST_POSTGRES_URL` to point elsewhere).
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import uvicorn

from gateway.app import create_app
from gateway.demo.upstream import UpstreamServer
from gateway.settings import Settings, load_settings

POSTGRES_URL = os.environ.get("SHUHI_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
ADMIN_TOKEN = "test-admin-token-" + secrets.token_hex(8)
SECRET_KEY = "test-secret-key-" + secrets.token_hex(16)


class ServerThread:
    """Any ASGI app served by uvicorn in a background thread on an ephemeral port."""

    def __init__(self, app: Any) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on", loop="asyncio",
                                http="httptools", timeout_graceful_shutdown=2)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("gateway did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


@pytest.fixture(scope="session")
def upstream() -> Iterator[UpstreamServer]:
    server = UpstreamServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _clean_upstream(request: pytest.FixtureRequest) -> Iterator[None]:
    """Queued behaviours and recorded requests never leak from one test into the next."""
    yield
    if "upstream" in request.fixturenames:
        server: UpstreamServer = request.getfixturevalue("upstream")
        httpx.delete(server.url + "/_fake/behaviors")
        httpx.delete(server.url + "/_fake/requests")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty store on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'shuhi.db'}"
        return
    schema = "t_" + secrets.token_hex(6)
    engine = sa.create_engine(POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
    engine.dispose()


@dataclass
class Gateway:
    """A running gateway and handles to administer it."""

    url: str
    settings: Settings
    admin: httpx.Client
    upstream: UpstreamServer
    clients: list[Any]

    def closing(self, client: Any) -> Any:
        """Close this SDK client when the test ends (unclosed sockets are warnings, and warnings fail)."""
        self.clients.append(client)
        return client

    def employee(self, principal: str = "alice@example.co.jp", groups: tuple[str, ...] = ("research",)) -> str:
        """Create a principal (if needed) and return a fresh gateway key for it."""
        response = self.admin.post("/admin/v1/principals", json={"id": principal, "groups": list(groups)})
        assert response.status_code in (201, 409), response.text
        response = self.admin.post("/admin/v1/keys", json={"principal": principal})
        assert response.status_code == 201, response.text
        return str(response.json()["key"])

    def upstream_requests(self) -> list[dict[str, Any]]:
        return list(httpx.get(self.upstream.url + "/_fake/requests").json()["data"])

    def queue(self, *behaviors: dict[str, Any]) -> None:
        httpx.post(self.upstream.url + "/_fake/behaviors", json={"behaviors": list(behaviors)}).raise_for_status()


def gateway_settings(database_url: str, upstream: UpstreamServer, **overrides: Any) -> Settings:
    destinations = [
        {"id": "fake-openai", "base_url": upstream.openai_base_url, "api_format": "openai",
         "models": ["gpt-4o-mini", "gpt-4.1*", "text-embedding-3-small", "shared-model"],
         "api_key_env": "FAKE_OPENAI_KEY", "timeout_seconds": 5},
        {"id": "fake-anthropic", "base_url": upstream.anthropic_base_url, "api_format": "anthropic",
         "models": ["claude-sonnet-4-6", "shared-model"], "api_key_env": "FAKE_ANTHROPIC_KEY",
         "timeout_seconds": 5},
    ]
    values: dict[str, Any] = {"database_url": database_url, "admin_token": ADMIN_TOKEN, "secret_key": SECRET_KEY,
                              "destinations": destinations, "files_destination": "fake-openai"}
    values.update(overrides)
    return load_settings(None, {}, **values)


UPSTREAM_KEYS = {"FAKE_OPENAI_KEY": "sk-upstream-openai-secret", "FAKE_ANTHROPIC_KEY": "sk-ant-upstream-secret"}


@pytest.fixture
def gateway(database_url: str, upstream: UpstreamServer) -> Iterator[Gateway]:
    settings = gateway_settings(database_url, upstream)
    server = ServerThread(create_app(settings, environ=dict(UPSTREAM_KEYS)))
    server.start()
    admin = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10)
    try:
        made = Gateway(url=server.url, settings=settings, admin=admin, upstream=upstream, clients=[])
        yield made
    finally:
        for sdk_client in made.clients:
            sdk_client.close()
        admin.close()
        server.stop()


STORE_AGREEMENT = "nda-store"


@pytest.fixture
def agreement_store(database_url: str) -> Iterator[sa.Engine]:
    """A migrated store holding one agreement (`STORE_AGREEMENT`), for tests of the registry service itself."""
    import datetime as dt

    from gateway.storage import agreements as store
    from gateway.storage.database import migrate, open_engine

    made = open_engine(database_url)
    migrate(made)
    store.create_agreement(made, {"id": STORE_AGREEMENT, "title": "T", "counterparty": "C", "purpose": "P",
                                  "effective_date": dt.date(2026, 4, 1), "term_years": 3, "survival_years": 2})
    yield made
    made.dispose()


def eventually(check: Callable[[], object], seconds: float = 1.0, step: float = 0.05) -> float:
    """Seconds until `check()` holds, polled every `step`; the test fails when it does not within `seconds`."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if check():
            return time.monotonic() - started
        time.sleep(step)
    raise AssertionError(f"not within {seconds} s")
