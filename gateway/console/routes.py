"""Routes of the console: the page shell (language from Accept-Language), static files, the session."""

from __future__ import annotations

import base64
import hashlib
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from gateway.certificate import _CSS as CERTIFICATE_CSS
from gateway.errors import NotFound
from gateway.routes.admin.auth import Admin, require
from gateway.routes.admin.stats import prepare_in_background

STATIC = Path(str(resources.files("gateway.console") / "static"))
SHELL = (STATIC / "index.html").read_text(encoding="utf-8")
TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
         ".svg": "image/svg+xml", ".html": "text/html; charset=utf-8"}
# Only the files shipped, named at start: a path from the URL is looked up, never joined onto the disk.
FILES = {p.relative_to(STATIC).as_posix(): p for p in STATIC.rglob("*") if p.is_file() and p.suffix in TYPES}
# The printable certificate opens from a blob: URL, which inherits this policy: its one <style> is allowed by hash.
CERTIFICATE_STYLE = "'sha256-" + base64.b64encode(hashlib.sha256(CERTIFICATE_CSS.encode()).digest()).decode() + "'"
SECURITY = {
    "content-security-policy": f"default-src 'self'; script-src 'self'; style-src 'self' {CERTIFICATE_STYLE}; "
                               "img-src 'self' data:; "
                               "connect-src 'self'; object-src 'none'; base-uri 'none'; "
                               "form-action 'none'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}

router = APIRouter(include_in_schema=False)


def preferred_language(accept_language: str) -> str:
    """`ja` when the browser ranks Japanese above English (or asks for no English), else `en`."""
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(accept_language.split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        primary = tag.strip().lower().split("-")[0]
        if primary in ("ja", "en") and quality > 0:
            ranked.append((-quality, position, primary))
    return min(ranked)[2] if ranked else "en"


@router.get("/console")
def console_root() -> Response:
    return RedirectResponse("/console/", status_code=307)


@router.get("/console/")
def console_shell(request: Request) -> HTMLResponse:
    """The single page; the pages themselves are ES modules under /console/static/."""
    language = preferred_language(request.headers.get("accept-language", ""))
    prepare_in_background(request.app.state)  # once per process: the dashboard's counts of settled days
    html = SHELL.replace("{{lang}}", language)
    return HTMLResponse(html, headers={**SECURITY, "cache-control": "no-store"})


@router.get("/console/static/{name:path}")
def console_static(name: str) -> Response:
    path = FILES.get(name)
    if path is None:
        raise NotFound(f"{name} はありません。 / {name} does not exist.", code="unknown_url")
    return FileResponse(path, media_type=TYPES[path.suffix], headers={**SECURITY, "cache-control": "no-cache"})


@router.get("/console/session")
def console_session(caller: Admin = Depends(require("legal", "auditor"))) -> dict[str, Any]:
    """Who the token belongs to, so the pages can hide what its role may not do."""
    return {"token_id": caller.token_id, "role": caller.role}
