"""Streamed answers of the fake provider: server-sent events, built cheaply from templates, and sent.

Part of the fake upstream (see :mod:`gateway.demo.upstream`).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson

from gateway.demo.wire import OPENAI, Message, Receive, Send, cut_connection

_SSE = b"text/event-stream; charset=utf-8"
_EMPTY_BODY: Message = {"type": "http.response.body", "body": b"", "more_body": False}


def split_pieces(text: str, piece_chars: int, max_pieces: int) -> list[str]:
    """Split a text into stream deltas of a few characters each (at most ``max_pieces``)."""
    if not text:
        return [""]
    size = max(piece_chars, -(-len(text) // max_pieces))
    return [text[i : i + size] for i in range(0, len(text), size)]


HOLE = "\x00hole\x00"
HOLE_JSON = orjson.dumps(HOLE)
SEQ_HOLE = "\x00seq\x00"
SEQ_HOLE_JSON = orjson.dumps(SEQ_HOLE)


def fill(template: bytes, pieces: list[str]) -> list[bytes]:
    """Events from a serialized template whose one string value is ``HOLE`` (cheaper than dumping each)."""
    pre, post = template.split(HOLE_JSON, 1)
    dumps = orjson.dumps
    return [pre + dumps(p) + post for p in pieces]


def sse_data(data: Any) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


def sse_event(event: str, data: Any) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class Stream:
    """A handler's streamed answer: the SSE events, ready to send."""

    __slots__ = ("events",)

    def __init__(self, events: list[bytes]) -> None:
        self.events = events


async def _watch_disconnect(receive: Receive, state: list[bool]) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            state[0] = True
            return


async def send_stream(
    receive: Receive,
    send: Send,
    events: list[bytes],
    headers: list[tuple[bytes, bytes]],
    fmt: int,
    t0: float,
    delay: float,
    drop_after: int | None,
    stats: dict[str, int],
    coalesce: int,
) -> None:
    """Send a streamed answer: one write per event (``coalesce`` > 1 groups events when nothing paces or
    cuts the stream), ``delay`` seconds between events, the connection cut after ``drop_after`` events."""
    hdrs = [(b"content-type", _SSE), (b"cache-control", b"no-cache")]
    hdrs += headers
    if fmt == OPENAI:
        hdrs.append((b"openai-processing-ms", str(int((time.perf_counter() - t0) * 1000)).encode()))
    await send({"type": "http.response.start", "status": 200, "headers": hdrs})
    stats["streams_started"] += 1
    n = coalesce
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
                await cut_connection(receive, send)
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
