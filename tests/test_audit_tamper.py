"""Tampering with the audit table through SQL, the way someone with database access would: verify names it.

What the chain alone cannot show: cutting off the newest records, or rewriting a record and recomputing
every hash after it (the hash is unkeyed, so anyone can). Both leave a valid shorter or different chain;
they are caught only against a head kept elsewhere (`verify(expected_head=…)`), which the last tests show.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
import sqlalchemy as sa

from gateway.audit import chain, parse_at, prepare
from gateway.storage import audit_log
from gateway.storage.database import migrate, open_engine
from tests.test_audit_log import decision

table = audit_log.audit_log


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    made = open_engine(database_url)
    migrate(made)
    audit_log.append_many_sync(made, (decision(i) for i in range(20)), chunk=7)
    yield made
    made.dispose()


def row(conn: sa.Connection, seq: int) -> Any:
    return conn.execute(sa.select(table).where(table.c.seq == seq)).one()


def put(conn: sa.Connection, record: dict[str, Any], body: bytes) -> None:
    conn.execute(sa.insert(table).values(
        seq=record["seq"], id=record["id"], at=parse_at(record["at"]), kind=record["kind"],
        principal=record.get("principal"), decision=record.get("decision"), prev_hash=record["prev_hash"],
        hash=record["hash"], canonical=body.decode()))


def renumber(conn: sa.Connection, seq: int, to: int) -> None:
    conn.execute(sa.update(table).where(table.c.seq == seq).values(seq=to))


def edit_content(conn: sa.Connection) -> None:
    body = orjson.loads(row(conn, 7).canonical)
    body["decision"] = "allow"
    conn.execute(sa.update(table).where(table.c.seq == 7).values(canonical=orjson.dumps(body).decode()))


def edit_column(conn: sa.Connection) -> None:
    conn.execute(sa.update(table).where(table.c.seq == 7).values(decision="allow"))


def edit_hash(conn: sa.Connection) -> None:
    conn.execute(sa.update(table).where(table.c.seq == 7).values(hash="f" * 64))


def rewrite_with_recomputed_hash(conn: sa.Connection) -> None:
    body = orjson.loads(row(conn, 7).canonical)
    body["decision"] = "allow"
    record, canonical = chain({k: v for k, v in body.items() if k not in ("seq", "prev_hash")}, 7, body["prev_hash"])
    conn.execute(sa.delete(table).where(table.c.seq == 7))
    put(conn, record, canonical)


def delete_middle(conn: sa.Connection) -> None:
    conn.execute(sa.delete(table).where(table.c.seq == 10))


def delete_and_close_the_gap(conn: sa.Connection) -> None:
    conn.execute(sa.delete(table).where(table.c.seq == 10))
    for seq in range(11, 21):
        renumber(conn, seq, seq - 1)


def swap(a: int, b: int) -> Callable[[sa.Connection], None]:
    def swapping(conn: sa.Connection) -> None:
        renumber(conn, a, -1)
        renumber(conn, b, a)
        renumber(conn, -1, b)

    return swapping


def insert_at_tail(conn: sa.Connection) -> None:
    record, body = chain(prepare(decision(99)), 21, "e" * 64)
    put(conn, record, body)


def insert_in_the_middle(conn: sa.Connection) -> None:
    """The forger shifts 10.. up by one and links a forged record properly after 9."""
    conn.execute(sa.update(table).where(table.c.seq >= 10).values(seq=-table.c.seq - 1))
    conn.execute(sa.update(table).where(table.c.seq < 0).values(seq=-table.c.seq))
    record, body = chain(prepare(decision(99)), 10, row(conn, 9).hash)
    put(conn, record, body)


@pytest.mark.parametrize("tamper, seq, reason", [
    (edit_content, 7, "edited"),
    (edit_column, 7, "edited"),
    (edit_hash, 7, "edited"),
    (rewrite_with_recomputed_hash, 7, "edited"),
    (delete_middle, 10, "removed"),
    (delete_and_close_the_gap, 10, "removed"),
    (swap(5, 6), 5, "reordered"),
    (swap(5, 8), 5, "reordered"),
    (insert_at_tail, 21, "inserted"),
    (insert_in_the_middle, 10, "inserted"),
], ids=lambda value: getattr(value, "__name__", None))
def test_when_the_table_is_tampered_with_then_verify_names_the_first_bad_record(
        engine: sa.Engine, tamper: Callable[[sa.Connection], None], seq: int, reason: str) -> None:
    assert audit_log.verify(engine)["ok"]
    with engine.begin() as conn:
        tamper(conn)
    result = audit_log.verify(engine)
    assert not result["ok"]
    assert (result["first_bad"]["seq"], result["first_bad"]["reason"]) == (seq, reason), result["first_bad"]


def test_a_cut_tail_is_found_only_against_a_head_kept_elsewhere(engine: sa.Engine) -> None:
    kept = audit_log.verify(engine)["head"]  # e.g. printed on a destruction certificate, or in last week's export
    with engine.begin() as conn:
        conn.execute(sa.delete(table).where(table.c.seq > 17))
    alone = audit_log.verify(engine)
    assert alone["ok"] and alone["records"] == 17  # a shorter chain is still a valid chain
    anchored = audit_log.verify(engine, expected_head=kept)
    assert not anchored["ok"] and anchored["first_bad"]["reason"] == "truncated"
    assert anchored["first_bad"]["seq"] == 18


def test_a_rewritten_suffix_is_found_only_against_a_head_kept_elsewhere(engine: sa.Engine) -> None:
    kept = audit_log.verify(engine)["head"]
    with engine.begin() as conn:
        rows = conn.execute(sa.select(table).where(table.c.seq >= 7).order_by(table.c.seq)).all()
        conn.execute(sa.delete(table).where(table.c.seq >= 7))
        prev = conn.execute(sa.select(table.c.hash).where(table.c.seq == 6)).scalar_one()
        for old in rows:
            body = orjson.loads(old.canonical)
            body["decision"] = "allow"
            record, canonical = chain({k: v for k, v in body.items() if k not in ("seq", "prev_hash")},
                                      old.seq, prev)
            put(conn, record, canonical)
            prev = record["hash"]
    assert audit_log.verify(engine)["ok"]
    assert audit_log.verify(engine, expected_head=kept)["first_bad"]["reason"] == "truncated"
    assert audit_log.verify(engine, expected_head=prev)["ok"]
