"""Clients that trickle their body, or vanish before it is complete: nobody else waits, nothing is forwarded."""

from __future__ import annotations

import json
import socket
import threading
import time
from urllib.parse import urlparse

import httpx

from tests.conftest import Gateway

BODY = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "a slow upload " * 20}]}).encode()


def open_request(gateway: Gateway, key: str) -> socket.socket:
    url = urlparse(gateway.url)
    sock = socket.create_connection((url.hostname, url.port), timeout=30)
    sock.sendall((f"POST /v1/chat/completions HTTP/1.1\r\nHost: {url.hostname}\r\nAuthorization: Bearer {key}\r\n"
                  f"Content-Type: application/json\r\nContent-Length: {len(BODY)}\r\n\r\n").encode())
    return sock


def test_a_trickling_upload_holds_up_nobody_and_is_answered(gateway: Gateway) -> None:
    key = gateway.employee()
    sock = open_request(gateway, key)
    answer: list[bytes] = []

    def trickle() -> None:
        for i in range(0, len(BODY), 16):
            sock.sendall(BODY[i:i + 16])
            time.sleep(0.1)
        answer.append(sock.recv(65536))

    slow = threading.Thread(target=trickle)
    slow.start()
    with httpx.Client(timeout=10) as client:
        started = time.monotonic()
        for _ in range(5):
            response = client.post(gateway.url + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                                   json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
            assert response.status_code == 200
        quick = time.monotonic() - started
    assert slow.is_alive() and quick < 2.0  # five calls done while the slow body is still arriving
    slow.join(30)
    sock.close()
    assert answer and answer[0].startswith(b"HTTP/1.1 200")


def test_a_client_gone_before_its_body_is_complete_sends_nothing_upstream(gateway: Gateway) -> None:
    key = gateway.employee()
    before = len(gateway.upstream_requests())
    sock = open_request(gateway, key)
    sock.sendall(BODY[: len(BODY) // 2])
    time.sleep(0.2)
    sock.close()
    time.sleep(0.5)
    assert len(gateway.upstream_requests()) == before
    response = httpx.post(gateway.url + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                          json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "still here"}]})
    assert response.status_code == 200
