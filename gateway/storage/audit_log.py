"""The audit log in the store: appended in group commits, paged, exported, verified, pruned.

One chain per store, also with several replicas: every transaction that appends takes the chain
lock first (PostgreSQL: an advisory transaction lock per schema; SQLite: `BEGIN IMMEDIATE`) and
reads the head inside it. `canonical` holds each record's canonical JSON, the exact bytes its
`hash` covers; the other columns repeat a few fields for filtering, and `verify` checks that they
agree. `audit_log_agreements` indexes records by agreement (on both backends, unlike a JSON list).

An append is acknowledged only once its transaction committed (SQLite: synced to disk). When the
store fails or stalls past the timeout, `append` raises AuditUnavailable and the request must be
refused; a stalled batch may still commit later: refused, yet on record, never the reverse.

Retention deletes a prefix of the chain. It first writes a checkpoint (the seq and hash of the
last deleted record) and, in the same transaction, an `audit.prune` admin record naming it;
`verify` starts from the newest checkpoint and requires that record, so a forged checkpoint
alone does not hide deleted records. What no chain shows by itself: newest records cut off, or a
suffix rewritten with recomputed hashes; `verify(expected_head=…)` catches both against a head
kept elsewhere (a destruction certificate, an earlier export, a ticket).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import (
    BigInteger, Column, Connection, DateTime, Engine, Index, Integer, Select, String, Table, Text, delete, func,
    insert, select, type_coerce,
)
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError

from gateway.audit import (
    CSV_HEADER, Anchor, AuditUnavailable, Link, Record, chain, complete, csv_line, format_at, parse_at, prepare,
    verify_chain,
)
from gateway.storage.tables import metadata

SEQ = BigInteger().with_variant(Integer(), "sqlite")  # INTEGER PRIMARY KEY is SQLite's rowid: fastest
_CHAIN_LOCK = 0x5348_5541  # PostgreSQL advisory lock, with the schema's hash as second key
CHUNK = 5000
_COLUMNS = ("seq", "id", "at", "kind", "principal", "decision", "prev_hash", "hash", "canonical")
_COPY_LOG = f"COPY audit_log ({', '.join(_COLUMNS)}) FROM STDIN"
_COPY_TAGS = "COPY audit_log_agreements (agreement_id, seq) FROM STDIN"

audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", SEQ, primary_key=True, autoincrement=False),
    Column("id", String(64), nullable=False, unique=True),
    Column("at", DateTime(timezone=True), nullable=False, index=True),
    Column("kind", String(16), nullable=False),
    Column("principal", String(256), nullable=True),
    Column("decision", String(24), nullable=True),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Column("canonical", Text, nullable=False),
    Index("ix_audit_log_principal_seq", "principal", "seq"),
)  # no index on decision or kind: few values, and every index costs each append (~15% for principal's)

audit_log_agreements = Table(
    "audit_log_agreements",
    metadata,
    Column("agreement_id", String(128), primary_key=True),
    Column("seq", SEQ, primary_key=True),
)

audit_checkpoints = Table(
    "audit_checkpoints",
    metadata,
    Column("seq", SEQ, primary_key=True, autoincrement=False),
    Column("hash", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("record_id", String(64), nullable=False),  # the `audit.prune` record naming this anchor
)


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


def _anchor(conn: Connection) -> Anchor:
    row = conn.execute(select(audit_checkpoints.c.seq, audit_checkpoints.c.hash)
                       .order_by(audit_checkpoints.c.seq.desc()).limit(1)).first()
    return Anchor(row.seq, row.hash) if row else Anchor()


def _head(conn: Connection) -> Anchor:
    row = conn.exec_driver_sql("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").first()
    return Anchor(row.seq, row.hash) if row else _anchor(conn)


def _at_param(conn: Connection, at: str) -> Any:
    """`at` as the driver takes it: SQLite keeps SQLAlchemy's own text form, so Core filters compare alike."""
    return f"{at[:10]} {at[11:26]}" if conn.dialect.name == "sqlite" else parse_at(at)


def seal_records(conn: Connection, prepared: list[Record]) -> list[Record]:
    """Chain and insert prepared records after the head; the caller holds the lock and commits.

    Plain driver statements (SQLite `executemany`, PostgreSQL COPY): on the request path every
    microsecond per record counts.
    """
    head = _head(conn)
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
        conn.exec_driver_sql(f"INSERT INTO audit_log ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * 9)})", rows)
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
                 linger: float = 0.001) -> None:
        self.engine, self.max_batch, self.timeout, self.linger = engine, max_batch, timeout, linger
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
                    _sync_full(self._conn, True)
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


@dataclass(frozen=True, slots=True)
class Filters:
    """What `page` and `export` select: `since` inclusive, `until` exclusive."""

    since: dt.datetime | None = None
    until: dt.datetime | None = None
    principal: str | None = None
    agreement_id: str | None = None
    decision: str | None = None
    kind: str | None = None


def _utc(value: dt.datetime) -> dt.datetime:
    """UTC, as stored: SQLite compares the text of the time, so an offset would compare wrong."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _select(filters: Filters, after: int) -> Select[Any]:
    query = select(audit_log.c.seq, audit_log.c.hash, audit_log.c.canonical).where(audit_log.c.seq > after)
    if filters.agreement_id is not None:
        query = query.join(audit_log_agreements, (audit_log_agreements.c.seq == audit_log.c.seq)
                           & (audit_log_agreements.c.agreement_id == filters.agreement_id))
    for column, value in ((audit_log.c.principal, filters.principal), (audit_log.c.decision, filters.decision),
                          (audit_log.c.kind, filters.kind)):
        if value is not None:
            query = query.where(column == value)
    if filters.since is not None:
        query = query.where(audit_log.c.at >= _utc(filters.since))
    if filters.until is not None:
        query = query.where(audit_log.c.at < _utc(filters.until))
    return query.order_by(audit_log.c.seq)


def _record(hash_: str, canonical: str) -> Record:
    record: Record = orjson.loads(canonical)
    record["hash"] = hash_
    return record


def page(engine: Engine, filters: Filters, limit: int, cursor: int | None = None) -> dict[str, Any]:
    """`{"data": [records in seq order], "next_cursor": seq as a string | None}`."""
    with engine.connect() as conn:
        rows = conn.execute(_select(filters, cursor or 0).limit(limit + 1)).all()
    data = [complete(_record(row.hash, row.canonical)) for row in rows[:limit]]
    return {"data": data, "next_cursor": str(data[-1]["seq"]) if len(rows) > limit and data else None}


def _chunks(engine: Engine, filters: Filters, chunk: int) -> Iterator[list[Any]]:
    """Keyset pagination: one short query per chunk, so no connection is held while the caller waits."""
    after = 0
    while True:
        with engine.connect() as conn:
            rows = conn.execute(_select(filters, after).limit(chunk)).all()
        if not rows:
            return
        yield rows
        after = rows[-1].seq


def export_jsonl(engine: Engine, filters: Filters, chunk: int = CHUNK) -> Iterator[bytes]:
    """One record per line in seq order: its canonical JSON (the bytes its hash covers, keys sorted, none
    omitted) with `"hash"` added last; blocks of `chunk` lines."""
    for rows in _chunks(engine, filters, chunk):
        yield "".join([f'{canonical[:-1]},"hash":"{hash_}"}}\n' for _, hash_, canonical in rows]).encode()


def export_csv(engine: Engine, filters: Filters, chunk: int = CHUNK) -> Iterator[bytes]:
    """A header of `FIELDS`, then one line per record (see `gateway.audit.csv_line`), in blocks."""
    yield CSV_HEADER.encode()
    for rows in _chunks(engine, filters, chunk):
        yield "".join([csv_line(_record(hash_, canonical)) for _, hash_, canonical in rows]).encode()


def _stored_at(value: Any) -> str:
    """A stored `at` in the records' spelling: SQLite's text as is, PostgreSQL's datetime formatted."""
    return f"{value[:10]}T{value[11:]}Z" if isinstance(value, str) else format_at(value)


def _link(row: Any) -> Link:
    """A stored row as the chain walk sees it; `intact` covers the hash and the filter columns."""
    seq, id_, at, kind, principal, decision, prev_hash, hash_, canonical = row
    try:
        record = _record(hash_, canonical)
        get = record.get
        intact = (hashlib.sha256(canonical.encode()).hexdigest() == hash_ and id_ == get("id")
                  and kind == get("kind") and principal == get("principal") and decision == get("decision")
                  and prev_hash == get("prev_hash") and _stored_at(at) == get("at"))
    except (ValueError, TypeError):
        record, intact = {"seq": seq, "id": id_, "hash": hash_}, False
    return Link(seq, record, intact)


def _snapshot(conn: Connection) -> Connection:
    """Read the whole walk from one snapshot, so appends and pruning meanwhile cannot confuse it."""
    if conn.dialect.name == "postgresql":
        return conn.execution_options(isolation_level="REPEATABLE READ")
    conn.exec_driver_sql("BEGIN")
    return conn


def verify(engine: Engine, expected_head: str | None = None, chunk: int = CHUNK) -> dict[str, Any]:
    """Walk the whole chain from the newest checkpoint in constant memory.

    `{ok, records, head, head_seq, anchor: {seq, hash}, first_bad?: {seq, id, reason, detail}}`;
    `records` counts the records after the anchor, `head` is the last one's hash.
    """
    columns = [type_coerce(c, String) if c.name == "at" else c for c in (audit_log.c[n] for n in _COLUMNS)]
    try:
        with engine.connect() as raw:
            conn = _snapshot(raw)
            anchor = _anchor(conn)

            def links() -> Iterator[Link]:
                after = anchor.seq
                while rows := conn.execute(select(*columns).where(audit_log.c.seq > after)
                                           .order_by(audit_log.c.seq).limit(chunk)).all():
                    yield from map(_link, rows)
                    after = rows[-1][0]

            result = verify_chain(links(), anchor, expected_head, confirm_anchor=True)
            count, last = result.records, Anchor(result.head_seq, result.head)
            if not result.ok:  # report the stored head and size, not how far the walk got
                count = conn.execute(select(func.count()).where(audit_log.c.seq > anchor.seq)).scalar_one()
                last = _head(conn)
            conn.rollback()
    except SQLAlchemyError as exc:
        raise AuditUnavailable(f"監査ログを読めません。 / The audit log cannot be read ({type(exc).__name__}).") from exc
    out: dict[str, Any] = {"ok": result.ok, "records": count, "head": last.hash, "head_seq": last.seq,
                           "anchor": {"seq": anchor.seq, "hash": anchor.hash}}
    if result.first_bad is not None:
        bad = result.first_bad
        out["first_bad"] = {"seq": bad.seq, "id": bad.id, "reason": bad.reason, "detail": bad.detail}
    return out


def prune(engine: Engine, days: int, *, actor: str = "system", actor_role: str = "system",
          now: dt.datetime | None = None, chunk: int = 50_000) -> dict[str, Any]:
    """Delete the records older than `days` days (a prefix of the chain), keeping it verifiable.

    The last deleted record becomes the anchor: a checkpoint row plus an `audit.prune` record.
    Returns `{deleted, anchor: {seq, hash} | None, record_id}`.
    """
    cutoff = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(days=days)
    with chain_transaction(engine) as conn:
        previous = _anchor(conn)
        first_kept = conn.execute(select(func.min(audit_log.c.seq)).where(audit_log.c.at >= cutoff)).scalar()
        last = _head(conn).seq if first_kept is None else first_kept - 1
        anchor_hash = conn.execute(select(audit_log.c.hash).where(audit_log.c.seq == last)).scalar()
        if last <= previous.seq or anchor_hash is None:
            conn.rollback()
            return {"deleted": 0, "anchor": None, "record_id": None}
        details = {"anchor_seq": last, "anchor_hash": anchor_hash, "days": days, "cutoff": format_at(cutoff)}
        record = seal_records(conn, [prepare({"kind": "admin", "actor": actor, "actor_role": actor_role,
                                       "action": "audit.prune", "target": "audit_log", "details": details})])[0]
        conn.execute(insert(audit_checkpoints).values(seq=last, hash=anchor_hash, created_at=parse_at(record["at"]),
                                                      record_id=record["id"]))
        conn.commit()
    with engine.begin() as conn:  # one pass: the agreements index has no index by seq (appends stay cheap)
        conn.execute(delete(audit_log_agreements).where(audit_log_agreements.c.seq <= last))
    deleted, low = 0, previous.seq
    while low < last:  # in slices, so no transaction grows with the table; `<=` also takes leftovers
        high = min(low + chunk, last)
        with engine.begin() as conn:
            deleted += conn.execute(delete(audit_log).where(audit_log.c.seq <= high)).rowcount
        low = high
    return {"deleted": deleted, "anchor": {"seq": last, "hash": anchor_hash}, "record_id": record["id"]}
