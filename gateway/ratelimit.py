"""Per-principal and per-group request rates and token quotas.

Limits come from the settings (`SHUHI_REQUESTS_PER_MINUTE`, `SHUHI_TOKENS_PER_DAY` for each
principal; `group_limits:` in the settings file for a budget each group's members share).
Windows are fixed: the current UTC minute for requests, the current UTC day for tokens, so a
refusal can say exactly when to retry. With Redis the counters are shared by every replica
(one script call per request, atomic); without it they live in this process. A request is
counted when admitted; tokens are counted from the provider's `usage` once the answer is in,
so the call that crosses a quota finishes and the next one is refused.

When Redis cannot be reached the limits cannot be checked, and the request is refused with 503
(fail closed): a configured limit is a promise, not a hint.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.domain import Principal
from gateway.errors import RateLimited, ServiceUnavailable

log = logging.getLogger("shuhi.ratelimit")

MINUTE, DAY = 60, 86_400

#: The Retry-After of the refusal being answered, read by `with_retry_after` (one context per request).
RETRY_AFTER: contextvars.ContextVar[int | None] = contextvars.ContextVar("shuhi_retry_after", default=None)


@dataclass(frozen=True, slots=True)
class Budget:
    """One counted scope: a principal or a group, with its limits (0: none)."""

    scope: str
    requests_per_minute: int
    tokens_per_day: int


@dataclass(frozen=True, slots=True)
class Refusal:
    """Which budget is spent, and for how long."""

    budget: Budget
    what: str  # "requests" | "tokens"
    retry_after: int


def budgets_for(principal: Principal, per_principal: tuple[int, int], groups: Mapping[str, tuple[int, int]]
                ) -> list[Budget]:
    """The principal's own budget and one per group of it that has limits."""
    found = []
    if any(per_principal):
        found.append(Budget(f"p:{principal.id}", *per_principal))
    found += [Budget(f"g:{g}", *groups[g]) for g in principal.groups if g in groups and any(groups[g])]
    return found


def window_end(now: float, length: int) -> int:
    """Seconds until the current fixed window ends (at least 1)."""
    return max(1, int(length - now % length + 0.999))


def tokens_of(usage: Any) -> int:
    """Tokens in an OpenAI or Anthropic `usage` object (0 when there is none)."""
    if not isinstance(usage, dict):
        return 0
    if isinstance(usage.get("total_tokens"), int):
        return int(usage["total_tokens"])
    total = 0
    for name in ("prompt_tokens", "completion_tokens", "input_tokens", "output_tokens",
                 "cache_creation_input_tokens", "cache_read_input_tokens"):
        value = usage.get(name)
        if isinstance(value, int):
            total += value
    return total


def refusal_error(refusal: Refusal) -> RateLimited:
    """The provider-style 429, naming the budget (principal or group) and when to retry."""
    kind, _, name = refusal.budget.scope.partition(":")
    who_ja = f"グループ '{name}'" if kind == "g" else "このキーの利用者"
    who_en = f"the group '{name}'" if kind == "g" else "this principal"
    if refusal.what == "requests":
        message = (f"{who_ja} のリクエスト数が上限（毎分 {refusal.budget.requests_per_minute} 件）に達しました。"
                   f"{refusal.retry_after} 秒後に再試行してください。 / {who_en} reached its limit of "
                   f"{refusal.budget.requests_per_minute} requests per minute; retry in {refusal.retry_after} s.")
        code = "rate_limit_exceeded"
    else:
        message = (f"{who_ja} のトークン使用量が上限（1 日 {refusal.budget.tokens_per_day} トークン）に達しました。"
                   f"{refusal.retry_after} 秒後（UTC の翌日）に再試行してください。 / {who_en} used its quota of "
                   f"{refusal.budget.tokens_per_day} tokens per day; retry in {refusal.retry_after} s.")
        code = "token_quota_exceeded"
    RETRY_AFTER.set(refusal.retry_after)
    return RateLimited(message, code=code, extra={"retry_after": refusal.retry_after})


class Limiter:
    """Admits or refuses a principal's request; counts tokens spent. Subclasses keep the counters."""

    def __init__(self, per_principal: tuple[int, int], groups: Mapping[str, tuple[int, int]]) -> None:
        self.per_principal = per_principal
        self.groups = dict(groups)
        self._spending: set[asyncio.Task[None]] = set()
        self._groups: dict[str, tuple[str, ...]] = {}

    async def admit(self, principal: Principal) -> None:
        """Count one request, or raise RateLimited (429) / ServiceUnavailable (503, counters unreachable)."""
        budgets = budgets_for(principal, self.per_principal, self.groups)
        if not budgets:
            return
        if len(self._groups) >= 100_000:
            self._groups.pop(next(iter(self._groups)))
        self._groups[principal.id] = principal.groups  # for counting this principal's tokens later
        refusal = await self._admit(budgets, time.time())
        if refusal is not None:
            raise refusal_error(refusal)

    def spend_later(self, principal_id: str, usage: Any) -> None:
        """Count an answer's tokens in the background (the answer has left already)."""
        tokens = tokens_of(usage)
        groups = self._groups.get(principal_id, ())
        budgets = [b for b in budgets_for(Principal(id=principal_id, groups=groups), self.per_principal,
                                          self.groups) if b.tokens_per_day]
        if tokens <= 0 or not budgets:
            return
        task = asyncio.ensure_future(self._spend_logged(budgets, tokens, time.time()))
        self._spending.add(task)
        task.add_done_callback(self._spending.discard)

    async def _spend_logged(self, budgets: list[Budget], tokens: int, now: float) -> None:
        try:
            await self._spend(budgets, tokens, now)
        except Exception as exc:  # the answer is gone; the quota counts a little low until the store is back
            log.warning("token usage not counted: %s", type(exc).__name__)

    async def _admit(self, budgets: list[Budget], now: float) -> Refusal | None:
        raise NotImplementedError

    async def _spend(self, budgets: list[Budget], tokens: int, now: float) -> None:
        raise NotImplementedError


class LocalLimiter(Limiter):
    """Counters in this process (one replica, no Redis)."""

    def __init__(self, per_principal: tuple[int, int], groups: Mapping[str, tuple[int, int]]) -> None:
        super().__init__(per_principal, groups)
        self._requests: dict[str, int] = {}
        self._tokens: dict[str, int] = {}
        self._minute = self._day = -1

    def _roll(self, now: float) -> None:
        minute, day = int(now // MINUTE), int(now // DAY)
        if minute != self._minute:
            self._requests.clear()
            self._minute = minute
        if day != self._day:
            self._tokens.clear()
            self._day = day

    async def _admit(self, budgets: list[Budget], now: float) -> Refusal | None:
        self._roll(now)
        for budget in budgets:
            if budget.tokens_per_day and self._tokens.get(budget.scope, 0) >= budget.tokens_per_day:
                return Refusal(budget, "tokens", window_end(now, DAY))
            if budget.requests_per_minute and self._requests.get(budget.scope, 0) >= budget.requests_per_minute:
                return Refusal(budget, "requests", window_end(now, MINUTE))
        for budget in budgets:
            if budget.requests_per_minute:
                self._requests[budget.scope] = self._requests.get(budget.scope, 0) + 1
        return None

    async def _spend(self, budgets: list[Budget], tokens: int, now: float) -> None:
        self._roll(now)
        for budget in budgets:
            self._tokens[budget.scope] = self._tokens.get(budget.scope, 0) + tokens


# KEYS: n request counters, then n token counters. ARGV: n, n request limits, n token limits, ttl of each kind.
# Checks every budget first and counts only when all have room, so a refused request costs nothing.
_ADMIT = """
local n = tonumber(ARGV[1])
for i = 1, n do
  local tokens = tonumber(ARGV[1 + n + i])
  if tokens > 0 and tonumber(redis.call('GET', KEYS[n + i]) or '0') >= tokens then return {2, i} end
  local requests = tonumber(ARGV[1 + i])
  if requests > 0 and tonumber(redis.call('GET', KEYS[i]) or '0') >= requests then return {1, i} end
end
for i = 1, n do
  if tonumber(ARGV[1 + i]) > 0 then
    if redis.call('INCR', KEYS[i]) == 1 then redis.call('EXPIRE', KEYS[i], ARGV[2 + 2 * n]) end
  end
end
return {0, 0}
"""


class RedisLimiter(Limiter):
    """Counters in Redis, shared by every replica; unreachable Redis means 503 (fail closed)."""

    def __init__(self, client: Any, prefix: str, per_principal: tuple[int, int],
                 groups: Mapping[str, tuple[int, int]]) -> None:
        super().__init__(per_principal, groups)
        self.client = client
        self.prefix = prefix
        self._script = client.register_script(_ADMIT)

    def _keys(self, budgets: list[Budget], now: float) -> list[str]:
        minute, day = int(now // MINUTE), int(now // DAY)
        return ([f"{self.prefix}rl:r:{b.scope}:{minute}" for b in budgets]
                + [f"{self.prefix}rl:t:{b.scope}:{day}" for b in budgets])

    async def _admit(self, budgets: list[Budget], now: float) -> Refusal | None:
        n = len(budgets)
        args = [n, *(b.requests_per_minute for b in budgets), *(b.tokens_per_day for b in budgets), MINUTE + 5]
        try:
            kind, index = await self._script(keys=self._keys(budgets, now), args=args)
        except Exception as exc:  # any Redis failure: the limits cannot be checked
            log.warning("rate limits not checked: redis %s", type(exc).__name__)
            raise ServiceUnavailable(
                "利用上限を確認できないため、リクエストを転送しません（Redis に接続できません）。 / "
                "Rate limits cannot be checked (Redis is unreachable), so nothing is forwarded.",
                code="rate_limit_unavailable") from None
        if int(kind) == 0:
            return None
        budget = budgets[int(index) - 1]
        return (Refusal(budget, "tokens", window_end(now, DAY)) if int(kind) == 2
                else Refusal(budget, "requests", window_end(now, MINUTE)))

    async def _spend(self, budgets: list[Budget], tokens: int, now: float) -> None:
        keys = self._keys(budgets, now)[len(budgets):]
        async with self.client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.incrby(key, tokens)
                pipe.expire(key, DAY + 60)
            await pipe.execute()


def make_limiter(settings: Any, redis_client: Any | None) -> Limiter | None:
    """The limiter the settings ask for: none without limits, shared through Redis when it is configured."""
    per_principal = (settings.requests_per_minute or 0, settings.tokens_per_day or 0)
    groups = {name: (limits.requests_per_minute or 0, limits.tokens_per_day or 0)
              for name, limits in settings.group_limits.items()}
    if not any(per_principal) and not any(any(g) for g in groups.values()):
        return None
    if redis_client is None:
        return LocalLimiter(per_principal, groups)
    from gateway.redis_bus import key_prefix

    return RedisLimiter(redis_client, key_prefix(settings.database_url), per_principal, groups)


def with_retry_after(send: Any) -> Any:
    """Wrap an ASGI `send`: a 429 gets the `Retry-After` its refusal set (the provider SDKs honour it)."""
    async def sending(message: Any) -> None:
        if message["type"] == "http.response.start" and message["status"] == 429:
            retry_after = RETRY_AFTER.get()
            if retry_after is not None:
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"retry-after", str(retry_after).encode())]}
        await send(message)

    return sending
