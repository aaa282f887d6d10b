"""Sending a decided request to its destination: the one place upstream failures become gateway errors.

One pooled `httpx.AsyncClient` per destination. Streams pass through chunk by
chunk; closing the iterator (a client that went away) closes the upstream
connection, which cancels the provider's work.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass

import httpx
import orjson

from gateway.domain import ApiFormat, Destination
from gateway.errors import GatewayError, ServiceUnavailable, UpstreamError, UpstreamTimeout

# Request headers a client may pass through to the provider; everything else (its gateway key above all) stays.
PASSED_REQUEST_HEADERS = frozenset({
    "content-type", "accept", "anthropic-version", "anthropic-beta", "openai-beta", "idempotency-key", "user-agent",
})
# Response headers that describe the connection to the gateway, not the answer.
DROPPED_RESPONSE_HEADERS = frozenset({
    "connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding", "server", "date",
    "set-cookie", "proxy-authenticate", "alt-svc", "upgrade", "trailer",
})


@dataclass(slots=True)
class UpstreamResponse:
    """A whole answer (non-streaming, or an upstream error while streaming was asked for)."""

    status: int
    headers: list[tuple[str, str]]
    content: bytes

    @property
    def is_json(self) -> bool:
        return any(k == "content-type" and "json" in v for k, v in self.headers)


@dataclass(slots=True)
class UpstreamStream:
    """An answer arriving in chunks; iterate `chunks` exactly once."""

    status: int
    headers: list[tuple[str, str]]
    chunks: AsyncIterator[bytes]


@contextlib.contextmanager
def _translated(destination: Destination) -> Iterator[None]:
    """httpx's failures, named by destination only (never the request)."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise UpstreamTimeout(
            f"接続先 '{destination.id}' が時間内に応答しませんでした。 / "
            f"The destination '{destination.id}' did not answer in time.") from exc
    except httpx.TransportError as exc:
        raise UpstreamError(
            f"接続先 '{destination.id}' との通信に失敗しました。 / "
            f"The connection to the destination '{destination.id}' failed.") from exc


def stream_error_event(error: GatewayError, api_format: ApiFormat) -> bytes:
    """The SSE event a provider sends when a stream fails after it started."""
    if api_format is ApiFormat.ANTHROPIC:
        return b"event: error\ndata: " + orjson.dumps(error.anthropic_body()) + b"\n\n"
    return b"data: " + orjson.dumps(error.openai_body()) + b"\n\n"


class Forwarder:
    """Holds the per-destination clients and sends requests through them."""

    def __init__(self, environ: Mapping[str, str], connect_timeout: float = 10.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._environ = environ
        self._connect_timeout = connect_timeout
        self._transport = transport
        self._clients: dict[tuple[str, str, float], httpx.AsyncClient] = {}

    def missing_key(self, destination: Destination) -> str | None:
        """The variable a destination names for its key when it is not set, else None."""
        env = destination.api_key_env
        return env if env and not self._environ.get(env) else None

    def _client(self, destination: Destination) -> httpx.AsyncClient:
        slot = (destination.id, destination.base_url, destination.timeout_seconds)
        client = self._clients.get(slot)
        if client is None:
            timeout = httpx.Timeout(destination.timeout_seconds, connect=self._connect_timeout)
            limits = httpx.Limits(max_connections=1000, max_keepalive_connections=200, keepalive_expiry=30)
            client = httpx.AsyncClient(timeout=timeout, limits=limits, transport=self._transport,
                                       follow_redirects=False, trust_env=False)
            self._clients[slot] = client
        return client

    def _headers(self, destination: Destination, client_headers: Mapping[str, str]) -> dict[str, str]:
        headers = {k: v for k, v in client_headers.items() if k in PASSED_REQUEST_HEADERS or k.startswith("x-stainless-")}
        headers["accept-encoding"] = "identity"
        if destination.api_key_env:
            key = self._environ.get(destination.api_key_env)
            if not key:
                raise ServiceUnavailable(
                    f"接続先 '{destination.id}' の API キー（環境変数 {destination.api_key_env}）が設定されていません。 / "
                    f"The API key of destination '{destination.id}' (variable {destination.api_key_env}) is not set.",
                    code="destination_key_missing")
            if destination.api_format is ApiFormat.ANTHROPIC:
                headers["x-api-key"] = key
                headers.setdefault("anthropic-version", "2023-06-01")
            else:
                headers["authorization"] = f"Bearer {key}"
        return headers

    @staticmethod
    def url(destination: Destination, path: str) -> str:
        """`path` is the client's path (`/v1/chat/completions`); OpenAI base URLs already end in /v1."""
        base = destination.base_url.rstrip("/")
        if destination.api_format is ApiFormat.OPENAI and path.startswith("/v1/"):
            return base + path[3:]
        return base + path

    async def send(self, destination: Destination, method: str, path: str, content: bytes | None,
                   client_headers: Mapping[str, str], *, stream: bool) -> UpstreamResponse | UpstreamStream:
        """Send and return the whole answer, or an open stream when `stream` and the provider said 2xx."""
        client = self._client(destination)
        request = client.build_request(method, self.url(destination, path), content=content,
                                       headers=self._headers(destination, client_headers))
        with _translated(destination):
            response = await client.send(request, stream=stream)
        headers = [(k, v) for k, v in response.headers.multi_items() if k not in DROPPED_RESPONSE_HEADERS]
        if not stream:
            return UpstreamResponse(response.status_code, headers, response.content)
        if response.status_code >= 300:
            try:
                with _translated(destination):
                    content = await response.aread()
            finally:
                await response.aclose()
            return UpstreamResponse(response.status_code, headers, content)
        return UpstreamStream(response.status_code, headers, self._chunks(destination, response))

    async def _chunks(self, destination: Destination, response: httpx.Response) -> AsyncIterator[bytes]:
        try:
            with _translated(destination):
                async for chunk in response.aiter_bytes():
                    yield chunk
        finally:
            await response.aclose()

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()
