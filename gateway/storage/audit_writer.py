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

import orjson
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
# The head inside the lock: the log's last record, else the newest checkpoint, else the chain's start.
_PG_HEAD = (b"SELECT seq, hash FROM (SELECT 0 AS o, seq, hash FROM (SELECT seq, hash FROM audit_log ORDER BY seq DESC "
            b"LIMIT 1) AS last UNION ALL SELECT 1, seq, hash FROM (SELECT seq, hash FROM audit_checkpoints ORDER BY "
            b"seq DESC LIMIT 1) AS anchor UNION ALL SELECT 2, 0, '" + GENESIS.encode() + b"') AS h ORDER BY o LIMIT 1")
# Each record's canonical bytes are sent cut where its seq and prev_hash go (p1 prev p2 seq p3); the
# server chains the batch after the head, hashing each record as `gateway.audit.chain` does. Prepared
# once per connection, with a generic plan: planning this query cost as much as running it.
_PG_PREPARE = (
    b"SET plan_cache_mode = force_generic_plan; "
    b"PREPARE shuhi_audit_append (text[], text[], text[], text[], text[], text[], text[], text[], text[], text[]) AS "
    b"WITH RECURSIVE batch (id, at, kind, principal, decision, p1, p2, p3, n) AS ("
    b"SELECT * FROM unnest($1, $2::timestamptz[], $3, $4, $5, $6, $7, $8) WITH ORDINALITY), "
    b"head AS (" + _PG_HEAD + b"), "
    b"chained (n, seq, prev_hash, hash) AS ("
    b"SELECT 1::bigint, h.seq + 1, h.hash, encode(sha256(convert_to(b.p1 || h.hash || b.p2 || (h.seq + 1) || b.p3, "
    b"'UTF8')), 'hex') FROM head AS h, batch AS b WHERE b.n = 1 "
    b"UNION ALL SELECT b.n, c.seq + 1, c.hash, encode(sha256(convert_to(b.p1 || c.hash || b.p2 || (c.seq + 1) "
    b"|| b.p3, 'UTF8')), 'hex') FROM chained AS c JOIN batch AS b ON b.n = c.n + 1), "
    b"inserted AS (INSERT INTO audit_log (" + ", ".join(COLUMNS).encode() + b") "
    b"SELECT c.seq, b.id, b.at, b.kind, b.principal, b.decision, c.prev_hash, c.hash, "
    b"b.p1 || c.prev_hash || b.p2 || c.seq || b.p3 FROM chained AS c JOIN batch AS b USING (n) "
    b"RETURNING seq, id, prev_hash, hash), "
    b"tagged AS (INSERT INTO audit_log_agreements (agreement_id, seq) SELECT t.agreement_id, i.seq "
    b"FROM unnest($9, $10) AS t (id, agreement_id) JOIN inserted AS i USING (id)) "
    b"SELECT seq, id, prev_hash, hash FROM inserted ORDER BY seq")

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

    parallel = 1  # transactions run on the event loop itself, one after the other

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


def _cut(prepared: Record, prev_mark: str, seq_mark: str) -> tuple[str, str, str]:
    """The record's canonical text (as `gateway.audit.chain` makes it) cut where prev_hash and seq go."""
    body = orjson.dumps({**prepared, "seq": seq_mark, "prev_hash": prev_mark}, option=orjson.OPT_SORT_KEYS).decode()
    p1, rest = body.split(prev_mark)  # keys sorted: prev_hash comes before seq; the marks occur once
    p2, p3 = rest.split(f'"{seq_mark}"')
    return p1, p2, p3


def _pg_chain_insert(literal: Callable[[bytes], bytes], prepared: list[Record]) -> bytes:
    """The query that appends a batch: begin, take the chain lock, chain and insert the batch after the
    head on the server, tag it with its agreements, return (seq, id, prev_hash, hash) of each, commit.

    The lock is held only while the server runs this one query: no writer waits for another's event
    loop, and no batch has to be sent again because another writer appended meanwhile. Values are
    escaped by libpq and built here rather than bound as parameters: psycopg adapting arrays and
    parsing placeholders costs more Python CPU than the whole rest of the batch.
    """
    def text(value: str | None) -> bytes:
        return b"NULL" if value is None else literal(value.encode())

    mark = os.urandom(8).hex()
    prev_mark, seq_mark = "prev" + mark, "seq" + mark
    columns: list[list[bytes]] = [[] for _ in range(10)]  # the statement's ten arrays
    for record in prepared:
        p1, p2, p3 = _cut(record, prev_mark, seq_mark)
        values = (record["id"], record["at"], record["kind"], record.get("principal"), record.get("decision"), p1, p2, p3)
        for column, value in zip(columns[:8], values, strict=True):
            column.append(text(value))
        for agreement in record.get("agreements", ()):  # tags: (record id, agreement id)
            columns[8].append(text(record["id"]))
            columns[9].append(text(agreement))
    arrays = b", ".join(b"ARRAY[" + b", ".join(column) + b"]::text[]" for column in columns)
    return _PG_LOCK + b"EXECUTE shuhi_audit_append (" + arrays + b"); COMMIT"


class _PostgresStore:
    """PostgreSQL on the request path: asynchronous connections on the event loop, one round trip a batch.

    Each batch is one simple query (values bound on the client: psycopg's pipeline mode and array
    parameters cost several times more CPU per batch here) in which the server takes the chain lock,
    chains the batch after the head and commits (`_pg_chain_insert`). With several replicas appending,
    no batch is ever chained after a stale head and sent again, and the lock is never held across a
    round trip, so one writer never waits for another's event loop. The commit is durable when it
    returns (the server's `synchronous_commit`).

    Up to `parallel` batches are in flight at once, each on a connection of its own: the next batch
    is sent while the previous one commits, so the event loop is not left idle waiting for the
    commit's round trip. The server orders them by the chain lock: each is chained after whichever
    committed before it, and every caller gets back the seq its record was given.
    """

    parallel = 2

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._free: list[Any] = []  # open connections not in use (the others are in `write`)

    async def _connection(self) -> Any:
        while self._free:
            conn = self._free.pop()
            if not conn.closed:
                return conn
        args, kwargs = self.engine.dialect.create_connect_args(self.engine.url)
        kwargs.pop("context", None)
        conn = None
        try:
            conn = await psycopg.AsyncConnection.connect(*args, **kwargs, autocommit=True,
                                                         cursor_factory=psycopg.AsyncClientCursor)
            await conn.execute(_PG_PREPARE)
        except psycopg.Error as exc:
            await _close(conn)
            raise _unavailable(exc) from exc
        return conn

    async def write(self, prepared: list[Record]) -> list[Record]:
        for attempt in (1, 2):
            conn = await self._connection()
            try:
                cursor = await conn.execute(_pg_chain_insert(Escaping(conn.pgconn).escape_literal, prepared))
                cursor.nextset()  # BEGIN, the lock, then the chained batch
                cursor.nextset()
                rows = await cursor.fetchall()
            except psycopg.IntegrityError:
                await conn.execute("ROLLBACK")
                self._free.append(conn)
                raise _Clash from None
            except psycopg.Error as exc:
                lost = conn.closed or isinstance(exc, psycopg.OperationalError)
                await _close(conn)
                if attempt == 2 or not lost:
                    raise _unavailable(exc) from exc
            except BaseException:  # cancelled mid-statement: the connection's state is unknown
                await _close(conn)
                raise
            else:
                self._free.append(conn)
                if [row[1] for row in rows] != [record["id"] for record in prepared]:
                    raise _unavailable(RuntimeError("the batch was not appended in order"))
                return [{**record, "seq": seq, "prev_hash": prev, "hash": hash_}
                        for record, (seq, _, prev, hash_) in zip(prepared, rows, strict=True)]
        raise AssertionError("unreachable")

    async def drop(self) -> None:
        """Close the idle connections (the writer calls this once no batch is in flight)."""
        conns, self._free = self._free, []
        for conn in conns:
            await _close(conn)

    def synced(self) -> None:
        """Nothing to wait for: a commit is durable when it returns."""
        return None

    async def aclose(self) -> None:
        await self.drop()


async def _close(conn: Any) -> None:
    if conn is not None:
        with contextlib.suppress(Exception):
            await conn.close()


class _Batch:
    """Records appended while the previous batch was being committed, and who waits for which of them.

    Each waiting append has a future of its own (its record, or the AuditUnavailable that refuses it,
    as a result): a cancelled caller cancels only its own, and nothing is wrapped per call. One timer
    per batch refuses whoever still waits when the store does not answer in time.
    """

    __slots__ = ("records", "waiters", "timer")

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.waiters: list[tuple[int, asyncio.Future[Record | AuditUnavailable]]] = []
        self.timer: asyncio.TimerHandle | None = None


class AuditLog:
    """The request path's writer: `append` returns once the record is committed, in group commits.

    Appends join the open batch; one task on the event loop commits one batch at a time, so whatever
    arrives while a commit runs goes into the next (up to `max_batch` records). The callers waiting on
    a batch are answered in one pass, with one timer: an append waits at most `timeout` seconds, then
    is refused; its record may still be committed later (refused, yet on record, never the reverse). Records nobody waits for (`append_nowait`: outcomes, after the answer) ride with the
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
        self._in_flight: set[asyncio.Task[None]] = set()  # commits under way (PostgreSQL: up to `parallel`)
        self._slots = asyncio.Semaphore(self._store.parallel)

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
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Record | AuditUnavailable] = loop.create_future()
        if not batch.waiters:
            batch.timer = loop.call_later(self.timeout, _expire, batch)
            self._kick()
        batch.waiters.append((len(batch.records), future))
        batch.records.append(prepared)
        self._waiting += 1
        try:
            result = await future
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
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)
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
        if not batches[0].waiters and len(batches) == 1 and not self._due and not self._closed:
            return None
        self._due = False
        return batches.popleft()

    async def _run(self) -> None:
        assert self._wake is not None
        last, parallel = 0, self._store.parallel > 1
        while True:
            if parallel:
                await self._slots.acquire()  # a connection is free: the next batch may go while others commit
            if last > 1 and self.linger > 0 and self._batches and not self._closed:
                await asyncio.sleep(self.linger)  # under load: gather more, each transaction and sync costs
            batch = self._next_batch()
            if batch is None:
                if parallel:
                    self._slots.release()
                last = 0
                if self._closed:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            last = len(batch.records)
            if not parallel:
                await self._commit(batch)
                continue
            task = asyncio.get_running_loop().create_task(self._commit(batch))
            self._in_flight.add(task)
            task.add_done_callback(self._commit_done)

    def _commit_done(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        self._slots.release()

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
        # Counted together, when the batch is answered: a scrape never sees a batch without its records.
        self.batches += 1
        self.records += len(results) - len(failed)
        if batch.timer is not None:
            batch.timer.cancel()
        for index, future in batch.waiters:
            if not future.done():  # done: its caller was cancelled, or refused by the timer
                future.set_result(results[index])
        if failed:
            log.error("%d audit records not written: %s", len(failed), failed[0].code)


def _expire(batch: _Batch) -> None:
    """The batch's timer: whoever still waits is refused (the records may yet be committed)."""
    for _, future in batch.waiters:
        if not future.done():
            future.set_result(AuditUnavailable("監査ログの書き込みが時間切れです。 / "
                                               "The audit log did not answer in time."))


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
