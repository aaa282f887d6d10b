"""The fake provider's control plane: queued misbehaviours, recorded requests, counters, reset.

Part of the fake upstream (see :mod:`gateway.demo.upstream`, whose docstring lists the ``/_fake/``
endpoints and the behaviour kinds).
"""

from __future__ import annotations

import base64
import threading
from collections import deque
from typing import Any

import orjson

from gateway.demo.wire import JSON_TYPE, Receive, Scope, Send, read_body

BEHAVIOR_KINDS = frozenset({"error", "slow", "slow_stream", "drop", "drop_mid_stream", "garbage", "reply"})


def parse_behavior(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict) or raw.get("kind") not in BEHAVIOR_KINDS:
        raise ValueError(f"a behaviour must be an object with kind in {sorted(BEHAVIOR_KINDS)}")
    return raw


class ControlPlane:
    """The state tests script and inspect, and the ``/_fake/`` endpoints over it (a part of ``FakeUpstream``)."""

    behaviors: deque[dict[str, Any]]
    _behaviors_lock: threading.Lock
    recent: deque[tuple[str, str, bytes, list[tuple[bytes, bytes]], bytes]]
    stats: dict[str, int]
    files: dict[str, dict[str, Any]]
    file_contents: dict[str, bytes]
    jobs: dict[str, dict[str, Any]]

    def reset_stats(self) -> None:
        self.stats.update(
            requests=0, streams_started=0, streams_completed=0, streams_cancelled=0, streams_dropped=0
        )

    def push_behaviors(self, *behaviors: dict[str, Any]) -> None:
        """Queue behaviours from the same process (what ``POST /_fake/behaviors`` does)."""
        parsed = [parse_behavior(b) for b in behaviors]
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

    async def _control(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        method = scope["method"]
        body = await read_body(receive)
        status, obj = 200, None
        if path == "/_fake/behaviors":
            if method == "POST":
                try:
                    data = orjson.loads(body) if body else {}
                    items = data.get("behaviors", [data]) if isinstance(data, dict) else data
                    if not isinstance(items, list):
                        raise ValueError("behaviors must be a list")
                    parsed = [parse_behavior(b) for b in items]
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
                "headers": [(b"content-type", JSON_TYPE), (b"content-length", str(len(payload)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": payload, "more_body": False})
