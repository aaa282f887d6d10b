"""Personal information through the gateway, end to end with the official SDKs and the fake provider.

The shipped default policy is in force: names, phone numbers and addresses bound
for a third party leave as numbered placeholders and come back in the answer;
My Number is refused; card numbers towards an internal model are cut out for
good. The fake provider echoes the last user message, so what it received and
what the employee reads can both be checked.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from gateway.app import create_app
from gateway.demo.upstream import UpstreamServer
from tests.conftest import ADMIN_TOKEN, UPSTREAM_KEYS, Gateway, ServerThread, gateway_settings

CUSTOMER = "顧客の山田 太郎様（電話 090-1234-5678、住所 東京都港区芝公園4丁目2番8号）への返信を書いてください。"
VALUES = ("山田 太郎", "090-1234-5678", "東京都港区芝公園4丁目2番8号")
MY_NUMBER = "本人確認のため、マイナンバー 1234 5678 9018 を登録してください。"  # valid check digit
CARD = "Charge card 4111 1111 1111 1111 for the renewal."


def oai(gateway: Gateway, key: str) -> openai.OpenAI:
    return gateway.closing(openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0, timeout=30))


def claude(gateway: Gateway, key: str) -> anthropic.Anthropic:
    return gateway.closing(anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0, timeout=30))


def forwarded_text(gateway: Gateway) -> str:
    return str(gateway.upstream_requests()[-1]["json"])


def decision_records(gateway: Gateway) -> list[dict[str, Any]]:
    records = gateway.admin.get("/admin/v1/audit", params={"limit": 100}).json()["data"]
    return [r for r in records if r["kind"] == "decision"]


def test_names_phones_and_addresses_leave_as_placeholders_and_come_back(gateway: Gateway) -> None:
    key = gateway.employee()
    answer = oai(gateway, key).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": CUSTOMER}])
    sent = forwarded_text(gateway)
    assert not any(v in sent for v in VALUES)
    assert "[PERSON_1]" in sent and "[PHONE_NUMBER_1]" in sent and "[JP_ADDRESS_1]" in sent
    assert answer.choices[0].message.content == "echo: " + CUSTOMER  # the employee reads the real values
    record = decision_records(gateway)[-1]
    assert record["decision"] == "redact" and "2(1)(4)" in record["articles"]
    entities = {(m["entity"], m["location"]) for m in record["matches"]}
    assert {("PERSON", "messages[0].content"), ("PHONE_NUMBER", "messages[0].content"),
            ("JP_ADDRESS", "messages[0].content")} <= entities
    phone = next(m for m in record["matches"] if m["entity"] == "PHONE_NUMBER")
    assert CUSTOMER[phone["start"]:phone["end"]] == "090-1234-5678"
    assert not any(v in str(record) for v in VALUES)  # spans in the audit log, never values


def test_a_streamed_answer_is_restored_even_when_placeholders_are_cut_across_events(gateway: Gateway) -> None:
    key = gateway.employee()
    stream = oai(gateway, key).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": CUSTOMER}], stream=True)
    deltas = [c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content]
    assert "".join(deltas) == "echo: " + CUSTOMER
    assert any("[" in d for d in deltas) is False  # no piece of a placeholder reached the employee
    assert "[PERSON_1]" in forwarded_text(gateway)


def test_anthropic_messages_are_restored_whole_and_streamed(gateway: Gateway) -> None:
    key = gateway.employee()
    client = claude(gateway, key)
    message = client.messages.create(model="claude-sonnet-4-6", max_tokens=100,
                                     messages=[{"role": "user", "content": CUSTOMER}])
    assert message.content[0].text == "echo: " + CUSTOMER  # type: ignore[union-attr]
    assert not any(v in forwarded_text(gateway) for v in VALUES)
    with client.messages.stream(model="claude-sonnet-4-6", max_tokens=100,
                                messages=[{"role": "user", "content": CUSTOMER}]) as stream:
        text = "".join(stream.text_stream)
    assert text == "echo: " + CUSTOMER
    assert not any(v in forwarded_text(gateway) for v in VALUES)


def test_my_number_is_refused_citing_customer_information(gateway: Gateway) -> None:
    key = gateway.employee()
    with pytest.raises(openai.PermissionDeniedError) as caught:
        oai(gateway, key).chat.completions.create(model="gpt-4o-mini",
                                                   messages=[{"role": "user", "content": MY_NUMBER}])
    error = caught.value.body
    assert isinstance(error, dict) and error["code"] == "blocked"
    assert "2(1)(4)" in error["articles"]
    assert "個人情報" in error["message"] and "personal data" in error["message"]
    assert "1234 5678 9018" not in str(error)
    assert [m["entity"] for m in error["matches"]] == ["JP_MY_NUMBER"]
    assert gateway.upstream_requests() == []


def test_card_numbers_to_an_internal_model_are_cut_out_for_good(gateway: Gateway) -> None:
    gateway.admin.post("/admin/v1/destinations", json={
        "id": "internal-llm", "base_url": gateway.upstream.openai_base_url, "api_format": "openai",
        "models": ["in-house"], "third_party": False})
    key = gateway.employee()
    answer = oai(gateway, key).chat.completions.create(model="in-house", messages=[{"role": "user", "content": CARD}])
    assert "4111" not in forwarded_text(gateway)
    assert "[REDACTED:CREDIT_CARD:pii:1]" in str(answer.choices[0].message.content)


def test_every_endpoint_is_analyzed_embeddings_and_responses_included(gateway: Gateway) -> None:
    key = gateway.employee()
    client = oai(gateway, key)
    client.embeddings.create(model="text-embedding-3-small", input=[CUSTOMER])
    assert not any(v in forwarded_text(gateway) for v in VALUES)
    response = client.responses.create(model="gpt-4o-mini", input=CUSTOMER)
    assert not any(v in forwarded_text(gateway) for v in VALUES)
    assert response.output_text == "echo: " + CUSTOMER


def test_technical_words_and_numbers_pass_untouched(gateway: Gateway) -> None:
    key = gateway.employee()
    text = ("S3 バケットの C4 データセットを EC2 の A100 で処理し、v3.11.4 のログ 2026-11-27T09:00:00Z を "
            "arn:aws:iam::123456789012:role/etl に渡した。ポート 8080、UUID 123e4567-e89b-12d3-a456-426614174000。")
    answer = oai(gateway, key).chat.completions.create(model="gpt-4o-mini",
                                                        messages=[{"role": "user", "content": text}])
    assert answer.choices[0].message.content == "echo: " + text
    assert text in forwarded_text(gateway)
    assert decision_records(gateway)[-1]["decision"] == "allow"


# -- failing closed -----------------------------------------------------------------------------------------

@pytest.fixture
def served(database_url: str, upstream: UpstreamServer) -> Iterator[tuple[Gateway, Any]]:
    """A gateway whose app object the test keeps, to break its analyzer port."""
    settings = gateway_settings(database_url, upstream)
    app = create_app(settings, environ=dict(UPSTREAM_KEYS))
    server = ServerThread(app)
    server.start()
    admin = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10)
    made = Gateway(url=server.url, settings=settings, admin=admin, upstream=upstream, clients=[])
    try:
        yield made, app
    finally:
        for sdk_client in made.clients:
            sdk_client.close()
        admin.close()
        server.stop()


def test_an_analyzer_failure_refuses_the_request_and_logs_no_text(
        served: tuple[Gateway, Any], caplog: pytest.LogCaptureFixture) -> None:
    gateway, app = served

    def broken(parts: Any, lookup: Any) -> list[Any]:
        raise RuntimeError("analyzer crashed on " + parts[0].text)

    app.state.ports.find_pii = broken
    key = gateway.employee()
    with caplog.at_level(logging.INFO), pytest.raises(openai.InternalServerError) as caught:
        oai(gateway, key).chat.completions.create(model="gpt-4o-mini",
                                                   messages=[{"role": "user", "content": CUSTOMER}])
    assert caught.value.status_code == 503
    body = caught.value.body
    assert isinstance(body, dict) and body["code"] == "pii_unavailable" and "2(1)(4)" in body["message"]
    assert gateway.upstream_requests() == []
    assert not any(v in caplog.text for v in VALUES) and "RuntimeError" in caplog.text
    with pytest.raises(anthropic.InternalServerError):
        claude(gateway, key).messages.create(model="claude-sonnet-4-6", max_tokens=10,
                                             messages=[{"role": "user", "content": CUSTOMER}])
    assert gateway.upstream_requests() == []
