"""Upstream failures reach the client in the provider's error shape; a vanished client cancels the upstream."""

from __future__ import annotations

import time

import anthropic
import httpx
import openai
import pytest

from tests.conftest import Gateway

MESSAGES = [{"role": "user", "content": "hello"}]


def sdk(gateway: Gateway, key: str) -> openai.OpenAI:
    return gateway.closing(openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0, timeout=20))


def test_provider_errors_pass_through_unchanged(gateway: Gateway) -> None:
    key = gateway.employee()
    body = {"error": {"message": "Rate limit reached", "type": "requests", "param": None, "code": "rate_limit_exceeded"}}
    gateway.queue({"kind": "error", "status": 429, "body": body, "headers": {"retry-after": "7"}})
    with pytest.raises(openai.RateLimitError) as caught:
        sdk(gateway, key).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert caught.value.body == body["error"]
    assert caught.value.response.headers["retry-after"] == "7"
    gateway.queue({"kind": "error", "status": 500})
    with pytest.raises(openai.InternalServerError):
        sdk(gateway, key).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)


def test_upstream_timeout_is_504(gateway: Gateway) -> None:
    key = gateway.employee()  # the test destinations time out after 5 s
    gateway.queue({"kind": "slow", "delay_ms": 8000})
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as caught:
        sdk(gateway, key).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert caught.value.status_code == 504 and caught.value.code == "upstream_timeout"
    assert time.monotonic() - started < 7.5


def test_dropped_connection_and_garbage_are_502(gateway: Gateway) -> None:
    key = gateway.employee()
    gateway.queue({"kind": "drop"}, {"kind": "garbage"})
    for expected in ("upstream_error", "upstream_malformed"):
        with pytest.raises(openai.APIStatusError) as caught:
            sdk(gateway, key).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert caught.value.status_code == 502 and caught.value.code == expected
        assert "fake-openai" in caught.value.message


def test_anthropic_shape_for_upstream_failures(gateway: Gateway) -> None:
    key = gateway.employee()
    gateway.queue({"kind": "drop"})
    client = gateway.closing(anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0))
    with pytest.raises(anthropic.APIStatusError) as caught:
        client.messages.create(model="claude-sonnet-4-6", max_tokens=10, messages=MESSAGES)
    assert caught.value.status_code == 502
    assert caught.value.body["error"]["type"] == "api_error"  # type: ignore[index]


def test_stream_cut_mid_way_ends_with_a_provider_error_event(gateway: Gateway) -> None:
    key = gateway.employee()
    gateway.queue({"kind": "drop_mid_stream", "after_chunks": 2})
    with pytest.raises(openai.APIError) as caught:
        for _ in sdk(gateway, key).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True):
            pass
    assert "fake-openai" in str(caught.value)
    gateway.queue({"kind": "drop_mid_stream", "after_chunks": 2})
    client = gateway.closing(anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0))
    with pytest.raises(anthropic.APIStatusError):
        with client.messages.stream(model="claude-sonnet-4-6", max_tokens=10, messages=MESSAGES) as stream:
            for _ in stream:
                pass


def test_client_that_goes_away_cancels_the_upstream_stream(gateway: Gateway) -> None:
    key = gateway.employee()
    httpx.delete(gateway.upstream.url + "/_fake/stats")
    gateway.queue({"kind": "slow_stream", "delay_ms": 300})
    body = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "a long answer " * 20}]}
    with httpx.Client(timeout=10) as client:
        with client.stream("POST", gateway.url + "/v1/chat/completions", json=body,
                           headers={"authorization": f"Bearer {key}"}) as response:
            assert response.status_code == 200
            next(response.iter_raw())
    deadline = time.monotonic() + 3
    stats: dict[str, int] = {}
    while time.monotonic() < deadline:
        stats = httpx.get(gateway.upstream.url + "/_fake/stats").json()
        if stats["streams_cancelled"] >= 1:
            break
        time.sleep(0.05)
    assert stats["streams_cancelled"] == 1 and stats["streams_completed"] == 0


def test_first_chunk_is_not_held_back(gateway: Gateway) -> None:
    key = gateway.employee()
    gateway.queue({"kind": "slow_stream", "delay_ms": 1000})
    body = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "a b c d e f"}]}
    with httpx.Client(timeout=20) as client:
        started = time.monotonic()
        with client.stream("POST", gateway.url + "/v1/chat/completions", json=body,
                           headers={"authorization": f"Bearer {key}"}) as response:
            first = next(response.iter_raw())
            elapsed = time.monotonic() - started
    assert first.startswith(b"data: ") and elapsed < 0.9  # the rest of the stream takes seconds
