"""The OpenAI endpoints through the gateway, driven by the official `openai` SDK against the fake provider."""

from __future__ import annotations

import asyncio
import re

import httpx
import openai
import orjson
import pytest

from tests.conftest import UPSTREAM_KEYS, Gateway

IDS = re.compile(rb'"(chatcmpl|resp|msg|cmpl|file|ftjob|req|item|call|toolu)[-_][A-Za-z0-9_-]+"|"created(_at)?":\s*\d+')


def client(gateway: Gateway, key: str) -> openai.OpenAI:
    return gateway.closing(openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0, timeout=10))


def test_chat_completion_comes_back_as_the_provider_sent_it(gateway: Gateway) -> None:
    key = gateway.employee()
    exact = {"id": "chatcmpl-exact1", "object": "chat.completion", "created": 1764200000, "model": "gpt-4o-mini",
             "system_fingerprint": "fp_x", "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
             "message": {"role": "assistant", "content": "議事録は三点です。", "refusal": None}}],
             "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}}
    gateway.queue({"kind": "error", "status": 200, "body": exact, "headers": {"x-exact-header": "kept"}})
    raw = client(gateway, key).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "今日の会議を要約して"}])
    assert raw.http_response.content == orjson.dumps(exact)
    assert raw.headers["x-exact-header"] == "kept"
    assert raw.headers["x-request-id"].startswith("req_")
    assert raw.headers["x-gateway-decision"] == "allow"
    assert raw.headers["x-gateway-decision-id"].startswith("dec_")
    completion = raw.parse()
    assert completion.id == "chatcmpl-exact1"
    assert completion.usage is not None and completion.usage.total_tokens == 18


def test_upstream_gets_its_own_key_and_never_the_gateway_key(gateway: Gateway) -> None:
    key = gateway.employee()
    reply = client(gateway, key).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "system", "content": "Be brief."},
                                       {"role": "user", "content": "Hello there"}])
    assert reply.choices[0].message.content == "echo: Hello there"
    seen = gateway.upstream_requests()[-1]
    assert seen["path"] == "/v1/chat/completions"
    assert seen["headers"]["authorization"] == f"Bearer {UPSTREAM_KEYS['FAKE_OPENAI_KEY']}"
    assert key not in orjson.dumps(seen).decode()
    assert seen["json"]["messages"][0] == {"role": "system", "content": "Be brief."}


def test_qualified_model_name_picks_the_destination_and_is_rewritten(gateway: Gateway) -> None:
    key = gateway.employee()
    reply = client(gateway, key).chat.completions.create(
        model="fake-openai/shared-model", messages=[{"role": "user", "content": "hi"}])
    assert reply.model == "shared-model"
    assert gateway.upstream_requests()[-1]["json"]["model"] == "shared-model"


def test_model_patterns_route(gateway: Gateway) -> None:
    key = gateway.employee()
    reply = client(gateway, key).chat.completions.create(model="gpt-4.1-nano", messages=[{"role": "user", "content": "x"}])
    assert reply.model == "gpt-4.1-nano"


def test_tool_calls_and_finish_reason_pass_through(gateway: Gateway) -> None:
    key = gateway.employee()
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    reply = client(gateway, key).chat.completions.create(
        model="gpt-4o-mini", tools=tools, messages=[{"role": "user", "content": "What is the weather in Osaka?"}])
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls and choice.message.tool_calls[0].function.name == "get_weather"
    assert "city" in orjson.loads(choice.message.tool_calls[0].function.arguments)


def _normalised(raw: bytes) -> bytes:
    return IDS.sub(b'"ID"', raw)


def test_stream_events_arrive_in_order_and_unchanged(gateway: Gateway) -> None:
    key = gateway.employee()
    body = {"model": "gpt-4o-mini", "stream": True, "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "Stream this sentence back to me, please."}]}
    direct = httpx.post(gateway.upstream.openai_base_url + "/chat/completions", json=body,
                        headers={"authorization": "Bearer x"}).content
    through = httpx.post(gateway.url + "/v1/chat/completions", json=body,
                         headers={"authorization": f"Bearer {key}"}).content
    assert _normalised(through) == _normalised(direct)
    assert through.endswith(b"data: [DONE]\n\n")
    chunks = list(client(gateway, key).chat.completions.create(**body))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: Stream this sentence back to me, please."
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_streamed_tool_calls(gateway: Gateway) -> None:
    key = gateway.employee()
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}}}}]
    stream = client(gateway, key).chat.completions.create(
        model="gpt-4o-mini", tools=tools, stream=True, messages=[{"role": "user", "content": "weather in Kyoto?"}])
    arguments, names, finish = "", [], None
    for chunk in stream:
        for call in chunk.choices[0].delta.tool_calls or []:
            names += [call.function.name] if call.function and call.function.name else []
            arguments += call.function.arguments or "" if call.function else ""
        finish = chunk.choices[0].finish_reason or finish
    assert names == ["get_weather"] and finish == "tool_calls"
    assert isinstance(orjson.loads(arguments), dict)


def test_async_client_concurrent_calls(gateway: Gateway) -> None:
    key = gateway.employee()

    async def main() -> list[str]:
        async with openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0) as aclient:
            replies = await asyncio.gather(*[
                aclient.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": f"n{i}"}])
                for i in range(20)])
            stream = await aclient.chat.completions.create(
                model="gpt-4o-mini", stream=True, messages=[{"role": "user", "content": "async stream"}])
            streamed = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
            return [r.choices[0].message.content or "" for r in replies] + [streamed]

    results = asyncio.run(main())
    assert results[:20] == [f"echo: n{i}" for i in range(20)]
    assert results[20] == "echo: async stream"


def test_legacy_completions(gateway: Gateway) -> None:
    key = gateway.employee()
    reply = client(gateway, key).completions.create(model="gpt-4o-mini", prompt="Say hello")
    assert reply.object == "text_completion" and "Say hello" in reply.choices[0].text
    streamed = "".join(c.choices[0].text for c in client(gateway, key).completions.create(
        model="gpt-4o-mini", prompt="Say hello", stream=True) if c.choices)
    assert "Say hello" in streamed


def test_responses_api_plain_and_streamed(gateway: Gateway) -> None:
    key = gateway.employee()
    response = client(gateway, key).responses.create(model="gpt-4o-mini", instructions="Be brief.",
                                                     input="Summarise our roadmap")
    assert response.id.startswith("resp_") and response.status == "completed"
    assert response.output_text == "echo: Summarise our roadmap"
    assert response.usage is not None and response.usage.total_tokens > 0
    events = list(client(gateway, key).responses.create(model="gpt-4o-mini", input="stream me", stream=True))
    kinds = [e.type for e in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert [e.sequence_number for e in events] == sorted(e.sequence_number for e in events)
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == "echo: stream me"
    with client(gateway, key).responses.stream(model="gpt-4o-mini", input="helper") as stream:
        final = stream.get_final_response()
    assert final.output_text == "echo: helper"


def test_embeddings_keep_order_and_dimensions(gateway: Gateway) -> None:
    key = gateway.employee()
    result = client(gateway, key).embeddings.create(model="text-embedding-3-small", input=["a", "b", "c"])
    assert [d.index for d in result.data] == [0, 1, 2]
    assert len({tuple(d.embedding) for d in result.data}) == 3
    direct = openai.OpenAI(base_url=gateway.upstream.openai_base_url, api_key="x").embeddings.create(
        model="text-embedding-3-small", input=["a", "b", "c"])
    assert [d.embedding for d in result.data] == [d.embedding for d in direct.data]


def test_models_lists_what_destinations_serve(gateway: Gateway) -> None:
    key = gateway.employee()
    names = {m.id: m.owned_by for m in client(gateway, key).models.list()}
    assert names["gpt-4o-mini"] == "fake-openai"
    assert "claude-sonnet-4-6" not in names  # an OpenAI client cannot call an Anthropic-format destination
    assert names["shared-model"] == "fake-openai"
    assert not any("*" in n for n in names)


def test_plain_name_served_in_both_formats_goes_to_the_endpoints_format(gateway: Gateway) -> None:
    key = gateway.employee()
    client(gateway, key).chat.completions.create(model="shared-model", messages=[{"role": "user", "content": "a"}])
    assert gateway.upstream_requests()[-1]["path"] == "/v1/chat/completions"
    with pytest.raises(openai.BadRequestError) as caught:
        client(gateway, key).chat.completions.create(model="claude-sonnet-4-6",
                                                     messages=[{"role": "user", "content": "a"}])
    assert caught.value.code == "wrong_api_format" and "/v1/messages" in caught.value.message


def test_file_upload_and_fine_tuning_job(gateway: Gateway, tmp_path) -> None:  # type: ignore[no-untyped-def]
    key = gateway.employee()
    path = tmp_path / "train.jsonl"
    path.write_text('{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}\n')
    with path.open("rb") as handle:
        uploaded = client(gateway, key).files.create(file=handle, purpose="fine-tune")
    assert uploaded.id.startswith("file-") and uploaded.purpose == "fine-tune"
    assert uploaded.bytes == path.stat().st_size
    seen = gateway.upstream_requests()[-1]
    assert seen["headers"]["content-type"].startswith("multipart/form-data")
    job = client(gateway, key).fine_tuning.jobs.create(model="gpt-4o-mini", training_file=uploaded.id)
    assert job.training_file == uploaded.id and job.status == "queued"


def test_file_upload_to_named_destination_and_unknown_destination(gateway: Gateway, tmp_path) -> None:  # type: ignore[no-untyped-def]
    key = gateway.employee()
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    named = client(gateway, key).with_options(default_headers={"X-Shuhi-Destination": "fake-openai"})
    assert named.files.create(file=path.read_bytes(), purpose="assistants").purpose == "assistants"
    wrong = client(gateway, key).with_options(default_headers={"X-Shuhi-Destination": "nowhere"})
    with pytest.raises(openai.NotFoundError) as caught:
        wrong.files.create(file=path.read_bytes(), purpose="assistants")
    assert caught.value.code == "destination_not_found"
