"""The admin endpoints for principals, keys, destinations and tokens: roles, validation, pagination."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.conftest import Gateway


def test_admin_token_is_required(gateway: Gateway) -> None:
    assert httpx.get(gateway.url + "/admin/v1/principals").status_code == 401
    wrong = httpx.get(gateway.url + "/admin/v1/principals", headers={"authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_admin_token"


def test_roles_limit_what_a_token_may_do(gateway: Gateway) -> None:
    tokens = {role: gateway.admin.post("/admin/v1/tokens", json={"role": role}).json()["token"]
              for role in ("legal", "auditor")}
    for role, token in tokens.items():
        with httpx.Client(base_url=gateway.url, headers={"authorization": f"Bearer {token}"}) as as_role:
            assert as_role.get("/admin/v1/principals").status_code == 200
            refused = as_role.post("/admin/v1/principals", json={"id": f"made-by-{role}"})
            assert refused.status_code == 403 and refused.json()["error"]["code"] == "role_forbidden"
            assert as_role.post("/admin/v1/tokens", json={"role": "admin"}).status_code == 403
    listed = gateway.admin.get("/admin/v1/tokens").json()["data"]
    assert {t["role"] for t in listed} == {"admin", "legal", "auditor"}
    assert all("token" not in t and "token_hash" not in t for t in listed)


def test_principal_lifecycle_and_duplicate(gateway: Gateway) -> None:
    created = gateway.admin.post("/admin/v1/principals", json={"id": "hanako@example.co.jp", "groups": ["legal", "rd"]})
    assert created.status_code == 201 and created.json()["groups"] == ["legal", "rd"]
    again = gateway.admin.post("/admin/v1/principals", json={"id": "hanako@example.co.jp"})
    assert again.status_code == 409
    assert gateway.admin.get("/admin/v1/principals/hanako@example.co.jp").json()["id"] == "hanako@example.co.jp"
    assert gateway.admin.delete("/admin/v1/principals/hanako@example.co.jp").status_code == 204
    assert gateway.admin.get("/admin/v1/principals/hanako@example.co.jp").status_code == 404
    assert gateway.admin.delete("/admin/v1/principals/hanako@example.co.jp").status_code == 404


def test_deleting_a_principal_revokes_its_keys(gateway: Gateway) -> None:
    key = gateway.employee("taro@example.co.jp")
    client = gateway.closing(openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0))
    assert client.models.list().data
    assert gateway.admin.delete("/admin/v1/principals/taro@example.co.jp").status_code == 204
    with pytest.raises(openai.AuthenticationError):
        client.models.list()


def test_keys_are_shown_once_and_stored_hashed(gateway: Gateway) -> None:
    key = gateway.employee()
    listed = gateway.admin.get("/admin/v1/keys").json()["data"]
    assert len(listed) == 1 and "key" not in listed[0] and key.startswith(listed[0]["prefix"])
    assert key.startswith("sk-shuhi-") and len(key) > 40
    if gateway.settings.is_sqlite:
        from pathlib import Path

        store = Path(gateway.settings.database_url.removeprefix("sqlite:///"))
        raw = b"".join(p.read_bytes() for p in store.parent.glob(store.name + "*"))  # the WAL too
        assert key.encode() not in raw and key[9:].encode() not in raw


def test_pagination_by_cursor(gateway: Gateway) -> None:
    for n in range(7):
        gateway.admin.post("/admin/v1/principals", json={"id": f"user{n:02d}"})
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        page = gateway.admin.get("/admin/v1/principals", params=params).json()
        seen += [p["id"] for p in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"user{n:02d}" for n in range(7)]
    bad = gateway.admin.get("/admin/v1/principals", params={"cursor": "%%%"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_cursor"


@pytest.mark.parametrize("body", [
    {"id": "", "groups": []},
    {"id": "ok", "groups": "rd"},
    {"id": "ok", "surprise": True},
    {"id": "a b c"},
])
def test_invalid_principal_is_422_without_echoing_input(gateway: Gateway, body: dict) -> None:  # type: ignore[type-arg]
    response = gateway.admin.post("/admin/v1/principals", json=body)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"
    assert '"input"' not in response.text


def test_destination_added_through_the_api_is_used_at_once(gateway: Gateway) -> None:
    key = gateway.employee()
    client = gateway.closing(openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0))
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="in-house-llm", messages=[{"role": "user", "content": "x"}])
    created = gateway.admin.post("/admin/v1/destinations", json={
        "id": "internal", "base_url": gateway.upstream.openai_base_url, "api_format": "openai",
        "models": ["in-house-llm"], "third_party": False, "trains_on_inputs": False})
    assert created.status_code == 201 and created.json()["ready"] is True
    reply = client.chat.completions.create(model="in-house-llm", messages=[{"role": "user", "content": "x"}])
    assert reply.choices[0].message.content == "echo: x"
    assert gateway.admin.post("/admin/v1/destinations", json={**created.json(), "models": ["other"]}).status_code == 200
    assert gateway.admin.get("/admin/v1/destinations/internal").json()["models"] == ["other"]
    assert gateway.admin.delete("/admin/v1/destinations/internal").status_code == 204
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="other", messages=[{"role": "user", "content": "x"}])
    ids = [d["id"] for d in gateway.admin.get("/admin/v1/destinations").json()["data"]]
    assert ids == ["fake-anthropic", "fake-openai"]


def test_destination_with_unset_key_variable_is_not_ready(gateway: Gateway) -> None:
    created = gateway.admin.post("/admin/v1/destinations", json={
        "id": "openai-prod", "base_url": "https://api.openai.com/v1", "api_format": "openai",
        "models": ["gpt-5"], "api_key_env": "SHUHI_TEST_UNSET_VARIABLE"})
    assert created.status_code == 201 and created.json()["ready"] is False
    ready = httpx.get(gateway.url + "/readyz")
    assert ready.status_code == 503 and "openai-prod" in ready.text and "SHUHI_TEST_UNSET_VARIABLE" in ready.text


@pytest.mark.parametrize("body", [
    {"id": "x", "base_url": "not a url", "api_format": "openai"},
    {"id": "x", "base_url": "http://127.0.0.1:1/v1", "api_format": "gemini"},
    {"id": "../x", "base_url": "http://127.0.0.1:1/v1", "api_format": "openai"},
    {"id": "x", "base_url": "http://127.0.0.1:1/v1", "api_format": "openai", "timeout_seconds": -1},
])
def test_invalid_destination_is_422(gateway: Gateway, body: dict) -> None:  # type: ignore[type-arg]
    assert gateway.admin.post("/admin/v1/destinations", json=body).status_code == 422


def test_openapi_document_is_served(gateway: Gateway) -> None:
    spec = httpx.get(gateway.url + "/openapi.json").json()
    assert "/admin/v1/principals" in spec["paths"] and "/admin/v1/destinations" in spec["paths"]


def test_every_admin_change_is_in_the_audit_log_without_content(gateway: Gateway) -> None:
    legal = gateway.admin.post("/admin/v1/tokens", json={"role": "legal"}).json()
    with httpx.Client(base_url=gateway.url, headers={"authorization": f"Bearer {legal['token']}"}) as as_legal:
        assert as_legal.post("/admin/v1/agreements", json={
            "id": "nda-audit", "title": "T", "counterparty": "C", "purpose": "P", "effective_date": "2026-01-01",
            "term_years": 1, "survival_years": 1}).status_code == 201
        assert as_legal.post("/admin/v1/principals", json={"id": "refused"}).status_code == 403
    gateway.admin.post("/admin/v1/principals", json={"id": "kept-out-of-log"})
    records = gateway.admin.get("/admin/v1/audit", params={"limit": 100}).json()["data"]
    admin = [r for r in records if r["kind"] == "admin"]
    actions = [(r["action"], r.get("actor_role"), r.get("target")) for r in admin]
    assert ("create_token", "admin", None) in actions
    assert ("create_agreement", "legal", None) in actions
    assert ("create_principal", "admin", None) in actions
    assert not any(a == "create_principal" and role == "legal" for a, role, _ in actions)  # refused: no change
    created = next(r for r in admin if r["action"] == "create_agreement")
    assert created["actor"] == legal["id"]
    assert "kept-out-of-log" not in str(records) and legal["token"] not in str(records)
    assert gateway.admin.get("/admin/v1/audit/verify").json()["ok"] is True
