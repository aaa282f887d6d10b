"""`/v1/messages` through the gateway, driven by the official `anthropic` SDK."""

from __future__ import annotations

import anthropic
import httpx

from tests.conftest import UPSTREAM_KEYS, Gateway
from tests.test_proxy_openai import _normalised


def client(gateway: Gateway, key: str) -> anthropic.Anthropic:
    return gateway.closing(anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0, timeout=10))


def test_message_with_x_api_key(gateway: Gateway) -> None:
    key = gateway.employee()
    raw = client(gateway, key).messages.with_raw_response.create(
        model="claude-sonnet-4-6", max_tokens=100, system="Answer in Japanese.",
        messages=[{"role": "user", "content": "Plan the offsite"}])
    message = raw.parse()
    assert message.id.startswith("msg_") and message.stop_reason == "end_turn"
    assert message.content[0].type == "text" and message.content[0].text == "echo: Plan the offsite"
    assert message.usage.input_tokens > 0
    assert raw.headers["x-gateway-decision-id"].startswith("dec_")
    seen = gateway.upstream_requests()[-1]
    assert seen["headers"]["x-api-key"] == UPSTREAM_KEYS["FAKE_ANTHROPIC_KEY"]
    assert seen["headers"]["anthropic-version"] == raw.http_request.headers["anthropic-version"]
    assert "authorization" not in seen["headers"]


def test_bearer_key_works_for_anthropic_clients_too(gateway: Gateway) -> None:
    key = gateway.employee()
    bearer = anthropic.Anthropic(base_url=gateway.url, auth_token=key, max_retries=0)
    reply = bearer.messages.create(model="claude-sonnet-4-6", max_tokens=50, messages=[{"role": "user", "content": "x"}])
    assert reply.content[0].text == "echo: x"  # type: ignore[union-attr]


def test_tool_use(gateway: Gateway) -> None:
    key = gateway.employee()
    tools = [{"name": "get_weather", "description": "weather", "input_schema": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
    reply = client(gateway, key).messages.create(model="claude-sonnet-4-6", max_tokens=100, tools=tools,
                                                 messages=[{"role": "user", "content": "weather in Sapporo?"}])
    assert reply.stop_reason == "tool_use"
    block = next(b for b in reply.content if b.type == "tool_use")
    assert block.name == "get_weather" and "city" in block.input  # type: ignore[operator]


def test_stream_event_order_and_final_message(gateway: Gateway) -> None:
    key = gateway.employee()
    with client(gateway, key).messages.stream(model="claude-sonnet-4-6", max_tokens=100,
                                              messages=[{"role": "user", "content": "tell a story"}]) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "message_delta" in kinds and kinds.index("content_block_stop") < kinds.index("message_delta")
    assert final.content[0].text == "echo: tell a story"  # type: ignore[union-attr]
    assert final.usage.output_tokens > 0


def test_stream_bytes_match_direct(gateway: Gateway) -> None:
    key = gateway.employee()
    body = {"model": "claude-sonnet-4-6", "max_tokens": 64, "stream": True,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "bytes please"}]}]}
    headers = {"anthropic-version": "2023-06-01"}
    direct = httpx.post(gateway.upstream.url + "/v1/messages", json=body, headers={**headers, "x-api-key": "k"})
    through = httpx.post(gateway.url + "/v1/messages", json=body, headers={**headers, "x-api-key": key})
    assert through.headers["content-type"].startswith("text/event-stream")
    assert _normalised(through.content) == _normalised(direct.content)


def test_missing_max_tokens_is_the_providers_400(gateway: Gateway) -> None:
    key = gateway.employee()
    response = httpx.post(gateway.url + "/v1/messages", headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
                          json={"model": "claude-sonnet-4-6", "messages": [{"role": "user", "content": "x"}]})
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert response.headers["x-gateway-decision-id"].startswith("dec_")


def test_models_in_anthropic_shape(gateway: Gateway) -> None:
    key = gateway.employee()
    names = [m.id for m in client(gateway, key).models.list()]
    assert "claude-sonnet-4-6" in names and "gpt-4o-mini" not in names
