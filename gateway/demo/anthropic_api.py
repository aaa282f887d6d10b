"""The fake provider's Anthropic endpoints: Messages (plain, streamed, tool use) and token counting.

Part of the fake upstream (see :mod:`gateway.demo.upstream`).
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.demo.sse import HOLE, Stream, fill, split_pieces, sse_event
from gateway.demo.wire import Req, bad_request, has_tool_result, missing, new_id, text_of, token_count, tool_arguments


class AnthropicEndpoints:
    """``/v1/messages`` and ``/v1/messages/count_tokens`` (a part of ``FakeUpstream``)."""

    stream_piece_chars: int
    stream_max_pieces: int

    def _messages(self, req: Req) -> Any:
        fmt, reply = req.fmt, req.reply
        data, model = req.fields("max_tokens")
        if not isinstance(data.get("max_tokens"), int):
            raise bad_request(fmt, "max_tokens: Input should be a valid integer")
        messages = data.get("messages")
        if not isinstance(messages, list) or not messages:
            raise missing(fmt, "messages")
        input_tokens = token_count(text_of(data.get("system"))) if data.get("system") else 0
        last_user = ""
        last_is_tool_result = False
        for m in messages:
            if isinstance(m, dict):
                content = m.get("content")
                text = text_of(content)
                input_tokens += token_count(text) + 3
                if m.get("role") == "user":
                    last_user = text
                    last_is_tool_result = has_tool_result(content)
        text = reply if reply is not None else "echo: " + last_user
        tool = None
        tools = data.get("tools")
        choice = data.get("tool_choice")
        if (
            reply is None
            and not last_is_tool_result
            and isinstance(tools, list)
            and tools
            and "weather" in last_user.lower()
            and not (isinstance(choice, dict) and choice.get("type") == "none")
        ):
            named = [t for t in tools if isinstance(t, dict) and t.get("name")]
            if named:
                wanted = choice.get("name") if isinstance(choice, dict) and choice.get("type") == "tool" else None
                chosen = next((t for t in named if t["name"] == wanted), None) or next(
                    (t for t in named if "weather" in str(t["name"]).lower()), named[0]
                )
                tool = (str(chosen["name"]), tool_arguments(chosen.get("input_schema")))
        mid = new_id("msg_")
        if tool is not None:
            tool_id = new_id("toolu_")
            args_json = orjson.dumps(tool[1]).decode()
            output_tokens = token_count(args_json) + 10
            stop_reason = "tool_use"
            block: dict[str, Any] = {"type": "tool_use", "id": tool_id, "name": tool[0], "input": tool[1]}
        else:
            output_tokens = token_count(text)
            stop_reason = "end_turn"
            block = {"type": "text", "text": text}
        usage = {
            "input_tokens": input_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": output_tokens,
            "service_tier": "standard",
        }
        if not data.get("stream"):
            return 200, {
                "id": mid,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [block],
                "stop_reason": stop_reason,
                "stop_sequence": None,
                "usage": usage,
            }
        start_usage = dict(usage)
        start_usage["output_tokens"] = 1
        events = [
            sse_event(
                "message_start",
                {
                    "type": "message_start",
                    "message": {
                        "id": mid,
                        "type": "message",
                        "role": "assistant",
                        "model": model,
                        "content": [],
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": start_usage,
                    },
                },
            )
        ]
        if tool is not None:
            opened: dict[str, Any] = {"type": "tool_use", "id": block["id"], "name": tool[0], "input": {}}
            delta, streamed = {"type": "input_json_delta", "partial_json": HOLE}, args_json
        else:
            opened = {"type": "text", "text": ""}
            delta, streamed = {"type": "text_delta", "text": HOLE}, text
        events.append(sse_event("content_block_start", {"type": "content_block_start", "index": 0, "content_block": opened}))
        events.append(sse_event("ping", {"type": "ping"}))
        events += fill(
            sse_event("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}),
            split_pieces(streamed, self.stream_piece_chars, self.stream_max_pieces),
        )
        events.append(sse_event("content_block_stop", {"type": "content_block_stop", "index": 0}))
        events.append(
            sse_event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                    "usage": {"output_tokens": output_tokens},
                },
            )
        )
        events.append(sse_event("message_stop", {"type": "message_stop"}))
        return Stream(events)

    def _count_tokens(self, req: Req) -> Any:
        fmt, data = req.fmt, req.json()
        messages = data.get("messages")
        if not isinstance(messages, list):
            raise missing(fmt, "messages")
        total = token_count(text_of(data.get("system"))) if data.get("system") else 0
        for m in messages:
            if isinstance(m, dict):
                total += token_count(text_of(m.get("content"))) + 3
        return 200, {"input_tokens": total}
