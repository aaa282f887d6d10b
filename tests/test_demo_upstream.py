"""The fake upstream provider, driven by the official OpenAI and Anthropic SDKs over real HTTP."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import anthropic
import httpx
import openai
import pytest

from gateway.demo.upstream import UpstreamServer, create_app

PROMPT = "hello fake world, please echo me back"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
CLAUDE_WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
CLAUDE = "claude-sonnet-4-6"


@pytest.fixture(scope="module")
def upstream() -> Iterator[UpstreamServer]:
    with UpstreamServer() as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh_behaviors(upstream: UpstreamServer) -> None:
    upstream.app.clear_behaviors()


@pytest.fixture
def oai(upstream: UpstreamServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=upstream.openai_base_url, api_key="sk-test", max_retries=0) as client:
        yield client


@pytest.fixture
def claude(upstream: UpstreamServer) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=upstream.anthropic_base_url, api_key="sk-ant-test", max_retries=0) as client:
        yield client


@pytest.fixture
def http(upstream: UpstreamServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=upstream.url, timeout=5) as client:
        yield client


def queue(http: httpx.Client, *behaviors: dict) -> None:
    r = http.post("/_fake/behaviors", json={"behaviors": list(behaviors)})
    assert r.status_code == 200, r.text


def chat_body(text: str = PROMPT, **extra: object) -> dict:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}], **extra}


def sse_events(raw: str) -> list[tuple[str | None, str]]:
    """(event name, data) pairs of an SSE body."""
    out = []
    for block in raw.split("\n\n"):
        if not block.strip():
            continue
        event = None
        data = []
        for line in block.split("\n"):
            if line.startswith("event: "):
                event = line[len("event: ") :]
            elif line.startswith("data: "):
                data.append(line[len("data: ") :])
        out.append((event, "\n".join(data)))
    return out


# --------------------------------------------------------------------------- OpenAI chat completions


def test_chat_completion_echoes_last_user_message(oai: openai.OpenAI) -> None:
    raw = oai.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "first answer"},
            {"role": "user", "content": PROMPT},
        ],
    )
    assert raw.headers["x-request-id"].startswith("req_")
    assert int(raw.headers["openai-processing-ms"]) >= 0
    r = raw.parse()
    assert r.id.startswith("chatcmpl-")
    assert r.object == "chat.completion"
    assert r.model == "gpt-4o-mini"
    assert r.system_fingerprint.startswith("fp_")
    assert abs(r.created - time.time()) < 60
    choice = r.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    assert choice.message.content == "echo: " + PROMPT
    assert choice.message.refusal is None and choice.message.tool_calls is None
    assert r.usage.completion_tokens > 0 and r.usage.prompt_tokens > r.usage.completion_tokens
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_chat_content_parts_and_distinct_ids(oai: openai.OpenAI) -> None:
    parts = [{"type": "text", "text": "part one"}, {"type": "text", "text": "part two"}]
    a = oai.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": parts}])
    b = oai.chat.completions.create(model="gpt-4.1", messages=[{"role": "user", "content": "x"}])
    assert a.choices[0].message.content == "echo: part one\npart two"
    assert a.model == "gpt-4.1"
    assert a.id != b.id


def test_chat_tool_call_when_tools_and_weather(oai: openai.OpenAI) -> None:
    r = oai.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "What's the weather in Tokyo?"}], tools=[WEATHER_TOOL]
    )
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.id.startswith("call_") and call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Tokyo"}

    # the tool's answer comes back: the model answers in text, no new tool call
    follow = oai.chat.completions.create(
        model="gpt-4o-mini",
        tools=[WEATHER_TOOL],
        messages=[
            {"role": "user", "content": "What's the weather in Tokyo?"},
            {"role": "assistant", "tool_calls": [call.model_dump(exclude_none=True)]},
            {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21C"},
        ],
    )
    assert follow.choices[0].finish_reason == "stop"
    assert follow.choices[0].message.content == "echo: sunny, 21C"

    # tools without "weather": plain echo
    plain = oai.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], tools=[WEATHER_TOOL]
    )
    assert plain.choices[0].message.content == "echo: hi"


def test_chat_async_plain_and_stream_with_usage(upstream: UpstreamServer) -> None:
    async def run() -> None:
        async with openai.AsyncOpenAI(base_url=upstream.openai_base_url, api_key="k", max_retries=0) as client:
            plain = await client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": PROMPT}]
            )
            stream = await client.chat.completions.create(
                model="gpt-4o",
                messages=[{"role": "user", "content": PROMPT}],
                stream=True,
                stream_options={"include_usage": True},
            )
            chunks = [c async for c in stream]
        assert plain.choices[0].message.content == "echo: " + PROMPT
        assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
        assert chunks[0].id.startswith("chatcmpl-")
        assert chunks[0].choices[0].delta.role == "assistant"
        content = [c.choices[0].delta.content for c in chunks[1:] if c.choices and c.choices[0].delta.content]
        assert len(content) >= 5 and max(map(len, content)) <= 8
        assert "".join(content) == "echo: " + PROMPT
        finish = [c for c in chunks if c.choices and c.choices[0].finish_reason]
        assert len(finish) == 1 and finish[0].choices[0].finish_reason == "stop"
        last = chunks[-1]
        assert last.choices == [] and last.usage is not None
        assert all(c.usage is None for c in chunks[:-1])
        assert last.usage.model_dump() == plain.usage.model_dump()

    asyncio.run(run())


def test_chat_stream_tool_call(oai: openai.OpenAI, http: httpx.Client) -> None:
    messages = [{"role": "user", "content": "weather in Osaka please"}]
    with oai.chat.completions.stream(model="gpt-4o-mini", messages=messages, tools=[WEATHER_TOOL]) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].finish_reason == "tool_calls"
    (call,) = final.choices[0].message.tool_calls
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Tokyo"}

    raw = http.post("/v1/chat/completions", json=chat_body("weather in Osaka", stream=True, tools=[WEATHER_TOOL]))
    events = sse_events(raw.text)
    assert events[-1] == (None, "[DONE]")
    chunks = [json.loads(d) for _, d in events[:-1]]
    first = chunks[0]["choices"][0]["delta"]["tool_calls"][0]
    assert first["index"] == 0 and first["id"].startswith("call_") and first["function"] == {"name": "get_weather", "arguments": ""}
    fragments = [c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"] for c in chunks[1:-1]]
    assert len(fragments) >= 3 and "".join(fragments) == '{"city":"Tokyo"}'
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


# --------------------------------------------------------------------------- other OpenAI endpoints


def test_legacy_completions(oai: openai.OpenAI) -> None:
    r = oai.completions.create(model="davinci-002", prompt=["alpha", "beta"])
    assert r.id.startswith("cmpl-") and r.object == "text_completion"
    assert [(c.index, c.text, c.finish_reason) for c in r.choices] == [(0, "echo: alpha", "stop"), (1, "echo: beta", "stop")]
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    stream = oai.completions.create(model="davinci-002", prompt=PROMPT, stream=True)
    with stream:
        chunks = list(stream)
    assert len(chunks) > 3
    assert "".join(c.choices[0].text for c in chunks) == "echo: " + PROMPT
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_responses_plain(oai: openai.OpenAI) -> None:
    r = oai.responses.create(model="gpt-4o-mini", input=PROMPT, instructions="Answer briefly.")
    assert r.id.startswith("resp_") and r.object == "response" and r.status == "completed"
    assert r.output_text == "echo: " + PROMPT
    (item,) = r.output
    assert item.type == "message" and item.role == "assistant" and item.id.startswith("msg_")
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    bare = oai.responses.create(model="gpt-4o-mini", input=PROMPT)
    assert r.usage.input_tokens > bare.usage.input_tokens  # instructions count as input

    items = oai.responses.create(
        model="gpt-4o-mini",
        input=[
            {"role": "user", "content": "earlier"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "input_text", "text": "latest question"}]},
        ],
    )
    assert items.output_text == "echo: latest question"


def test_responses_stream_event_sequence(oai: openai.OpenAI) -> None:
    with oai.responses.stream(model="gpt-4o-mini", input=PROMPT) as stream:
        events = list(stream)
        final = stream.get_final_response()
    types = [e.type for e in events]
    deltas = [e for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) >= 5
    assert types == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * len(deltas),
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "".join(d.delta for d in deltas) == "echo: " + PROMPT
    assert final.output_text == "echo: " + PROMPT and final.status == "completed"
    assert final.usage is not None and final.usage.output_tokens > 0

    created = oai.responses.create(model="gpt-4o-mini", input=PROMPT, stream=True)
    with created:
        raw = list(created)
    assert raw[0].type == "response.created" and raw[0].response.status == "in_progress"
    assert raw[-1].type == "response.completed" and raw[-1].response.id == raw[0].response.id


def test_embeddings_base64_default_and_float(oai: openai.OpenAI, http: httpx.Client) -> None:
    inputs = ["first text", "second text", "first text"]
    r = oai.embeddings.create(model="text-embedding-3-small", input=inputs)
    assert r.object == "list" and [d.index for d in r.data] == [0, 1, 2]
    vectors = [d.embedding for d in r.data]
    assert all(len(v) == 8 for v in vectors)
    assert all(abs(math.sqrt(sum(x * x for x in v)) - 1) < 1e-5 for v in vectors)
    assert vectors[0] == vectors[2] and vectors[0] != vectors[1]
    assert r.usage.prompt_tokens == r.usage.total_tokens > 0
    # the SDK asked for base64 (its default) and decoded it
    assert http.get("/_fake/requests").json()["data"][-1]["json"]["encoding_format"] == "base64"

    floats = oai.embeddings.create(model="text-embedding-3-small", input="first text", encoding_format="float", dimensions=16)
    assert len(floats.data[0].embedding) == 16
    same = oai.embeddings.create(model="text-embedding-3-small", input="first text", encoding_format="float")
    assert same.data[0].embedding == pytest.approx(vectors[0], abs=1e-6)

    raw = http.post("/v1/embeddings", json={"model": "e", "input": [[1, 2, 3]], "encoding_format": "base64"}).json()
    assert len(base64.b64decode(raw["data"][0]["embedding"])) == 8 * 4


def test_files_upload_and_fine_tuning(oai: openai.OpenAI) -> None:
    content = b'{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}\n'
    f = oai.files.create(file=("train.jsonl", content), purpose="fine-tune")
    assert f.id.startswith("file-") and f.object == "file"
    assert (f.bytes, f.filename, f.purpose, f.status) == (len(content), "train.jsonl", "fine-tune", "processed")
    assert oai.files.retrieve(f.id).model_dump() == f.model_dump()
    with pytest.raises(openai.NotFoundError) as missing:
        oai.files.retrieve("file-doesnotexist")
    assert missing.value.body["type"] == "invalid_request_error"

    job = oai.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=f.id)
    assert job.id.startswith("ftjob-") and job.object == "fine_tuning.job"
    assert (job.status, job.training_file, job.model) == ("queued", f.id, "gpt-4o-mini")
    assert oai.fine_tuning.jobs.retrieve(job.id).id == job.id
    with pytest.raises(openai.BadRequestError) as bad:
        oai.fine_tuning.jobs.create(model="gpt-4o-mini", training_file="file-unknown")
    assert bad.value.status_code == 400 and bad.value.body["param"] == "training_file"
    with pytest.raises(openai.NotFoundError):
        oai.fine_tuning.jobs.retrieve("ftjob-unknown")


def test_models_list_openai_and_anthropic(oai: openai.OpenAI, claude: anthropic.Anthropic) -> None:
    ids = [m.id for m in oai.models.list()]
    assert "gpt-4o-mini" in ids and not any(i.startswith("claude") for i in ids)
    claude_models = list(claude.models.list())
    assert CLAUDE in [m.id for m in claude_models]
    assert all(m.type == "model" and m.display_name for m in claude_models)


def test_unknown_paths_are_provider_shaped_404(http: httpx.Client) -> None:
    r = http.post("/v1/nothing-here", json={})
    assert r.status_code == 404 and r.headers["x-request-id"].startswith("req_")
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}
    r = http.post("/v1/messages/nothing", json={})
    assert r.status_code == 404 and r.headers["request-id"].startswith("req_")
    assert r.json()["type"] == "error" and r.json()["error"]["type"] == "not_found_error"
    r = http.post("/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    r = http.post("/v1/chat/completions", json={"model": "gpt-4o-mini"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"


# --------------------------------------------------------------------------- Anthropic messages


def test_anthropic_message(claude: anthropic.Anthropic) -> None:
    raw = claude.messages.with_raw_response.create(
        model=CLAUDE,
        max_tokens=256,
        system="Be brief.",
        messages=[{"role": "user", "content": [{"type": "text", "text": PROMPT}]}],
    )
    assert raw.headers["request-id"].startswith("req_")
    m = raw.parse()
    assert m.id.startswith("msg_") and m.type == "message" and m.role == "assistant" and m.model == CLAUDE
    assert [(b.type, b.text) for b in m.content] == [("text", "echo: " + PROMPT)]
    assert m.stop_reason == "end_turn" and m.stop_sequence is None
    assert m.usage.input_tokens > 0 and m.usage.output_tokens == (len("echo: " + PROMPT) + 3) // 4


def test_anthropic_tool_use(claude: anthropic.Anthropic) -> None:
    m = claude.messages.create(
        model=CLAUDE,
        max_tokens=256,
        tools=[CLAUDE_WEATHER_TOOL],
        messages=[{"role": "user", "content": "What is the weather in Kyoto?"}],
    )
    assert m.stop_reason == "tool_use"
    (block,) = m.content
    assert block.type == "tool_use" and block.id.startswith("toolu_")
    assert block.name == "get_weather" and block.input == {"city": "Tokyo"}


def test_anthropic_stream(claude: anthropic.Anthropic, http: httpx.Client) -> None:
    with claude.messages.stream(model=CLAUDE, max_tokens=256, messages=[{"role": "user", "content": PROMPT}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "echo: " + PROMPT
    assert final.content[0].text == text and final.stop_reason == "end_turn"
    assert final.usage.output_tokens == (len(text) + 3) // 4

    with claude.messages.stream(
        model=CLAUDE, max_tokens=256, tools=[CLAUDE_WEATHER_TOOL], messages=[{"role": "user", "content": "weather?"}]
    ) as stream:
        tool_final = stream.get_final_message()
    assert tool_final.stop_reason == "tool_use" and tool_final.content[0].input == {"city": "Tokyo"}

    r = http.post(
        "/v1/messages",
        headers={"anthropic-version": "2023-06-01"},
        json={"model": CLAUDE, "max_tokens": 10, "stream": True, "messages": [{"role": "user", "content": PROMPT}]},
    )
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    names = [e for e, _ in events]
    n = names.count("content_block_delta")
    assert n >= 5
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * n,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(json.loads(d)["type"] == e for e, d in events)


def test_anthropic_requires_max_tokens(http: httpx.Client) -> None:
    r = http.post("/v1/messages", json={"model": CLAUDE, "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 400
    body = r.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in body["error"]["message"]


# --------------------------------------------------------------------------- behaviours


def test_error_behavior_is_consumed_once(oai: openai.OpenAI, claude: anthropic.Anthropic, http: httpx.Client) -> None:
    queue(http, {"kind": "error", "status": 500})
    with pytest.raises(openai.InternalServerError) as err:
        oai.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    assert err.value.status_code == 500 and err.value.body["type"] == "server_error"
    assert err.value.response.headers["x-request-id"].startswith("req_")
    assert oai.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}]).choices

    queue(http, {"kind": "error", "status": 429, "headers": {"retry-after": "7"}})
    with pytest.raises(anthropic.RateLimitError) as limited:
        claude.messages.create(model=CLAUDE, max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert limited.value.response.headers["retry-after"] == "7"
    assert limited.value.body["error"]["type"] == "rate_limit_error"

    queue(http, {"kind": "error", "status": 418, "body": {"error": {"message": "teapot", "type": "x", "param": None, "code": "t"}}})
    r = http.post("/v1/chat/completions", json=chat_body())
    assert r.status_code == 418 and r.json()["error"]["code"] == "t"


def test_slow_behavior_triggers_client_timeout(http: httpx.Client) -> None:
    queue(http, {"kind": "slow", "delay_ms": 1500})
    start = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        http.post("/v1/chat/completions", json=chat_body(), timeout=0.3)
    assert time.monotonic() - start < 1.0
    assert http.post("/v1/chat/completions", json=chat_body()).status_code == 200


def test_drop_closes_connection_without_response(oai: openai.OpenAI, http: httpx.Client) -> None:
    queue(http, {"kind": "drop"}, {"kind": "drop"})
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        http.post("/v1/chat/completions", json=chat_body())
    with pytest.raises(openai.APIConnectionError):
        oai.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    assert http.post("/v1/chat/completions", json=chat_body()).status_code == 200


def test_drop_mid_stream(http: httpx.Client) -> None:
    before = http.get("/_fake/stats").json()
    queue(http, {"kind": "drop_mid_stream", "after_chunks": 2})
    lines: list[str] = []
    with pytest.raises(httpx.RemoteProtocolError):
        with http.stream("POST", "/v1/chat/completions", json=chat_body(stream=True)) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                if line:
                    lines.append(line)
    assert len(lines) == 2 and all(line.startswith("data: {") for line in lines)
    after = http.get("/_fake/stats").json()
    assert after["streams_dropped"] == before["streams_dropped"] + 1
    assert after["streams_completed"] == before["streams_completed"]


def test_garbage_and_reply(oai: openai.OpenAI, claude: anthropic.Anthropic, http: httpx.Client) -> None:
    queue(http, {"kind": "garbage"})
    r = http.post("/v1/chat/completions", json=chat_body())
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    with pytest.raises(ValueError):
        json.loads(r.content)

    queue(http, {"kind": "reply", "text": "scripted answer"}, {"kind": "reply", "text": "streamed scripted answer"})
    chat = oai.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    assert chat.choices[0].message.content == "scripted answer"
    with claude.messages.stream(model=CLAUDE, max_tokens=5, messages=[{"role": "user", "content": "x"}]) as stream:
        assert "".join(stream.text_stream) == "streamed scripted answer"


def test_header_behavior_wins_over_queue_and_path_filter(oai: openai.OpenAI, http: httpx.Client) -> None:
    queue(http, {"kind": "error", "status": 503, "path": "/v1/messages"}, {"kind": "error", "status": 500})
    r = http.post(
        "/v1/chat/completions", json=chat_body(), headers={"x-fake-behavior": json.dumps({"kind": "reply", "text": "hdr"})}
    )
    assert r.json()["choices"][0]["message"]["content"] == "hdr"
    pending = http.get("/_fake/behaviors").json()["data"]
    assert [b["status"] for b in pending] == [503, 500]
    # the chat request skips the behaviour reserved for /v1/messages
    assert http.post("/v1/chat/completions", json=chat_body()).status_code == 500
    assert http.post("/v1/messages", json={"model": CLAUDE, "max_tokens": 5, "messages": []}).status_code == 503
    assert http.delete("/_fake/behaviors").status_code == 200
    bad = http.post("/_fake/behaviors", json={"behaviors": [{"kind": "explode"}]})
    assert bad.status_code == 400


def test_client_closing_slow_stream_counts_as_cancelled(http: httpx.Client) -> None:
    before = http.get("/_fake/stats").json()
    queue(http, {"kind": "slow_stream", "delay_ms": 300})
    with http.stream("POST", "/v1/chat/completions", json=chat_body(stream=True)) as r:
        first = next(r.iter_lines())
        assert first.startswith("data: ")
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        stats = http.get("/_fake/stats").json()
        if stats["streams_cancelled"] > before["streams_cancelled"]:
            break
        time.sleep(0.02)
    assert stats["streams_cancelled"] == before["streams_cancelled"] + 1
    assert stats["streams_started"] == before["streams_started"] + 1
    assert stats["streams_completed"] == before["streams_completed"]


def test_slow_stream_still_completes(http: httpx.Client) -> None:
    queue(http, {"kind": "slow_stream", "delay_ms": 20})
    start = time.monotonic()
    r = http.post("/v1/chat/completions", json=chat_body("abcdefghijkl", stream=True))
    elapsed = time.monotonic() - start
    events = sse_events(r.text)
    assert events[-1][1] == "[DONE]"
    assert elapsed >= 0.02 * (len(events) - 1) * 0.9


# --------------------------------------------------------------------------- control plane


def test_request_recording(oai: openai.OpenAI, http: httpx.Client) -> None:
    assert http.delete("/_fake/requests").status_code == 200
    oai.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "recorded"}])
    oai.files.create(file=("notes.txt", b"binary\x00bytes"), purpose="assistants")
    http.get("/_fake/stats")
    data = http.get("/_fake/requests").json()["data"]
    assert [(d["method"], d["path"]) for d in data] == [("POST", "/v1/chat/completions"), ("POST", "/v1/files")]
    chat, upload = data
    assert chat["headers"]["authorization"] == "Bearer sk-test"
    assert chat["json"]["messages"] == [{"role": "user", "content": "recorded"}]
    assert upload["json"] is None and b"binary\x00bytes" in base64.b64decode(upload["body_b64"])
    assert upload["headers"]["content-type"].startswith("multipart/form-data")

    for _ in range(205):
        http.get("/v1/models")
    assert len(http.get("/_fake/requests").json()["data"]) == 200


def test_server_lifecycle() -> None:
    server = UpstreamServer().start()
    port = server.port
    assert server.url == f"http://127.0.0.1:{port}"
    assert server.openai_base_url == server.url + "/v1" and server.anthropic_base_url == server.url
    assert httpx.get(server.url + "/_fake/stats").json()["requests"] == 0
    server.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_stream_coalesce_option_keeps_the_events() -> None:
    """Driven in process through ASGI: coalescing changes the writes, not the bytes."""

    async def body_writes(app: object) -> list[bytes]:
        request = json.dumps(chat_body("coalesce me please", stream=True, model="m")).encode()
        scope = {"type": "http", "method": "POST", "path": "/v1/chat/completions", "headers": [], "query_string": b""}
        done = asyncio.Event()
        writes: list[bytes] = []

        async def receive() -> dict:
            if not writes:
                return {"type": "http.request", "body": request, "more_body": False}
            await done.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            if message["type"] == "http.response.body":
                writes.append(message["body"])
                if not message["more_body"]:
                    done.set()

        await app(scope, receive, send)  # type: ignore[operator]
        return writes

    one = asyncio.run(body_writes(create_app()))
    grouped = asyncio.run(body_writes(create_app(stream_coalesce=100)))
    assert len(one) > 5 and len(grouped) == 1

    def strip_ids(raw: bytes) -> list[dict]:
        out = []
        for _, data in sse_events(raw.decode())[:-1]:
            obj = json.loads(data)
            obj.pop("id"), obj.pop("created")
            out.append(obj)
        return out

    assert strip_ids(b"".join(one)) == strip_ids(grouped[0])


def test_command_line_runs_in_foreground() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.demo.upstream", "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        url = line.strip().rsplit(" ", 1)[-1]
        assert url.startswith("http://127.0.0.1:")
        deadline = time.monotonic() + 10
        while True:
            try:
                r = httpx.post(url + "/v1/chat/completions", json=chat_body("cli"))
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert r.json()["choices"][0]["message"]["content"] == "echo: cli"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()
    assert proc.returncode in (0, -15)  # uvicorn re-raises SIGTERM after a graceful shutdown
