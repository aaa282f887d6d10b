"""Provider request bodies: parsed, checked, and every text a model would see collected with its location.

The gateway checks only what it must rely on (the model, the fields it will
scan); everything else is the provider's to judge, so new provider fields pass
through untouched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.domain import Endpoint, TextPart
from gateway.errors import InvalidRequest

_REQUIRED: dict[Endpoint, dict[str, tuple[type, ...]]] = {
    Endpoint.CHAT_COMPLETIONS: {"model": (str,), "messages": (list,)},
    Endpoint.COMPLETIONS: {"model": (str,), "prompt": (str, list)},
    Endpoint.RESPONSES: {"model": (str,)},
    Endpoint.EMBEDDINGS: {"model": (str,), "input": (str, list)},
    Endpoint.MESSAGES: {"model": (str,), "messages": (list,)},
    Endpoint.FINE_TUNING_JOBS: {"model": (str,), "training_file": (str,)},
}
_OPTIONAL: dict[str, tuple[type, ...]] = {
    "stream": (bool,), "input": (str, list), "instructions": (str, type(None)), "system": (str, list),
    "tools": (list,), "max_tokens": (int,),
}
_TYPE_NAMES = {str: "string", list: "array", bool: "boolean", int: "integer", dict: "object", type(None): "null"}


def _wrong(field: str, types: tuple[type, ...]) -> InvalidRequest:
    expected = " or ".join(_TYPE_NAMES[t] for t in types)
    return InvalidRequest(
        f"'{field}' は {expected} でなければなりません。 / '{field}' must be {expected}.", code="invalid_type", param=field)


def parse_body(endpoint: Endpoint, body: bytes) -> dict[str, Any]:
    """The JSON object of a request, or a 400 that names the field at fault (never its value)."""
    if not body:
        raise InvalidRequest("リクエスト本文が空です。 / The request body is empty.", code="empty_body")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidRequest("リクエスト本文が正しい JSON ではありません。 / The request body is not valid JSON.",
                             code="invalid_json") from None
    if not isinstance(payload, dict):
        raise InvalidRequest("リクエスト本文は JSON オブジェクトでなければなりません。 / "
                             "The request body must be a JSON object.", code="invalid_json")
    for name, types in _REQUIRED.get(endpoint, {}).items():
        if name not in payload:
            raise InvalidRequest(f"'{name}' がありません。 / '{name}' is required.", code="missing_field",
                                 param=name)
        value = payload[name]
        if not isinstance(value, types) or (types == (int,) and isinstance(value, bool)):
            raise _wrong(name, types)
    for name, types in _OPTIONAL.items():
        if name in payload and name not in _REQUIRED.get(endpoint, {}):
            value = payload[name]
            if not isinstance(value, types) or (int in types and bool not in types and isinstance(value, bool)):
                raise _wrong(name, types)
    if endpoint in (Endpoint.CHAT_COMPLETIONS, Endpoint.MESSAGES):
        for index, message in enumerate(payload["messages"]):
            if not isinstance(message, dict):
                raise _wrong(f"messages[{index}]", (dict,))
    return payload


# Keys whose string values are structure, not something a model reads: never worth scanning.
_STRUCTURAL_KEYS = frozenset({
    "model", "role", "type", "id", "tool_call_id", "call_id", "tool_use_id", "detail", "format", "media_type",
    "encoding_format", "service_tier", "reasoning_effort", "object", "status", "previous_response_id",
    "stop_reason", "truncation", "tool_choice", "modality", "voice", "cache_control", "purpose", "training_file",
    "validation_file", "suffix", "anthropic_version", "signature",
})
_IMAGE_TYPES = frozenset({"image_url", "input_image", "image", "output_image"})
_AUDIO_TYPES = frozenset({"input_audio", "audio"})
_FILE_TYPES = frozenset({"file", "input_file", "container_upload"})


@dataclass(frozen=True, slots=True)
class Unscannable:
    """A part a model would see that the gateway cannot read as text (PRODUCT.md non-goals: images, audio)."""

    location: str
    kind: str  # image | audio | file | document | tokens


@dataclass(slots=True)
class Extraction:
    """Every text a model would see, with its location, and what could not be read."""

    parts: list[TextPart] = field(default_factory=list)
    unscannable: list[Unscannable] = field(default_factory=list)


def _block_kind(node: dict[str, Any]) -> str | None:
    kind = node.get("type")
    if kind in _IMAGE_TYPES:
        return "image"
    if kind in _AUDIO_TYPES:
        return "audio"
    if kind in _FILE_TYPES:
        return "file"
    if kind == "document":
        source = node.get("source")
        if isinstance(source, dict) and source.get("type") in ("text", "content"):
            return None
        return "document"
    return None


def _walk(node: Any, location: str, role: str | None, out: Extraction) -> None:
    if isinstance(node, str):
        if node:
            out.parts.append(TextPart(location=location, text=node, role=role))
    elif isinstance(node, dict):
        kind = _block_kind(node)
        if kind is not None:
            out.unscannable.append(Unscannable(location, kind))
            return
        node_role = node.get("role") if isinstance(node.get("role"), str) else role
        for key, value in node.items():
            if key in _STRUCTURAL_KEYS and not isinstance(value, (dict, list)):
                continue
            _walk(value, f"{location}.{key}" if location else key, node_role, out)
    elif isinstance(node, list):
        if node and all(isinstance(v, int) and not isinstance(v, bool) for v in node):
            out.unscannable.append(Unscannable(location, "tokens"))
            return
        for index, value in enumerate(node):
            _walk(value, f"{location}[{index}]", role, out)


def extract(payload: dict[str, Any]) -> Extraction:
    """Every string of the body a provider would show a model or keep, located like `messages[2].content[0].text`.

    Scanning everything but structural fields (model, role, ids...) means new provider fields
    are scanned without a change here: failing closed beats forgetting a field. Images, audio,
    binary documents and token arrays are reported as unscannable for the policy to judge.
    """
    out = Extraction()
    for key, value in payload.items():
        if key in _STRUCTURAL_KEYS and not isinstance(value, (dict, list)):
            continue
        if isinstance(value, (bool, int, float)) or value is None:
            continue
        _walk(value, key, None, out)
    return out


def extract_jsonl(content: bytes, location: str = "file") -> Extraction:
    """A training file (Article 4(1)), line by line: `file[3].messages[1].content`; a bad line is unscannable."""
    out = Extraction()
    for number, line in enumerate(content.splitlines()):
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            out.unscannable.append(Unscannable(f"{location}[{number}]", "file"))
            continue
        if isinstance(record, dict):
            inner = extract(record)
            out.parts += [TextPart(f"{location}[{number}].{p.location}", p.text, p.role) for p in inner.parts]
            out.unscannable += [Unscannable(f"{location}[{number}].{u.location}", u.kind) for u in inner.unscannable]
        else:
            _walk(record, f"{location}[{number}]", None, out)
    return out
