"""The gateway's logs are JSON lines and never carry a confidential prompt's text (Article 5(3)).

A real `shuhi serve` process at debug level is driven through every path that handles the text:
registration, dry-run scan, a refusal, a consented and marked answer (streamed and not), malformed
bodies, an unknown model, an upstream that fails; then its whole captured output is read.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.demo.upstream import UpstreamServer
from tests.test_articles_e2e import DESIGN, EXCERPT, NDA
from tests.cluster import ADMIN, GatewayProcess, postgres_schema, start_gateways

SECRET_WORDS = ("蒸留温度", "相互学習損失", "Aurora")  # from the registered item and the prompts below
PII = "hanako.yamada@example.co.jp"


@pytest.fixture
def logged(tmp_path: Path) -> Iterator[tuple[GatewayProcess, UpstreamServer]]:
    upstream = UpstreamServer()
    upstream.start()
    with postgres_schema() as (database_url, _engine):
        (gateway,) = start_gateways(1, tmp_path, upstream, database_url, SHUHI_LOG_LEVEL="debug",
                                    SHUHI_LOG_FORMAT="json")
        try:
            yield gateway, upstream
        finally:
            gateway.stop()
            upstream.stop()


def test_logs_are_json_lines_without_request_text(logged: tuple[GatewayProcess, UpstreamServer]) -> None:
    gateway, upstream = logged
    url = gateway.url
    with httpx.Client(base_url=url, timeout=15) as client:
        client.post("/admin/v1/principals", json={"id": "hanako", "groups": ["rd"]}, headers=ADMIN)
        key = client.post("/admin/v1/keys", json={"principal": "hanako"}, headers=ADMIN).json()["key"]
        auth = {"authorization": f"Bearer {key}"}
        client.post("/admin/v1/agreements", json=NDA, headers=ADMIN)
        assert client.post(f"/admin/v1/agreements/{NDA['id']}/items", headers=ADMIN,
                           json={"title": "設計書", "category": "ai_technology", "text": DESIGN}).status_code == 201
        assert client.post("/admin/v1/scan", headers=ADMIN, json={"text": EXCERPT}).status_code == 200
        prompt = f"{EXCERPT} Aurora {PII}"

        def chat(text: str, stream: bool = False, model: str = "gpt-4o-mini") -> httpx.Response:
            return client.post("/v1/chat/completions", headers=auth, json={
                "model": model, "stream": stream, "messages": [{"role": "user", "content": text}]})

        assert chat(prompt).status_code == 403
        assert client.post("/admin/v1/consents", headers=ADMIN, json={
            "agreement_id": NDA["id"], "destinations": ["fake-openai"], "purpose": "inference",
            "evidence": {"reference": "同意書"}, "granted_by": "法務部"}).status_code == 201
        assert chat(prompt).status_code == 200
        assert chat(prompt, stream=True).status_code == 200
        assert chat(prompt, model="no-such-model").status_code == 404
        malformed = client.post("/v1/chat/completions", headers={**auth, "content-type": "application/json"},
                                content=('{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "'
                                         + prompt + '"}').encode())
        assert malformed.status_code == 400
        assert client.post("/v1/chat/completions", headers=auth, json={
            "model": "gpt-4o-mini", "messages": prompt}).status_code == 400
        httpx.post(upstream.url + "/_fake/behaviors", json={"behaviors": [{"kind": "drop"}, {"kind": "garbage"}]})
        assert chat(prompt).status_code == 502
        assert chat(prompt).status_code == 502
        assert client.post("/admin/v1/agreements", headers=ADMIN, json={**NDA, "title": prompt}).status_code == 409
    gateway.stop()
    lines = [line for line in gateway.log.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(lines) >= 5
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"ts", "level", "logger", "message"} <= set(e) for e in entries)
    assert any(e["logger"].startswith("shuhi") for e in entries)
    whole = "\n".join(lines)
    for word in (*SECRET_WORDS, PII, EXCERPT[:12]):
        assert word not in whole and json.dumps(word)[1:-1] not in whole
