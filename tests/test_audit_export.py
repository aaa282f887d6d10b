"""Paging and exporting the audit log: every field round-trips, filters select, memory stays bounded."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
import sqlalchemy as sa

from gateway.audit import FIELDS, Anchor, from_csv, verify_records
from gateway.storage import audit_log
from gateway.storage.database import migrate, open_engine
from tests.test_audit_log import decision

BASE = dt.datetime(2026, 4, 1, 9, 0, tzinfo=dt.UTC)


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    made = open_engine(database_url)
    migrate(made)
    yield made
    made.dispose()


def outcome(i: int) -> dict[str, Any]:
    return {"kind": "outcome", "decision_id": f"dec_{i:06d}test", "principal": f"user{i % 4}@example.co.jp",
            "destination": "openai", "model": "gpt-4o-mini", "upstream_status": 200, "latency_ms": 123.456,
            "usage": {"prompt_tokens": 812, "completion_tokens": 64, "prompt_tokens_details": {"cached_tokens": 0}},
            "marking": {"confidential": True, "article": "4(3)", "agreements": ["nda-1"]},
            "derived_item_id": f"itm_derived{i}", "agreements": ["nda-1"]}


@pytest.fixture
def sealed(engine: sa.Engine) -> list[dict[str, Any]]:
    """60 records of every kind, one minute apart from BASE: requests through the group-commit writer,
    admin changes through the sync path, in turn."""
    async def run() -> list[dict[str, Any]]:
        log = audit_log.AuditLog(engine)
        made = []
        for i in range(20):
            made.append(await log.append(decision(i, at=BASE + dt.timedelta(minutes=3 * i))))
            made.append(await log.append({**outcome(i), "at": BASE + dt.timedelta(minutes=3 * i + 1)}))
            made.append(await asyncio.to_thread(audit_log.append_sync, engine, {
                "kind": "admin", "actor": "tok_legal", "actor_role": "legal", "action": "consent.create",
                "target": f"cons_{i}", "at": BASE + dt.timedelta(minutes=3 * i + 2),
                "details": {"agreement_id": "nda-2", "destinations": ["openai"], "purpose": "inference"}}))
        await log.aclose()
        return made

    return asyncio.run(run())


def export(engine: sa.Engine, fmt: str, filters: audit_log.Filters | None = None) -> list[dict[str, Any]]:
    blocks = (audit_log.export_jsonl if fmt == "jsonl" else audit_log.export_csv)(
        engine, filters or audit_log.Filters(), chunk=7)
    data = b"".join(blocks)
    if fmt == "jsonl":
        return [orjson.loads(line) for line in data.splitlines()]
    reader = csv.DictReader(io.StringIO(data.decode()))
    assert reader.fieldnames == list(FIELDS)
    return [from_csv(row) for row in reader]


def test_jsonl_export_round_trips_every_field_and_verifies_offline(engine: sa.Engine,
                                                                    sealed: list[dict[str, Any]]) -> None:
    exported = export(engine, "jsonl")
    assert exported == sealed and all(list(r)[-1] == "hash" for r in exported)
    assert verify_records(exported).ok
    head = exported[-1]["hash"]
    assert verify_records(exported, expected_head=head).ok
    middle = exported[30:]
    assert verify_records(middle, Anchor(middle[0]["seq"] - 1, middle[0]["prev_hash"])).ok
    exported[12]["usage"] = {"prompt_tokens": 1}
    broken = verify_records(exported).first_bad
    assert broken is not None and (broken.seq, broken.reason) == (13, "edited")


def test_csv_export_round_trips_every_field_and_verifies_offline(engine: sa.Engine,
                                                                  sealed: list[dict[str, Any]]) -> None:
    exported = export(engine, "csv")
    assert exported == sealed
    assert verify_records(exported).ok


FILTERS: list[tuple[audit_log.Filters, Callable[[dict[str, Any]], bool]]] = [
    (audit_log.Filters(principal="user1@example.co.jp"), lambda r: r.get("principal") == "user1@example.co.jp"),
    (audit_log.Filters(agreement_id="nda-1"), lambda r: "nda-1" in r.get("agreements", [])),
    (audit_log.Filters(decision="block"), lambda r: r.get("decision") == "block"),
    (audit_log.Filters(kind="admin"), lambda r: r["kind"] == "admin"),
    (audit_log.Filters(since=BASE + dt.timedelta(minutes=30)), lambda r: r["at"] >= "2026-04-01T09:30"),
    (audit_log.Filters(until=BASE + dt.timedelta(minutes=30)), lambda r: r["at"] < "2026-04-01T09:30"),
    (audit_log.Filters(since=dt.datetime(2026, 4, 1, 18, 30, tzinfo=dt.timezone(dt.timedelta(hours=9)))),
     lambda r: r["at"] >= "2026-04-01T09:30"),  # 18:30 in Tokyo
    (audit_log.Filters(until=dt.datetime(2026, 4, 1, 9, 30)), lambda r: r["at"] < "2026-04-01T09:30"),  # naive: UTC
    (audit_log.Filters(since=BASE + dt.timedelta(minutes=10), until=BASE + dt.timedelta(minutes=40),
                       agreement_id="nda-1", principal="user2@example.co.jp"),
     lambda r: "2026-04-01T09:10" <= r["at"] < "2026-04-01T09:40" and "nda-1" in r.get("agreements", [])
     and r.get("principal") == "user2@example.co.jp"),
    (audit_log.Filters(principal="nobody"), lambda r: False),
]


@pytest.mark.parametrize("filters, wanted", FILTERS)
def test_filters_select_the_same_records_in_pages_and_exports(engine: sa.Engine, sealed: list[dict[str, Any]],
                                                               filters: audit_log.Filters,
                                                               wanted: Callable[[dict[str, Any]], bool]) -> None:
    expected = [r["id"] for r in sealed if wanted(r)]
    assert [r["id"] for r in export(engine, "jsonl", filters)] == expected
    assert [r["id"] for r in export(engine, "csv", filters)] == expected
    paged, cursor = [], None
    for _ in range(100):
        page = audit_log.page(engine, filters, 4, cursor)
        paged.extend(r["id"] for r in page["data"])
        if (cursor := page["next_cursor"]) is None:
            break
        cursor = int(cursor)
    assert paged == expected


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


@pytest.mark.slow
def test_a_large_export_streams_in_bounded_memory(engine: sa.Engine) -> None:
    """200,000 records (PostgreSQL: 50,000, as loading them takes longer there) leave as 180 MB (45 MB) of
    JSONL, while the process grows by a few blocks at most (RSS sampled after every block)."""
    count = 200_000 if engine.dialect.name == "sqlite" else 50_000
    audit_log.append_many_sync(engine, (decision(i) for i in range(count)), chunk=10_000)
    for fmt, export_blocks in (("jsonl", audit_log.export_jsonl), ("csv", audit_log.export_csv)):
        baseline, highest, size, lines = rss_bytes(), 0, 0, 0
        for block in export_blocks(engine, audit_log.Filters()):
            size, lines = size + len(block), lines + block.count(b"\n")
            highest = max(highest, rss_bytes())
        assert lines == count + (fmt == "csv") and size > 400 * count, fmt
        assert highest - baseline < 40_000_000, (fmt, highest - baseline)
