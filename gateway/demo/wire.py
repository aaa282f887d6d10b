"""What the fake provider's two APIs share: formats, ids, token counts, error bodies, requests, replies.

Part of the fake upstream (see :mod:`gateway.demo.upstream`).
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

OPENAI = 0
ANTHROPIC = 1

_ID_PREFIX = os.urandom(5).hex()
_counter = itertools.count(1)

JSON_TYPE = b"application/json"


def new_id(prefix: str) -> str:
    return f"{prefix}{_ID_PREFIX}{next(_counter):014x}"


def token_count(text: str) -> int:
    """A crude, deterministic token count (about four characters a token)."""
    return (len(text) + 3) >> 2


def text_of(content: Any) -> str:
    """Text of a message content: a string, or a list of text parts / blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts: list[str] = []
        for part in content:
            if isinstance(part, dict):
                kind = part.get("type", "text")
                if kind in ("text", "input_text", "output_text"):
                    text = part.get("text")
                    if isinstance(text, str):
                        parts.append(text)
                elif kind == "tool_result":
                    parts.append(text_of(part.get("content")))
            elif isinstance(part, str):
                parts.append(part)
        return "\n".join(parts)
    return ""


def has_tool_result(content: Any) -> bool:
    return isinstance(content, list) and any(
        isinstance(p, dict) and p.get("type") == "tool_result" for p in content
    )


def tool_arguments(schema: Any) -> dict[str, Any]:
    """Arguments for a fake tool call: the schema's first property set to "Tokyo"."""
    name = "location"
    if isinstance(schema, dict):
        props = schema.get("properties")
        required = schema.get("required")
        if isinstance(required, list) and required and isinstance(required[0], str):
            name = required[0]
        elif isinstance(props, dict) and props:
            name = next(iter(props))
    return {name: "Tokyo"}


def openai_error(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def anthropic_error(message: str, type_: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": type_, "message": message}}


_OPENAI_STATUS = {
    400: ("invalid_request_error", None, "Bad request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("invalid_request_error", "unsupported_country_region_territory", "Forbidden."),
    404: ("invalid_request_error", None, "Not found."),
    409: ("invalid_request_error", None, "Conflict."),
    422: ("invalid_request_error", None, "Unprocessable entity."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests."),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
    502: ("server_error", None, "Bad gateway."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}
_ANTHROPIC_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def default_error_body(fmt: int, status: int) -> dict[str, Any]:
    """The provider-shaped error body a real provider would send with ``status``."""
    if fmt == ANTHROPIC:
        type_ = _ANTHROPIC_STATUS.get(status, "api_error" if status >= 500 else "invalid_request_error")
        return anthropic_error(f"Fake upstream error ({status})", type_)
    type_, code, message = _OPENAI_STATUS.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None, f"Error {status}.")
    )
    return openai_error(message, type_, None, code)


class HTTPError(Exception):
    """Raised by a handler to answer with a provider-shaped error."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


def bad_request(fmt: int, message: str, param: str | None = None, code: str | None = None) -> HTTPError:
    if fmt == ANTHROPIC:
        return HTTPError(400, anthropic_error(message, "invalid_request_error"))
    return HTTPError(400, openai_error(message, "invalid_request_error", param, code))


def missing(fmt: int, name: str) -> HTTPError:
    if fmt == ANTHROPIC:
        return bad_request(fmt, f"{name}: Field required")
    return bad_request(fmt, f"Missing required parameter: '{name}'.", name, "missing_required_parameter")


class Req:
    """One provider request, as handlers see it."""

    __slots__ = ("fmt", "method", "scope", "body", "reply", "item")

    def __init__(self, fmt: int, method: str, scope: Scope, body: bytes, reply: str | None, item: str) -> None:
        self.fmt = fmt
        self.method = method
        self.scope = scope
        self.body = body
        self.reply = reply
        self.item = item

    def json(self) -> dict[str, Any]:
        if not self.body:
            return {}
        try:
            data = orjson.loads(self.body)
        except orjson.JSONDecodeError:
            raise bad_request(
                self.fmt,
                "We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
                "your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not "
                "valid JSON. If you have trouble figuring out how to fix this, please contact us through our "
                "help center at help.openai.com.)"
                if self.fmt == OPENAI
                else "There was an error parsing the body of your request.",
            ) from None
        if not isinstance(data, dict):
            raise bad_request(self.fmt, "The request body must be a JSON object.")
        return data

    def fields(self, *required: str) -> tuple[dict[str, Any], Any]:
        """The JSON body and its model, after the check every provider endpoint makes first: a model, then each
        of ``required`` present (each missing one answered as the provider would)."""
        data = self.json()
        model = data.get("model")
        if not model:
            raise missing(self.fmt, "model")
        for name in required:
            if name not in data:
                raise missing(self.fmt, name)
        return data, model


async def read_body(receive: Receive) -> bytes:
    message = await receive()
    body = message.get("body", b"")
    if not message.get("more_body", False):
        return body
    chunks = [body]
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def cut_connection(receive: Receive, send: Send) -> None:
    """Close the TCP connection under the current request, without (further) response bytes.

    uvicorn's ``send`` is a bound method of the request cycle, which holds the transport; closing
    it makes the client see a dropped connection. Then wait for the server to notice, so that it
    neither logs nor answers. Under other servers, fall back to raising (a 500 or a reset).
    """
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None or not hasattr(transport, "close"):
        raise ConnectionAbortedError("fake upstream: connection dropped on purpose")
    transport.close()
    while (await receive())["type"] != "http.disconnect":
        pass


async def send_bytes(
    send: Send, status: int, payload: bytes, ctype: bytes, headers: list[tuple[bytes, bytes]], fmt: int, t0: float
) -> None:
    hdrs = [(b"content-type", ctype), (b"content-length", str(len(payload)).encode())]
    hdrs += headers
    if fmt == OPENAI:
        hdrs.append((b"openai-processing-ms", str(int((time.perf_counter() - t0) * 1000)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": payload, "more_body": False})
