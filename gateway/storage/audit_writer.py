"""Appending to the audit log: the chain lock, sealing, commits, and the request path's group-commit writer.

One chain per store, also with several replicas: every transaction that appends takes the chain
lock first (PostgreSQL: an advisory transaction lock per schema; SQLite: `BEGIN IMMEDIATE`) and
reads the head inside it. The tables are defined in `gateway.storage.audit_log`, which re-exports
this module's public names; here they are written with plain driver statements.

An append is acknowledged only once its transaction committed (SQLite: synced to disk). When the
store fails or stalls past the timeout, `append` raises AuditUnavailable and the request must be
refused; a stalled batch may still commit later: refused, yet on record, never the reverse.
"""

from __future__ import annotations

import asyncio
import logging
import concurrent.futures
import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError

from gateway.audit import Anchor, AuditUnavailable, Record, chain, parse_at, prepare

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


def _at_param(conn: Connection, at: str) -> Any:
    """`at` as the driver takes it: SQLite keeps SQLAlchemy's own text form, so Core filters compare alike."""
    return f"{at[:10]} {at[11:26]}" if conn.dialect.name == "sqlite" else parse_at(at)


def seal_records(conn: Connection, prepared: list[Record]) -> list[Record]:
    """Chain and insert prepared records after the head; the caller holds the lock and commits.

    Plain driver statements (SQLite `executemany`, PostgreSQL COPY): on the request path every
    microsecond per record counts.
    """
    head = read_head(conn)
    seq, prev, rows, tags, sealed = head.seq, head.hash, [], [], []
    for fields in prepared:
        seq += 1
        record, body = chain(fields, seq, prev)
        prev = record["hash"]
        rows.append((seq, record["id"], _at_param(conn, record["at"]), record["kind"], record.get("principal"),
                     record.get("decision"), record["prev_hash"], prev, body.decode()))
        tags.extend((agreement, seq) for agreement in record.get("agreements", ()))
        sealed.append(record)
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


class AuditLog:
    """The request path's writer: `append` returns once the record is committed, in group commits.

    Appends queue up; one task hands whatever accumulated while the last commit ran (up to
    `max_batch`) to its own thread, which commits it in one transaction on its own connection, so
    the event loop never waits on the store. Under load (the last batch held more than one record)
    it first lingers `linger` seconds to gather more: per-transaction costs dominate small batches.
    An append waits at most `timeout` seconds. `start()`/`aclose()` belong in the app's lifespan.
    """

    def __init__(self, engine: Engine, *, max_batch: int = 512, timeout: float = 10.0,
                 linger: float = 0.001, durable: bool = True) -> None:
        self.engine, self.max_batch, self.timeout, self.linger = engine, max_batch, timeout, linger
        self.durable = durable  # SQLite: sync the WAL at every commit (survives power loss, not only a crash)
        self.batches = self.records = 0
        self._queue: asyncio.Queue[tuple[Record, asyncio.Future[Record]] | None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._conn: Connection | None = None  # the writer thread's alone
        self._closed = False

    async def start(self) -> None:
        """Start the writer (also done by the first append)."""
        if self._task is None and not self._closed:
            self._queue = asyncio.Queue()
            self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="shuhi-audit")
            self._task = asyncio.create_task(self._run(), name="shuhi-audit-writer")

    async def append(self, fields: Mapping[str, Any]) -> Record:
        """Append one record (see `gateway.audit.FIELDS`) and return it sealed, once durably committed.

        Raises AuditUnavailable when the store cannot take it, ValueError when the fields are wrong:
        either way, nothing may be forwarded.
        """
        if self._closed:
            raise AuditUnavailable("監査ログは停止中です。 / The audit log is shut down.")
        prepared = prepare(fields)
        if self._queue is None:
            await self.start()
            assert self._queue is not None
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Record] = loop.create_future()
        self._queue.put_nowait((prepared, future))
        timer = loop.call_later(self.timeout, _expire, future)
        try:
            return await future
        finally:
            timer.cancel()

    def append_nowait(self, fields: Mapping[str, Any]) -> None:
        """Queue a record nobody waits for (outcome records: the decision record was committed first).

        It is committed with the next batch; a failure is logged, since no request can be refused any more.
        """
        if self._closed or self._queue is None:
            log.error("audit record dropped: the audit log is not running")
            return
        future: asyncio.Future[Record] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_report_failure)
        self._queue.put_nowait((prepare(fields), future))

    async def aclose(self) -> None:
        """Commit what is queued, then stop the writer and release its connection."""
        if self._closed:
            return
        self._closed = True
        if self._task is not None and self._queue is not None and self._executor is not None:
            self._queue.put_nowait(None)
            await self._task
            await asyncio.get_running_loop().run_in_executor(self._executor, self._drop_connection)
            self._executor.shutdown(wait=True)

    async def _run(self) -> None:
        assert self._queue is not None
        stopping, last = False, 0
        while not stopping:
            item = await self._queue.get()
            if item is not None and last > 1 and self.linger > 0:
                await asyncio.sleep(self.linger)
            batch = [item] if item is not None else []
            stopping = item is None
            while len(batch) < self.max_batch and not self._queue.empty():
                item = self._queue.get_nowait()
                if item is None:
                    stopping = True
                else:
                    batch.append(item)
            if batch:
                await self._commit(batch)
            last = len(batch)

    async def _commit(self, batch: list[tuple[Record, asyncio.Future[Record]]]) -> None:
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(self._executor, _each, self._write, [p for p, _ in batch])
        except Exception as exc:  # a bug must not leave appends waiting, nor kill the writer
            results = [_unavailable(exc)] * len(batch)
        self.batches += 1
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, AuditUnavailable):
                future.set_exception(AuditUnavailable(result.message))
            else:
                self.records += 1
                future.set_result(result)

    def _write(self, prepared: list[Record]) -> list[Record]:
        """In the writer thread: commit on its own connection, opened again once after a lost one."""
        for attempt in (1, 2):
            try:
                if self._conn is None:
                    self._conn = self.engine.connect()
                    _sync_full(self._conn, self.durable)
                _begin_chain(self._conn)
                sealed = seal_records(self._conn, prepared)
                self._conn.commit()
                return sealed
            except IntegrityError:
                self._conn.rollback()
                raise
            except SQLAlchemyError as exc:
                lost = isinstance(exc, DBAPIError) and exc.connection_invalidated
                self._drop_connection()
                if attempt == 2 or not lost:
                    raise _unavailable(exc) from exc
        raise AssertionError("unreachable")

    def _drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(SQLAlchemyError):
                self._conn.invalidate()  # not back to the pool: SQLite's pragma stays with it
                self._conn.close()
            self._conn = None


def _report_failure(future: asyncio.Future[Record]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("audit record not written: %s", type(future.exception()).__name__)


def _expire(future: asyncio.Future[Record]) -> None:
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
