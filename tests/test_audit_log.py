"""The audit log's writer: group commits, one chain across replicas, failing closed, retention."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from gateway.audit import AuditUnavailable, Broken, Link, chain, prepare, verify_chain
from gateway.domain import Match
from gateway.storage import audit_log
from gateway.storage.database import migrate, open_engine


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    made = open_engine(database_url)
    migrate(made)
    yield made
    made.dispose()


def decision(i: int, **extra: Any) -> dict[str, Any]:
    """A decision record as the request path writes it, varied by `i`."""
    agreement = f"nda-{i % 3}"
    return {"kind": "decision", "id": f"dec_{i:06d}test", "principal": f"user{i % 4}@example.co.jp",
            "key_id": f"key_{i % 4}", "endpoint": "chat.completions", "destination": "openai", "model": "gpt-4o-mini",
            "decision": ("allow", "block", "redact", "consent_required", "allow_marked")[i % 5],
            "code": "blocked" if i % 5 == 1 else None, "articles": ["4(2)"] if i % 5 else [],
            "agreements": [agreement] if i % 5 else [], "purpose": {agreement: "共同評価 / joint evaluation"},
            "matches": [{"agreement_id": agreement, "item_id": "itm_1", "kind": "fingerprint", "category": "data",
                         "location": "messages[1].content", "start": i, "end": i + 60}] if i % 5 else [],
            "body_hash": f"{i:064x}", **extra}


def chain_of(engine: sa.Engine) -> list[tuple[int, str, str]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(audit_log.audit_log.c.seq, audit_log.audit_log.c.id,
                                                         audit_log.audit_log.c.prev_hash)
                                               .order_by(audit_log.audit_log.c.seq))]


def test_concurrent_appends_are_committed_once_in_one_contiguous_chain(engine: sa.Engine) -> None:
    async def run() -> tuple[list[dict[str, Any]], int]:
        log = audit_log.AuditLog(engine)
        await log.start()
        records = await asyncio.gather(*(log.append(decision(i)) for i in range(200)))
        await log.aclose()
        return records, log.batches

    records, batches = asyncio.run(run())
    assert batches < 200  # batched: whatever queued while a commit ran went into the next one
    stored = chain_of(engine)
    assert [seq for seq, _, _ in stored] == list(range(1, 201))
    assert sorted(r["id"] for r in records) == sorted(rid for _, rid, _ in stored) == [f"dec_{i:06d}test"
                                                                                     for i in range(200)]
    by_seq = {r["seq"]: r for r in records}
    assert all(by_seq[seq]["prev_hash"] == (by_seq[seq - 1]["hash"] if seq > 1 else "0" * 64) for seq in by_seq)
    result = audit_log.verify(engine)
    assert result["ok"] and result["records"] == 200 and result["head"] == by_seq[200]["hash"]
    assert result["head_seq"] == 200 and "first_bad" not in result


def test_a_sealed_record_reads_back_exactly_and_holds_no_text(engine: sa.Engine) -> None:
    match = Match(kind="fingerprint", location="messages[0].content", start=3, end=90, agreement_id="nda-1",
                  item_id="itm_9", category="source_code", score=0.9)
    sealed = audit_log.append_sync(engine, decision(1, matches=[match], latency_ms=12, upstream_status=None))
    page = audit_log.page(engine, audit_log.Filters(), 10)
    assert page["next_cursor"] is None and len(page["data"]) == 1
    shown = page["data"][0]
    assert {k: v for k, v in shown.items() if v not in (None, [])} == sealed
    assert shown["matches"] == [{"agreement_id": "nda-1", "item_id": "itm_9", "kind": "fingerprint",
                                 "category": "source_code", "location": "messages[0].content", "start": 3, "end": 90}]
    assert shown["latency_ms"] == 12.0 and shown["at"].endswith("Z") and shown["v"] == 1


@pytest.mark.parametrize("fields, complaint", [
    ({"kind": "decision", "prompt": "secret text"}, "not accepted"),
    ({"kind": "decision", "matches": [{"item_id": "itm_1", "text": "the material itself"}]}, "matches"),
    ({"kind": "decision", "decision": "maybe"}, "decision"),
    ({"kind": "gossip"}, "kind"),
    ({"kind": "decision", "seq": 5}, "not accepted"),
    ({"kind": "decision", "hash": "00"}, "not accepted"),
    ({"kind": "outcome", "upstream_status": "200"}, "integer"),
    ({"kind": "outcome", "latency_ms": float("nan")}, "finite"),
    ({"kind": "admin", "details": {"blob": "x" * 10_000}}, "bytes"),
    ({"kind": "decision", "agreements": "nda-1"}, "list of ids"),
])
def test_when_fields_are_wrong_then_prepare_refuses_them(fields: dict[str, Any], complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        prepare(fields)


def test_two_replicas_and_admin_changes_keep_one_chain(engine: sa.Engine, database_url: str) -> None:
    second = open_engine(database_url)
    admin_errors: list[BaseException] = []

    def admin_changes() -> None:
        try:
            for n in range(20):
                audit_log.append_admin_sync(second, actor="tok_1", actor_role="legal", action="agreement.create",
                                            target=f"nda-{n}", details={"title_sha256": f"{n:064x}"})
        except BaseException as exc:  # reported below
            admin_errors.append(exc)

    async def run() -> None:
        one, two = audit_log.AuditLog(engine, max_batch=16), audit_log.AuditLog(second, max_batch=16)
        thread = threading.Thread(target=admin_changes)
        thread.start()
        await asyncio.gather(*(log.append(decision(i, id=None)) for i in range(150) for log in (one, two)))
        await asyncio.gather(one.aclose(), two.aclose())
        await asyncio.to_thread(thread.join)

    try:
        asyncio.run(run())
    finally:
        second.dispose()
    assert not admin_errors
    stored = chain_of(engine)
    assert [seq for seq, _, _ in stored] == list(range(1, 321)) and len({rid for _, rid, _ in stored}) == 320
    assert audit_log.verify(engine)["ok"]


@pytest.mark.parametrize("where", ["postgresql", "sqlite"])
def test_when_the_store_is_unreachable_then_append_raises_audit_unavailable(where: str, tmp_path: Any) -> None:
    if where == "postgresql":
        with socket.socket() as probe:  # a port nobody listens on
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        dead = open_engine(f"postgresql://postgres@127.0.0.1:{port}/test")
    else:
        (tmp_path / "store.db").mkdir()  # a directory where the database file should be
        dead = open_engine(f"sqlite:///{tmp_path / 'store.db'}")

    async def run() -> None:
        log = audit_log.AuditLog(dead)
        for _ in range(2):  # the writer survives a failed batch
            with pytest.raises(AuditUnavailable) as raised:
                await log.append(decision(1))
            assert raised.value.status == 503 and raised.value.code == "audit_unavailable"
        await log.aclose()
        with pytest.raises(AuditUnavailable):
            await log.append(decision(2))

    asyncio.run(run())
    with pytest.raises(AuditUnavailable):
        audit_log.append_admin_sync(dead, actor="tok_1", actor_role="admin", action="agreement.create")
    dead.dispose()


def test_a_reused_id_fails_alone_and_the_rest_of_its_batch_is_kept(engine: sa.Engine) -> None:
    async def run() -> list[Any]:
        log = audit_log.AuditLog(engine)
        await log.append(decision(7))
        results = await asyncio.gather(*(log.append(decision(i)) for i in range(5, 10)), return_exceptions=True)
        await log.aclose()
        return results

    results = asyncio.run(run())
    assert isinstance(results[2], AuditUnavailable) and "exists already" in results[2].message
    assert all(isinstance(r, dict) for i, r in enumerate(results) if i != 2)
    assert len(chain_of(engine)) == 5 and audit_log.verify(engine)["ok"]


def test_aclose_commits_what_is_queued(engine: sa.Engine) -> None:
    async def run() -> None:
        log = audit_log.AuditLog(engine)
        pending = [asyncio.ensure_future(log.append(decision(i))) for i in range(50)]
        await asyncio.sleep(0)
        await log.aclose()
        assert all(p.done() and not p.exception() for p in pending)

    asyncio.run(run())
    assert len(chain_of(engine)) == 50


def test_retention_deletes_a_prefix_and_the_chain_still_verifies(engine: sa.Engine) -> None:
    now = dt.datetime.now(dt.UTC)
    old = [decision(i, at=now - dt.timedelta(days=100 - i, hours=1)) for i in range(60)]  # 100 .. 41 days ago
    audit_log.append_many_sync(engine, old + [decision(i, at=now - dt.timedelta(days=1)) for i in range(60, 70)])
    pruned = audit_log.prune(engine, days=50, actor="tok_ops", actor_role="admin", now=now)
    assert pruned["deleted"] == 51 and pruned["anchor"]["seq"] == 51  # 100 .. 50 days (and an hour) ago
    result = audit_log.verify(engine)
    assert result["ok"] and result["anchor"] == pruned["anchor"] and result["records"] == 70 - 51 + 1
    assert audit_log.prune(engine, days=50, now=now)["deleted"] == 0
    audit_log.append_sync(engine, decision(99))
    assert audit_log.verify(engine)["ok"]

    with engine.begin() as conn:  # hiding more deletions behind a forged checkpoint is noticed
        head = conn.execute(sa.select(audit_log.audit_log.c.hash).where(audit_log.audit_log.c.seq == 55)).scalar()
        conn.execute(sa.delete(audit_log.audit_log).where(audit_log.audit_log.c.seq <= 55))
        conn.execute(sa.insert(audit_log.audit_checkpoints).values(seq=55, hash=head, created_at=now,
                                                                   record_id="adm_forged"))
    forged = audit_log.verify(engine)
    assert not forged["ok"] and forged["first_bad"]["reason"] == "anchor_unconfirmed"


def test_verify_chain_on_plain_links_names_the_break() -> None:
    records = []
    prev = "0" * 64
    for seq in range(1, 4):
        record, _ = chain(prepare({"kind": "admin", "action": "x.y"}), seq, prev)
        prev = record["hash"]
        records.append(record)
    links = [Link(r["seq"], r, True) for r in records]
    assert verify_chain(links).ok
    result = verify_chain([links[0], links[2]])
    assert result.first_bad == Broken(2, None, "removed", f"records 2..2 are missing before {records[2]['id']}")


def test_the_migration_creates_the_tables_as_declared(engine: sa.Engine) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from gateway.storage.tables import metadata

    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    assert not [d for d in diffs if "audit" in str(d)]


def test_the_record_module_knows_no_web_framework_nor_sql() -> None:
    code = "import sys, gateway.audit; print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    loaded = set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                check=True).stdout.split())
    assert not loaded & {"fastapi", "starlette", "httpx", "sqlalchemy"}


def test_when_the_store_stalls_then_append_gives_up_in_time_and_the_record_is_kept(engine: sa.Engine) -> None:
    blocker = engine.connect()  # another replica holding the chain lock
    if engine.dialect.name == "postgresql":
        blocker.exec_driver_sql("SELECT pg_advisory_lock(%s, hashtext(current_schema()))", (audit_log._CHAIN_LOCK,))
    else:
        blocker.exec_driver_sql("BEGIN IMMEDIATE")

    async def run() -> None:
        log = audit_log.AuditLog(engine, timeout=0.3)
        with pytest.raises(AuditUnavailable, match="in time"):
            await log.append(decision(1))
        if engine.dialect.name == "postgresql":
            blocker.exec_driver_sql("SELECT pg_advisory_unlock(%s, hashtext(current_schema()))",
                                    (audit_log._CHAIN_LOCK,))
        blocker.rollback()
        await log.aclose()  # the stalled batch commits once the lock is free

    try:
        asyncio.run(run())
    finally:
        blocker.close()
    assert [rid for _, rid, _ in chain_of(engine)] == ["dec_000001test"]  # refused, yet on record
    assert audit_log.verify(engine)["ok"]


def test_records_nobody_waits_for_ride_with_the_next_awaited_batch_or_are_committed_soon_after(
        engine: sa.Engine) -> None:
    async def run() -> tuple[int, int, list[tuple[int, str, str]]]:
        log = audit_log.AuditLog(engine, lazy=0.05)
        await log.start()
        for i in range(3):  # outcomes of earlier calls
            log.append_nowait(decision(i, kind="outcome", decision=None, id=None, decision_id=f"dec_{i:06d}test"))
        await log.append(decision(3))  # the next call's decision record takes them along: one commit
        together = log.batches
        log.append_nowait(decision(4, kind="outcome", decision=None, id=None))
        for _ in range(100):  # and a lone one is committed within `lazy`, without anybody waiting
            if log.batches > together:
                break
            await asyncio.sleep(0.01)
        alone = log.batches - together
        await log.aclose()
        return together, alone, chain_of(engine)

    together, alone, stored = asyncio.run(run())
    assert together == 1 and alone == 1
    assert [rid[:4] for _, rid, _ in stored] == ["out_", "out_", "out_", "dec_", "out_"]
    assert audit_log.verify(engine)["ok"]


def test_when_another_writer_appends_between_batches_the_chain_stays_whole(engine: sa.Engine,
                                                                           database_url: str) -> None:
    other = open_engine(database_url)

    async def run() -> None:
        log = audit_log.AuditLog(engine)
        for i in range(0, 30, 3):
            await log.append(decision(i))
            await asyncio.gather(log.append(decision(i + 1)), log.append(decision(i + 2)))
            await asyncio.to_thread(audit_log.append_admin_sync, other, actor="tok_1", actor_role="admin",
                                    action="principal.create", target=f"user{i}")  # moves the head under it
        await log.aclose()

    try:
        asyncio.run(run())
    finally:
        other.dispose()
    stored = chain_of(engine)
    assert [seq for seq, _, _ in stored] == list(range(1, 41))
    assert sum(rid.startswith("adm_") for _, rid, _ in stored) == 10
    assert audit_log.verify(engine)["ok"]
