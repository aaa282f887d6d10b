"""Several worker processes starting on one new SQLite store migrate it once, none fails."""

from __future__ import annotations

import multiprocessing
import sqlite3
from pathlib import Path


def _migrate(url: str, start: multiprocessing.synchronize.Event, errors: multiprocessing.Queue) -> None:  # type: ignore[name-defined]
    from gateway.storage.database import migrate, open_engine

    engine = open_engine(url)
    start.wait()
    try:
        migrate(engine)
    except Exception as exc:  # reported to the test, which names it
        errors.put(f"{type(exc).__name__}: {exc}")


def test_when_four_workers_start_on_a_new_sqlite_file_then_each_finds_it_migrated(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shuhi.db'}"
    context = multiprocessing.get_context("spawn")
    start, errors = context.Event(), context.Queue()
    workers = [context.Process(target=_migrate, args=(url, start, errors)) for _ in range(4)]
    for worker in workers:
        worker.start()
    start.set()
    for worker in workers:
        worker.join(120)
    assert [w.exitcode for w in workers] == [0, 0, 0, 0]
    assert errors.empty(), errors.get()
    with sqlite3.connect(tmp_path / "shuhi.db") as conn:
        versions = conn.execute("SELECT version_num FROM alembic_version").fetchall()
        assert len(versions) == 1
        assert conn.execute("SELECT count(*) FROM audit_log").fetchone() == (0,)
