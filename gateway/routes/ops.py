"""Operations: liveness, readiness (store and upstream keys), Prometheus metrics."""

from __future__ import annotations

import anyio
import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.storage.database import ping


async def healthz(request: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


async def readyz(request: Request) -> Response:
    """Red when the store does not answer or a destination's key variable is unset (named, never its value)."""
    state = request.app.state
    problems: list[str] = []
    try:
        with anyio.fail_after(5):
            await anyio.to_thread.run_sync(ping, state.engine)
    except Exception:  # any failure of the store means not ready; the kind is enough to say why
        problems.append("store: not reachable")
    forwarder = state.ports.forwarder
    for destination in state.ports.router.destinations:
        missing = forwarder.missing_key(destination)
        if missing:
            problems.append(f"destination {destination.id}: variable {missing} is not set")
    body = {"status": "ready" if not problems else "not_ready", "problems": problems}
    return Response(orjson.dumps(body), status_code=200 if not problems else 503, media_type="application/json")


async def metrics(request: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def routes() -> list[Route]:
    return [Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics)]
