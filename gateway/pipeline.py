"""One request's way through the gateway, step by step (PRODUCT.md), failing closed.

Every store and client arrives in `Ports`; nothing here knows HTTP frameworks or SQL.
A step that raises stops the request: nothing is forwarded that was not decided.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.authenticate import KeyCache, KeyLookup, authenticate
from gateway.domain import ApiFormat, Decision, DecisionKind, Destination, Endpoint, Principal
from gateway.errors import InvalidRequest, NotFound, UpstreamError
from gateway.extract import parse_body
from gateway.forward import Forwarder, UpstreamResponse, UpstreamStream
from gateway.routing import Router

UploadRecorder = Callable[[str, str, str, str, str], Awaitable[None]]


def new_decision_id() -> str:
    """Time-ordered, so audit records sort by id as they sort by time."""
    return f"dec_{time.time_ns() // 1_000_000:012x}{secrets.token_hex(8)}"


@dataclass(slots=True)
class ProviderCall:
    """What a client sent to a provider endpoint, before anything was trusted."""

    decision_id: str
    endpoint: Endpoint
    method: str
    path: str
    key: str | None
    body: bytes
    headers: Mapping[str, str]
    destination_hint: str | None = None

    @property
    def api_format(self) -> ApiFormat:
        return self.endpoint.api_format


@dataclass(slots=True)
class Ports:
    """Everything the pipeline talks to, injected so tests and replicas can swap them."""

    secret: bytes
    key_cache: KeyCache
    lookup_key: KeyLookup
    router: Router
    forwarder: Forwarder
    record_upload: UploadRecorder
    files_destination: str | None = None


@dataclass(slots=True)
class Outcome:
    """The decision and, when forwarded, the destination's answer."""

    decision: Decision
    principal: Principal
    destination: Destination
    answer: UpstreamResponse | UpstreamStream
    payload: dict[str, Any] | None = field(default=None)


def _files_destination(call: ProviderCall, ports: Ports) -> Destination:
    destination_id = call.destination_hint or ports.files_destination
    if not destination_id:
        raise InvalidRequest(
            "ファイルの送信先がありません。X-Shuhi-Destination ヘッダーで接続先を指定してください。 / "
            "No destination for this file: name one in the X-Shuhi-Destination header.",
            code="destination_required")
    destination = ports.router.get(destination_id)
    if destination is None or destination.api_format is not ApiFormat.OPENAI:
        raise NotFound(f"接続先 '{destination_id}' はありません。 / There is no destination '{destination_id}'.",
                       code="destination_not_found")
    return destination


async def run(call: ProviderCall, ports: Ports) -> Outcome:
    """Authenticate, parse, route, decide, forward."""
    principal = await authenticate(call.key, ports.secret, ports.key_cache, ports.lookup_key)
    body: bytes = call.body
    payload: dict[str, Any] | None = None
    if call.endpoint is Endpoint.FILES:
        destination = _files_destination(call, ports)
    else:
        payload = parse_body(call.endpoint, call.body)
        destination, upstream_model = ports.router.resolve(payload["model"], call.api_format)
        if upstream_model != payload["model"]:
            payload["model"] = upstream_model
            body = orjson.dumps(payload)
    decision = Decision(id=call.decision_id, kind=DecisionKind.ALLOW)
    stream = bool(payload and payload.get("stream") is True)
    answer = await ports.forwarder.send(destination, call.method, call.path, body, call.headers, stream=stream)
    if isinstance(answer, UpstreamResponse) and answer.status < 300 and answer.is_json:
        parsed = _parse_answer(answer, destination)
        if call.endpoint is Endpoint.FILES and isinstance(parsed, dict) and isinstance(parsed.get("id"), str):
            await ports.record_upload(parsed["id"], destination.id, principal.id, str(parsed.get("purpose", "")),
                                      call.decision_id)
    return Outcome(decision, principal, destination, answer, payload)


def _parse_answer(answer: UpstreamResponse, destination: Destination) -> Any:
    """A provider that says JSON must send JSON; anything else is a failed upstream, not an answer."""
    try:
        return orjson.loads(answer.content)
    except orjson.JSONDecodeError:
        raise UpstreamError(
            f"接続先 '{destination.id}' から不正な応答を受け取りました。 / "
            f"The destination '{destination.id}' sent a malformed answer.", code="upstream_malformed") from None
