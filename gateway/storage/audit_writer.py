"""Appending to the audit log: the chain lock, sealing, commits, and the request path's group-commit writer.

One chain per store, also with several replicas: every transaction that appends takes the chain
lock first (PostgreSQL: an advisory transaction lock per schema; SQLite: `BEGIN IMMEDIATE`) and
reads the head inside it. The tables are defined in `gateway.storage.audit_log`, which re-exports
this module's public names; here they are written with plain driver statements.

An append is acknowledged only once its transaction committed (SQLite with `durable`: its
write-ahead log synced to disk). When the store fails or stalls past the timeout, `append` raises
AuditUnavailable and the request must be refused; a stalled batch may still commit later: refused,
yet on record, never the reverse.

The request path's writer (`AuditLog`) runs on the event loop: a thread would have to win the GIL
back from a loop that is busy serving requests for every statement it runs, which cost several
milliseconds per batch under load. Only the disk sync (one `fdatasync`, SQLite) waits in a thread.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import Any

import psycopg
from psycopg.pq import Escaping
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError

from gateway.audit import GENESIS, Anchor, AuditUnavailable, Record, chain, parse_at, prepare

__all__ = [
    "CHUNK", "COLUMNS", "AuditLog", "append_admin_sync", "append_many_sync", "append_sync", "chain_transaction",
    "commit", "read_anchor", "read_head", "seal_records",
]

log = logging.getLogger("shuhi.audit")
_CHAIN_LOCK = 0x5348_5541  # PostgreSQL advisory lock, with the schema's hash as second key
CHUNK = 5000
COLUMNS = ("seq", "id", "at", "kind", "principal", "decision", "prev_hash", "hash", "canonical")
_COPY_LOG = f"COPY audit_log ({', '.join(COLUMNS)}) FROM STDIN"
_COPY_TAGS = "COPY audit_log_agreements (agreement_id, seq) FROM STDIN"


def _begin_chain(conn: Connection) -> None:
    """Begin the one transaction that may append: the head read next stays the head until commit."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(%s, hashtext(current_schema()))", (_CHAIN_LOCK,))
    else:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _sync_full(conn: Connection, on: bool) -> None:
    """SQLite only: sync the WAL at every commit. The store's default (NORMAL) survives a crash of the
    process, not of the machine; an acknowledged audit record must survive both."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql(f"PRAGMA synchronous={'FULL' if on else 'NORMAL'}")
        conn.commit()


@contextlib.contextmanager
def chain_transaction(engine: Engine) -> Iterator[Connection]:
    """A pooled connection in a chain transaction, durable on SQLite for this transaction only."""
    with engine.connect() as conn:
        _sync_full(conn, True)
        try:
            _begin_chain(conn)
            yield conn
        finally:
            conn.rollback()  # a no-op after a commit; ends the transaction so the pragma may change
            _sync_full(conn, False)


def read_anchor(conn: Connection) -> Anchor:
    """The newest checkpoint (see `audit_log.prune`), or the chain's start."""
    row = conn.exec_driver_sql("SELECT seq, hash FROM audit_checkpoints ORDER BY seq DESC LIMIT 1").first()
    return Anchor(row.seq, row.hash) if row else Anchor()


def read_head(conn: Connection) -> Anchor:
    row = conn.exec_driver_sql("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").first()
    return Anchor(row.seq, row.hash) if row else read_anchor(conn)


def seal_records(conn: Connection, prepared: list[Record]) -> list[Record]:
    """Chain and insert prepared records after the head; the caller holds the lock and commits.

    Plain driver statements (SQLite `executemany`, PostgreSQL COPY): on the request path every
    microsecond per record counts.
    """
    at = _sqlite_at if conn.dialect.name == "sqlite" else parse_at
    sealed, rows, tags = _sealed_rows(prepared, read_head(conn), at)
    if conn.dialect.name == "postgresql":
        _copy(conn, rows, tags)
    else:
        conn.exec_driver_sql(f"INSERT INTO audit_log ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * 9)})", rows)
        if tags:
            conn.exec_driver_sql("INSERT INTO audit_log_agreements (agreement_id, seq) VALUES (?, ?)", tags)
    return sealed


def _copy(conn: Connection, rows: list[tuple[Any, ...]], tags: list[tuple[str, int]]) -> None:
    """PostgreSQL: COPY costs the client a third less CPU per record than `executemany`; its driver
    errors are raised as SQLAlchemy's, like every other statement's."""
    driver = conn.connection.driver_connection
    assert driver is not None
    try:
        with driver.cursor() as cursor:
            for statement, data in ((_COPY_LOG, rows), (_COPY_TAGS, tags)):
                if data:
                    with cursor.copy(statement) as copy:
                        for row in data:
                            copy.write_row(row)
    except conn.dialect.loaded_dbapi.IntegrityError as exc:
        raise IntegrityError(_COPY_LOG, None, exc) from exc
    except conn.dialect.loaded_dbapi.Error as exc:
        raise DBAPIError(_COPY_LOG, None, exc, connection_invalidated=bool(driver.closed)) from exc


def _unavailable(exc: BaseException) -> AuditUnavailable:
    return AuditUnavailable(f"監査ログに書き込めません。 / The audit log cannot be written ({type(exc).__name__}).")


def commit(engine: Engine, prepared: list[Record]) -> list[Record]:
    """Append prepared records in one transaction; raises AuditUnavailable, or IntegrityError on a reused id."""
    try:
        with chain_transaction(engine) as conn:
            sealed = seal_records(conn, prepared)
            conn.commit()
        return sealed
    except IntegrityError:
        raise
    except SQLAlchemyError as exc:
        raise _unavailable(exc) from exc


def _each(write: Callable[[list[Record]], list[Record]], prepared: list[Record]) -> list[Record | AuditUnavailable]:
    """`write` the batch, falling back to one transaction per record when one of them clashes (a reused id)."""
    try:
        return list(write(prepared))
    except IntegrityError:
        if len(prepared) == 1:
            return [AuditUnavailable(f"監査レコード {prepared[0]['id']} は既にあります。 / "
                                     f"The audit record {prepared[0]['id']} exists already.")]
    except AuditUnavailable as exc:
        return [exc] * len(prepared)
    return [result for one in prepared for result in _each(write, [one])]


class _Clash(Exception):
    """A record of the batch could not be inserted (a reused id): the batch is retried one record at a time."""


class _Busy(Exception):
    """SQLite: another connection holds the write lock; retried after a short sleep, the event loop never waits."""


def _exists(record: Record) -> AuditUnavailable:
    return AuditUnavailable(f"監査レコード {record['id']} は既にあります。 / The audit record {record['id']} exists already.")


async def _each_async(write: Callable[[list[Record]], Awaitable[list[Record]]],
                      prepared: list[Record]) -> list[Record | AuditUnavailable]:
    """`_each` for the request path's writer: the batch in one transaction, else record by record."""
    try:
        return list(await write(prepared))
    except _Clash:
        if len(prepared) == 1:
            return [_exists(prepared[0])]
    except AuditUnavailable as exc:
        return [exc] * len(prepared)
    results: list[Record | AuditUnavailable] = []
    for one in prepared:
        results += await _each_async(write, [one])
    return results


def _sealed_rows(prepared: list[Record], head: Anchor, at: Callable[[str], Any]
                 ) -> tuple[list[Record], list[tuple[Any, ...]], list[tuple[str, int]]]:
    """Chain `prepared` after `head`: the sealed records, their `audit_log` rows and their agreement tags."""
    seq, prev = head.seq, head.hash
    sealed, rows, tags = [], [], []
    for fields in prepared:
        seq += 1
        record, body = chain(fields, seq, prev)
        prev = record["hash"]
        rows.append((seq, record["id"], at(record["at"]), record["kind"], record.get("principal"),
                     record.get("decision"), record["prev_hash"], prev, body.decode()))
        tags.extend((agreement, seq) for agreement in record.get("agreements", ()))
        sealed.append(record)
    return sealed, rows, tags


def _sqlite_at(at: str) -> str:
    """`at` as SQLite stores it: SQLAlchemy's own text form, so Core filters compare alike."""
    return f"{at[:10]} {at[11:26]}"


_HEAD = "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1"
_ANCHOR = "SELECT seq, hash FROM audit_checkpoints ORDER BY seq DESC LIMIT 1"
_SQLITE_INSERT_LOG = f"INSERT INTO audit_log ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * 9)})"
_SQLITE_INSERT_TAGS = "INSERT INTO audit_log_agreements (agreement_id, seq) VALUES (?, ?)"
# PostgreSQL: one round trip a batch, one simple query (values bound on the client). The lock and the
# INSERT are separate statements, so the INSERT's snapshot is taken once the lock is held.
_PG_LOCK = f"BEGIN; SELECT pg_advisory_xact_lock({_CHAIN_LOCK}, hashtext(current_schema())); ".encode()
_PG_HEAD = (b"SELECT 0, seq, hash FROM (SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1) AS head "
            b"UNION ALL SELECT 1, seq, hash FROM (SELECT seq, hash FROM audit_checkpoints ORDER BY seq DESC LIMIT 1) "
            b"AS anchor")
_PG_HEAD_HASH = (b"COALESCE((SELECT hash FROM audit_log ORDER BY seq DESC LIMIT 1), "
                 b"(SELECT hash FROM audit_checkpoints ORDER BY seq DESC LIMIT 1), '" + GENESIS.encode() + b"')")
_PG_TRIES = 8  # guarded attempts of a batch before it takes the lock across two round trips

_SQLITE_BUSY_SECONDS = 30.0  # as long as the store's other connections wait for the lock
_CHECKPOINT_RECORDS = 2000  # SQLite: the sync thread checkpoints the WAL after about this many records


class _SqliteStore:
    """SQLite on the request path: the transaction runs on the event loop, the disk sync in one thread.

    A batch's transaction (write lock, head, one `executemany`, commit) takes tens of microseconds when
    the commit does not sync, so it runs on the event loop itself: no thread has to win the GIL back
    from a busy loop for each of its statements. With `durable`, the records are acknowledged only
    after the sync thread has `fdatasync`ed the write-ahead log (one call, its GIL released while the
    disk works): as safe as `synchronous=FULL`, which syncs that same file at every commit. The next
    batches are written while a sync runs; under load the thread syncs again as soon as it is done,
    without being woken (each wake-up costs the loop two context switches on its one core). The WAL
    is checkpointed by the sync thread on its own connection, never on the event loop.
    """

    def __init__(self, engine: Engine, durable: bool) -> None:
        self.engine, self.durable = engine, durable
        self.path = engine.url.database or ""
        self._raw: Any = None  # the pool's wrapper, invalidated when dropped
        self._conn: sqlite3.Connection | None = None
        self._wal = False
        self._written = 0
        self._checkpoint = False  # due: the sync thread checkpoints after its next sync
        # Written, not yet synced: the sync thread takes them all before each `fdatasync`. It is woken
        # through `_wake` only when it sleeps; under load it syncs again at once, nobody wakes it.
        self._unsynced: collections.deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = (
            collections.deque())
        self._sleeping = True
        self._wake: queue.SimpleQueue[bool] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._fd: int | None = None
        self._inode: int | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            try:
                self._raw = self.engine.raw_connection()
            except SQLAlchemyError as exc:
                raise _unavailable(exc) from exc
            conn = self._raw.driver_connection
            conn.isolation_level = None  # transactions begun and ended here, by name
            conn.execute("PRAGMA busy_timeout=0")  # a locked store is retried by sleeping, not by blocking
            conn.execute("PRAGMA wal_autocheckpoint=0")  # the sync thread checkpoints, off the event loop
            self._wal = conn.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"
            conn.execute(f"PRAGMA synchronous={'NORMAL' if self._wal or not self.durable else 'FULL'}")
            self._conn = conn
        return self._conn

    def drop(self) -> None:
        if self._raw is not None:
            with contextlib.suppress(Exception):
                self._raw.invalidate()  # not back to the pool: its pragmas stay with it
        self._raw, self._conn = None, None

    def _transaction(self, prepared: list[Record]) -> list[Record]:
        conn = self._connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                raise _Busy from None
            self.drop()
            raise _unavailable(exc) from exc
        except sqlite3.Error as exc:
            self.drop()
            raise _unavailable(exc) from exc
        try:
            row = conn.execute(_HEAD).fetchone() or conn.execute(_ANCHOR).fetchone()
            sealed, rows, tags = _sealed_rows(prepared, Anchor(*row) if row else Anchor(), _sqlite_at)
            conn.executemany(_SQLITE_INSERT_LOG, rows)
            if tags:
                conn.executemany(_SQLITE_INSERT_TAGS, tags)
            conn.execute("COMMIT")
        except sqlite3.IntegrityError:
            conn.execute("ROLLBACK")
            raise _Clash from None
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            self.drop()
            raise _unavailable(exc) from exc
        self._written += len(sealed)
        return sealed

    async def write(self, prepared: list[Record]) -> list[Record]:
        """Commit `prepared` in one transaction; with `durable`, return once it is on disk."""
        delay, deadline = 0.0005, time.monotonic() + _SQLITE_BUSY_SECONDS
        while True:
            try:
                sealed = self._transaction(prepared)
                break
            except _Busy:
                if time.monotonic() > deadline:
                    raise _unavailable(TimeoutError("database is locked")) from None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.01)
        if self._wal and self._written >= _CHECKPOINT_RECORDS:
            self._written, self._checkpoint = 0, True
            if not self.durable:
                self._notify()
        return sealed

    def synced(self) -> asyncio.Future[None] | None:
        """A future done once everything written so far is on disk (None: nothing to wait for)."""
        if not (self._wal and self.durable):
            return None
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._unsynced.append((loop, done))
        self._notify()
        return done

    def _notify(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._sync_forever, name="shuhi-audit-sync", daemon=True)
            self._thread.start()
        if self._sleeping:
            self._wake.put(True)

    def _sync_forever(self) -> None:
        """The sync thread: `fdatasync` the WAL for whatever was written before, wake the loop; repeat
        while more was written meanwhile, else sleep. Checkpoints when one is due."""
        checkpointer: sqlite3.Connection | None = None
        while True:
            if not self._unsynced and not self._checkpoint:
                self._sleeping = True
                if not self._unsynced and not self._checkpoint:  # set before looking: no wake is lost
                    if not self._wake.get():
                        break
                self._sleeping = False
                continue
            covered = [self._unsynced.popleft() for _ in range(len(self._unsynced))]
            if covered:
                error: OSError | None = None
                try:
                    os.fdatasync(self._wal_fd())
                except OSError as exc:
                    error = exc
                    self._close_fd()
                by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
                for loop, done in covered:
                    by_loop.setdefault(loop, []).append(done)
                for loop, futures in by_loop.items():
                    with contextlib.suppress(RuntimeError):  # a loop closed meanwhile
                        loop.call_soon_threadsafe(_settle_all, futures, error)
            if self._checkpoint:
                self._checkpoint = False
                try:
                    checkpointer = checkpointer or sqlite3.connect(self.path, timeout=5, check_same_thread=False)
                    checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error as exc:
                    log.warning("audit log checkpoint failed: %s", type(exc).__name__)
        if checkpointer is not None:
            checkpointer.close()
        self._close_fd()

    def _wal_fd(self) -> int:
        """An open descriptor of the current WAL file (reopened if the file was replaced)."""
        path = self.path + "-wal"
        inode = os.stat(path).st_ino
        if self._fd is None or inode != self._inode:
            self._close_fd()
            self._fd, self._inode = os.open(path, os.O_RDONLY), inode
        return self._fd

    def _close_fd(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    async def aclose(self) -> None:
        if self._thread is not None:
            self._wake.put(False)
            await asyncio.to_thread(self._thread.join)
            self._thread = None
        self.drop()


def _settle_all(futures: list[asyncio.Future[None]], error: BaseException | None) -> None:
    for done in futures:
        if done.done():
            continue
        if error is None:
            done.set_result(None)
        else:
            done.set_exception(_unavailable(error))


def _pg_insert(literal: Callable[[bytes], bytes], rows: list[tuple[Any, ...]], tags: list[tuple[str, int]],
               after: Anchor | None = None) -> bytes:
    """The statements that insert a batch and commit, every value escaped by libpq.

    With `after`, the batch is guarded instead of locked beforehand: the query begins, takes the chain
    lock, inserts only if the head still is `after`, reads the head it leaves (the batch's last record,
    or another writer's), and commits, so the lock is held only while the server runs this one query.
    Without `after`, the caller holds the lock already. Built here rather than with placeholders:
    psycopg parses a query of thousands of placeholders in Python, which cost more than the whole
    rest of the batch.
    """
    def text(value: str | None) -> bytes:
        return b"NULL" if value is None else literal(value.encode())

    values = b", ".join(
        b"(%d, %b, %b::timestamptz, %b, %b, %b, %b, %b, %b)" % (
            seq, text(id_), text(at), text(kind), text(principal), text(decision), text(prev), text(hash_),
            text(canonical))
        for seq, id_, at, kind, principal, decision, prev, hash_, canonical in rows)
    tag_values = b", ".join(b"(%b, %d)" % (text(agreement), seq) for agreement, seq in tags)
    columns = ", ".join(COLUMNS).encode()
    if after is None:
        query = b"INSERT INTO audit_log (" + columns + b") VALUES " + values + b"; "
        if tags:
            query += b"INSERT INTO audit_log_agreements (agreement_id, seq) VALUES " + tag_values + b"; "
        return query + b"COMMIT"
    query = (_PG_LOCK + b"INSERT INTO audit_log (" + columns + b") SELECT * FROM (VALUES " + values
             + b") AS batch WHERE " + _PG_HEAD_HASH + b" = " + text(after.hash) + b"; ")
    if tags:
        query += (b"INSERT INTO audit_log_agreements (agreement_id, seq) SELECT * FROM (VALUES " + tag_values
                  + b") AS batch WHERE EXISTS (SELECT 1 FROM audit_log WHERE seq = %d AND id = %b); "
                  % (rows[0][0], text(rows[0][1])))
    return query + _PG_HEAD + b"; COMMIT"


def _head_of(rows: list[tuple[Any, ...]]) -> Anchor:
    """The head from `_PG_HEAD`'s rows: the log's last record, else the newest checkpoint, else genesis."""
    found = {row[0]: Anchor(row[1], row[2]) for row in rows}
    return found.get(0) or found.get(1) or Anchor()


class _PostgresStore:
    """PostgreSQL on the request path: an asynchronous connection on the event loop, one round trip a batch.

    Optimistic: the batch is chained after the head this writer last saw and sent as one simple query
    (values bound on the client: psycopg's pipeline mode and array parameters cost several times more
    CPU per batch here) that begins, takes the chain lock, inserts the batch if the head is still the
    one it was chained after, reads the head, and commits. When another replica appended meanwhile
    nothing is inserted, and the head read back is the one to chain after next: a retry is one more
    round trip, and no round trip ends with the lock held, so a writer never holds it while its event
    loop serves requests. After `_PG_TRIES` misses in a row the batch takes the lock first (two round
    trips), so it cannot be starved. The commit is durable when it returns (`synchronous_commit`).
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._conn: Any = None
        self._head: Anchor | None = None  # the head after this writer's last round trip

    async def _connection(self) -> Any:
        if self._conn is None or self._conn.closed:
            self._head = None
            args, kwargs = self.engine.dialect.create_connect_args(self.engine.url)
            kwargs.pop("context", None)
            try:
                self._conn = await psycopg.AsyncConnection.connect(*args, **kwargs, autocommit=True,
                                                                   cursor_factory=psycopg.AsyncClientCursor)
            except psycopg.Error as exc:
                raise _unavailable(exc) from exc
        return self._conn

    async def write(self, prepared: list[Record]) -> list[Record]:
        for attempt in (1, 2):
            conn = await self._connection()
            try:
                sealed = await self._optimistic(conn, prepared)
            except psycopg.IntegrityError:
                self._head = None
                await conn.execute("ROLLBACK")
                raise _Clash from None
            except psycopg.Error as exc:
                lost = conn.closed or isinstance(exc, psycopg.OperationalError)
                await self.drop()
                if attempt == 2 or not lost:
                    raise _unavailable(exc) from exc
            else:
                self._head = Anchor(sealed[-1]["seq"], sealed[-1]["hash"])
                return sealed
        raise AssertionError("unreachable")

    async def _optimistic(self, conn: Any, prepared: list[Record]) -> list[Record]:
        """Guarded attempts, each one round trip after the head the last one read back."""
        head, self._head = self._head, None
        if head is None:  # a new connection: the head read without the lock (the guard checks it)
            cursor = await conn.execute(_PG_HEAD)
            head = _head_of(await cursor.fetchall())
        for _ in range(_PG_TRIES):
            sealed, moved = await self._guarded(conn, prepared, head)
            if sealed is not None:
                return sealed
            head = moved  # another writer appended: chain after its last record
        return await self._locked(conn, prepared)

    @staticmethod
    async def _guarded(conn: Any, prepared: list[Record], head: Anchor) -> tuple[list[Record] | None, Anchor]:
        """One round trip: (the sealed batch, or None when the head had moved; the head it left)."""
        sealed, rows, tags = _sealed_rows(prepared, head, str)
        cursor = await conn.execute(_pg_insert(Escaping(conn.pgconn).escape_literal, rows, tags, after=head))
        cursor.nextset()  # BEGIN, then the lock
        cursor.nextset()
        inserted = cursor.rowcount
        if tags:
            cursor.nextset()
        cursor.nextset()
        now = _head_of(await cursor.fetchall())
        return (sealed if inserted == len(rows) else None), now

    @staticmethod
    async def _locked(conn: Any, prepared: list[Record]) -> list[Record]:
        """Two round trips, the lock held between them: the lock and the head, then the batch after it."""
        cursor = await conn.execute(_PG_LOCK + _PG_HEAD)
        cursor.nextset()  # BEGIN, the lock, then the head and the anchor
        cursor.nextset()
        sealed, rows, tags = _sealed_rows(prepared, _head_of(await cursor.fetchall()), str)
        await conn.execute(_pg_insert(Escaping(conn.pgconn).escape_literal, rows, tags))
        return sealed

    async def drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
            self._conn = None

    def synced(self) -> None:
        """Nothing to wait for: a commit is durable when it returns."""
        return None

    async def aclose(self) -> None:
        await self.drop()


class _Batch:
    """Records appended while the previous batch was being committed; everybody waiting shares one future."""

    __slots__ = ("records", "future", "timer")

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.future: asyncio.Future[list[Record | AuditUnavailable]] | None = None
        self.timer: asyncio.TimerHandle | None = None


class AuditLog:
    """The request path's writer: `append` returns once the record is committed, in group commits.

    Appends join the open batch; one task on the event loop commits one batch at a time, so whatever
    arrives while a commit runs goes into the next (up to `max_batch` records). Everybody waiting on a
    batch awaits one future, woken once, with one timer: an append waits at most `timeout` seconds,
    then is refused; its record may still be committed later (refused, yet on record, never the
    reverse). Records nobody waits for (`append_nowait`: outcomes, after the answer) ride with the
    next awaited batch, or are committed after `lazy` seconds when none comes, so a request's decision
    record does not queue behind the previous request's outcome. Under load (the last batch held more
    than one record) the writer lingers `linger` seconds before the next commit, to gather more: each
    transaction and each disk sync has a fixed cost on the one core the event loop runs on. SQLite and PostgreSQL each have
    their store class (`_SqliteStore`, `_PostgresStore`); `start()`/`aclose()` belong in the lifespan.
    """

    def __init__(self, engine: Engine, *, max_batch: int = 512, timeout: float = 10.0, linger: float = 0.002,
                 lazy: float = 0.02, durable: bool = True) -> None:
        self.engine, self.max_batch, self.timeout, self.linger, self.lazy = engine, max_batch, timeout, linger, lazy
        self.durable = durable  # SQLite: records acknowledged once on disk, not only handed to the OS
        self.batches = self.records = 0
        self._store: _SqliteStore | _PostgresStore = (
            _PostgresStore(engine) if engine.dialect.name == "postgresql" else _SqliteStore(engine, durable))
        self._batches: collections.deque[_Batch] = collections.deque()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._due = False  # the lazy timer fired: commit the open batch even if nobody waits on it
        self._lazy_timer: asyncio.TimerHandle | None = None
        self._closed = False
        self._waiting = 0  # appends not yet resumed: `aclose` returns once each has its answer
        self._answered: asyncio.Event | None = None
        self._syncing = 0  # batches written, waiting for the disk
        self._synced: asyncio.Event | None = None

    @property
    def queued(self) -> int:
        """Records appended and not yet committed (the `shuhi_audit_queue_records` gauge)."""
        return sum(len(batch.records) for batch in self._batches)

    def qsize(self) -> int:
        """`queued`, under the name the metrics endpoint reads from `_queue` (an `asyncio.Queue` before)."""
        return self.queued

    @property
    def _queue(self) -> AuditLog:
        return self

    async def start(self) -> None:
        """Start the writer (also done by the first append)."""
        self._ensure_started()

    def _ensure_started(self) -> None:
        if self._task is None and not self._closed:
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="shuhi-audit-writer")

    def _open_batch(self) -> _Batch:
        if not self._batches or len(self._batches[-1].records) >= self.max_batch:
            self._batches.append(_Batch())
            if len(self._batches) > 1:
                self._kick()  # a full batch waits for nobody
        return self._batches[-1]

    def _kick(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def append(self, fields: Mapping[str, Any]) -> Record:
        """Append one record (see `gateway.audit.FIELDS`) and return it sealed, once durably committed.

        Raises AuditUnavailable when the store cannot take it, ValueError when the fields are wrong:
        either way, nothing may be forwarded.
        """
        if self._closed:
            raise AuditUnavailable("監査ログは停止中です。 / The audit log is shut down.")
        prepared = prepare(fields)
        self._ensure_started()
        batch = self._open_batch()
        index = len(batch.records)
        batch.records.append(prepared)
        future = batch.future
        if future is None:
            loop = asyncio.get_running_loop()
            future = batch.future = loop.create_future()
            batch.timer = loop.call_later(self.timeout, _expire, future)
            self._kick()
        self._waiting += 1
        try:
            result = (await asyncio.shield(future))[index]
        except AuditUnavailable as exc:  # shared by the batch: each caller raises its own
            raise AuditUnavailable(exc.message) from None
        finally:
            self._waiting -= 1
            if self._waiting == 0 and self._answered is not None:
                self._answered.set()
        if isinstance(result, AuditUnavailable):
            raise AuditUnavailable(result.message)
        return result

    def append_nowait(self, fields: Mapping[str, Any]) -> None:
        """Queue a record nobody waits for (outcome records: the decision record was committed first).

        It is committed with the next awaited batch, or within `lazy` seconds; a failure is logged,
        since no request can be refused any more.
        """
        if self._closed or self._task is None:
            log.error("audit record dropped: the audit log is not running")
            return
        self._open_batch().records.append(prepare(fields))
        if self._lazy_timer is None:
            self._lazy_timer = asyncio.get_running_loop().call_later(self.lazy, self._lazy_due)

    def _lazy_due(self) -> None:
        self._lazy_timer = None
        self._due = True
        self._kick()

    async def aclose(self) -> None:
        """Commit what is queued, then stop the writer and release its connection."""
        if self._closed:
            return
        self._closed = True
        if self._lazy_timer is not None:
            self._lazy_timer.cancel()
            self._lazy_timer = None
        if self._task is not None:
            self._kick()
            await self._task
        if self._syncing:
            self._synced = asyncio.Event()
            await self._synced.wait()
        if self._waiting:
            self._answered = asyncio.Event()
            await self._answered.wait()
        await self._store.aclose()

    def _next_batch(self) -> _Batch | None:
        """The batch to commit now, if any: somebody waits on it, it is full, or it is due."""
        batches = self._batches
        if not batches or not batches[0].records:
            return None
        if batches[0].future is None and len(batches) == 1 and not self._due and not self._closed:
            return None
        self._due = False
        return batches.popleft()

    async def _run(self) -> None:
        assert self._wake is not None
        last = 0
        while True:
            if last > 1 and self.linger > 0 and self._batches and not self._closed:
                await asyncio.sleep(self.linger)  # under load: gather more, each transaction and sync costs
            batch = self._next_batch()
            if batch is None:
                last = 0
                if self._closed:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            last = len(batch.records)
            await self._commit(batch)

    async def _commit(self, batch: _Batch) -> None:
        """Write the batch; its callers are answered once it is durable (SQLite: when the sync thread
        has synced it, while the next batches are written)."""
        synced: asyncio.Future[None] | None = None
        try:
            results = await _each_async(self._store.write, batch.records)
            if any(not isinstance(r, AuditUnavailable) for r in results):
                synced = self._store.synced()
        except Exception as exc:  # a bug must not leave appends waiting, nor kill the writer
            results = [_unavailable(exc)] * len(batch.records)
        self.batches += 1
        if synced is None:
            self._answer(batch, results)
            return
        self._syncing += 1
        synced.add_done_callback(lambda done: self._after_sync(batch, results, done))

    def _after_sync(self, batch: _Batch, results: list[Record | AuditUnavailable],
                    done: asyncio.Future[None]) -> None:
        self._syncing -= 1
        error = done.exception()
        if isinstance(error, AuditUnavailable):  # written, not known to be on disk: refused, yet maybe on record
            results = [error] * len(results)
        self._answer(batch, results)
        if self._syncing == 0 and self._synced is not None:
            self._synced.set()

    def _answer(self, batch: _Batch, results: list[Record | AuditUnavailable]) -> None:
        failed = [r for r in results if isinstance(r, AuditUnavailable)]
        self.records += len(results) - len(failed)
        if batch.timer is not None:
            batch.timer.cancel()
        future = batch.future
        if future is not None and not future.done():
            future.set_result(results)
        if failed:
            log.error("%d audit records not written: %s", len(failed), failed[0].code)


def _expire(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_exception(AuditUnavailable("監査ログの書き込みが時間切れです。 / The audit log did not answer in time."))


def append_sync(engine: Engine, fields: Mapping[str, Any]) -> Record:
    """Append one record in its own transaction (sync code: admin endpoints, CLI); same lock, same chain."""
    result = _each(lambda prepared: commit(engine, prepared), [prepare(fields)])[0]
    if isinstance(result, AuditUnavailable):
        raise result
    return result


def append_admin_sync(engine: Engine, *, actor: str, actor_role: str, action: str, target: str | None = None,
                      details: Mapping[str, Any] | None = None) -> Record:
    """Record an admin change: who (token id, role), what (`agreement.create`…), on what; ids, never text."""
    return append_sync(engine, {"kind": "admin", "actor": actor, "actor_role": actor_role, "action": action,
                                "target": target, "details": dict(details) if details else None})


def append_many_sync(engine: Engine, fields: Iterable[Mapping[str, Any]], chunk: int = CHUNK) -> int:
    """Append many records, `chunk` per transaction (imports, benchmarks); returns how many."""
    count, batch = 0, []
    for one in fields:
        batch.append(prepare(one))
        if len(batch) >= chunk:
            count += len(commit(engine, batch))
            batch = []
    return count + (len(commit(engine, batch)) if batch else 0)
