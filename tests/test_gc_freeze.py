"""A served gateway moves its startup objects out of the collector's way; an app built in a test process does not."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PROBE = """
import asyncio, gc
from gateway.app import {factory}

async def main():
    app = {call}
    frozen_before = gc.get_freeze_count()
    async with app.admin.router.lifespan_context(app.admin):
        frozen = gc.get_freeze_count()
        tracked = len(gc.get_objects())  # what a full collection walks (frozen objects excluded)
    print(frozen_before, frozen, tracked)

asyncio.run(main())
"""


def _probe(tmp_path: Path, factory: str, call: str) -> tuple[int, int, int]:
    env = {**os.environ, "SHUHI_DATABASE_URL": f"sqlite:///{tmp_path / 'store.db'}"}
    out = subprocess.run([sys.executable, "-c", PROBE.format(factory=factory, call=call)], env=env,
                         capture_output=True, text=True, timeout=240, check=True).stdout
    before, frozen, tracked = out.strip().splitlines()[-1].split()
    return int(before), int(frozen), int(tracked)


def test_a_served_gateway_freezes_what_it_built_at_startup_so_full_collections_stay_short(tmp_path: Path) -> None:
    before, frozen, tracked = _probe(tmp_path, "create_app_from_environment",
                                               "create_app_from_environment()")
    assert before == 0
    # The policy, registry and language models: hundreds of thousands of objects, all frozen, so a full
    # collection (75-100 ms when it walked them) has only what requests create to look at.
    assert frozen > 50_000
    assert tracked < frozen / 10


def test_an_app_built_in_process_leaves_the_collector_alone(tmp_path: Path) -> None:
    _, frozen, tracked = _probe(tmp_path, "create_app", "create_app()")
    assert frozen == 0 and tracked > 50_000
