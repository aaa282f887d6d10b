"""Operations: liveness, readiness (store, Redis, change log, upstream keys), Prometheus metrics.

`/readyz` is what a load balancer asks before sending traffic: 503 names each reason, never a
secret or a request. Red when the store does not answer (nothing could be audited), when the
change log has not been read for `STALE_SECONDS` (consents and keys might be out of date), when
rate limits are configured and Redis does not answer (every call would be refused), or when a
destination's key variable is unset. Redis down without limits only slows notifications to the
store's poll: listed under `degraded`, still ready.
"""

from __future__ import annotations

import time

import anyio
import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway import metrics
from gateway.redis_bus import ping as ping_redis
from gateway.storage.database import ping

STORE_TIMEOUT = 2.0
STALE_SECONDS = 1.0  # consent revocations must hold within a second: older than this, the replica is not ready


async def healthz(request: Request) -> Response:
    """Liveness: the process answers (no dependency is checked, so a store outage never restarts it)."""
    return Response(b'{"status":"ok"}', media_type="application/json")


async def _store_problem(state: object) -> str | None:
    try:
        with anyio.fail_after(STORE_TIMEOUT):
            await anyio.to_thread.run_sync(ping, state.engine, abandon_on_cancel=True)  # type: ignore[attr-defined]
    except TimeoutError:
        return f"store: no answer within {STORE_TIMEOUT:.0f} s / ストアが応答しません"
    except Exception as exc:  # any failure of the store means not ready; the kind is enough to say why
        return f"store: not reachable ({type(exc).__name__}) / ストアに接続できません"
    return None


async def readyz(request: Request) -> Response:
    """Ready, or 503 with each problem named."""
    state = request.app.state
    services = state.services
    problems: list[str] = []
    degraded: list[str] = []
    store = await _store_problem(state)
    if store:
        problems.append(store)
    age = time.monotonic() - services.refreshed_at
    if age > STALE_SECONDS + 0.5:
        problems.append(f"change log: not read for {age:.1f} s (consents, keys may be stale) / "
                        "変更ログを読めていません")
    if services.redis is not None:
        redis_problem = await ping_redis(services.redis)
        if redis_problem and services.limiter is not None:
            problems.append(f"redis: not reachable ({redis_problem}); rate limits cannot be checked / "
                            "Redis に接続できないため利用上限を確認できません")
        elif redis_problem:
            degraded.append(f"redis: not reachable ({redis_problem}); changes arrive by polling the store")
    stale = len(services.registry.stale)
    if stale:
        problems.append(f"registry: {stale} items were fingerprinted under an older scheme and cannot be found; "
                        f"register them again / 旧方式で登録された資料が {stale} 件あり検出できません。再登録してください")
    forwarder = state.ports.forwarder
    for destination in state.ports.router.destinations:
        missing = forwarder.missing_key(destination)
        if missing:
            problems.append(f"destination {destination.id}: variable {missing} is not set")
    body = {"status": "ready" if not problems else "not_ready", "problems": problems, "degraded": degraded}
    return Response(orjson.dumps(body), status_code=200 if not problems else 503, media_type="application/json")


async def metrics_endpoint(request: Request) -> Response:
    """Prometheus text format; gauges are read from this process's state at scrape time."""
    services = request.app.state.services
    items, fingerprints = metrics.registry_size(services.registry.registry)
    metrics.REGISTRY_ITEMS.set(items)
    metrics.REGISTRY_FINGERPRINTS.set(fingerprints)
    queue = getattr(services.audit_log, "_queue", None)
    metrics.AUDIT_QUEUE.set(queue.qsize() if queue is not None else 0)
    metrics.AUDIT_COMMITS.set(getattr(services.audit_log, "batches", 0))
    metrics.AUDIT_RECORDS.set(getattr(services.audit_log, "records", 0))
    metrics.CHANGE_LAG.set(time.monotonic() - services.refreshed_at)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def routes() -> list[Route]:
    return [Route("/healthz", healthz), Route("/readyz", readyz), Route("/metrics", metrics_endpoint)]
