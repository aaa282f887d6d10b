"""The fake provider's OpenAI endpoints: chat completions, legacy completions, embeddings.

Part of the fake upstream (see :mod:`gateway.demo.upstream`).
"""

from __future__ import annotations

import array
import base64
import hashlib
import sys
import time
from typing import Any

import orjson

from gateway.demo.sse import HOLE, Stream, fill, split_pieces, sse_data
from gateway.demo.wire import Req, bad_request, missing, new_id, text_of, token_count, tool_arguments

_SYSTEM_FINGERPRINT = "fp_5h0h1fake"


def _embedding(seed: bytes, dims: int) -> array.array:
    """A deterministic unit vector derived from a hash of the input."""
    raw = bytearray()
    block = 0
    while len(raw) < dims * 2:
        raw += hashlib.blake2b(seed, digest_size=64, salt=block.to_bytes(8, "little")).digest()
        block += 1
    values = [(int.from_bytes(raw[2 * i : 2 * i + 2], "little") / 32767.5) - 1.0 for i in range(dims)]
    norm = sum(v * v for v in values) ** 0.5 or 1.0
    return array.array("f", [v / norm for v in values])


class OpenAIEndpoints:
    """``/v1/chat/completions``, ``/v1/completions`` and ``/v1/embeddings`` (a part of ``FakeUpstream``)."""

    embedding_dimensions: int
    stream_piece_chars: int
    stream_max_pieces: int

    def _chat(self, req: Req) -> Any:
        fmt, reply = req.fmt, req.reply
        data, model = req.fields()
        messages = data.get("messages")
        if not isinstance(messages, list) or not messages:
            raise missing(fmt, "messages")
        prompt_tokens = 0
        last_user = ""
        for m in messages:
            if isinstance(m, dict):
                text = text_of(m.get("content"))
                prompt_tokens += token_count(text) + 3
                if m.get("role") == "user":
                    last_user = text
        last = messages[-1] if isinstance(messages[-1], dict) else {}
        tool_call = None
        tools = data.get("tools")
        if reply is not None:
            text = reply
        elif last.get("role") == "tool":
            text = "echo: " + text_of(last.get("content"))
        else:
            text = "echo: " + last_user
            if tools and isinstance(tools, list) and "weather" in last_user.lower() and data.get("tool_choice") != "none":
                tool_call = self._pick_openai_tool(tools, data.get("tool_choice"))
        created = int(time.time())
        cid = new_id("chatcmpl-")
        if tool_call is not None:
            name, args = tool_call
            completion_tokens = token_count(args) + 5
        else:
            completion_tokens = token_count(text)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }
        call_id = new_id("call_") if tool_call is not None else ""
        if not data.get("stream"):
            if tool_call is not None:
                message: dict[str, Any] = {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"id": call_id, "type": "function", "function": {"name": tool_call[0], "arguments": tool_call[1]}}
                    ],
                    "refusal": None,
                    "annotations": [],
                }
                finish = "tool_calls"
            else:
                message = {"role": "assistant", "content": text, "refusal": None, "annotations": []}
                finish = "stop"
            return 200, {
                "id": cid,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
                "usage": usage,
                "service_tier": "default",
                "system_fingerprint": _SYSTEM_FINGERPRINT,
            }

        opts = data.get("stream_options")
        include_usage = isinstance(opts, dict) and bool(opts.get("include_usage"))
        head: dict[str, Any] = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "service_tier": "default",
            "system_fingerprint": _SYSTEM_FINGERPRINT,
        }

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            obj = dict(head)
            obj["choices"] = [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
            if include_usage:
                obj["usage"] = None
            return sse_data(obj)

        events: list[bytes] = []
        if tool_call is not None:
            events.append(
                chunk(
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {"index": 0, "id": call_id, "type": "function", "function": {"name": tool_call[0], "arguments": ""}}
                        ],
                        "refusal": None,
                    }
                )
            )
            events += fill(
                chunk({"tool_calls": [{"index": 0, "function": {"arguments": HOLE}}]}),
                split_pieces(tool_call[1], self.stream_piece_chars, self.stream_max_pieces),
            )
            events.append(chunk({}, "tool_calls"))
        else:
            events.append(chunk({"role": "assistant", "content": "", "refusal": None}))
            if text:
                events += fill(
                    chunk({"content": HOLE}), split_pieces(text, self.stream_piece_chars, self.stream_max_pieces)
                )
            events.append(chunk({}, "stop"))
        if include_usage:
            obj = dict(head)
            obj["choices"] = []
            obj["usage"] = usage
            events.append(sse_data(obj))
        events.append(b"data: [DONE]\n\n")
        return Stream(events)

    @staticmethod
    def _pick_openai_tool(tools: list[Any], tool_choice: Any) -> tuple[str, str] | None:
        candidates = [t.get("function") for t in tools if isinstance(t, dict) and isinstance(t.get("function"), dict)]
        if not candidates:
            return None
        chosen = None
        if isinstance(tool_choice, dict) and isinstance(tool_choice.get("function"), dict):
            wanted = tool_choice["function"].get("name")
            chosen = next((f for f in candidates if f.get("name") == wanted), None)
        if chosen is None:
            chosen = next((f for f in candidates if "weather" in str(f.get("name", "")).lower()), candidates[0])
        return str(chosen.get("name", "tool")), orjson.dumps(tool_arguments(chosen.get("parameters"))).decode()

    # ------------------------------------------------------------------ OpenAI: legacy completions

    def _completions(self, req: Req) -> Any:
        reply = req.reply
        data, model = req.fields("prompt")
        prompt = data["prompt"]
        if isinstance(prompt, str):
            prompts = [prompt]
        elif isinstance(prompt, list) and prompt and all(isinstance(p, int) for p in prompt):
            prompts = [" ".join(map(str, prompt))]
        elif isinstance(prompt, list):
            prompts = [p if isinstance(p, str) else " ".join(map(str, p)) if isinstance(p, list) else str(p) for p in prompt]
        else:
            prompts = [str(prompt)]
        texts = [reply if reply is not None else "echo: " + p for p in prompts]
        prompt_tokens = sum(token_count(p) for p in prompts)
        completion_tokens = sum(token_count(t) for t in texts)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        cid = new_id("cmpl-")
        created = int(time.time())
        if not data.get("stream"):
            return 200, {
                "id": cid,
                "object": "text_completion",
                "created": created,
                "model": model,
                "system_fingerprint": _SYSTEM_FINGERPRINT,
                "choices": [
                    {"text": t, "index": i, "logprobs": None, "finish_reason": "stop"} for i, t in enumerate(texts)
                ],
                "usage": usage,
            }
        opts = data.get("stream_options")
        include_usage = isinstance(opts, dict) and bool(opts.get("include_usage"))
        events: list[bytes] = []

        def chunk(i: int, text: str, finish: str | None) -> bytes:
            obj: dict[str, Any] = {
                "id": cid,
                "object": "text_completion",
                "created": created,
                "model": model,
                "system_fingerprint": _SYSTEM_FINGERPRINT,
                "choices": [{"text": text, "index": i, "logprobs": None, "finish_reason": finish}],
            }
            if include_usage:
                obj["usage"] = None
            return sse_data(obj)

        for i, t in enumerate(texts):
            events += fill(chunk(i, HOLE, None), split_pieces(t, self.stream_piece_chars, self.stream_max_pieces))
            events.append(chunk(i, "", "stop"))
        if include_usage:
            events.append(
                sse_data(
                    {
                        "id": cid,
                        "object": "text_completion",
                        "created": created,
                        "model": model,
                        "system_fingerprint": _SYSTEM_FINGERPRINT,
                        "choices": [],
                        "usage": usage,
                    }
                )
            )
        events.append(b"data: [DONE]\n\n")
        return Stream(events)

    def _embeddings(self, req: Req) -> Any:
        fmt = req.fmt
        data, model = req.fields("input")
        inp = data["input"]
        if isinstance(inp, str):
            inputs: list[Any] = [inp]
        elif isinstance(inp, list) and inp and all(isinstance(x, int) for x in inp):
            inputs = [inp]
        elif isinstance(inp, list) and inp:
            inputs = inp
        else:
            raise bad_request(fmt, "'$.input' is invalid.", "input", "invalid_value")
        dims = data.get("dimensions") or self.embedding_dimensions
        if not isinstance(dims, int) or not 1 <= dims <= 4096:
            raise bad_request(fmt, "Invalid value for 'dimensions'.", "dimensions", "invalid_value")
        as_b64 = data.get("encoding_format") == "base64"
        out = []
        tokens = 0
        for i, x in enumerate(inputs):
            if isinstance(x, str):
                if not x:
                    raise bad_request(fmt, f"'$.input[{i}]' is invalid.", "input", "invalid_value")
                seed = x.encode()
                tokens += token_count(x)
            elif isinstance(x, list):
                seed = orjson.dumps(x)
                tokens += len(x)
            else:
                raise bad_request(fmt, f"'$.input[{i}]' is invalid.", "input", "invalid_value")
            vec = _embedding(seed, dims)
            if as_b64:
                if sys.byteorder != "little":
                    vec.byteswap()
                value: Any = base64.b64encode(vec.tobytes()).decode()
            else:
                value = vec.tolist()
            out.append({"object": "embedding", "index": i, "embedding": value})
        return 200, {"object": "list", "data": out, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
