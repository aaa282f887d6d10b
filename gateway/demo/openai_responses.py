"""The fake provider's OpenAI Responses API (``/v1/responses``), plain and streamed.

Part of the fake upstream (see :mod:`gateway.demo.upstream`).
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import orjson

from gateway.demo.sse import HOLE, HOLE_JSON, SEQ_HOLE, SEQ_HOLE_JSON, Stream, split_pieces, sse_event
from gateway.demo.wire import Req, bad_request, new_id, text_of, token_count


class ResponsesEndpoint:
    """``POST /v1/responses`` (a part of ``FakeUpstream``)."""

    stream_piece_chars: int
    stream_max_pieces: int

    def _responses(self, req: Req) -> Any:
        fmt, reply = req.fmt, req.reply
        data, model = req.fields("input")
        inp = data["input"]
        instructions = data.get("instructions")
        input_tokens = token_count(instructions) if isinstance(instructions, str) else 0
        last_user = ""
        if isinstance(inp, str):
            last_user = inp
            input_tokens += token_count(inp)
        elif isinstance(inp, list):
            for item in inp:
                if not isinstance(item, dict):
                    continue
                if item.get("type", "message") == "message":
                    text = text_of(item.get("content"))
                    input_tokens += token_count(text) + 3
                    if item.get("role") == "user":
                        last_user = text
                elif item.get("type") == "function_call_output":
                    text = str(item.get("output", ""))
                    input_tokens += token_count(text)
                    last_user = text
        else:
            raise bad_request(fmt, "Invalid type for 'input'.", "input", "invalid_type")
        text = reply if reply is not None else "echo: " + last_user
        output_tokens = token_count(text)
        created = int(time.time())
        rid = new_id("resp_")
        mid = new_id("msg_")
        usage = {
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input_tokens + output_tokens,
        }
        part = {"type": "output_text", "annotations": [], "logprobs": [], "text": text}
        item = {"id": mid, "type": "message", "status": "completed", "content": [part], "role": "assistant"}

        def response(status: str, output: list[Any], use: Any) -> dict[str, Any]:
            return {
                "id": rid,
                "object": "response",
                "created_at": created,
                "status": status,
                "background": False,
                "completed_at": created if status == "completed" else None,
                "error": None,
                "incomplete_details": None,
                "instructions": instructions if isinstance(instructions, (str, list)) else None,
                "max_output_tokens": data.get("max_output_tokens"),
                "max_tool_calls": None,
                "model": model,
                "output": output,
                "parallel_tool_calls": True,
                "previous_response_id": data.get("previous_response_id"),
                "reasoning": {"effort": None, "summary": None},
                "service_tier": "default",
                "store": bool(data.get("store", True)),
                "temperature": data.get("temperature", 1.0),
                "text": {"format": {"type": "text"}, "verbosity": "medium"},
                "tool_choice": "auto",
                "tools": [],
                "top_logprobs": 0,
                "top_p": data.get("top_p", 1.0),
                "truncation": "disabled",
                "usage": use,
                "user": None,
                "metadata": data.get("metadata") or {},
            }

        if not data.get("stream"):
            return 200, response("completed", [item], usage)

        seq = itertools.count()
        events = [
            sse_event("response.created", {"type": "response.created", "sequence_number": next(seq), "response": response("in_progress", [], None)}),
            sse_event("response.in_progress", {"type": "response.in_progress", "sequence_number": next(seq), "response": response("in_progress", [], None)}),
            sse_event(
                "response.output_item.added",
                {
                    "type": "response.output_item.added",
                    "sequence_number": next(seq),
                    "output_index": 0,
                    "item": {"id": mid, "type": "message", "status": "in_progress", "content": [], "role": "assistant"},
                },
            ),
            sse_event(
                "response.content_part.added",
                {
                    "type": "response.content_part.added",
                    "sequence_number": next(seq),
                    "item_id": mid,
                    "output_index": 0,
                    "content_index": 0,
                    "part": {"type": "output_text", "annotations": [], "logprobs": [], "text": ""},
                },
            ),
        ]
        template = sse_event(
            "response.output_text.delta",
            {
                "type": "response.output_text.delta",
                "sequence_number": SEQ_HOLE,
                "item_id": mid,
                "output_index": 0,
                "content_index": 0,
                "delta": HOLE,
                "logprobs": [],
            },
        )
        pre, rest = template.split(SEQ_HOLE_JSON, 1)
        mid_part, post = rest.split(HOLE_JSON, 1)
        for piece in split_pieces(text, self.stream_piece_chars, self.stream_max_pieces):
            events.append(pre + str(next(seq)).encode() + mid_part + orjson.dumps(piece) + post)
        events += [
            sse_event(
                "response.output_text.done",
                {
                    "type": "response.output_text.done",
                    "sequence_number": next(seq),
                    "item_id": mid,
                    "output_index": 0,
                    "content_index": 0,
                    "text": text,
                    "logprobs": [],
                },
            ),
            sse_event(
                "response.content_part.done",
                {
                    "type": "response.content_part.done",
                    "sequence_number": next(seq),
                    "item_id": mid,
                    "output_index": 0,
                    "content_index": 0,
                    "part": part,
                },
            ),
            sse_event(
                "response.output_item.done",
                {"type": "response.output_item.done", "sequence_number": next(seq), "output_index": 0, "item": item},
            ),
            sse_event(
                "response.completed",
                {"type": "response.completed", "sequence_number": next(seq), "response": response("completed", [item], usage)},
            ),
        ]
        return Stream(events)
