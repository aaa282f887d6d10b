"""Module boundaries of STYLE.md: the engines know nothing of HTTP or SQL, and the hot path stays lean."""

from __future__ import annotations

import subprocess
import sys

import pytest

FORBIDDEN = {
    "gateway.domain": {"fastapi", "starlette", "httpx", "sqlalchemy", "redis"},
    "gateway.errors": {"fastapi", "starlette", "httpx", "sqlalchemy"},
    "gateway.settings": {"fastapi", "starlette", "httpx", "sqlalchemy"},
    "gateway.pipeline": {"fastapi", "starlette", "sqlalchemy"},
    "gateway.authenticate": {"fastapi", "starlette", "sqlalchemy"},
    "gateway.extract": {"fastapi", "starlette", "httpx", "sqlalchemy"},
    "gateway.routing": {"fastapi", "starlette", "httpx", "sqlalchemy"},
    "gateway.forward": {"fastapi", "starlette", "sqlalchemy"},
}


@pytest.mark.parametrize("module, banned", sorted(FORBIDDEN.items()))
def test_module_does_not_pull_in(module: str, banned: set[str]) -> None:
    code = f"import sys, {module}; print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True).stdout.split())
    assert not loaded & banned, f"{module} imports {loaded & banned}"
