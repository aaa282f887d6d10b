"""The dry-run scan (`POST /admin/v1/scan`, the console's playground) decides personal information as a call would.

Legal staff try a text in the playground to learn what an employee's call would meet; with the shipped
policy, personal data bound for a third party is redacted and My Number refused, so the dry run must say
the same, naming the entities and spans, never the values.
"""

from __future__ import annotations

import openai
import pytest

from tests.conftest import Gateway
from tests.pii.test_gateway_pii import CUSTOMER, MY_NUMBER, VALUES


def call_decision(gateway: Gateway, key: str, text: str) -> str:
    client = gateway.closing(openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0, timeout=30))
    try:
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": text}])
    except openai.PermissionDeniedError as refused:
        return str(refused.response.headers.get("x-gateway-decision", "block"))
    return str(raw.headers["x-gateway-decision"])


@pytest.mark.parametrize("text", [CUSTOMER, MY_NUMBER, "来週の定例会議の議題をまとめてください。"])
def test_the_dry_run_decides_personal_information_as_the_call_does(gateway: Gateway, text: str) -> None:
    key = gateway.employee()
    dry = gateway.admin.post("/admin/v1/scan", json={"text": text, "destination": "fake-openai"})
    assert dry.status_code == 200, dry.text
    body = dry.json()
    assert body["decision"] == call_decision(gateway, key, text)
    pii = [m for m in body["matches"] if m["kind"] == "pii"]
    if text == CUSTOMER:
        assert body["decision"] == "redact" and "2(1)(4)" in body["articles"]
        assert {m["entity"] for m in pii} >= {"PERSON", "PHONE_NUMBER"}
        assert all(0 <= m["start"] < m["end"] <= len(text) for m in pii)
        assert not any(value in dry.text for value in VALUES)  # spans, never the values
    elif text == MY_NUMBER:
        assert body["decision"] == "block" and any(m["entity"] == "JP_MY_NUMBER" for m in pii)
    else:
        assert body["decision"] == "allow" and not pii
