"""Change notifications between replicas over Redis pub/sub, so a change holds everywhere at once.

The store's change log stays the truth: a notification carries nothing but "look now", and the
refresh loop still reads the log every `REFRESH_SECONDS` in case a notification is lost (Redis
down, a subscriber reconnecting). A change is announced from the committing transaction's
`commit` event, a moment before the rows are visible, so a woken replica looks again shortly
after (`SETTLE_SECONDS`). Channel and keys are prefixed with a hash of the store's URL: replicas
of one store share them, other deployments on the same Redis do not.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from typing import Any

import redis.asyncio as aioredis
from sqlalchemy import Engine, event

log = logging.getLogger("shuhi.redis")

SETTLE_SECONDS = 0.05  # a woken replica reads the log again this much later, in case the commit was not visible yet
TIMEOUT_SECONDS = 0.5  # every Redis call: a paused Redis must not hold requests longer than this
CHANGED = "shuhi_changed"  # connection info flag set by `storage.changes.record_change`


def key_prefix(database_url: str) -> str:
    """The namespace of one deployment (one store) in a shared Redis."""
    return "shuhi:" + hashlib.sha256(database_url.encode()).hexdigest()[:12] + ":"


def open_client(url: str) -> Any:
    """An asyncio Redis client with short timeouts (fail fast, never hang a request)."""
    return aioredis.Redis.from_url(url, socket_timeout=TIMEOUT_SECONDS, socket_connect_timeout=TIMEOUT_SECONDS,
                                   health_check_interval=5)


class ChangeBus:
    """Publishes this process's committed changes; wakes the refresh loop when any replica publishes."""

    def __init__(self, client: Any, prefix: str) -> None:
        self.client = client
        self.channel = prefix + "changes"
        self.subscribed = False
        self.last_error: str | None = None
        self.published = self.received = 0
        self._wake = asyncio.Event()
        self._publish = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # -- wiring --------------------------------------------------------------------------------------
    def watch(self, engine: Engine) -> None:
        """Announce every commit that wrote to the change log (flagged by `record_change`)."""
        event.listen(engine, "commit", self._on_commit)
        event.listen(engine, "rollback", self._on_rollback)

    def _on_commit(self, conn: Any) -> None:
        if conn.info.pop(CHANGED, False) and self._loop is not None:
            self._loop.call_soon_threadsafe(self._publish.set)

    @staticmethod
    def _on_rollback(conn: Any) -> None:
        conn.info.pop(CHANGED, None)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._tasks = [asyncio.create_task(self._publisher(), name="shuhi-change-publisher"),
                       asyncio.create_task(self._listener(), name="shuhi-change-listener")]

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.client.aclose()

    # -- the refresh loop's side ---------------------------------------------------------------------
    async def wait(self, timeout: float) -> None:
        """Return when a change was announced, or after `timeout` (the poll)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)
        self._wake.clear()

    def wake_soon(self) -> None:
        """Look again shortly: the announcing transaction may not have been visible yet."""
        assert self._loop is not None
        self._loop.call_later(SETTLE_SECONDS, self._wake.set)

    # -- Redis -----------------------------------------------------------------------------------------
    async def _publisher(self) -> None:
        while True:
            await self._publish.wait()
            self._publish.clear()
            for attempt in (1, 2):  # a pooled connection Redis dropped while away fails once, then reconnects
                try:
                    await self.client.publish(self.channel, b"1")
                    self.published += 1
                    break
                except Exception as exc:  # other replicas find the change by polling the store
                    if attempt == 2:
                        self._failed(exc)

    async def _listener(self) -> None:
        while True:
            pubsub = self.client.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                self.subscribed, self.last_error = True, None
                self._wake.set()  # changes made while we were away: look now
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None:
                        self.received += 1
                        self._wake.set()
                        self.wake_soon()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._failed(exc)
                await asyncio.sleep(TIMEOUT_SECONDS)
            finally:
                self.subscribed = False
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(pubsub.aclose(), TIMEOUT_SECONDS)

    def _failed(self, exc: BaseException) -> None:
        reason = type(exc).__name__
        if self.last_error != reason:
            log.warning("redis unreachable (%s): changes arrive by polling the store", reason)
        self.last_error = reason


async def ping(client: Any) -> str | None:
    """None when Redis answers within the timeout, else why not (the exception's type)."""
    started = time.monotonic()
    try:
        await asyncio.wait_for(client.ping(), TIMEOUT_SECONDS * 2)
    except Exception as exc:
        return f"{type(exc).__name__} after {time.monotonic() - started:.1f} s"
    return None
