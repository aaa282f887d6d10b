"""Two request-path writers appending to one audit log at once (two worker processes, or two replicas).

Each writer runs on its own event loop in its own thread with its own engine, so their batches
really race for the chain. Whatever the store, the log stays one contiguous chain that verifies,
with every acknowledged record exactly once. On PostgreSQL the server chains each batch inside one
query: no round trip ends with the chain lock held, so a writer never waits for another's event loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from gateway.audit import chain
from gateway.storage import audit_log
from gateway.storage.database import migrate, open_engine

APPLICATION = "shuhi-audit-contention-test"
WAVES, PER_WAVE = 30, 12


@pytest.fixture
def engines(database_url: str) -> Iterator[tuple[sa.Engine, sa.Engine]]:
    """Two engines on one fresh store, as two processes would have; PostgreSQL sessions are named."""
    if database_url.startswith("postgresql"):
        database_url += f"&application_name={APPLICATION}"
    one, two = open_engine(database_url), open_engine(database_url)
    migrate(one)
    yield one, two
    one.dispose()
    two.dispose()


def record(writer: str, i: int) -> dict[str, Any]:
    return {"kind": "decision", "id": f"dec_{writer}{i:05d}", "principal": f"user{i % 3}@example.co.jp",
            "endpoint": "chat.completions", "destination": "openai", "model": "gpt-4o-mini",
            "decision": "allow" if i % 2 else "redact", "agreements": [f"nda-{i % 2}"] if i % 2 else [],
            "body_hash": f"{i:064x}"}


def write_in_waves(engine: sa.Engine, writer: str, acknowledged: list[str], errors: list[BaseException]) -> None:
    """Waves of concurrent appends on a new event loop, as a busy worker's requests would make them."""
    async def run() -> None:
        log = audit_log.AuditLog(engine, max_batch=8)
        try:
            for wave in range(WAVES):
                sealed = await asyncio.gather(*(log.append(record(writer, wave * PER_WAVE + k))
                                                for k in range(PER_WAVE)))
                acknowledged.extend(r["id"] for r in sealed)
                await asyncio.sleep(0)  # the loop's other work
        finally:
            await log.aclose()

    try:
        asyncio.run(run())
    except BaseException as exc:  # reported by the test
        errors.append(exc)


def race(engines: tuple[sa.Engine, sa.Engine], watch: sa.Engine | None = None) -> tuple[dict[str, list[str]], int]:
    """Both writers at once; with `watch`, count the samples in which one of them sat idle holding the lock."""
    acknowledged: dict[str, list[str]] = {"a": [], "b": []}
    errors: list[BaseException] = []
    threads = [threading.Thread(target=write_in_waves, args=(engine, name, acknowledged[name], errors))
               for engine, name in zip(engines, "ab", strict=True)]
    for thread in threads:
        thread.start()
    held_idle = 0
    if watch is not None:
        with watch.connect() as conn:
            while any(thread.is_alive() for thread in threads):
                held_idle += conn.execute(sa.text(
                    "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                    "WHERE l.locktype = 'advisory' AND l.granted AND a.application_name = :app "
                    "AND a.state LIKE 'idle in transaction%'"), {"app": APPLICATION}).scalar_one()
    for thread in threads:
        thread.join()
    assert not errors, errors
    return acknowledged, held_idle


def stored(engine: sa.Engine) -> list[tuple[int, str]]:
    with engine.connect() as conn:
        return [(seq, rid) for seq, rid in conn.execute(
            sa.select(audit_log.audit_log.c.seq, audit_log.audit_log.c.id).order_by(audit_log.audit_log.c.seq))]


def assert_one_chain(engine: sa.Engine, acknowledged: dict[str, list[str]]) -> None:
    rows = stored(engine)
    total = 2 * WAVES * PER_WAVE
    assert [seq for seq, _ in rows] == list(range(1, total + 1))
    assert sorted(rid for _, rid in rows) == sorted(acknowledged["a"] + acknowledged["b"])
    assert len({rid for _, rid in rows}) == total
    switches = sum(rows[k][1][4] != rows[k - 1][1][4] for k in range(1, total))
    assert switches >= 10  # the writers' batches really interleaved: the chain moved under each of them
    with engine.connect() as conn:
        tags = conn.execute(sa.text("SELECT count(*) FROM audit_log_agreements")).scalar_one()
    assert tags == total // 2  # every odd record carries one agreement, written with it, once
    result = audit_log.verify(engine)
    assert result["ok"] and result["records"] == total


def test_two_writers_at_once_keep_one_chain_with_every_record_once(engines: tuple[sa.Engine, sa.Engine]) -> None:
    acknowledged, _ = race(engines)
    assert_one_chain(engines[0], acknowledged)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_on_postgresql_no_writer_waits_idle_holding_the_chain_lock(engines: tuple[sa.Engine, sa.Engine],
                                                                   database_url: str) -> None:
    watch = sa.create_engine(database_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        acknowledged, held_idle = race(engines, watch)
    finally:
        watch.dispose()
    assert_one_chain(engines[0], acknowledged)
    assert held_idle == 0



def test_a_record_is_sealed_exactly_as_the_chain_defines_it(engines: tuple[sa.Engine, sa.Engine]) -> None:
    """PostgreSQL hashes on the server: the same bytes and hash as `gateway.audit.chain`, Japanese included."""
    fields = [record("a", 1) | {"purpose": {"nda-1": "共同評価 / joint evaluation"}},
              {"kind": "admin", "actor": "tok_1", "actor_role": "legal", "action": "agreement.create",
               "target": "nda-秘密", "details": {"title_sha256": "0" * 64, "note": "改行\n\"引用\""}}]

    async def run() -> list[dict[str, Any]]:
        log = audit_log.AuditLog(engines[0])
        try:
            return list(await asyncio.gather(*(log.append(f) for f in fields)))
        finally:
            await log.aclose()

    sealed = asyncio.run(run())
    with engines[0].connect() as conn:
        stored = {rid: (seq, prev, hash_, canonical) for rid, seq, prev, hash_, canonical in conn.execute(sa.text(
            "SELECT id, seq, prev_hash, hash, canonical FROM audit_log"))}
    for one in sealed:
        unsealed = {k: v for k, v in one.items() if k not in ("seq", "prev_hash", "hash")}
        again, body = chain(unsealed, one["seq"], one["prev_hash"])
        assert again == one
        assert stored[one["id"]] == (one["seq"], one["prev_hash"], one["hash"], body.decode())
    assert audit_log.verify(engines[0])["ok"]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_on_postgresql_batches_in_flight_at_once_each_get_back_the_place_they_were_given(
        engines: tuple[sa.Engine, sa.Engine]) -> None:
    """One writer sends its next batch while the previous one commits (two connections): the server
    orders them by the chain lock, and every caller is answered with the seq and hashes stored for it."""
    async def run() -> tuple[list[dict[str, Any]], int]:
        log = audit_log.AuditLog(engines[0], max_batch=4, linger=0)
        sealed: list[dict[str, Any]] = []
        try:
            for wave in range(20):
                sealed += await asyncio.gather(*(log.append(record("p", wave * 16 + k)) for k in range(16)))
        finally:
            await log.aclose()
        return sealed, log.batches

    sealed, batches = asyncio.run(run())
    assert batches >= 80  # 320 records in batches of at most 4
    with engines[0].connect() as conn:
        rows = {rid: (seq, prev, hash_) for rid, seq, prev, hash_ in conn.execute(sa.text(
            "SELECT id, seq, prev_hash, hash FROM audit_log"))}
    assert len(rows) == len(sealed) == 320
    assert {one["id"]: (one["seq"], one["prev_hash"], one["hash"]) for one in sealed} == rows
    assert sorted(seq for seq, _, _ in rows.values()) == list(range(1, 321))
    assert audit_log.verify(engines[0])["ok"]
