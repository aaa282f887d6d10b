"""Two gateways on one store: what legal staff change on one replica holds on the other within a second."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from gateway.app import create_app
from tests.conftest import ADMIN_TOKEN, UPSTREAM_KEYS, ServerThread, eventually, gateway_settings
from tests.test_articles_e2e import DESIGN, EXCERPT, NDA

ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def replicas(database_url: str, upstream) -> Iterator[tuple[str, str]]:  # type: ignore[no-untyped-def]
    servers = [ServerThread(create_app(gateway_settings(database_url, upstream), environ=dict(UPSTREAM_KEYS)))
               for _ in range(2)]
    for server in servers:
        server.start()
    try:
        yield servers[0].url, servers[1].url
    finally:
        for server in servers:
            server.stop()


def chat(url: str, key: str, text: str) -> httpx.Response:
    return httpx.post(url + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                      json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]})


def test_registration_consent_and_revocation_reach_the_other_replica(replicas: tuple[str, str]) -> None:
    a, b = replicas
    httpx.post(a + "/admin/v1/principals", json={"id": "hanako", "groups": ["rd"]}, headers=ADMIN)
    key = httpx.post(a + "/admin/v1/keys", json={"principal": "hanako"}, headers=ADMIN).json()["key"]
    assert chat(b, key, EXCERPT).status_code == 200
    httpx.post(a + "/admin/v1/agreements", json=NDA, headers=ADMIN)
    httpx.post(a + f"/admin/v1/agreements/{NDA['id']}/items", headers=ADMIN,
               json={"title": "設計書", "category": "ai_technology", "text": DESIGN})
    eventually(lambda: chat(b, key, EXCERPT).status_code == 403)
    consent = httpx.post(a + "/admin/v1/consents", headers=ADMIN, json={
        "agreement_id": NDA["id"], "destinations": ["fake-openai"], "purpose": "inference",
        "evidence": {"reference": "同意書"}, "granted_by": "法務"}).json()
    eventually(lambda: chat(b, key, EXCERPT).status_code == 200)
    httpx.delete(a + f"/admin/v1/consents/{consent['id']}", headers=ADMIN)
    eventually(lambda: chat(b, key, EXCERPT).status_code == 403)


def test_deleted_key_and_destination_stop_working_on_the_other_replica(replicas: tuple[str, str]) -> None:
    a, b = replicas
    httpx.post(a + "/admin/v1/principals", json={"id": "taro"}, headers=ADMIN)
    issued = httpx.post(a + "/admin/v1/keys", json={"principal": "taro"}, headers=ADMIN).json()
    assert chat(b, issued["key"], "hello").status_code == 200
    httpx.delete(a + f"/admin/v1/keys/{issued['id']}", headers=ADMIN)
    eventually(lambda: chat(b, issued["key"], "hello").status_code == 401)
    other = httpx.post(a + "/admin/v1/principals", json={"id": "jiro"}, headers=ADMIN)
    assert other.status_code == 201
    key = httpx.post(a + "/admin/v1/keys", json={"principal": "jiro"}, headers=ADMIN).json()["key"]
    httpx.delete(a + "/admin/v1/destinations/fake-openai", headers=ADMIN)
    eventually(lambda: chat(b, key, "hello").status_code == 404)
