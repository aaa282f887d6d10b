"""Malformed requests get the provider's own 4xx shape with a decision id, never a 500."""

from __future__ import annotations

import anthropic
import httpx
import openai
import pytest

from gateway.app import create_app
from tests.conftest import UPSTREAM_KEYS, Gateway, ServerThread, gateway_settings

CHAT = "/v1/chat/completions"


def post(gateway: Gateway, path: str, key: str | None, **kwargs) -> httpx.Response:  # type: ignore[no-untyped-def]
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.post(gateway.url + path, headers=headers | kwargs.pop("headers", {}), timeout=10, **kwargs)


def assert_openai_error(response: httpx.Response, status: int, code: str) -> dict:  # type: ignore[type-arg]
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["type"] and " / " in error["message"]  # Japanese / English
    assert response.headers["x-gateway-decision-id"].startswith("dec_")
    assert error["decision_id"] == response.headers["x-gateway-decision-id"]
    return error  # type: ignore[no-any-return]


@pytest.mark.parametrize("body, code, param", [
    (b"{not json", "invalid_json", None),
    (b"[1, 2]", "invalid_json", None),
    (b"", "empty_body", None),
    (b'{"messages": []}', "missing_field", "model"),
    (b'{"model": 42, "messages": []}', "invalid_type", "model"),
    (b'{"model": "gpt-4o-mini", "messages": "hello"}', "invalid_type", "messages"),
    (b'{"model": "gpt-4o-mini", "messages": ["hello"]}', "invalid_type", "messages[0]"),
    (b'{"model": "gpt-4o-mini", "messages": [], "stream": "yes"}', "invalid_type", "stream"),
])
def test_when_body_is_malformed_then_400_names_the_field(gateway: Gateway, body: bytes, code: str,
                                                        param: str | None) -> None:
    key = gateway.employee()
    error = assert_openai_error(post(gateway, CHAT, key, content=body), 400, code)
    assert error["param"] == param
    assert gateway.upstream_requests() == []


def test_when_model_is_unknown_then_404_model_not_found_through_the_sdk(gateway: Gateway) -> None:
    key = gateway.employee()
    sdk = gateway.closing(openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0))
    with pytest.raises(openai.NotFoundError) as caught:
        sdk.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.code == "model_not_found"
    assert caught.value.response.headers["x-gateway-decision-id"].startswith("dec_")


def test_when_key_is_missing_or_wrong_then_401_in_both_shapes(gateway: Gateway) -> None:
    gateway.employee()
    assert_openai_error(post(gateway, CHAT, None, json={"model": "gpt-4o-mini", "messages": []}), 401,
                        "invalid_api_key")
    assert_openai_error(post(gateway, CHAT, "sk-shuhi-forged", json={"model": "gpt-4o-mini", "messages": []}), 401,
                        "invalid_api_key")
    sdk = gateway.closing(anthropic.Anthropic(base_url=gateway.url, api_key="sk-shuhi-forged", max_retries=0))
    with pytest.raises(anthropic.AuthenticationError) as caught:
        sdk.messages.create(model="claude-sonnet-4-6", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert caught.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    assert caught.value.response.headers["x-gateway-decision-id"].startswith("dec_")
    models = httpx.get(gateway.url + "/v1/models")
    assert models.status_code == 401 and models.headers["x-gateway-decision-id"].startswith("dec_")


def test_when_key_is_deleted_then_it_stops_working_at_once(gateway: Gateway) -> None:
    key = gateway.employee()
    hello = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    assert post(gateway, CHAT, key, json=hello).status_code == 200
    key_id = next(k["id"] for k in gateway.admin.get("/admin/v1/keys").json()["data"] if key.startswith(k["prefix"]))
    assert gateway.admin.delete(f"/admin/v1/keys/{key_id}").status_code == 204
    assert_openai_error(post(gateway, CHAT, key, json=hello), 401, "invalid_api_key")


def test_when_body_is_over_the_limit_then_413(database_url: str, upstream) -> None:  # type: ignore[no-untyped-def]
    settings = gateway_settings(database_url, upstream, max_body_bytes=4096)
    server = ServerThread(create_app(settings, environ=dict(UPSTREAM_KEYS)))
    server.start()
    try:
        admin = {"authorization": f"Bearer {settings.admin_token.get_secret_value()}"}  # type: ignore[union-attr]
        httpx.post(server.url + "/admin/v1/principals", json={"id": "p1"}, headers=admin)
        key = httpx.post(server.url + "/admin/v1/keys", json={"principal": "p1"}, headers=admin).json()["key"]
        big = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x" * 5000}]}
        response = httpx.post(server.url + CHAT, json=big, headers={"authorization": f"Bearer {key}"})
        assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"

        def chunks():  # type: ignore[no-untyped-def]  # no Content-Length: the limit holds while reading
            for _ in range(10):
                yield b"x" * 1000

        response = httpx.post(server.url + "/v1/messages", content=chunks(), headers={"x-api-key": key})
        assert response.status_code == 413
        assert response.json()["error"]["type"] == "request_too_large"
        small = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "ok"}]}
        assert httpx.post(server.url + CHAT, json=small, headers={"authorization": f"Bearer {key}"}).status_code == 200
    finally:
        server.stop()


def test_when_path_is_unknown_then_provider_shaped_404(gateway: Gateway) -> None:
    key = gateway.employee()
    assert_openai_error(post(gateway, "/v1/assistants", key, json={}), 404, "unknown_url")
    response = httpx.get(gateway.url + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"})
    assert response.status_code == 404


def test_when_upstream_key_variable_is_unset_then_503_names_the_variable(database_url: str, upstream) -> None:  # type: ignore[no-untyped-def]
    settings = gateway_settings(database_url, upstream)
    server = ServerThread(create_app(settings, environ={"FAKE_ANTHROPIC_KEY": "x"}))
    server.start()
    try:
        admin = {"authorization": f"Bearer {settings.admin_token.get_secret_value()}"}  # type: ignore[union-attr]
        httpx.post(server.url + "/admin/v1/principals", json={"id": "p1"}, headers=admin)
        key = httpx.post(server.url + "/admin/v1/keys", json={"principal": "p1"}, headers=admin).json()["key"]
        response = httpx.post(server.url + CHAT, headers={"authorization": f"Bearer {key}"},
                              json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]})
        assert response.status_code == 503
        assert "FAKE_OPENAI_KEY" in response.json()["error"]["message"]
        ready = httpx.get(server.url + "/readyz")
        assert ready.status_code == 503 and "FAKE_OPENAI_KEY" in ready.text
        assert httpx.get(server.url + "/healthz").status_code == 200
    finally:
        server.stop()
