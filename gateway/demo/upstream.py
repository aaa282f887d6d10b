"""A fake upstream AI provider: a real HTTP server speaking the OpenAI and Anthropic wire formats.

Why it exists: Shuhi sits between employees' AI clients and the providers, so every part of it
(the forwarding path, streaming, error mapping, the load benchmarks, ``shuhi demo``) needs a
provider to talk to. Real providers cost money, need keys, are slow and are not deterministic,
and they cannot be told to fail on cue. This module answers like the providers do, on the same
paths and in the same shapes the official SDKs parse, deterministically ("echo: <last user
message>"), and it can be scripted to misbehave (errors, slowness, dropped connections, garbage)
through a control plane under ``/_fake/`` that only tests use.

It is a plain ASGI callable with a hand-written router and orjson, because the load benchmark runs
it on a single core and needs several thousand requests per second from it. It never logs request
content (uvicorn's access log is off; the module logs nothing itself).

Use in process::

    with UpstreamServer() as up:
        client = openai.OpenAI(base_url=up.openai_base_url, api_key="x")

or from another process: ``python -m gateway.demo.upstream --host 127.0.0.1 --port 9100``.

Control plane (never reached by the gateway):

* ``POST /_fake/behaviors`` ``{"behaviors": [{...}, ...]}`` queues behaviours, consumed one per
  provider request in FIFO order; ``GET`` lists them, ``DELETE`` clears them. A behaviour may carry
  ``"path": "/v1/chat/completions"`` so that only requests to that path (prefix) consume it.
  Kinds: ``error`` (``status``, optional ``body``, ``headers``), ``slow`` (``delay_ms`` before the
  response headers), ``slow_stream`` (``delay_ms`` between streamed events), ``drop`` (connection
  closed without a response), ``drop_mid_stream`` (``after_chunks`` events, then the connection is
  closed), ``garbage`` (200, ``application/json``, not JSON), ``reply`` (``text`` replaces the echo).
* Request header ``x-fake-behavior: <json of one behaviour>`` selects a behaviour for that request
  only; it wins over the queue (the queue is left untouched).
* ``GET /_fake/requests`` (last 200 provider requests), ``DELETE`` clears; ``GET /_fake/stats``,
  ``DELETE /_fake/stats`` zeroes; ``POST /_fake/reset`` resets everything (files and jobs too).
"""

from __future__ import annotations

import argparse
import array
import asyncio
import base64
import hashlib
import itertools
import os
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

__all__ = ["FakeUpstream", "UpstreamServer", "create_app", "main"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

OPENAI = 0
ANTHROPIC = 1

DEFAULT_OPENAI_MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-4.1", "o3-mini", "text-embedding-3-small", "davinci-002")
DEFAULT_ANTHROPIC_MODELS = ("claude-sonnet-4-6", "claude-haiku-4-5", "claude-opus-4-7")

BEHAVIOR_KINDS = frozenset({"error", "slow", "slow_stream", "drop", "drop_mid_stream", "garbage", "reply"})

_SYSTEM_FINGERPRINT = "fp_5h0h1fake"
_ID_PREFIX = os.urandom(5).hex()
_counter = itertools.count(1)

_JSON = b"application/json"
_SSE = b"text/event-stream; charset=utf-8"
_GARBAGE = b"<html><body>502 Bad Gateway</body></html>{\"truncated\": tru"
_EMPTY_BODY: Message = {"type": "http.response.body", "body": b"", "more_body": False}


def _new_id(prefix: str) -> str:
    return f"{prefix}{_ID_PREFIX}{next(_counter):014x}"


def _tokens(text: str) -> int:
    """A crude, deterministic token count (about four characters a token)."""
    return (len(text) + 3) >> 2


def _text_of(content: Any) -> str:
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
                    parts.append(_text_of(part.get("content")))
            elif isinstance(part, str):
                parts.append(part)
        return "\n".join(parts)
    return ""


def _has_tool_result(content: Any) -> bool:
    return isinstance(content, list) and any(
        isinstance(p, dict) and p.get("type") == "tool_result" for p in content
    )


def _pieces(text: str, piece_chars: int, max_pieces: int) -> list[str]:
    """Split a text into stream deltas of a few characters each (at most ``max_pieces``)."""
    if not text:
        return [""]
    size = max(piece_chars, -(-len(text) // max_pieces))
    return [text[i : i + size] for i in range(0, len(text), size)]


def _tool_arguments(schema: Any) -> dict[str, Any]:
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


_HOLE = "\x00hole\x00"
_HOLE_JSON = orjson.dumps(_HOLE)
_SEQ_HOLE = "\x00seq\x00"
_SEQ_HOLE_JSON = orjson.dumps(_SEQ_HOLE)


def _fill(template: bytes, pieces: list[str]) -> list[bytes]:
    """Events from a serialized template whose one string value is ``_HOLE`` (cheaper than dumping each)."""
    pre, post = template.split(_HOLE_JSON, 1)
    dumps = orjson.dumps
    return [pre + dumps(p) + post for p in pieces]


def _sse(data: Any) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


def _sse_event(event: str, data: Any) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def _openai_error(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _anthropic_error(message: str, type_: str) -> dict[str, Any]:
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
        return _anthropic_error(f"Fake upstream error ({status})", type_)
    type_, code, message = _OPENAI_STATUS.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", None, f"Error {status}.")
    )
    return _openai_error(message, type_, None, code)


class HTTPError(Exception):
    """Raised by a handler to answer with a provider-shaped error."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


def _bad_request(fmt: int, message: str, param: str | None = None, code: str | None = None) -> HTTPError:
    if fmt == ANTHROPIC:
        return HTTPError(400, _anthropic_error(message, "invalid_request_error"))
    return HTTPError(400, _openai_error(message, "invalid_request_error", param, code))


def _missing(fmt: int, name: str) -> HTTPError:
    if fmt == ANTHROPIC:
        return _bad_request(fmt, f"{name}: Field required")
    return _bad_request(fmt, f"Missing required parameter: '{name}'.", name, "missing_required_parameter")


class _Stream:
    """A handler's streamed answer: the SSE events, ready to send."""

    __slots__ = ("events",)

    def __init__(self, events: list[bytes]) -> None:
        self.events = events


class _Req:
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
            raise _bad_request(
                self.fmt,
                "We could not parse the JSON body of your request. (HINT: This likely means you aren't using "
                "your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not "
                "valid JSON. If you have trouble figuring out how to fix this, please contact us through our "
                "help center at help.openai.com.)"
                if self.fmt == OPENAI
                else "There was an error parsing the body of your request.",
            ) from None
        if not isinstance(data, dict):
            raise _bad_request(self.fmt, "The request body must be a JSON object.")
        return data


async def _read_body(receive: Receive) -> bytes:
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


async def _cut_connection(receive: Receive, send: Send) -> None:
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


async def _watch_disconnect(receive: Receive, state: list[bool]) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            state[0] = True
            return


def _parse_behavior(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict) or raw.get("kind") not in BEHAVIOR_KINDS:
        raise ValueError(f"a behaviour must be an object with kind in {sorted(BEHAVIOR_KINDS)}")
    return raw


class FakeUpstream:
    """The ASGI application; its attributes hold the state the control plane exposes."""

    def __init__(
        self,
        *,
        openai_models: tuple[str, ...] = DEFAULT_OPENAI_MODELS,
        anthropic_models: tuple[str, ...] = DEFAULT_ANTHROPIC_MODELS,
        embedding_dimensions: int = 8,
        stream_piece_chars: int = 4,
        stream_max_pieces: int = 32,
        stream_coalesce: int = 1,
        record_limit: int = 200,
    ) -> None:
        """``stream_piece_chars``/``stream_max_pieces`` shape the deltas of a streamed answer;
        ``stream_coalesce`` > 1 writes that many SSE events per write (only when no behaviour
        paces or cuts the stream), which a load benchmark may want; 1 is one write per event."""
        self.embedding_dimensions = embedding_dimensions
        self.stream_coalesce = max(1, stream_coalesce)
        self.stream_piece_chars = stream_piece_chars
        self.stream_max_pieces = stream_max_pieces
        self.behaviors: deque[dict[str, Any]] = deque()
        self._behaviors_lock = threading.Lock()  # tests may queue from another thread
        self.recent: deque[tuple[str, str, bytes, list[tuple[bytes, bytes]], bytes]] = deque(maxlen=record_limit)
        self.stats: dict[str, int] = {}
        self.files: dict[str, dict[str, Any]] = {}
        self.file_contents: dict[str, bytes] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.reset_stats()
        created = 1_700_000_000
        self._openai_models = {
            m: {"id": m, "object": "model", "created": created, "owned_by": "system" if m == "davinci-002" else "openai"}
            for m in openai_models
        }
        self._openai_models_body = orjson.dumps({"object": "list", "data": list(self._openai_models.values())})
        anth = [
            {
                "type": "model",
                "id": m,
                "display_name": m.replace("-", " ").title(),
                "created_at": "2025-09-29T00:00:00Z",
                "lifecycle": "active",
            }
            for m in anthropic_models
        ]
        self._anthropic_models = {m["id"]: m for m in anth}
        self._anthropic_models_body = orjson.dumps(
            {
                "data": anth,
                "has_more": False,
                "first_id": anth[0]["id"] if anth else None,
                "last_id": anth[-1]["id"] if anth else None,
            }
        )
        # path -> (format, {method: handler}); handlers take a _Req and return
        # (status, object) | bytes (a JSON body) | _Stream, or raise HTTPError.
        self._routes: dict[str, tuple[int, dict[str, Callable[[_Req], Any]]]] = {
            "/v1/chat/completions": (OPENAI, {"POST": self._chat}),
            "/v1/completions": (OPENAI, {"POST": self._completions}),
            "/v1/responses": (OPENAI, {"POST": self._responses}),
            "/v1/embeddings": (OPENAI, {"POST": self._embeddings}),
            "/v1/models": (OPENAI, {"GET": self._models}),
            "/v1/files": (OPENAI, {"GET": self._list_files, "POST": self._upload_file}),
            "/v1/fine_tuning/jobs": (OPENAI, {"GET": self._list_jobs, "POST": self._create_job}),
            "/v1/messages": (ANTHROPIC, {"POST": self._messages}),
            "/v1/messages/count_tokens": (ANTHROPIC, {"POST": self._count_tokens}),
        }
        self._prefix_routes: tuple[tuple[str, tuple[int, dict[str, Callable[[_Req], Any]]]], ...] = (
            ("/v1/files/", (OPENAI, {"GET": self._file_item, "DELETE": self._file_item})),
            ("/v1/fine_tuning/jobs/", (OPENAI, {"GET": self._job_item, "POST": self._job_item})),
            ("/v1/models/", (OPENAI, {"GET": self._model_item})),
        )

    # ------------------------------------------------------------------ state helpers (tests)

    def reset_stats(self) -> None:
        self.stats.update(
            requests=0, streams_started=0, streams_completed=0, streams_cancelled=0, streams_dropped=0
        )

    def push_behaviors(self, *behaviors: dict[str, Any]) -> None:
        """Queue behaviours from the same process (what ``POST /_fake/behaviors`` does)."""
        parsed = [_parse_behavior(b) for b in behaviors]
        with self._behaviors_lock:
            self.behaviors.extend(parsed)

    def clear_behaviors(self) -> None:
        with self._behaviors_lock:
            self.behaviors.clear()

    def reset(self) -> None:
        self.clear_behaviors()
        self.recent.clear()
        self.files.clear()
        self.file_contents.clear()
        self.jobs.clear()
        self.reset_stats()

    def recorded_requests(self) -> list[dict[str, Any]]:
        """The recorded provider requests, oldest first, decoded (what ``GET /_fake/requests`` lists)."""
        out = []
        for method, path, query, headers, body in list(self.recent):
            hdrs: dict[str, str] = {}
            for k, v in headers:
                name = k.decode("latin-1").lower()
                value = v.decode("latin-1")
                hdrs[name] = f"{hdrs[name]}, {value}" if name in hdrs else value
            try:
                parsed = orjson.loads(body) if body else None
            except orjson.JSONDecodeError:
                parsed = None
            out.append(
                {
                    "method": method,
                    "path": path,
                    "query": query.decode("latin-1"),
                    "headers": hdrs,
                    "body_b64": base64.b64encode(body).decode(),
                    "json": parsed,
                }
            )
        return out

    def _take_behavior(self, path: str) -> dict[str, Any] | None:
        queue = self.behaviors
        with self._behaviors_lock:
            for i, b in enumerate(queue):
                only = b.get("path")
                if only is None or path.startswith(only):
                    del queue[i]
                    return b
        return None

    # ------------------------------------------------------------------ ASGI entry point

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http":
            if kind == "lifespan":
                while True:
                    message = await receive()
                    if message["type"] == "lifespan.startup":
                        await send({"type": "lifespan.startup.complete"})
                    elif message["type"] == "lifespan.shutdown":
                        await send({"type": "lifespan.shutdown.complete"})
                        return
            return
        t0 = time.perf_counter()
        path: str = scope["path"]
        if path.startswith("/_fake/"):
            await self._control(scope, receive, send, path)
            return
        method: str = scope["method"]
        body = await _read_body(receive)
        headers = scope["headers"]
        self.stats["requests"] += 1
        self.recent.append((method, path, scope.get("query_string", b""), headers, body))

        behavior = None
        anthropic_header = False
        for k, v in headers:
            if k == b"anthropic-version":
                anthropic_header = True
            elif k == b"x-fake-behavior":
                try:
                    behavior = _parse_behavior(orjson.loads(v))
                except (orjson.JSONDecodeError, ValueError):
                    behavior = None
        if behavior is None and self.behaviors:
            behavior = self._take_behavior(path)

        route = self._routes.get(path)
        item = ""
        if route is None:
            for prefix, prefix_route in self._prefix_routes:
                if path.startswith(prefix) and len(path) > len(prefix):
                    route, item = prefix_route, path[len(prefix) :]
                    break
        if route is not None:
            fmt, methods = route
            if anthropic_header and path.startswith("/v1/models"):
                fmt = ANTHROPIC
            handler = methods.get(method)
        else:
            fmt = ANTHROPIC if (anthropic_header or path.startswith("/v1/messages")) else OPENAI
            handler = None

        rid = _new_id("req_").encode()
        base_headers = (
            [(b"request-id", rid)]
            if fmt == ANTHROPIC
            else [(b"x-request-id", rid), (b"openai-version", b"2020-10-01")]
        )

        delay_stream = 0.0
        drop_after: int | None = None
        reply: str | None = None
        if behavior is not None:
            bk = behavior["kind"]
            if bk == "slow":
                await asyncio.sleep(float(behavior.get("delay_ms", 1000)) / 1000.0)
            elif bk == "error":
                status = int(behavior.get("status", 500))
                err = behavior.get("body")
                payload = (
                    err.encode()
                    if isinstance(err, str)
                    else orjson.dumps(err if err is not None else default_error_body(fmt, status))
                )
                extra = [(str(k).lower().encode(), str(v).encode()) for k, v in (behavior.get("headers") or {}).items()]
                await self._send_bytes(send, status, payload, _JSON, base_headers + extra, fmt, t0)
                return
            elif bk == "garbage":
                await self._send_bytes(send, 200, _GARBAGE, _JSON, base_headers, fmt, t0)
                return
            elif bk == "drop":
                await _cut_connection(receive, send)
                return
            elif bk == "slow_stream":
                delay_stream = float(behavior.get("delay_ms", 200)) / 1000.0
            elif bk == "drop_mid_stream":
                drop_after = int(behavior.get("after_chunks", 2))
            elif bk == "reply":
                reply = str(behavior.get("text", ""))

        if handler is None:
            if route is not None:
                status, body_obj = 405, (
                    _anthropic_error(f"Method {method} not allowed for {path}", "invalid_request_error")
                    if fmt == ANTHROPIC
                    else _openai_error(f"Invalid method for URL ({method} {path})", "invalid_request_error")
                )
            else:
                status, body_obj = 404, (
                    _anthropic_error(f"Not found: {method} {path}", "not_found_error")
                    if fmt == ANTHROPIC
                    else _openai_error(f"Invalid URL ({method} {path})", "invalid_request_error")
                )
            await self._send_bytes(send, status, orjson.dumps(body_obj), _JSON, base_headers, fmt, t0)
            return

        try:
            result = handler(_Req(fmt, method, scope, body, reply, item))
        except HTTPError as exc:
            await self._send_bytes(send, exc.status, orjson.dumps(exc.body), _JSON, base_headers, fmt, t0)
            return
        except Exception as exc:  # a bug or an input shape this fake does not expect: say so, log nothing
            message = f"fake upstream could not handle this request ({type(exc).__name__})"
            err = _anthropic_error(message, "api_error") if fmt == ANTHROPIC else _openai_error(message, "server_error")
            await self._send_bytes(send, 500, orjson.dumps(err), _JSON, base_headers, fmt, t0)
            return

        if isinstance(result, _Stream):
            await self._send_stream(receive, send, result.events, base_headers, fmt, t0, delay_stream, drop_after)
        elif isinstance(result, bytes):
            await self._send_bytes(send, 200, result, _JSON, base_headers, fmt, t0)
        else:
            status, obj = result
            await self._send_bytes(send, status, orjson.dumps(obj), _JSON, base_headers, fmt, t0)

    # ------------------------------------------------------------------ sending

    @staticmethod
    async def _send_bytes(
        send: Send, status: int, payload: bytes, ctype: bytes, headers: list[tuple[bytes, bytes]], fmt: int, t0: float
    ) -> None:
        hdrs = [(b"content-type", ctype), (b"content-length", str(len(payload)).encode())]
        hdrs += headers
        if fmt == OPENAI:
            hdrs.append((b"openai-processing-ms", str(int((time.perf_counter() - t0) * 1000)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": hdrs})
        await send({"type": "http.response.body", "body": payload, "more_body": False})

    async def _send_stream(
        self,
        receive: Receive,
        send: Send,
        events: list[bytes],
        headers: list[tuple[bytes, bytes]],
        fmt: int,
        t0: float,
        delay: float,
        drop_after: int | None,
    ) -> None:
        stats = self.stats
        hdrs = [(b"content-type", _SSE), (b"cache-control", b"no-cache")]
        hdrs += headers
        if fmt == OPENAI:
            hdrs.append((b"openai-processing-ms", str(int((time.perf_counter() - t0) * 1000)).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": hdrs})
        stats["streams_started"] += 1
        n = self.stream_coalesce
        if n > 1 and not delay and drop_after is None:
            events = [b"".join(events[i : i + n]) for i in range(0, len(events), n)]
        gone = [False]
        watcher = asyncio.ensure_future(_watch_disconnect(receive, gone))
        try:
            last = len(events) - 1
            for i, event in enumerate(events):
                if drop_after is not None and i >= drop_after:
                    watcher.cancel()
                    stats["streams_dropped"] += 1
                    await _cut_connection(receive, send)
                    return
                if delay and i:
                    remaining = delay
                    while remaining > 0 and not gone[0]:
                        step = 0.05 if remaining > 0.05 else remaining
                        await asyncio.sleep(step)
                        remaining -= step
                if gone[0]:
                    stats["streams_cancelled"] += 1
                    return
                await send({"type": "http.response.body", "body": event, "more_body": i != last})
            if not events:
                await send(_EMPTY_BODY)
            stats["streams_completed"] += 1
        finally:
            watcher.cancel()

    # ------------------------------------------------------------------ control plane

    async def _control(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        method = scope["method"]
        body = await _read_body(receive)
        status, obj = 200, None
        if path == "/_fake/behaviors":
            if method == "POST":
                try:
                    data = orjson.loads(body) if body else {}
                    items = data.get("behaviors", [data]) if isinstance(data, dict) else data
                    if not isinstance(items, list):
                        raise ValueError("behaviors must be a list")
                    parsed = [_parse_behavior(b) for b in items]
                except (orjson.JSONDecodeError, ValueError, AttributeError) as exc:
                    status, obj = 400, {"error": str(exc)}
                else:
                    self.push_behaviors(*parsed)
                    obj = {"queued": len(self.behaviors)}
            elif method == "DELETE":
                obj = {"cleared": len(self.behaviors)}
                self.clear_behaviors()
            elif method == "GET":
                obj = {"data": list(self.behaviors)}
        elif path == "/_fake/requests":
            if method == "GET":
                obj = {"data": self.recorded_requests()}
            elif method == "DELETE":
                obj = {"cleared": len(self.recent)}
                self.recent.clear()
        elif path == "/_fake/stats":
            if method == "GET":
                obj = dict(self.stats)
            elif method == "DELETE":
                self.reset_stats()
                obj = dict(self.stats)
        elif path == "/_fake/reset" and method == "POST":
            self.reset()
            obj = {"reset": True}
        else:
            status, obj = 404, {"error": f"no control endpoint {method} {path}"}
        if obj is None:
            status, obj = 405, {"error": f"method {method} not allowed on {path}"}
        payload = orjson.dumps(obj)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", _JSON), (b"content-length", str(len(payload)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": payload, "more_body": False})

    # ------------------------------------------------------------------ OpenAI: chat completions

    def _chat(self, req: _Req) -> Any:
        fmt, data, reply = req.fmt, req.json(), req.reply
        model = data.get("model")
        if not model:
            raise _missing(fmt, "model")
        messages = data.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _missing(fmt, "messages")
        prompt_tokens = 0
        last_user = ""
        for m in messages:
            if isinstance(m, dict):
                text = _text_of(m.get("content"))
                prompt_tokens += _tokens(text) + 3
                if m.get("role") == "user":
                    last_user = text
        last = messages[-1] if isinstance(messages[-1], dict) else {}
        tool_call = None
        tools = data.get("tools")
        if reply is not None:
            text = reply
        elif last.get("role") == "tool":
            text = "echo: " + _text_of(last.get("content"))
        else:
            text = "echo: " + last_user
            if tools and isinstance(tools, list) and "weather" in last_user.lower() and data.get("tool_choice") != "none":
                tool_call = self._pick_openai_tool(tools, data.get("tool_choice"))
        created = int(time.time())
        cid = _new_id("chatcmpl-")
        if tool_call is not None:
            name, args = tool_call
            completion_tokens = _tokens(args) + 5
        else:
            completion_tokens = _tokens(text)
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
        call_id = _new_id("call_") if tool_call is not None else ""
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
            return _sse(obj)

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
            events += _fill(
                chunk({"tool_calls": [{"index": 0, "function": {"arguments": _HOLE}}]}),
                _pieces(tool_call[1], self.stream_piece_chars, self.stream_max_pieces),
            )
            events.append(chunk({}, "tool_calls"))
        else:
            events.append(chunk({"role": "assistant", "content": "", "refusal": None}))
            if text:
                events += _fill(
                    chunk({"content": _HOLE}), _pieces(text, self.stream_piece_chars, self.stream_max_pieces)
                )
            events.append(chunk({}, "stop"))
        if include_usage:
            obj = dict(head)
            obj["choices"] = []
            obj["usage"] = usage
            events.append(_sse(obj))
        events.append(b"data: [DONE]\n\n")
        return _Stream(events)

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
        return str(chosen.get("name", "tool")), orjson.dumps(_tool_arguments(chosen.get("parameters"))).decode()

    # ------------------------------------------------------------------ OpenAI: legacy completions

    def _completions(self, req: _Req) -> Any:
        fmt, data, reply = req.fmt, req.json(), req.reply
        model = data.get("model")
        if not model:
            raise _missing(fmt, "model")
        if "prompt" not in data:
            raise _missing(fmt, "prompt")
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
        prompt_tokens = sum(_tokens(p) for p in prompts)
        completion_tokens = sum(_tokens(t) for t in texts)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        cid = _new_id("cmpl-")
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
            return _sse(obj)

        for i, t in enumerate(texts):
            events += _fill(chunk(i, _HOLE, None), _pieces(t, self.stream_piece_chars, self.stream_max_pieces))
            events.append(chunk(i, "", "stop"))
        if include_usage:
            events.append(
                _sse(
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
        return _Stream(events)

    # ------------------------------------------------------------------ OpenAI: Responses API

    def _responses(self, req: _Req) -> Any:
        fmt, data, reply = req.fmt, req.json(), req.reply
        model = data.get("model")
        if not model:
            raise _missing(fmt, "model")
        if "input" not in data:
            raise _missing(fmt, "input")
        inp = data["input"]
        instructions = data.get("instructions")
        input_tokens = _tokens(instructions) if isinstance(instructions, str) else 0
        last_user = ""
        if isinstance(inp, str):
            last_user = inp
            input_tokens += _tokens(inp)
        elif isinstance(inp, list):
            for item in inp:
                if not isinstance(item, dict):
                    continue
                if item.get("type", "message") == "message":
                    text = _text_of(item.get("content"))
                    input_tokens += _tokens(text) + 3
                    if item.get("role") == "user":
                        last_user = text
                elif item.get("type") == "function_call_output":
                    text = str(item.get("output", ""))
                    input_tokens += _tokens(text)
                    last_user = text
        else:
            raise _bad_request(fmt, "Invalid type for 'input'.", "input", "invalid_type")
        text = reply if reply is not None else "echo: " + last_user
        output_tokens = _tokens(text)
        created = int(time.time())
        rid = _new_id("resp_")
        mid = _new_id("msg_")
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
            _sse_event("response.created", {"type": "response.created", "sequence_number": next(seq), "response": response("in_progress", [], None)}),
            _sse_event("response.in_progress", {"type": "response.in_progress", "sequence_number": next(seq), "response": response("in_progress", [], None)}),
            _sse_event(
                "response.output_item.added",
                {
                    "type": "response.output_item.added",
                    "sequence_number": next(seq),
                    "output_index": 0,
                    "item": {"id": mid, "type": "message", "status": "in_progress", "content": [], "role": "assistant"},
                },
            ),
            _sse_event(
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
        template = _sse_event(
            "response.output_text.delta",
            {
                "type": "response.output_text.delta",
                "sequence_number": _SEQ_HOLE,
                "item_id": mid,
                "output_index": 0,
                "content_index": 0,
                "delta": _HOLE,
                "logprobs": [],
            },
        )
        pre, rest = template.split(_SEQ_HOLE_JSON, 1)
        mid_part, post = rest.split(_HOLE_JSON, 1)
        for piece in _pieces(text, self.stream_piece_chars, self.stream_max_pieces):
            events.append(pre + str(next(seq)).encode() + mid_part + orjson.dumps(piece) + post)
        events += [
            _sse_event(
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
            _sse_event(
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
            _sse_event(
                "response.output_item.done",
                {"type": "response.output_item.done", "sequence_number": next(seq), "output_index": 0, "item": item},
            ),
            _sse_event(
                "response.completed",
                {"type": "response.completed", "sequence_number": next(seq), "response": response("completed", [item], usage)},
            ),
        ]
        return _Stream(events)

    # ------------------------------------------------------------------ OpenAI: embeddings

    def _embeddings(self, req: _Req) -> Any:
        fmt, data = req.fmt, req.json()
        model = data.get("model")
        if not model:
            raise _missing(fmt, "model")
        if "input" not in data:
            raise _missing(fmt, "input")
        inp = data["input"]
        if isinstance(inp, str):
            inputs: list[Any] = [inp]
        elif isinstance(inp, list) and inp and all(isinstance(x, int) for x in inp):
            inputs = [inp]
        elif isinstance(inp, list) and inp:
            inputs = inp
        else:
            raise _bad_request(fmt, "'$.input' is invalid.", "input", "invalid_value")
        dims = data.get("dimensions") or self.embedding_dimensions
        if not isinstance(dims, int) or not 1 <= dims <= 4096:
            raise _bad_request(fmt, "Invalid value for 'dimensions'.", "dimensions", "invalid_value")
        as_b64 = data.get("encoding_format") == "base64"
        out = []
        tokens = 0
        for i, x in enumerate(inputs):
            if isinstance(x, str):
                if not x:
                    raise _bad_request(fmt, f"'$.input[{i}]' is invalid.", "input", "invalid_value")
                seed = x.encode()
                tokens += _tokens(x)
            elif isinstance(x, list):
                seed = orjson.dumps(x)
                tokens += len(x)
            else:
                raise _bad_request(fmt, f"'$.input[{i}]' is invalid.", "input", "invalid_value")
            vec = _embedding(seed, dims)
            if as_b64:
                if sys.byteorder != "little":
                    vec.byteswap()
                value: Any = base64.b64encode(vec.tobytes()).decode()
            else:
                value = vec.tolist()
            out.append({"object": "embedding", "index": i, "embedding": value})
        return 200, {"object": "list", "data": out, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    # ------------------------------------------------------------------ models

    def _models(self, req: _Req) -> Any:
        return self._anthropic_models_body if req.fmt == ANTHROPIC else self._openai_models_body

    def _model_item(self, req: _Req) -> Any:
        model_id = req.item
        if req.fmt == ANTHROPIC:
            found = self._anthropic_models.get(model_id)
            if found is None:
                raise HTTPError(404, _anthropic_error(f"model: {model_id}", "not_found_error"))
            return 200, found
        found = self._openai_models.get(model_id)
        if found is None:
            raise HTTPError(
                404,
                _openai_error(f"The model '{model_id}' does not exist", "invalid_request_error", "model", "model_not_found"),
            )
        return 200, found

    # ------------------------------------------------------------------ OpenAI: files and fine-tuning

    def _list_files(self, req: _Req) -> Any:
        return 200, {"object": "list", "data": list(self.files.values()), "has_more": False}

    def _upload_file(self, req: _Req) -> Any:
        body = req.body
        ctype = b""
        for k, v in req.scope["headers"]:
            if k == b"content-type":
                ctype = v
        fields = _parse_multipart(ctype, body)
        if fields is None:
            raise _bad_request(OPENAI, "Expected a multipart/form-data body.")
        if "file" not in fields:
            raise _missing(OPENAI, "file")
        if "purpose" not in fields:
            raise _missing(OPENAI, "purpose")
        filename, content = fields["file"]
        purpose = fields["purpose"][1].decode("utf-8", "replace")
        fid = _new_id("file-")
        obj = {
            "id": fid,
            "object": "file",
            "bytes": len(content),
            "created_at": int(time.time()),
            "filename": filename or "upload",
            "purpose": purpose,
            "status": "processed",
            "expires_at": None,
            "status_details": None,
        }
        self.files[fid] = obj
        self.file_contents[fid] = content
        return 200, obj

    def _file_item(self, req: _Req) -> Any:
        method, rest = req.method, req.item
        fid, _, sub = rest.partition("/")
        obj = self.files.get(fid)
        if obj is None:
            raise HTTPError(
                404, _openai_error(f"No such File object: {fid}", "invalid_request_error", "id", None)
            )
        if method == "GET" and not sub:
            return 200, obj
        if method == "GET" and sub == "content":
            return self.file_contents.get(fid, b"")  # served as bytes (JSON content type, like OpenAI's jsonl)
        if method == "DELETE" and not sub:
            del self.files[fid]
            self.file_contents.pop(fid, None)
            return 200, {"id": fid, "object": "file", "deleted": True}
        raise HTTPError(405, _openai_error(f"Invalid method for URL ({method} /v1/files/{rest})", "invalid_request_error"))

    def _list_jobs(self, req: _Req) -> Any:
        return 200, {"object": "list", "data": list(self.jobs.values())[::-1], "has_more": False}

    def _create_job(self, req: _Req) -> Any:
        fmt, data = req.fmt, req.json()
        model = data.get("model")
        if not model:
            raise _missing(fmt, "model")
        training_file = data.get("training_file")
        if not training_file:
            raise _missing(fmt, "training_file")
        if training_file not in self.files:
            raise HTTPError(
                400,
                _openai_error(f"invalid training_file: {training_file}", "invalid_request_error", "training_file", None),
            )
        validation_file = data.get("validation_file")
        if validation_file and validation_file not in self.files:
            raise HTTPError(
                400,
                _openai_error(f"invalid validation_file: {validation_file}", "invalid_request_error", "validation_file", None),
            )
        jid = _new_id("ftjob-")
        hyper = {"n_epochs": "auto", "batch_size": "auto", "learning_rate_multiplier": "auto"}
        job = {
            "object": "fine_tuning.job",
            "id": jid,
            "model": model,
            "created_at": int(time.time()),
            "finished_at": None,
            "fine_tuned_model": None,
            "organization_id": "org-fakeupstream",
            "result_files": [],
            "status": "queued",
            "validation_file": validation_file,
            "training_file": training_file,
            "hyperparameters": hyper,
            "method": {"type": "supervised", "supervised": {"hyperparameters": hyper}},
            "trained_tokens": None,
            "error": None,
            "seed": int(data.get("seed") or 42),
            "suffix": data.get("suffix"),
            "metadata": data.get("metadata"),
            "estimated_finish": None,
            "integrations": [],
            "user_provided_suffix": data.get("suffix"),
        }
        self.jobs[jid] = job
        return 200, job

    def _job_item(self, req: _Req) -> Any:
        method, rest = req.method, req.item
        jid, _, sub = rest.partition("/")
        job = self.jobs.get(jid)
        if job is None:
            raise HTTPError(
                404,
                _openai_error(f"Could not find fine tune job: {jid}", "invalid_request_error", "id", "fine_tune_not_found"),
            )
        if method == "GET" and not sub:
            return 200, job
        if method == "POST" and sub == "cancel":
            job["status"] = "cancelled"
            return 200, job
        raise HTTPError(405, _openai_error(f"Invalid method for URL ({method})", "invalid_request_error"))

    # ------------------------------------------------------------------ Anthropic: messages

    def _messages(self, req: _Req) -> Any:
        fmt, data, reply = req.fmt, req.json(), req.reply
        model = data.get("model")
        if not model:
            raise _missing(fmt, "model")
        if "max_tokens" not in data:
            raise _missing(fmt, "max_tokens")
        if not isinstance(data.get("max_tokens"), int):
            raise _bad_request(fmt, "max_tokens: Input should be a valid integer")
        messages = data.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _missing(fmt, "messages")
        input_tokens = _tokens(_text_of(data.get("system"))) if data.get("system") else 0
        last_user = ""
        last_is_tool_result = False
        for m in messages:
            if isinstance(m, dict):
                content = m.get("content")
                text = _text_of(content)
                input_tokens += _tokens(text) + 3
                if m.get("role") == "user":
                    last_user = text
                    last_is_tool_result = _has_tool_result(content)
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
                tool = (str(chosen["name"]), _tool_arguments(chosen.get("input_schema")))
        mid = _new_id("msg_")
        if tool is not None:
            tool_id = _new_id("toolu_")
            args_json = orjson.dumps(tool[1]).decode()
            output_tokens = _tokens(args_json) + 10
            stop_reason = "tool_use"
            block: dict[str, Any] = {"type": "tool_use", "id": tool_id, "name": tool[0], "input": tool[1]}
        else:
            output_tokens = _tokens(text)
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
            _sse_event(
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
            events.append(
                _sse_event(
                    "content_block_start",
                    {"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": block["id"], "name": tool[0], "input": {}}},
                )
            )
            events.append(_sse_event("ping", {"type": "ping"}))
            events += _fill(
                _sse_event(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": _HOLE}},
                ),
                _pieces(args_json, self.stream_piece_chars, self.stream_max_pieces),
            )
        else:
            events.append(
                _sse_event(
                    "content_block_start",
                    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                )
            )
            events.append(_sse_event("ping", {"type": "ping"}))
            events += _fill(
                _sse_event(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": _HOLE}},
                ),
                _pieces(text, self.stream_piece_chars, self.stream_max_pieces),
            )
        events.append(_sse_event("content_block_stop", {"type": "content_block_stop", "index": 0}))
        events.append(
            _sse_event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                    "usage": {"output_tokens": output_tokens},
                },
            )
        )
        events.append(_sse_event("message_stop", {"type": "message_stop"}))
        return _Stream(events)

    def _count_tokens(self, req: _Req) -> Any:
        fmt, data = req.fmt, req.json()
        messages = data.get("messages")
        if not isinstance(messages, list):
            raise _missing(fmt, "messages")
        total = _tokens(_text_of(data.get("system"))) if data.get("system") else 0
        for m in messages:
            if isinstance(m, dict):
                total += _tokens(_text_of(m.get("content"))) + 3
        return 200, {"input_tokens": total}


def _parse_multipart(content_type: bytes, body: bytes) -> dict[str, tuple[str | None, bytes]] | None:
    """Minimal multipart/form-data parser: field name -> (filename, content)."""
    if not content_type.lower().startswith(b"multipart/form-data"):
        return None
    boundary = b""
    for param in content_type.split(b";")[1:]:
        key, _, value = param.strip().partition(b"=")
        if key.lower() == b"boundary":
            boundary = value.strip(b'"')
    if not boundary:
        return None
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in body.split(b"--" + boundary):
        if not part or part.startswith(b"--"):
            continue
        if part.startswith(b"\r\n"):
            part = part[2:]
        head, sep, content = part.partition(b"\r\n\r\n")
        if not sep:
            continue
        if content.endswith(b"\r\n"):
            content = content[:-2]
        name = None
        filename = None
        for line in head.split(b"\r\n"):
            hname, _, hvalue = line.partition(b":")
            if hname.strip().lower() != b"content-disposition":
                continue
            for item in hvalue.split(b";"):
                k, _, v = item.strip().partition(b"=")
                k = k.strip().lower()
                v = v.strip().strip(b'"')
                if k == b"name":
                    name = v.decode("utf-8", "replace")
                elif k == b"filename":
                    filename = v.decode("utf-8", "replace")
        if name is not None:
            fields[name] = (filename, content)
    return fields


def create_app(**options: Any) -> FakeUpstream:
    """A new fake-provider ASGI app with empty state (options: see :class:`FakeUpstream`)."""
    return FakeUpstream(**options)


def _uvicorn_config(app: FakeUpstream, host: str, port: int) -> Any:
    import uvicorn

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        log_level="warning",
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=1,
        backlog=4096,
    )


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


class UpstreamServer:
    """Runs a :class:`FakeUpstream` with uvicorn in a background thread on an ephemeral port."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, app: FakeUpstream | None = None) -> None:
        self.host = host
        self.port = port
        self.app: FakeUpstream = app if app is not None else create_app()
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return self.url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.url

    def start(self, timeout: float = 10.0) -> UpstreamServer:
        if self._thread is not None:
            return self
        import uvicorn

        self._sock = _bind(self.host, self.port)
        self.port = self._sock.getsockname()[1]
        self._server = uvicorn.Server(_uvicorn_config(self.app, self.host, self.port))
        self._thread = threading.Thread(target=self._run, name=f"fake-upstream:{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"fake upstream failed to start: {self._error!r}")
            time.sleep(0.005)
        return self

    def _run(self) -> None:
        try:
            self._server.run(sockets=[self._sock])
        except BaseException as exc:  # noqa: BLE001 - reported by start()
            self._error = exc

    def stop(self, timeout: float = 5.0) -> None:
        thread, server = self._thread, self._server
        if thread is not None and server is not None:
            server.should_exit = True
            thread.join(timeout / 2)
            if thread.is_alive():
                server.force_exit = True
                thread.join(timeout / 2)
        if self._sock is not None:
            self._sock.close()
        self._thread = None
        self._server = None
        self._sock = None

    def __enter__(self) -> UpstreamServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    """Run the fake upstream in the foreground (``python -m gateway.demo.upstream``)."""
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m gateway.demo.upstream", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100, help="0 picks a free port (printed on start)")
    parser.add_argument("--embedding-dimensions", type=int, default=8)
    parser.add_argument(
        "--stream-coalesce", type=int, default=1, help="SSE events per socket write when streaming (default 1)"
    )
    args = parser.parse_args(argv)
    app = create_app(embedding_dimensions=args.embedding_dimensions, stream_coalesce=args.stream_coalesce)
    sock = _bind(args.host, args.port)
    port = sock.getsockname()[1]
    print(f"fake upstream listening on http://{args.host}:{port}", flush=True)
    server = uvicorn.Server(_uvicorn_config(app, args.host, port))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()


if __name__ == "__main__":
    main()
