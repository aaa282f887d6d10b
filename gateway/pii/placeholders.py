"""Reversible redaction: values replaced by numbered placeholders before forwarding, put back into the answer.

`[PERSON_1]`, `[PHONE_NUMBER_2]`: the model can still follow the sentence and
refer to the person, and the employee reads the real name in the answer. The
mapping lives in a `Placeholders` object that the request holds in memory and
drops when it ends; it is never logged, audited or stored. Streamed answers are
restored event by event; a placeholder cut across two events is held back
until it is complete.
"""

from __future__ import annotations

import copy
import re
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import orjson

from gateway.domain import Endpoint, Match
from gateway.redact import replace_spans
from gateway.sse import event_fields, split_events

PLACEHOLDER = re.compile(r"\[([A-Z][A-Z_]*)_(\d+)\]")
_PARTIAL = re.compile(r"\[[A-Z_]*\d*$")
MAX_PLACEHOLDER = 40
JSON_SOURCE_KEYS = frozenset({"arguments", "partial_json"})  # strings that hold JSON text, not prose


class Placeholders:
    """The values of one request, numbered per entity; the same value always gets the same placeholder."""

    def __init__(self) -> None:
        self._by_value: dict[tuple[str, str], str] = {}
        self._values: dict[str, str] = {}
        self._counts: dict[str, int] = defaultdict(int)

    def __bool__(self) -> bool:
        return bool(self._values)

    def placeholder(self, entity: str, value: str) -> str:
        """The placeholder standing for `value`, new or already given."""
        key = (entity, value)
        found = self._by_value.get(key)
        if found is None:
            self._counts[entity] += 1
            found = f"[{entity}_{self._counts[entity]}]"
            self._by_value[key] = found
            self._values[found] = value
        return found

    def restore(self, text: str, quoted: bool = False) -> str:
        """`text` with every placeholder of this request replaced by its value; unknown ones stay.

        `quoted`: `text` is JSON source (tool-call arguments), so values go in JSON-escaped."""
        if "[" not in text:
            return text

        def value(found: re.Match[str]) -> str:
            original = self._values.get(found.group(0))
            if original is None:
                return found.group(0)
            return orjson.dumps(original).decode()[1:-1] if quoted else original

        return PLACEHOLDER.sub(value, text)

    def restore_json(self, node: Any, quoted: bool = False) -> Any:
        """Every string in a parsed JSON document restored, in place where it can be; strings under
        `arguments` and `partial_json` are JSON source themselves and get escaped values."""
        if isinstance(node, str):
            return self.restore(node, quoted)
        if isinstance(node, list):
            for index, value in enumerate(node):
                node[index] = self.restore_json(value, quoted)
        elif isinstance(node, dict):
            for key, value in node.items():
                node[key] = self.restore_json(value, quoted or key in JSON_SOURCE_KEYS)
        return node


def redact_payload(payload: dict[str, Any], matches: Iterable[Match], reversible: Callable[[Match], bool],
                   irreversible: Callable[[Match, int], str]) -> Placeholders:
    """Replace every matched span in place: reversible ones by numbered placeholders, the others by
    `irreversible(match, n)`. Overlapping spans merge; the first match of a merged span decides."""
    placeholders = Placeholders()

    def replacement(match: Match, value: str, number: int) -> str:
        if reversible(match):
            return placeholders.placeholder(match.entity or "PII", value)
        return irreversible(match, number)

    replace_spans(payload, matches, replacement)
    return placeholders


# -- streams ---------------------------------------------------------------------------------------------------

def _text_slots(endpoint: Endpoint, data: dict[str, Any]) -> list[tuple[Any, Any, str]]:
    """Where a streamed event carries answer text: (holder, key, stream key) for each delta. A stream
    key starting with `json:` holds JSON source (tool-call arguments): its values go in escaped."""
    if endpoint is Endpoint.MESSAGES:
        delta = data.get("delta") if data.get("type") == "content_block_delta" else None
        if isinstance(delta, dict) and isinstance(delta.get("text"), str):
            return [(delta, "text", f"block{data.get('index', 0)}")]
        if isinstance(delta, dict) and isinstance(delta.get("partial_json"), str):
            return [(delta, "partial_json", f"json:block{data.get('index', 0)}")]
        return []
    if endpoint is Endpoint.RESPONSES:
        kind = data.get("type")
        where = f"item{data.get('output_index', 0)}.{data.get('content_index', 0)}"
        if kind == "response.output_text.delta" and isinstance(data.get("delta"), str):
            return [(data, "delta", where)]
        if kind == "response.function_call_arguments.delta" and isinstance(data.get("delta"), str):
            return [(data, "delta", "json:" + where)]
        return []
    slots = []
    for choice in data.get("choices") or []:
        if not isinstance(choice, dict):
            continue
        key = f"choice{choice.get('index', 0)}"
        if isinstance(choice.get("text"), str):
            slots.append((choice, "text", key))
        delta = choice.get("delta")
        if isinstance(delta, dict) and isinstance(delta.get("content"), str):
            slots.append((delta, "content", key))
        for call in (delta.get("tool_calls") or []) if isinstance(delta, dict) else []:
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict) and isinstance(function.get("arguments"), str):
                slots.append((function, "arguments", f"json:{key}.call{call.get('index', 0)}"))
    return slots


class StreamRestorer:
    """Rewrites an SSE stream so that the client reads values where the model wrote placeholders."""

    def __init__(self, endpoint: Endpoint, placeholders: Placeholders) -> None:
        self.endpoint = endpoint
        self.placeholders = placeholders
        self._buffer = b""
        self._pending: dict[str, str] = {}
        self._template: dict[str, tuple[str | None, dict[str, Any], list[Any]]] = {}

    async def wrap(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """The stream, restored; complete events pass as soon as they are complete."""
        async for chunk in chunks:
            out = self.feed(chunk)
            if out:
                yield out
        rest = self.flush()
        if rest:
            yield rest

    def feed(self, chunk: bytes) -> bytes:
        events, self._buffer = split_events(self._buffer + chunk)
        return b"".join([self._event(event) for event in events])

    def flush(self) -> bytes:
        """What is still held back, as events of its own, then any incomplete trailing bytes."""
        rest, self._buffer = self._buffer, b""
        return self._release() + rest

    def _event(self, raw: bytes) -> bytes:
        name, data_line = event_fields(raw)
        if not data_line or data_line == b"[DONE]":
            return self._release() + raw
        try:
            data = orjson.loads(data_line)
        except orjson.JSONDecodeError:
            return self._release() + raw
        if not isinstance(data, dict):
            return raw
        slots = _text_slots(self.endpoint, data)
        if not slots:
            return self._release() + self._encode(name, self.placeholders.restore_json(data))
        for holder, key, stream in slots:
            text = self._pending.pop(stream, "") + holder[key]
            cut = _PARTIAL.search(text)
            if cut is not None and len(text) - cut.start() <= MAX_PLACEHOLDER:
                self._pending[stream] = text[cut.start():]
                text = text[:cut.start()]
            holder[key] = self.placeholders.restore(text, quoted=stream.startswith("json:"))
            self._template[stream] = (name, data, [holder, key])
        return self._encode(name, data)

    def _release(self) -> bytes:
        """Held-back text that turned out not to be a placeholder, sent as a delta of its own."""
        out = []
        for stream, text in list(self._pending.items()):
            name, data, (holder, key) = self._template[stream]
            copied = copy.deepcopy(data)
            for choice in copied.get("choices") or [] if self.endpoint is not Endpoint.MESSAGES else []:
                delta = choice.get("delta") if isinstance(choice, dict) else None
                if isinstance(delta, dict) and isinstance(delta.get("tool_calls"), list):
                    # a call's id and name come once; a later delta carries only its index and arguments
                    delta["tool_calls"] = [{"index": c.get("index", 0), "function": {"arguments": ""}}
                                           for c in delta["tool_calls"] if isinstance(c, dict)]
            for c_holder, c_key, c_stream in _text_slots(self.endpoint, copied):
                c_holder[c_key] = self.placeholders.restore(text, c_stream.startswith("json:")) \
                    if c_stream == stream else ""
            out.append(self._encode(name, copied))
        self._pending.clear()
        return b"".join(out)

    @staticmethod
    def _encode(name: str | None, data: dict[str, Any]) -> bytes:
        prefix = f"event: {name}\n".encode() if name else b""
        return prefix + b"data: " + orjson.dumps(data) + b"\n\n"
