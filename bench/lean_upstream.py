#!/usr/bin/env python
"""A lean fake OpenAI upstream for throughput benchmarks: as little CPU per request as Python allows.

    .venv/bin/python bench/lean_upstream.py --port 0     # prints "listening on http://127.0.0.1:PORT"

Why not `gateway.demo.upstream`: that one is a full ASGI app under uvicorn (routing, behaviours,
request log), about 85 µs of CPU per request here. On a 2-core machine every microsecond the
upstream spends is taken from the gateway's second worker, so the scaling benchmark would measure
the upstream. This one is a raw asyncio protocol (uvloop when installed) with httptools' C parser:
HTTP/1.1 keep-alive, `Content-Length` or chunked bodies, and a chat completion answering
"echo: <last user message>" as the demo upstream does, so the gateway scans an answer of the same
size. Any other path answers 404; `GET` of any path answers 200 `{"ok": true}` (readiness).
It logs nothing about requests.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time
from typing import Any

import httptools
import orjson

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a dependency of the gateway on Linux
    uvloop = None  # type: ignore[assignment]

CHAT_PATH = b"/v1/chat/completions"
_IDS = itertools.count(1)


def chat_answer(body: bytes) -> bytes:
    """The completion's JSON: the last user message echoed, token counts as a quarter of the characters."""
    data = orjson.loads(body)
    last_user = ""
    for message in data.get("messages") or ():
        if message.get("role") == "user" and isinstance(message.get("content"), str):
            last_user = message["content"]
    text = "echo: " + last_user
    prompt_tokens, completion_tokens = len(body) // 4, len(text) // 4
    return orjson.dumps({
        "id": f"chatcmpl-lean{next(_IDS):012d}", "object": "chat.completion", "created": int(time.time()),
        "model": data.get("model") or "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": None},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    })


def response(status: bytes, payload: bytes, keep_alive: bool) -> bytes:
    return (b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(payload)).encode() + (b"\r\n\r\n" if keep_alive else b"\r\nConnection: close\r\n\r\n")
            + payload)


class LeanServer(asyncio.Protocol):
    """One client connection; requests answered in the order they arrive."""

    __slots__ = ("transport", "parser", "url", "body")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.write(response(b"400 Bad Request", b'{"error": "bad request"}', False))
                self.transport.close()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        url, body = self.url, b"".join(self.body)
        self.url, self.body = b"", []
        keep_alive = self.parser.should_keep_alive()
        method = self.parser.get_method()
        try:
            if method == b"GET":
                reply = response(b"200 OK", b'{"ok": true}', keep_alive)
            elif url.split(b"?", 1)[0] == CHAT_PATH:
                reply = response(b"200 OK", chat_answer(body), keep_alive)
            else:
                reply = response(b"404 Not Found", b'{"error": "not found"}', keep_alive)
        except (ValueError, AttributeError, TypeError):
            reply = response(b"400 Bad Request", b'{"error": "not a chat completion request"}', keep_alive)
        assert self.transport is not None
        self.transport.write(reply)
        if not keep_alive:
            self.transport.close()


async def serve(host: str, port: int) -> None:
    server = await asyncio.get_running_loop().create_server(LeanServer, host, port, backlog=1024)
    bound = server.sockets[0].getsockname()[1]
    print(f"listening on http://{host}:{bound}", flush=True)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
    args = parser.parse_args(argv)
    if uvloop is not None:
        uvloop.install()
    try:
        asyncio.run(serve(args.host, args.port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
