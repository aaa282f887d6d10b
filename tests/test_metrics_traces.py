"""OpenTelemetry: with `otel_endpoint` set, each call reaches an OTLP/HTTP collector as a server span with its
decision and child spans for scan, audit and forward, and no span carries the prompt; without it, no SDK."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from gateway.app import create_app
from tests.conftest import ADMIN_TOKEN, UPSTREAM_KEYS, ServerThread, gateway_settings
from tests.test_articles_e2e import DESIGN, EXCERPT, NDA

ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}


class Collector:
    """A real OTLP/HTTP trace receiver on 127.0.0.1: keeps every export it is sent."""

    def __init__(self) -> None:
        self.exports: list[bytes] = []
        self.lock = threading.Lock()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["path"] == "/v1/traces":
            with self.lock:
                self.exports.append(body)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/x-protobuf")]})
        await send({"type": "http.response.body", "body": b""})

    def spans(self) -> list[Any]:
        found = []
        for raw in self.exports:
            request = ExportTraceServiceRequest()
            request.ParseFromString(raw)
            for resource in request.resource_spans:
                for scope in resource.scope_spans:
                    found.extend(scope.spans)
        return found


@pytest.fixture
def collector() -> Iterator[tuple[Collector, ServerThread]]:
    made = Collector()
    server = ServerThread(made)
    server.start()
    yield made, server
    server.stop()


def test_traces_reach_the_collector_with_decisions_and_steps(tmp_path: Any, upstream: Any,
                                                             collector: tuple[Collector, ServerThread]) -> None:
    sink, sink_server = collector
    settings = gateway_settings(f"sqlite:///{tmp_path / 'shuhi.db'}", upstream, otel_endpoint=sink_server.url)
    gateway = ServerThread(create_app(settings, environ=dict(UPSTREAM_KEYS)))
    gateway.start()
    try:
        httpx.post(gateway.url + "/admin/v1/principals", json={"id": "hanako", "groups": ["rd"]}, headers=ADMIN)
        key = httpx.post(gateway.url + "/admin/v1/keys", json={"principal": "hanako"}, headers=ADMIN).json()["key"]
        httpx.post(gateway.url + "/admin/v1/agreements", json=NDA, headers=ADMIN)
        httpx.post(gateway.url + f"/admin/v1/agreements/{NDA['id']}/items", headers=ADMIN,
                   json={"title": "設計書", "category": "ai_technology", "text": DESIGN})
        for text in (EXCERPT, "hello"):
            httpx.post(gateway.url + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                       json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]})
    finally:
        gateway.stop()  # the app's shutdown flushes its spans
    deadline = time.monotonic() + 10
    while not any(s.name == "shuhi.forward" for s in sink.spans()) and time.monotonic() < deadline:
        time.sleep(0.1)
    spans = sink.spans()
    servers = {s.span_id: s for s in spans if s.name == "POST /v1/chat/completions"}
    decisions = sorted(a.value.string_value for s in servers.values() for a in s.attributes
                       if a.key == "shuhi.decision")
    assert decisions == ["allow"]  # the refusal carries no X-Gateway-Decision header; its status says it
    statuses = sorted(a.value.int_value for s in servers.values() for a in s.attributes
                      if a.key == "http.response.status_code")
    assert statuses == [200, 403]
    children = {s.name for s in spans if s.parent_span_id in servers}
    assert {"shuhi.scan", "shuhi.audit", "shuhi.forward"} <= children
    raw = b"".join(sink.exports)
    assert EXCERPT[:10].encode() not in raw and DESIGN[:10].encode() not in raw


def test_without_an_endpoint_nothing_is_traced_nor_exported() -> None:
    code = ("import sys; from gateway.app import create_app; from gateway.settings import load_settings; "
            "from gateway import telemetry; "
            "app = create_app(load_settings(None, {}, database_url='sqlite:///:memory:')); "
            "print(any(m.startswith('opentelemetry.exporter') for m in sys.modules), "
            "type(app.provider_routes).__name__, type(telemetry.span('x')).__name__)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.split() == ["False", "Router", "nullcontext"]
