"""Request rates and token quotas per principal and per group: the provider-style 429 with Retry-After.

Each case runs with the in-process counters (no Redis) and with the real Redis on 127.0.0.1:6379;
with Redis, two replicas share one budget.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from gateway.app import create_app
from tests.conftest import ADMIN_TOKEN, UPSTREAM_KEYS, ServerThread, gateway_settings

REDIS_URL = "redis://127.0.0.1:6379/0"
ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}
MESSAGES = [{"role": "user", "content": "hello"}]


def start(tmp_path: Path, upstream: Any, replicas: int = 1, **limits: Any) -> list[ServerThread]:
    settings = gateway_settings(f"sqlite:///{tmp_path / 'shuhi.db'}", upstream, **limits)
    servers = [ServerThread(create_app(settings, environ=dict(UPSTREAM_KEYS))) for _ in range(replicas)]
    for server in servers:
        server.start()
    return servers


@pytest.fixture
def servers() -> Iterator[list[ServerThread]]:
    started: list[ServerThread] = []
    yield started
    for server in started:
        server.stop()


def key_for(url: str, principal: str, groups: list[str]) -> str:
    httpx.post(url + "/admin/v1/principals", json={"id": principal, "groups": groups}, headers=ADMIN)
    return str(httpx.post(url + "/admin/v1/keys", json={"principal": principal}, headers=ADMIN).json()["key"])


def chat(url: str, key: str) -> httpx.Response:
    return httpx.post(url + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                      json={"model": "gpt-4o-mini", "messages": MESSAGES})


def fresh_minute() -> None:
    """Counters are per UTC minute: start a short test well inside one."""
    if time.time() % 60 > 52:
        time.sleep(61 - time.time() % 60)


@pytest.mark.parametrize("redis_url", [None, REDIS_URL], ids=["in-process", "redis"])
def test_principal_request_rate_is_a_429_in_both_sdk_shapes(tmp_path: Path, upstream: Any, servers: list[ServerThread],
                                                            redis_url: str | None) -> None:
    servers += start(tmp_path, upstream, requests_per_minute=3, redis_url=redis_url)
    url = servers[0].url
    key, other = key_for(url, "hanako", ["rd"]), key_for(url, "taro", ["rd"])
    fresh_minute()
    client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
    claude = anthropic.Anthropic(base_url=url, api_key=key, max_retries=0)
    try:
        for _ in range(2):
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
        claude.messages.create(model="claude-sonnet-4-6", max_tokens=10, messages=MESSAGES)  # type: ignore[arg-type]
        before = len(httpx.get(upstream.url + "/_fake/requests").json()["data"])
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
        with pytest.raises(anthropic.RateLimitError) as caught_anthropic:
            claude.messages.create(model="claude-sonnet-4-6", max_tokens=10, messages=MESSAGES)  # type: ignore[arg-type]
    finally:
        client.close()
        claude.close()
    assert len(httpx.get(upstream.url + "/_fake/requests").json()["data"]) == before  # nothing forwarded
    error = caught.value
    assert error.status_code == 429 and error.code == "rate_limit_exceeded"
    assert 1 <= int(error.response.headers["retry-after"]) <= 60
    assert "3 requests per minute" in error.message and "毎分 3 件" in error.message
    assert error.response.headers["x-gateway-decision-id"].startswith("dec_")
    body = caught_anthropic.value.body
    assert isinstance(body, dict) and body["type"] == "error" and body["error"]["type"] == "rate_limit_error"
    assert "retry-after" in caught_anthropic.value.response.headers
    assert chat(url, other).status_code == 200  # another principal has its own budget


@pytest.mark.parametrize("redis_url", [None, REDIS_URL], ids=["in-process", "redis"])
def test_group_budget_is_shared_by_its_members(tmp_path: Path, upstream: Any, servers: list[ServerThread],
                                               redis_url: str | None) -> None:
    servers += start(tmp_path, upstream, redis_url=redis_url, group_limits={"rd": {"requests_per_minute": 2}})
    url = servers[0].url
    alice, bob, carol = key_for(url, "alice", ["rd"]), key_for(url, "bob", ["rd", "ops"]), key_for(url, "carol", ["ops"])
    fresh_minute()
    assert chat(url, alice).status_code == 200
    assert chat(url, bob).status_code == 200
    refused = chat(url, alice)
    assert refused.status_code == 429
    assert "'rd'" in refused.json()["error"]["message"]
    assert all(chat(url, carol).status_code == 200 for _ in range(4))  # outside the group: no limit


def test_token_quota_counts_usage_and_refuses_until_the_next_day(tmp_path: Path, upstream: Any,
                                                                 servers: list[ServerThread]) -> None:
    servers += start(tmp_path, upstream, tokens_per_day=30, redis_url=REDIS_URL)
    url = servers[0].url
    key = key_for(url, "jiro", [])
    used = 0
    for _ in range(30):
        response = chat(url, key)
        if response.status_code == 429:
            break
        assert response.status_code == 200
        used += response.json()["usage"]["total_tokens"]
        time.sleep(0.05)  # tokens are counted once the answer is in
    else:
        raise AssertionError("the quota never ran out")
    assert used >= 30
    error = response.json()["error"]
    assert error["code"] == "token_quota_exceeded" and "30 tokens per day" in error["message"]
    seconds_to_midnight = 86_400 - time.time() % 86_400
    assert abs(int(response.headers["retry-after"]) - seconds_to_midnight) < 5


def test_replicas_share_one_budget_through_redis(tmp_path: Path, upstream: Any, servers: list[ServerThread]) -> None:
    servers += start(tmp_path, upstream, replicas=2, requests_per_minute=4, redis_url=REDIS_URL)
    a, b = servers[0].url, servers[1].url
    key = key_for(a, "saburo", [])
    fresh_minute()
    assert [chat(url, key).status_code for url in (a, b, a, b)] == [200] * 4
    assert chat(a, key).status_code == 429
    assert chat(b, key).status_code == 429
