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
import asyncio
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import orjson

from gateway.demo.anthropic_api import AnthropicEndpoints
from gateway.demo.behaviors import ControlPlane, parse_behavior
from gateway.demo.openai_api import OpenAIEndpoints
from gateway.demo.openai_files import FilesAndJobs
from gateway.demo.openai_responses import ResponsesEndpoint
from gateway.demo.sse import Stream, send_stream
from gateway.demo.wire import (
    ANTHROPIC, JSON_TYPE, OPENAI, HTTPError, Receive, Req, Scope, Send, anthropic_error, cut_connection,
    default_error_body, new_id, openai_error, read_body, send_bytes,
)

__all__ = ["FakeUpstream", "UpstreamServer", "create_app", "main"]

DEFAULT_OPENAI_MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-4.1", "o3-mini", "text-embedding-3-small", "davinci-002")
DEFAULT_ANTHROPIC_MODELS = ("claude-sonnet-4-6", "claude-haiku-4-5", "claude-opus-4-7")

_GARBAGE = b"<html><body>502 Bad Gateway</body></html>{\"truncated\": tru"


class FakeUpstream(ControlPlane, OpenAIEndpoints, ResponsesEndpoint, FilesAndJobs, AnthropicEndpoints):
    """The ASGI application; its attributes hold the state the control plane exposes.

    The endpoints and the control plane are its parts, one module each; this class builds the state
    and routes each request to them.
    """

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
        # path -> (format, {method: handler}); handlers take a Req and return
        # (status, object) | bytes (a JSON body) | Stream, or raise HTTPError.
        self._routes: dict[str, tuple[int, dict[str, Callable[[Req], Any]]]] = {
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
        self._prefix_routes: tuple[tuple[str, tuple[int, dict[str, Callable[[Req], Any]]]], ...] = (
            ("/v1/files/", (OPENAI, {"GET": self._file_item, "DELETE": self._file_item})),
            ("/v1/fine_tuning/jobs/", (OPENAI, {"GET": self._job_item, "POST": self._job_item})),
            ("/v1/models/", (OPENAI, {"GET": self._model_item})),
        )

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
        body = await read_body(receive)
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
                    behavior = parse_behavior(orjson.loads(v))
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

        rid = new_id("req_").encode()
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
                await send_bytes(send, status, payload, JSON_TYPE, base_headers + extra, fmt, t0)
                return
            elif bk == "garbage":
                await send_bytes(send, 200, _GARBAGE, JSON_TYPE, base_headers, fmt, t0)
                return
            elif bk == "drop":
                await cut_connection(receive, send)
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
                    anthropic_error(f"Method {method} not allowed for {path}", "invalid_request_error")
                    if fmt == ANTHROPIC
                    else openai_error(f"Invalid method for URL ({method} {path})", "invalid_request_error")
                )
            else:
                status, body_obj = 404, (
                    anthropic_error(f"Not found: {method} {path}", "not_found_error")
                    if fmt == ANTHROPIC
                    else openai_error(f"Invalid URL ({method} {path})", "invalid_request_error")
                )
            await send_bytes(send, status, orjson.dumps(body_obj), JSON_TYPE, base_headers, fmt, t0)
            return

        try:
            result = handler(Req(fmt, method, scope, body, reply, item))
        except HTTPError as exc:
            await send_bytes(send, exc.status, orjson.dumps(exc.body), JSON_TYPE, base_headers, fmt, t0)
            return
        except Exception as exc:  # a bug or an input shape this fake does not expect: say so, log nothing
            message = f"fake upstream could not handle this request ({type(exc).__name__})"
            err = anthropic_error(message, "api_error") if fmt == ANTHROPIC else openai_error(message, "server_error")
            await send_bytes(send, 500, orjson.dumps(err), JSON_TYPE, base_headers, fmt, t0)
            return

        if isinstance(result, Stream):
            await send_stream(
                receive, send, result.events, base_headers, fmt, t0, delay_stream, drop_after, self.stats,
                self.stream_coalesce,
            )
        elif isinstance(result, bytes):
            await send_bytes(send, 200, result, JSON_TYPE, base_headers, fmt, t0)
        else:
            status, obj = result
            await send_bytes(send, status, orjson.dumps(obj), JSON_TYPE, base_headers, fmt, t0)

    # ------------------------------------------------------------------ models

    def _models(self, req: Req) -> Any:
        return self._anthropic_models_body if req.fmt == ANTHROPIC else self._openai_models_body

    def _model_item(self, req: Req) -> Any:
        model_id = req.item
        if req.fmt == ANTHROPIC:
            found = self._anthropic_models.get(model_id)
            if found is None:
                raise HTTPError(404, anthropic_error(f"model: {model_id}", "not_found_error"))
            return 200, found
        found = self._openai_models.get(model_id)
        if found is None:
            raise HTTPError(
                404,
                openai_error(f"The model '{model_id}' does not exist", "invalid_request_error", "model", "model_not_found"),
            )
        return 200, found


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
