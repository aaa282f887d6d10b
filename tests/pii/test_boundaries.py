"""The PII engine knows nothing of HTTP or SQL, and a gateway whose policy lists no entity never loads it."""

from __future__ import annotations

import subprocess
import sys

import pytest

# httpx is left out: spaCy imports its own command line (weasel), which imports httpx; the engine never does.
HTTP_AND_SQL = {"fastapi", "starlette", "aiohttp", "sqlalchemy", "uvicorn"}


def loaded_by(module: str) -> set[str]:
    code = (f"import sys, {module}; print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}} | "
            f"{{m for m in sys.modules if m.startswith('gateway.')}})))")
    return set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split())


@pytest.mark.parametrize("module", ["gateway.pii.analyzer", "gateway.pii.placeholders", "gateway.pii.lookup"])
def test_the_engine_knows_nothing_of_http(module: str) -> None:
    loaded = loaded_by(module)
    assert not loaded & HTTP_AND_SQL
    assert not {m for m in loaded if m.startswith(("gateway.routes", "gateway.app", "gateway.storage"))}


def test_the_request_path_does_not_load_presidio_or_models() -> None:
    assert not loaded_by("gateway.pipeline") & {"presidio_analyzer", "spacy", "sudachipy", "ginza", "thinc"}
