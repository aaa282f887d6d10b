"""Every successful change made through the admin API becomes an audit record: who, what, on which ids.

An ASGI middleware rather than a line in each handler, so no endpoint can forget
it. The record is committed before the response leaves, so an administrator who
saw "201 Created" can rely on the log holding it. Nothing of the request body is
recorded: ids from the path, the endpoint's name and the status only.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("shuhi.admin")
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class AuditAdminChanges:
    """Wraps the admin app; `require()` leaves the caller in `scope["state"]["admin"]`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in MUTATING or not scope["path"].startswith("/admin/"):
            await self.app(scope, receive, send)
            return

        async def audited_send(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] < 400:
                await self._record(scope, message["status"])
            await send(message)

        await self.app(scope, receive, audited_send)

    async def _record(self, scope: Scope, status: int) -> None:
        admin = scope.get("state", {}).get("admin")
        endpoint = scope.get("endpoint")
        if admin is None or endpoint is None:
            return
        action = getattr(endpoint, "__name__", "admin_change")
        params: dict[str, Any] = dict(scope.get("path_params") or {})
        services = scope["app"].state.services
        try:
            await services.audit_log.append({
                "kind": "admin", "actor": admin.token_id, "actor_role": admin.role, "action": action,
                "target": ",".join(str(v) for v in params.values()) or None,
                "details": {"method": scope["method"], "status": status, **{k: str(v) for k, v in params.items()}},
            })
        except Exception as exc:  # the change is made; the missing record must at least be visible in the logs
            log.error("admin change %s not audited: %s", action, type(exc).__name__)
