"""Provider request bodies: parsed, checked for the shape the endpoint needs.

The gateway checks only what it must rely on (the model, the fields it will
scan); everything else is the provider's to judge, so new provider fields pass
through untouched.
"""

from __future__ import annotations

from typing import Any

import orjson

from gateway.domain import Endpoint
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
    for field, types in _REQUIRED.get(endpoint, {}).items():
        if field not in payload:
            raise InvalidRequest(f"'{field}' がありません。 / '{field}' is required.", code="missing_field",
                                 param=field)
        value = payload[field]
        if not isinstance(value, types) or (types == (int,) and isinstance(value, bool)):
            raise _wrong(field, types)
    for field, types in _OPTIONAL.items():
        if field in payload and field not in _REQUIRED.get(endpoint, {}):
            value = payload[field]
            if not isinstance(value, types) or (int in types and bool not in types and isinstance(value, bool)):
                raise _wrong(field, types)
    if endpoint in (Endpoint.CHAT_COMPLETIONS, Endpoint.MESSAGES):
        for index, message in enumerate(payload["messages"]):
            if not isinstance(message, dict):
                raise _wrong(f"messages[{index}]", (dict,))
    return payload
