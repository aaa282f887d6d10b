"""Reversible placeholders: numbered per entity, restored in JSON answers and in SSE streams cut anywhere."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from gateway.domain import Endpoint, Match
from gateway.pii.placeholders import Placeholders, StreamRestorer, redact_payload
from gateway.redact import placeholder


def test_the_same_value_gets_the_same_placeholder_and_entities_count_apart() -> None:
    numbers = Placeholders()
    assert numbers.placeholder("PERSON", "山田 太郎") == "[PERSON_1]"
    assert numbers.placeholder("PHONE_NUMBER", "03-1234-5678") == "[PHONE_NUMBER_1]"
    assert numbers.placeholder("PERSON", "佐藤 花子") == "[PERSON_2]"
    assert numbers.placeholder("PERSON", "山田 太郎") == "[PERSON_1]"
    assert numbers.restore("[PERSON_2] と [PERSON_1]、[PERSON_9]") == "佐藤 花子 と 山田 太郎、[PERSON_9]"


def test_payload_spans_are_replaced_reversibly_or_for_good() -> None:
    text = "山田 太郎様のカード 4111111111111111"
    payload: dict[str, Any] = {"messages": [{"role": "user", "content": text}]}
    person = Match(kind="pii", location="messages[0].content", start=0, end=5, entity="PERSON")
    card = Match(kind="pii", location="messages[0].content", start=11, end=27, entity="CREDIT_CARD")
    numbers = redact_payload(payload, [card, person], lambda m: m.entity == "PERSON", placeholder)
    assert payload["messages"][0]["content"] == "[PERSON_1]様のカード [REDACTED:CREDIT_CARD:pii:2]"
    assert numbers.restore_json({"choices": [{"message": {"content": "Dear [PERSON_1]"}}]}) == {
        "choices": [{"message": {"content": "Dear 山田 太郎"}}]}


def _numbers() -> Placeholders:
    numbers = Placeholders()
    numbers.placeholder("PERSON", "山田 太郎")
    numbers.placeholder("PHONE_NUMBER", "090-1234-5678")
    return numbers


ANSWER = "[PERSON_1]様、[PHONE_NUMBER_1]へ。[note] a[b] [PERSON_7] 終わり [PERS"
EXPECTED = "山田 太郎様、090-1234-5678へ。[note] a[b] [PERSON_7] 終わり [PERS"


def _events(endpoint: Endpoint, pieces: list[str]) -> list[bytes]:
    def sse(data: Any, name: str | None = None) -> bytes:
        return (f"event: {name}\n".encode() if name else b"") + b"data: " + orjson.dumps(data) + b"\n\n"

    if endpoint is Endpoint.MESSAGES:
        return ([sse({"type": "message_start", "message": {"id": "m"}}, "message_start")]
                + [sse({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}},
                       "content_block_delta") for p in pieces]
                + [sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
                   sse({"type": "message_delta", "delta": {"stop_reason": "end_turn"}}, "message_delta")])
    if endpoint is Endpoint.RESPONSES:
        return ([sse({"type": "response.output_text.delta", "output_index": 0, "content_index": 0, "delta": p})
                 for p in pieces]
                + [sse({"type": "response.output_text.done", "text": "".join(pieces)}),
                   sse({"type": "response.completed", "response": {"output_text": "".join(pieces)}})])
    return ([sse({"choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]}) for p in pieces]
            + [sse({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}), b"data: [DONE]\n\n"])


def _text(endpoint: Endpoint, stream: bytes) -> tuple[str, list[Any]]:
    deltas, others = [], []
    for raw in stream.split(b"\n\n"):
        line = next((x for x in raw.split(b"\n") if x.startswith(b"data: {")), None)
        if line is None:
            continue
        data = orjson.loads(line[6:])
        if endpoint is Endpoint.MESSAGES and data["type"] == "content_block_delta":
            deltas.append(data["delta"]["text"])
        elif endpoint is Endpoint.RESPONSES and data["type"] == "response.output_text.delta":
            deltas.append(data["delta"])
        elif endpoint is Endpoint.CHAT_COMPLETIONS and data["choices"][0]["delta"].get("content") is not None:
            deltas.append(data["choices"][0]["delta"]["content"])
        else:
            others.append(data)
    return "".join(deltas), others


async def _collect(restorer: StreamRestorer, chunks: list[bytes]) -> bytes:
    async def source() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    return b"".join([c async for c in restorer.wrap(source())])


@pytest.mark.parametrize("endpoint", [Endpoint.CHAT_COMPLETIONS, Endpoint.MESSAGES, Endpoint.RESPONSES])
@pytest.mark.parametrize("size", [1, 3, 4, 7, 64])
def test_streams_are_restored_whatever_the_cut(endpoint: Endpoint, size: int) -> None:
    pieces = [ANSWER[i:i + size] for i in range(0, len(ANSWER), size)]
    events = _events(endpoint, pieces)
    wire = b"".join(events)
    chunks = [wire[i:i + 5] for i in range(0, len(wire), 5)]  # events themselves cut mid-line
    restored = asyncio.run(_collect(StreamRestorer(endpoint, _numbers()), chunks))
    text, others = _text(endpoint, restored)
    assert text == EXPECTED
    assert "[PERSON_1]" not in restored.decode()
    if endpoint is Endpoint.RESPONSES:
        assert others[-1]["response"]["output_text"] == EXPECTED  # whole-text events are restored too


def test_tool_call_arguments_get_json_escaped_values_whole_and_streamed() -> None:
    numbers = Placeholders()
    numbers.placeholder("PERSON", 'O"Brien \\ 太郎')  # a value that JSON must escape
    whole = {"choices": [{"message": {"content": "[PERSON_1]", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "mail", "arguments": '{"to": "[PERSON_1]"}'}}]}}]}
    restored = numbers.restore_json(whole)
    message = restored["choices"][0]["message"]
    assert message["content"] == 'O"Brien \\ 太郎'
    assert orjson.loads(message["tool_calls"][0]["function"]["arguments"]) == {"to": 'O"Brien \\ 太郎'}

    arguments = '{"to": "[PERSON_1]", "cc": "[PERS'
    first = {"choices": [{"index": 0, "delta": {"tool_calls": [
        {"index": 0, "id": "c1", "type": "function", "function": {"name": "mail", "arguments": ""}}]}}]}
    pieces = [arguments[i:i + 3] for i in range(0, len(arguments), 3)]
    events = [b"data: " + orjson.dumps(first) + b"\n\n"] + [
        b"data: " + orjson.dumps({"choices": [{"index": 0, "delta": {"tool_calls": [
            {"index": 0, "function": {"arguments": p}}]}}]}) + b"\n\n" for p in pieces] + [
        b"data: " + orjson.dumps({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}) + b"\n\n",
        b"data: [DONE]\n\n"]
    out = asyncio.run(_collect(StreamRestorer(Endpoint.CHAT_COMPLETIONS, numbers), events))
    sent = ""
    names = []
    for raw in out.split(b"\n\n"):
        if raw.startswith(b"data: {"):
            for call in orjson.loads(raw[6:])["choices"][0]["delta"].get("tool_calls") or []:
                sent += call["function"]["arguments"]
                names += [call["function"]["name"]] if "name" in call["function"] else []
    assert sent == '{"to": "O\\"Brien \\\\ 太郎", "cc": "[PERS'
    assert names == ["mail"]  # the held-back tail did not repeat the call's name
