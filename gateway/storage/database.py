"""Opening the store: one SQLAlchemy engine, migrated to the newest schema at start."""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url

MIGRATIONS = Path(__file__).parent / "migrations"
_MIGRATION_LOCK = 0x5348_5548  # PostgreSQL advisory lock: one replica migrates at a time


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def engine_url(url: str) -> str:
    """Accept plain `postgresql://` URLs (API.md) and pick the driver ourselves."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


def open_engine(url: str) -> Engine:
    """Create the engine; SQLite gets WAL and a busy timeout so readers never block the writer."""
    sa_url = make_url(engine_url(url))
    if sa_url.get_backend_name() == "sqlite":
        if sa_url.database and sa_url.database != ":memory:":
            Path(sa_url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(sa_url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    # UTC sessions: times are stored and compared in UTC whatever the server's own time zone is.
    options = str(sa_url.query.get("options", ""))
    sa_url = sa_url.update_query_dict({"options": f"{options} -c timezone=UTC".strip()})
    return create_engine(sa_url, pool_size=10, max_overflow=20, pool_pre_ping=True)


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (Alembic), serialised across replicas and workers.

    PostgreSQL: an advisory lock. SQLite: an exclusive `flock` on a file beside the store, since two
    worker processes starting on a new file would otherwise both create the tables and one would fail.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with _sqlite_migration_lock(engine), engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


@contextlib.contextmanager
def _sqlite_migration_lock(engine: Engine) -> Iterator[None]:
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if not database or database == ":memory:" or database.startswith("file:"):
        yield
        return
    with open(f"{database}.migrate-lock", "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file is closed
        yield


def ping(engine: Engine) -> None:
    """Raise if the store does not answer."""
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))
