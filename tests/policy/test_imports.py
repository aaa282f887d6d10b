"""The policy engine stays free of HTTP, SQL and the detection package (STYLE.md), as click's test_imports does."""

from __future__ import annotations

import json
import subprocess
import sys

import gateway.decide
import gateway.policy

FORBIDDEN = ("fastapi", "starlette", "httpx", "sqlalchemy", "redis", "uvicorn", "gateway.detection")


def test_importing_the_engine_pulls_in_no_http_sql_or_detection() -> None:
    code = ("import json, sys, gateway.decide, gateway.policy; "
            "print(json.dumps(sorted(sys.modules)))")
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                                       text=True).stdout)
    offending = [m for m in loaded if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
    assert offending == []


def test_public_names_are_documented() -> None:
    for module in (gateway.decide, gateway.policy):
        for name in module.__all__:
            value = getattr(module, name)
            if callable(value) or isinstance(value, type):
                assert (value.__doc__ or "").strip(), f"{module.__name__}.{name} has no docstring"
