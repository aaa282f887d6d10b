"""Every piece of text a model would see is collected, located as the client sent it."""

from __future__ import annotations

from gateway.extract import extract, extract_jsonl


def located(payload: dict) -> dict[str, str]:  # type: ignore[type-arg]
    return {p.location: p.text for p in extract(payload).parts}


def test_chat_messages_tools_and_tool_calls() -> None:
    payload = {
        "model": "gpt-4o-mini", "temperature": 0.2, "stream": True,
        "messages": [
            {"role": "developer", "content": "You review designs."},
            {"role": "user", "content": [{"type": "text", "text": "Compare these"},
                                         {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"q": "Aurora"}'}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "Aurora is the code name"},
        ],
        "tools": [{"type": "function", "function": {"name": "lookup", "description": "Find internal projects",
                                                    "parameters": {"type": "object", "properties": {
                                                        "q": {"type": "string", "description": "query"}}}}}],
        "metadata": {"ticket": "INC-42"},
    }
    found = located(payload)
    assert found["messages[0].content"] == "You review designs."
    assert found["messages[1].content[0].text"] == "Compare these"
    assert found["messages[2].tool_calls[0].function.arguments"] == '{"q": "Aurora"}'
    assert found["messages[3].content"] == "Aurora is the code name"
    assert found["tools[0].function.description"] == "Find internal projects"
    assert found["tools[0].function.parameters.properties.q.description"] == "query"
    assert found["metadata.ticket"] == "INC-42"
    assert "model" not in found and "messages[0].role" not in found and "messages[3].tool_call_id" not in found
    roles = {p.location: p.role for p in extract(payload).parts}
    assert roles["messages[0].content"] == "developer" and roles["messages[3].content"] == "tool"
    assert [(u.location, u.kind) for u in extract(payload).unscannable] == [("messages[1].content[1]", "image")]


def test_anthropic_system_blocks_documents_and_tool_results() -> None:
    payload = {
        "model": "claude-sonnet-4-6", "max_tokens": 100,
        "system": [{"type": "text", "text": "社外秘の設計書を扱います。", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": [
            {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "契約書の本文"}},
            {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"}},
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "結果"}]},
            {"type": "input_audio", "input_audio": {"data": "UklGR", "format": "wav"}},
        ]}],
    }
    found = located(payload)
    assert found["system[0].text"] == "社外秘の設計書を扱います。"
    assert found["messages[0].content[0].source.data"] == "契約書の本文"
    assert found["messages[0].content[2].content[0].text"] == "結果"
    kinds = {u.location: u.kind for u in extract(payload).unscannable}
    assert kinds == {"messages[0].content[1]": "document", "messages[0].content[3]": "audio"}


def test_responses_completions_and_embeddings_inputs() -> None:
    assert located({"model": "m", "instructions": "Be brief", "input": "hello"}) == {
        "instructions": "Be brief", "input": "hello"}
    assert located({"model": "m", "input": [{"role": "user", "content": [
        {"type": "input_text", "text": "part one"}]}]}) == {"input[0].content[0].text": "part one"}
    assert located({"model": "m", "prompt": ["a", "b"]}) == {"prompt[0]": "a", "prompt[1]": "b"}
    tokens = extract({"model": "m", "input": [[1, 2, 3], "text"]})
    assert [(u.location, u.kind) for u in tokens.unscannable] == [("input[0]", "tokens")]
    assert [p.location for p in tokens.parts] == ["input[1]"]


def test_training_jsonl_line_by_line() -> None:
    content = (b'{"messages": [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"}]}\n'
               b"not json\n\n"
               b'{"prompt": "p", "completion": "c"}\n')
    result = extract_jsonl(content)
    assert {p.location: p.text for p in result.parts} == {
        "file[0].messages[0].content": "q1", "file[0].messages[1].content": "a1",
        "file[3].prompt": "p", "file[3].completion": "c"}
    assert [(u.location, u.kind) for u in result.unscannable] == [("file[1]", "file")]
