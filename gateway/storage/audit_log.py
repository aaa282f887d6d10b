"""The audit log in the store: its tables, paged, exported, verified, pruned.

Appending (the chain lock, group commits) lives in `gateway.storage.audit_writer`; its public
names are re-exported here. `canonical` holds each record's canonical JSON, the exact bytes its
`hash` covers; the other columns repeat a few fields for filtering, and `verify` checks that they
agree. `audit_log_agreements` indexes records by agreement (on both backends, unlike a JSON list).

Retention deletes a prefix of the chain. It first writes a checkpoint (the seq and hash of the
last deleted record) and, in the same transaction, an `audit.prune` admin record naming it;
`verify` starts from the newest checkpoint and requires that record, so a forged checkpoint
alone does not hide deleted records. What no chain shows by itself: newest records cut off, or a
suffix rewritten with recomputed hashes; `verify(expected_head=…)` catches both against a head
kept elsewhere (a destruction certificate, an earlier export, a ticket).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import (
    BigInteger, Column, Connection, DateTime, Engine, Index, Integer, Select, String, Table, Text, delete, func,
    insert, select, type_coerce,
)
from sqlalchemy.exc import SQLAlchemyError

from gateway.audit import (
    CSV_HEADER, Anchor, AuditUnavailable, Link, Record, complete, csv_line, format_at, parse_at, prepare, verify_chain,
)
from gateway.storage.audit_writer import _CHAIN_LOCK as _CHAIN_LOCK  # re-exported: tests hold the lock
from gateway.storage.audit_writer import (
    CHUNK, COLUMNS, AuditLog, append_admin_sync, append_many_sync, append_sync, chain_transaction, commit,
    read_anchor, read_head, seal_records,
)
from gateway.storage.tables import metadata

__all__ = [
    "CHUNK", "SEQ", "AuditLog", "Filters", "append_admin_sync", "append_many_sync", "append_sync", "audit_checkpoints",
    "audit_log", "audit_log_agreements", "chain_transaction", "commit", "export_csv", "export_jsonl", "page",
    "prune", "seal_records", "verify",
]

SEQ = BigInteger().with_variant(Integer(), "sqlite")  # INTEGER PRIMARY KEY is SQLite's rowid: fastest

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
    columns = [type_coerce(c, String) if c.name == "at" else c for c in (audit_log.c[n] for n in COLUMNS)]
    try:
        with engine.connect() as raw:
            conn = _snapshot(raw)
            anchor = read_anchor(conn)

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
                last = read_head(conn)
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
        previous = read_anchor(conn)
        first_kept = conn.execute(select(func.min(audit_log.c.seq)).where(audit_log.c.at >= cutoff)).scalar()
        last = read_head(conn).seq if first_kept is None else first_kept - 1
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
