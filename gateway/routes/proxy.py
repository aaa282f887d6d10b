"""The employee endpoints: parse the HTTP request, run the pipeline, answer in the provider's own shape.

Plain Starlette routes, not FastAPI ones: this is the hot path, and the bodies
belong to the providers' schemas, not ours.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from gateway.authenticate import authenticate, key_from_headers
from gateway.domain import ApiFormat, Endpoint
from gateway.errors import GatewayError, NotFound, PayloadTooLarge
from gateway.forward import UpstreamStream, stream_error_event
from gateway.pipeline import Outcome, Ports, ProviderCall, new_decision_id, run

log = logging.getLogger("shuhi.proxy")

DECISION_ID = "x-gateway-decision-id"
DECISION = "x-gateway-decision"


def error_response(error: GatewayError, api_format: ApiFormat, decision_id: str) -> Response:
    """API.md's error body in the client's provider shape, with the decision id on it."""
    body = error.anthropic_body() if api_format is ApiFormat.ANTHROPIC else error.openai_body()
    body_error = body["error"]
    body_error.setdefault("decision_id", decision_id)
    return Response(orjson.dumps(body), status_code=error.status, media_type="application/json",
                    headers={DECISION_ID: decision_id})


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused with 413 as soon as it passes the limit (never buffered beyond it)."""
    declared = request.headers.get("content-length")
    too_large = PayloadTooLarge(
        f"リクエスト本文が上限（{limit} バイト）を超えています。 / The request body exceeds the limit of {limit} bytes.")
    if declared and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


class _Relay(StreamingResponse):
    """A stream relayed chunk by chunk; an upstream failure mid-way ends it with the provider's error event.

    A client that goes away stops the relay, which closes the upstream connection. Starlette does the
    same with an anyio task group per response; two plain asyncio tasks cost a fraction of it, and
    the first chunk of every streamed answer waits on that set-up.
    """

    def __init__(self, stream: UpstreamStream, api_format: ApiFormat) -> None:
        self._stream = stream
        self._api_format = api_format
        super().__init__(self._relay(), status_code=stream.status)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        relay = asyncio.ensure_future(self.stream_response(send))
        gone = asyncio.ensure_future(_disconnected(receive))
        try:
            await asyncio.wait((relay, gone), return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            if not relay.done():  # the client left (or this request was cancelled): stop reading upstream
                relay.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await relay
        if not relay.cancelled() and relay.exception() is not None:
            raise relay.exception()  # type: ignore[misc]

    async def _relay(self) -> AsyncIterator[bytes]:
        chunks = self._stream.chunks
        try:
            async for chunk in chunks:
                yield chunk
        except GatewayError as exc:
            log.warning("upstream stream failed: %s", exc.code)
            yield stream_error_event(exc, self._api_format)
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _answer(outcome: Outcome, api_format: ApiFormat) -> Response:
    """The provider's status and headers (repeated ones kept), plus the decision headers."""
    answer = outcome.answer
    response: Response
    if isinstance(answer, UpstreamStream):
        response = _Relay(answer, api_format)
    else:
        response = Response(answer.content, status_code=answer.status)
    response.raw_headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers]
    response.raw_headers += [(DECISION_ID.encode(), outcome.decision.id.encode()),
                             (DECISION.encode(), outcome.decision.kind.value.encode())]
    return response


def _endpoint(endpoint: Endpoint, max_body: Callable[[Request], int], ports_of: Callable[[Request], Ports]
              ) -> Callable[[Request], Awaitable[Response]]:
    async def handle(request: Request) -> Response:
        decision_id = new_decision_id()
        api_format = endpoint.api_format
        started = time.perf_counter()
        try:
            body = await read_body(request, max_body(request))
            headers = request.headers
            call = ProviderCall(
                decision_id=decision_id, endpoint=endpoint, method=request.method, path=request.url.path,
                key=key_from_headers(headers.get("authorization"), headers.get("x-api-key")), body=body,
                headers={k: v for k, v in headers.items()}, destination_hint=headers.get("x-shuhi-destination"))
            outcome = await run(call, ports_of(request))
        except GatewayError as exc:
            return error_response(exc, api_format, decision_id)
        except ClientDisconnect:
            return Response(status_code=499)
        except Exception as exc:  # a bug, not the client's fault: say so in the provider's shape, log the type only
            log.error("unexpected %s in %s", type(exc).__name__, endpoint.value)
            return error_response(GatewayError("内部エラーが発生しました。 / Internal error.", code="internal_error"),
                                  api_format, decision_id)
        log.debug("decision %s in %.2f ms", decision_id, (time.perf_counter() - started) * 1000)
        return _answer(outcome, api_format)

    handle.__name__ = f"proxy_{endpoint.name.lower()}"
    return handle


async def _models(request: Request) -> Response:
    """The models of OpenAI-format destinations in OpenAI's list shape; with `anthropic-version`, Anthropic's."""
    decision_id = new_decision_id()
    anthropic = "anthropic-version" in request.headers
    api_format = ApiFormat.ANTHROPIC if anthropic else ApiFormat.OPENAI
    ports: Ports = request.app.state.ports
    try:
        key = key_from_headers(request.headers.get("authorization"), request.headers.get("x-api-key"))
        await authenticate(key, ports.secret, ports.key_cache, ports.lookup_key)
    except GatewayError as exc:
        return error_response(exc, api_format, decision_id)
    models = [(name, d) for name, d in ports.router.models() if d.api_format is api_format]
    if anthropic:
        data = [{"type": "model", "id": name, "display_name": name, "created_at": "1970-01-01T00:00:00Z"}
                for name, d in models]
        body = {"data": data, "has_more": False, "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None}
    else:
        body = {"object": "list", "data": [{"id": name, "object": "model", "created": 0, "owned_by": d.id}
                                            for name, d in models]}
    return Response(orjson.dumps(body), media_type="application/json",
                    headers={DECISION_ID: decision_id, DECISION: "allow"})


async def not_found(request: Request) -> Response:
    """Unknown `/v1` paths answer like the provider would, never with a framework's page."""
    api_format = ApiFormat.ANTHROPIC if request.url.path.startswith("/v1/messages") else ApiFormat.OPENAI
    error = NotFound(f"{request.method} {request.url.path} はこのゲートウェイにありません。 / "
                     f"{request.method} {request.url.path} is not an endpoint of this gateway.", code="unknown_url")
    return error_response(error, api_format, new_decision_id())


_PATHS = {
    "/v1/chat/completions": Endpoint.CHAT_COMPLETIONS,
    "/v1/completions": Endpoint.COMPLETIONS,
    "/v1/responses": Endpoint.RESPONSES,
    "/v1/embeddings": Endpoint.EMBEDDINGS,
    "/v1/files": Endpoint.FILES,
    "/v1/fine_tuning/jobs": Endpoint.FINE_TUNING_JOBS,
    "/v1/messages": Endpoint.MESSAGES,
}


def routes() -> list[Route]:
    """The provider-compatible routes, bound to the app's ports at request time."""
    def ports_of(request: Request) -> Ports:
        return request.app.state.ports  # type: ignore[no-any-return]

    def max_body(request: Request) -> int:
        return request.app.state.settings.max_body_bytes  # type: ignore[no-any-return]

    found = [Route(path, _endpoint(endpoint, max_body, ports_of), methods=["POST"])
             for path, endpoint in _PATHS.items()]
    found.append(Route("/v1/models", _models, methods=["GET"]))
    found.append(Route("/v1/{rest:path}", not_found, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]))
    return found
