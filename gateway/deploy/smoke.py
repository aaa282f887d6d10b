"""Smoke check of a deployed gateway: ready, a clean call forwarded, registered material held back.

Uses the standard library only, so it runs inside the image as well as beside it:

    SHUHI_ADMIN_TOKEN=… python3 gateway/deploy/smoke.py --url http://127.0.0.1:8080 --model gpt-4o-mini
    podman exec -i CONTAINER python3 - --url http://127.0.0.1:8080 < gateway/deploy/smoke.py

It creates a principal, a key, an agreement and one item (names ending in the run's id, so it can run
again on the same store) and exits non-zero, saying which step failed, when anything is not as expected.
Point the model's destination at a fake provider (`python3 -m gateway.demo.upstream`), never at a real one:
the clean call is really forwarded.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import time
import urllib.error
import urllib.request
from typing import Any

MATERIAL = ("煙突型の熱交換器は三層の銅管を螺旋状に巻き、外層だけに冷媒を逆流させる。試作三号機では管径を"
            "十二ミリから九ミリに絞り、熱効率が一割二分上がった。The spiral stack keeps its outer coil in "
            "counterflow; prototype three narrowed the tubes from 12 mm to 9 mm and gained twelve percent.")


def request(method: str, url: str, token: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    """(status, JSON body) of one call; an HTTP error status is an answer, not an exception."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={
        "authorization": f"Bearer {token}", "content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    try:
        return status, json.loads(raw) if raw else {}
    except ValueError:
        return status, {"text": raw[:200].decode(errors="replace")}


def wait_ready(url: str, seconds: float) -> dict[str, Any]:
    """The /readyz body once it answers 200; fails after `seconds` with the last answer."""
    deadline, last = time.monotonic() + seconds, "no answer"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=5) as response:
                return dict(json.loads(response.read()))
        except urllib.error.HTTPError as error:
            last = f"{error.code} {error.read()[:300].decode(errors='replace')}"
        except OSError as error:
            last = repr(error)
        time.sleep(0.5)
    raise SystemExit(f"smoke: not ready within {seconds:.0f} s: {last}")


def check(step: str, ok: bool, detail: object) -> None:
    """Stop with the step's name when it did not go as expected."""
    if not ok:
        raise SystemExit(f"smoke: {step} failed: {detail}")
    print(f"smoke: {step} ok", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="smoke.py", description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--model", default="gpt-4o-mini")
    parser.add_argument("--ready-seconds", type=float, default=120)
    args = parser.parse_args(argv)
    admin = os.environ.get("SHUHI_ADMIN_TOKEN") or sys.exit("smoke: set SHUHI_ADMIN_TOKEN")
    url, run = args.url.rstrip("/"), secrets.token_hex(4)
    ready = wait_ready(url, args.ready_seconds)
    check("readyz", ready.get("status") == "ready", ready)
    status, body = request("POST", url + "/admin/v1/principals", admin, {"id": f"smoke-{run}", "groups": ["rd"]})
    check("principal", status == 201, (status, body))
    status, body = request("POST", url + "/admin/v1/keys", admin, {"principal": f"smoke-{run}"})
    check("key", status == 201, (status, body))
    key = str(body.get("key"))
    agreement = f"nda-smoke-{run}"
    status, body = request("POST", url + "/admin/v1/agreements", admin, {
        "id": agreement, "title": "Smoke NDA", "counterparty": "Smoke K.K.", "purpose": "deployment check",
        "effective_date": "2026-04-01", "term_years": 1, "survival_years": 1, "authorized_groups": ["rd"]})
    check("agreement", status == 201, (status, body))
    status, body = request("POST", url + f"/admin/v1/agreements/{agreement}/items", admin,
                           {"title": "heat exchanger", "category": "ai_technology", "text": MATERIAL})
    check("item", status == 201, (status, body))
    chat = url + "/v1/chat/completions"
    status, body = request("POST", chat, key, {"model": args.model,
                                               "messages": [{"role": "user", "content": "hello from the smoke check"}]})
    answer = (body.get("choices") or [{}])[0].get("message", {}).get("content")
    check("clean call forwarded", status == 200 and bool(answer), (status, body))
    status, body = request("POST", chat, key, {"model": args.model,
                                               "messages": [{"role": "user", "content": MATERIAL[10:90]}]})
    check("registered material held", status == 403, (status, str(body)[:300]))
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        check("metrics", response.status == 200 and b"shuhi_" in response.read(), response.status)


if __name__ == "__main__":
    main()
