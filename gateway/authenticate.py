"""Gateway key → principal, with a short-lived cache so the hot path rarely touches the store.

A verified key is trusted for `ttl` seconds; a deleted key is forgotten at once in
this process and within `ttl` seconds everywhere else. Unknown keys are not
cached, so a key created a moment ago works on its first call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from gateway.domain import Principal
from gateway.errors import AuthenticationFailed
from gateway.keyring import keyed_hash

KeyLookup = Callable[[str], Awaitable[Principal | None]]

MISSING_KEY = ("ゲートウェイキーがありません。Authorization: Bearer <キー> を指定してください。 / "
               "No gateway key: send Authorization: Bearer <key>.")
BAD_KEY = "ゲートウェイキーが無効です。 / The gateway key is not valid."


class KeyCache:
    """Hash → (principal, expiry). Bounded: the oldest entries go first."""

    def __init__(self, ttl: float, max_entries: int = 100_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[str, tuple[Principal, float]] = {}
        self.pending: dict[str, asyncio.Future[Principal | None]] = {}

    def get(self, key_hash: str) -> Principal | None:
        entry = self._entries.get(key_hash)
        if entry is None:
            return None
        if entry[1] < time.monotonic():
            del self._entries[key_hash]
            return None
        return entry[0]

    def put(self, key_hash: str, principal: Principal) -> None:
        if self.ttl <= 0:
            return
        if len(self._entries) >= self.max_entries:
            self._entries.pop(next(iter(self._entries)))
        self._entries[key_hash] = (principal, time.monotonic() + self.ttl)

    def forget(self, key_hash: str | None = None) -> None:
        if key_hash is None:
            self._entries.clear()
        else:
            self._entries.pop(key_hash, None)


async def authenticate(key: str | None, secret: bytes, cache: KeyCache, lookup: KeyLookup) -> Principal:
    """The principal holding `key`, or AuthenticationFailed (401)."""
    if not key:
        raise AuthenticationFailed(MISSING_KEY)
    key_hash = keyed_hash(secret, key)
    principal = cache.get(key_hash)
    if principal is not None:
        return principal
    pending = cache.pending.get(key_hash)
    if pending is None:  # one store lookup per key at a time, however many requests carry it
        pending = asyncio.ensure_future(lookup(key_hash))
        cache.pending[key_hash] = pending
        pending.add_done_callback(lambda _: cache.pending.pop(key_hash, None))
    principal = await asyncio.shield(pending)
    if principal is None:
        raise AuthenticationFailed(BAD_KEY)
    cache.put(key_hash, principal)
    return principal


def key_from_headers(authorization: str | None, x_api_key: str | None) -> str | None:
    """`Authorization: Bearer <key>` (OpenAI clients) or `x-api-key: <key>` (Anthropic clients)."""
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return x_api_key.strip() if x_api_key else None
