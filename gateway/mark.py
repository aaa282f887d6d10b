"""Article 4(3) marking: answers generated from confidential input are confidential too.

A marked answer carries `X-Confidential` headers and a top-level `confidentiality`
field: in the JSON body, or, in a stream, on the event that closes the answer
(chat chunk with `finish_reason`, Responses `response.completed`, Anthropic
`message_delta`), so clients that ignore unknown fields keep working. The
answer's text is collected as it passes, so that the output itself can be scanned
and registered as a derived item.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.domain import Endpoint
from gateway.sse import event_fields, split_events

CONFIDENTIAL = "x-confidential"
CONFIDENTIAL_AGREEMENTS = "x-confidential-agreements"


@dataclass(frozen=True, slots=True)
class Marking:
    """What marks one answer: the agreements, the decision, the derived items registered from it."""

    agreements: tuple[str, ...]
    decision_id: str
    derived_item_ids: tuple[str, ...] = ()

    def field(self) -> dict[str, Any]:
        return {"confidential": True, "article": "4(3)", "agreements": list(self.agreements),
                "derived_item_id": self.derived_item_ids[0] if self.derived_item_ids else None,
                "derived_item_ids": list(self.derived_item_ids), "decision_id": self.decision_id}

    def headers(self) -> list[tuple[str, str]]:
        return [(CONFIDENTIAL, "true"), (CONFIDENTIAL_AGREEMENTS, ",".join(self.agreements))]


def _content_text(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        return [b["text"] for b in content if isinstance(b, dict) and isinstance(b.get("text"), str)]
    return []


def output_text(endpoint: Endpoint, body: Any) -> str:
    """The text a client will read (or paste elsewhere) from a whole, non-streamed answer."""
    if not isinstance(body, dict):
        return ""
    pieces: list[str] = []
    if endpoint is Endpoint.MESSAGES:
        for block in body.get("content") or []:
            if isinstance(block, dict) and isinstance(block.get("text"), str):
                pieces.append(block["text"])
            elif isinstance(block, dict) and block.get("type") == "tool_use":
                pieces.append(orjson.dumps(block.get("input")).decode())
    elif endpoint is Endpoint.RESPONSES:
        for item in body.get("output") or []:
            if isinstance(item, dict):
                pieces += _content_text(item.get("content"))
                if isinstance(item.get("arguments"), str):
                    pieces.append(item["arguments"])
    else:
        for choice in body.get("choices") or []:
            if not isinstance(choice, dict):
                continue
            if isinstance(choice.get("text"), str):
                pieces.append(choice["text"])
            message = choice.get("message")
            if isinstance(message, dict):
                pieces += _content_text(message.get("content"))
                for call in message.get("tool_calls") or []:
                    arguments = (call.get("function") or {}).get("arguments") if isinstance(call, dict) else None
                    if isinstance(arguments, str):
                        pieces.append(arguments)
    return "\n".join(pieces)


def add_label(endpoint: Endpoint, body: dict[str, Any], label: str) -> None:
    """Put the visible bilingual label in front of the answer's first text (policy `marking.visible_label`)."""
    if endpoint is Endpoint.MESSAGES:
        for block in body.get("content") or []:
            if isinstance(block, dict) and isinstance(block.get("text"), str):
                block["text"] = f"{label}\n{block['text']}"
                return
    elif endpoint is Endpoint.RESPONSES:
        for item in body.get("output") or []:
            for part in (item.get("content") or []) if isinstance(item, dict) else []:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    part["text"] = f"{label}\n{part['text']}"
                    return
    else:
        for choice in body.get("choices") or []:
            message = choice.get("message") if isinstance(choice, dict) else None
            if isinstance(message, dict) and isinstance(message.get("content"), str):
                message["content"] = f"{label}\n{message['content']}"
                return
            if isinstance(choice, dict) and isinstance(choice.get("text"), str):
                choice["text"] = f"{label}\n{choice['text']}"
                return


def _delta_text(endpoint: Endpoint, event: str | None, data: dict[str, Any]) -> str:
    if endpoint is Endpoint.MESSAGES:
        delta = data.get("delta") if data.get("type") == "content_block_delta" else None
        if isinstance(delta, dict):
            return str(delta.get("text") or delta.get("partial_json") or "")
        return ""
    if endpoint is Endpoint.RESPONSES:
        if data.get("type") in ("response.output_text.delta", "response.function_call_arguments.delta"):
            return str(data.get("delta") or "")
        return ""
    pieces = []
    for choice in data.get("choices") or []:
        if not isinstance(choice, dict):
            continue
        if isinstance(choice.get("text"), str):
            pieces.append(choice["text"])
        delta = choice.get("delta")
        if isinstance(delta, dict):
            if isinstance(delta.get("content"), str):
                pieces.append(delta["content"])
            for call in delta.get("tool_calls") or []:
                arguments = (call.get("function") or {}).get("arguments") if isinstance(call, dict) else None
                if isinstance(arguments, str):
                    pieces.append(arguments)
    return "".join(pieces)


def _usage(data: dict[str, Any]) -> dict[str, Any] | None:
    """Token usage as each format reports it in a stream (chat's last chunk, Responses' completed
    response, Anthropic's message_start and message_delta)."""
    for holder in (data, data.get("response"), data.get("message")):
        if isinstance(holder, dict) and isinstance(holder.get("usage"), dict):
            return holder["usage"]  # type: ignore[no-any-return]
    return None


def _closes(endpoint: Endpoint, data: dict[str, Any]) -> bool:
    if endpoint is Endpoint.MESSAGES:
        return data.get("type") == "message_delta"
    if endpoint is Endpoint.RESPONSES:
        return data.get("type") == "response.completed"
    return any(isinstance(c, dict) and c.get("finish_reason") for c in data.get("choices") or [])


class StreamWatcher:
    """Splits an SSE stream into events, collects the answer's text, and may rewrite the closing event.

    Events other than the closing one leave byte for byte as they came. At the
    closing event `on_close(text)` is asked for a marking; if it returns one, the
    event gains the `confidentiality` field.
    """

    def __init__(self, endpoint: Endpoint, on_close: Callable[[str], Marking | None]) -> None:
        self.endpoint = endpoint
        self.on_close = on_close
        self.marking: Marking | None = None
        self.closed = False
        self._buffer = b""
        self._text: list[str] = []
        self.usage: dict[str, Any] | None = None

    @property
    def text(self) -> str:
        return "".join(self._text)

    def feed(self, chunk: bytes) -> bytes:
        """The complete events in `chunk` (plus what was buffered), possibly with the closing one rewritten."""
        events, self._buffer = split_events(self._buffer + chunk)
        return b"".join([self._event(event) for event in events])

    def flush(self) -> bytes:
        rest, self._buffer = self._buffer, b""
        return rest

    def _event(self, raw: bytes) -> bytes:
        name, data_line = event_fields(raw)
        if not data_line or data_line == b"[DONE]" or self.closed:
            return raw
        try:
            data = orjson.loads(data_line)
        except orjson.JSONDecodeError:
            return raw
        if not isinstance(data, dict):
            return raw
        self._text.append(_delta_text(self.endpoint, name, data))
        found = _usage(data)
        if found is not None:
            self.usage = {**(self.usage or {}), **found}
        if not _closes(self.endpoint, data):
            return raw
        self.closed = True
        self.marking = self.on_close(self.text)
        if self.marking is None:
            return raw
        data["confidentiality"] = self.marking.field()
        prefix = f"event: {name}\n".encode() if name else b""
        return prefix + b"data: " + orjson.dumps(data) + b"\n\n"
