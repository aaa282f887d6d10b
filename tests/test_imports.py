"""Module boundaries of STYLE.md: the engines know nothing of HTTP or SQL, and the hot path stays lean."""

from __future__ import annotations

import subprocess
import sys

import pytest

FORBIDDEN = {
    "gateway.domain": {"fastapi", "starlette", "httpx", "aiohttp", "sqlalchemy", "redis"},
    "gateway.errors": {"fastapi", "starlette", "httpx", "aiohttp", "sqlalchemy"},
    "gateway.settings": {"fastapi", "starlette", "httpx", "aiohttp", "sqlalchemy"},
    "gateway.pipeline": {"fastapi", "starlette", "sqlalchemy"},
    "gateway.decide": {"fastapi", "starlette", "httpx", "aiohttp", "sqlalchemy", "redis"},
    "gateway.scan": {"fastapi", "starlette", "httpx", "aiohttp", "sqlalchemy", "redis"},
    "gateway.mark": {"fastapi", "starlette", "httpx", "aiohttp", "sqlalchemy"},
    "gateway.audit": {"fastapi", "starlette", "httpx", "aiohttp"},
    "gateway.destroy": {"fastapi", "starlette", "httpx", "aiohttp"},
    "gateway.certificate": {"fastapi", "starlette", "httpx", "aiohttp", "sqlalchemy"},
    "gateway.authenticate": {"fastapi", "starlette", "sqlalchemy", "aiohttp"},
    "gateway.extract": {"fastapi", "starlette", "httpx", "aiohttp", "sqlalchemy"},
    "gateway.routing": {"fastapi", "starlette", "httpx", "aiohttp", "sqlalchemy"},
    "gateway.forward": {"fastapi", "starlette", "sqlalchemy", "httpx"},
}


@pytest.mark.parametrize("module, banned", sorted(FORBIDDEN.items()))
def test_module_does_not_pull_in(module: str, banned: set[str]) -> None:
    code = f"import sys, {module}; print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True).stdout.split())
    assert not loaded & banned, f"{module} imports {loaded & banned}"
