#!/usr/bin/env python
"""Audit log overhead: what appending costs the request path, and how fast the log leaves as an export.

    .venv/bin/python bench/audit_overhead.py            # full run (a few minutes; 1,000,000-record export)
    .venv/bin/python bench/audit_overhead.py --quick    # smoke check (100,000 records, 3 s per phase)

Measured, on a throw-away SQLite file and a throw-away schema of the PostgreSQL server
(`SHUHI_TEST_POSTGRES_URL`, default postgresql://postgres@127.0.0.1:5432/test; `--no-postgres` skips it):

1. capacity at concurrency 32: 32 coroutines each appending a decision record as soon as its last
   one was committed (group commit, `gateway.storage.audit_log.AuditLog`): records/s, the wait of
   an append (p50/p99), mean batch, process CPU per record;
2. requests at concurrency 32: 32 workers aiming at `--rps` requests/s in all, each request a
   decision record (awaited, as before forwarding), the upstream's time (a sleep), an outcome
   record; the same loop without auditing gives the baseline, and the difference in process CPU
   per request is what auditing adds to a gateway (at ~1 ms of CPU per request, 15% is 150 µs);
3. on SQLite only, `--records` records loaded in chunks (chain computed), exported as JSONL and as
   CSV and verified end to end: records/s (wall and per CPU-second), growth of the process.

Results: `bench/results/audit_overhead.json` (or `--output`) and Markdown tables on stdout.
Targets: export ≥ 50,000 records/s in constant memory (exit status 1 if missed). The machine is
often shared: compare within one run, and read the load average printed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import itertools
import json
import os
import platform
import resource
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.storage import audit_log  # noqa: E402
from gateway.storage.database import migrate, open_engine  # noqa: E402

POSTGRES_URL = os.environ.get("SHUHI_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
TARGET_EXPORT_RPS = 50_000
RUN = secrets.token_hex(8)  # decision ids come from the request path; make them cheaply here
NUMBERS = itertools.count()  # unique across phases


def request_record(i: int) -> dict[str, Any]:
    """A decision as the request path writes it: ids, a match span, a body hash; never text."""
    agreement = f"nda-{i % 7}"
    return {"kind": "decision", "principal": f"user{i % 50}@example.co.jp", "key_id": f"key_{i % 50}",
            "endpoint": "chat.completions", "destination": "openai", "model": "gpt-4o-mini",
            "decision": ("allow", "allow_marked", "block")[i % 3], "articles": ["4(2)", "4(3)"],
            "agreements": [agreement], "purpose": {agreement: "共同研究の評価 / evaluation of the joint study"},
            "matches": [{"agreement_id": agreement, "item_id": "itm_5f2a9c0d11e3b7a4", "kind": "fingerprint",
                         "category": "source_code", "location": "messages[1].content", "start": 120, "end": 860}],
            "id": f"dec_{i:012x}{RUN}", "body_hash": f"{i:064x}"}


def rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def append_load(engine: sa.Engine, seconds: float, concurrency: int) -> dict[str, Any]:
    log = audit_log.AuditLog(engine)
    await log.start()
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    numbers = NUMBERS

    async def worker() -> None:
        while time.perf_counter() < stop:
            began = time.perf_counter()
            await log.append(request_record(next(numbers)))
            latencies.append(time.perf_counter() - began)

    await asyncio.gather(*(worker() for _ in range(concurrency)))  # warm-up: pool, caches, first batches
    latencies.clear()
    batches_before, cpu, wall = log.batches, time.process_time(), time.perf_counter()
    stop = time.perf_counter() + seconds
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    batches = log.batches - batches_before
    await log.aclose()
    latencies.sort()
    count = len(latencies)
    return {"records": count, "seconds": round(wall, 3), "records_per_s": round(count / wall),
            "latency_p50_ms": round(latencies[count // 2] * 1000, 3),
            "latency_p99_ms": round(latencies[int(count * 0.99)] * 1000, 3),
            "latency_mean_ms": round(statistics.fmean(latencies) * 1000, 3),
            "mean_batch": round(count / max(batches, 1), 1), "cpu_us_per_record": round(cpu / count * 1e6, 1),
            "cpu_share_at_1000_rps": round(2 * cpu / count * 1000, 3)}


def outcome_record(i: int) -> dict[str, Any]:
    return {"kind": "outcome", "decision_id": f"dec_{i:012x}{RUN}", "principal": f"user{i % 50}@example.co.jp",
            "destination": "openai", "model": "gpt-4o-mini", "upstream_status": 200, "latency_ms": 31.5,
            "usage": {"prompt_tokens": 812, "completion_tokens": 64}}


async def request_load(engine: sa.Engine | None, seconds: float, concurrency: int, rps: float,
                       linger: float) -> dict[str, Any]:
    """Requests as the gateway makes them: decision record, the upstream's time, outcome record.

    `engine=None` runs the same loop without auditing: the difference in CPU is what auditing adds.
    """
    log = audit_log.AuditLog(engine, linger=linger) if engine is not None else None
    think = concurrency / rps  # each worker's request cycle, so that all together make `rps`
    numbers, waits, stop = NUMBERS, [], time.perf_counter() + seconds

    async def worker(offset: float) -> None:
        await asyncio.sleep(offset)
        while time.perf_counter() < stop:
            i = next(numbers)
            began = time.perf_counter()
            if log is not None:
                await log.append(request_record(i))
            waits.append(time.perf_counter() - began)
            await asyncio.sleep(think)
            if log is not None:
                await log.append(outcome_record(i))

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(think * n / concurrency) for n in range(concurrency)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    if log is not None:
        await log.aclose()
    waits.sort()
    count = len(waits)
    return {"requests": count, "requests_per_s": round(count / wall), "cpu_us_per_request": round(cpu / count * 1e6),
            "decision_wait_p50_ms": round(waits[count // 2] * 1000, 3),
            "decision_wait_p99_ms": round(waits[int(count * 0.99)] * 1000, 3),
            "mean_batch": round(2 * count / max(log.batches, 1), 1) if log else None}


def timed(blocks: Iterator[bytes]) -> dict[str, Any]:
    baseline, highest, size = rss(), 0, 0
    cpu, wall = time.process_time(), time.perf_counter()
    for block in blocks:
        size += len(block)
        highest = max(highest, rss())
    return {"seconds": time.perf_counter() - wall, "cpu_seconds": time.process_time() - cpu, "bytes": size,
            "rss_growth_mb": round((highest - baseline) / 1e6, 1)}


def export_run(path: Path, records: int) -> dict[str, Any]:
    engine = open_engine(f"sqlite:///{path}")
    migrate(engine)
    began = time.perf_counter()
    audit_log.append_many_sync(engine, (request_record(i) for i in range(records)), chunk=20_000)
    load = time.perf_counter() - began
    out: dict[str, Any] = {"records": records, "load_records_per_s": round(records / load),
                           "database_mb": round(path.stat().st_size / 1e6)}
    for fmt, export in (("jsonl", audit_log.export_jsonl), ("csv", audit_log.export_csv)):
        figures = timed(export(engine, audit_log.Filters()))
        out[fmt] = {**figures, "records_per_s": round(records / figures["seconds"]),
                    "records_per_cpu_s": round(records / figures["cpu_seconds"]), "mb": round(figures["bytes"] / 1e6)}
        del out[fmt]["bytes"]
    began = time.perf_counter()
    verified = audit_log.verify(engine)
    out["verify"] = {"ok": verified["ok"], "records_per_s": round(records / (time.perf_counter() - began))}
    engine.dispose()
    return out


def postgres_schema() -> tuple[str, sa.Engine]:
    """A throw-away schema: its URL and an engine to drop it with."""
    schema = "bench_audit_" + secrets.token_hex(4)
    admin = sa.create_engine(POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://", 1))
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    return f"{POSTGRES_URL}?options=-csearch_path%3D{schema}", admin


def drop_schema(admin: sa.Engine, url: str) -> None:
    with admin.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA {url.rsplit('%3D', 1)[1]} CASCADE"))
    admin.dispose()


def table(results: dict[str, Any]) -> str:
    lines = ["Capacity: 32 coroutines appending back to back.", "",
             "| store | appends/s | wait p50 / p99 (ms) | mean batch | CPU µs/record |", "|---|---|---|---|---|"]
    for store, r in results["append"].items():
        lines.append(f"| {store} | {r['records_per_s']:,} | {r['latency_p50_ms']} / {r['latency_p99_ms']} | "
                     f"{r['mean_batch']} | {r['cpu_us_per_record']} |")
    lines += ["", f"Requests: {results['settings']['concurrency']} workers aiming at "
              f"{results['settings']['rps']:,} req/s, each a decision record, the upstream's time, an outcome "
              "record; CPU against the same loop without auditing.", "",
              "| store | req/s | decision wait p50 / p99 (ms) | mean batch | CPU added per request (µs) |",
              "|---|---|---|---|---|"]
    for store, r in results["requests"].items():
        lines.append(f"| {store} | {r['requests_per_s']:,} | {r['decision_wait_p50_ms']} / "
                     f"{r['decision_wait_p99_ms']} | {r['mean_batch']} | {r['cpu_added_us_per_request']} |")
    if "export" in results:
        e = results["export"]
        lines += ["", f"SQLite, {e['records']:,} records ({e['database_mb']} MB; loaded at "
                  f"{e['load_records_per_s']:,}/s):", "",
                  "| export | records/s | per CPU-second | size (MB) | process growth (MB) |", "|---|---|---|---|---|"]
        for fmt in ("jsonl", "csv"):
            f = e[fmt]
            lines.append(f"| {fmt} | {f['records_per_s']:,} | {f['records_per_cpu_s']:,} | {f['mb']} | "
                         f"{f['rss_growth_mb']} |")
        lines.append(f"| verify | {e['verify']['records_per_s']:,} | | | ok={e['verify']['ok']} |")
    return "\n".join(lines)


def measure_store(url: str, args: argparse.Namespace, seconds: float) -> tuple[dict[str, Any], dict[str, Any]]:
    engine = open_engine(url)
    migrate(engine)
    try:
        capacity = asyncio.run(append_load(engine, seconds, args.concurrency))
        bare = asyncio.run(request_load(None, seconds, args.concurrency, args.rps, args.linger))
        audited = asyncio.run(request_load(engine, seconds, args.concurrency, args.rps, args.linger))
    finally:
        engine.dispose()
    audited["cpu_added_us_per_request"] = audited["cpu_us_per_request"] - bare["cpu_us_per_request"]
    audited["without_audit"] = bare
    return capacity, audited


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100,000 records, 3 s per phase")
    parser.add_argument("--records", type=int, help="records to export (default 1,000,000)")
    parser.add_argument("--seconds", type=float, help="seconds per phase and store (default 10)")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rps", type=float, default=1000.0, help="request rate the workers aim at")
    parser.add_argument("--linger", type=float, default=0.001, help="AuditLog(linger=…) under load")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-export", action="store_true")
    parser.add_argument("--output", type=Path, default=Path(__file__).parent / "results" / "audit_overhead.json")
    args = parser.parse_args()
    records = args.records or (100_000 if args.quick else 1_000_000)
    seconds = args.seconds or (3.0 if args.quick else 10.0)
    results: dict[str, Any] = {
        "benchmark": "audit_overhead", "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join([".venv/bin/python", *sys.argv]), "machine": {
            "cpus": os.cpu_count(), "python": platform.python_version(), "load_avg": os.getloadavg()},
        "settings": {"concurrency": args.concurrency, "rps": args.rps, "linger": args.linger, "seconds": seconds,
                     "records": records}, "append": {}, "requests": {}}
    with tempfile.TemporaryDirectory(prefix="shuhi-audit-bench-") as tmp:
        stores: list[tuple[str, str, sa.Engine | None]] = [("sqlite", f"sqlite:///{Path(tmp) / 'append.db'}", None)]
        if not args.no_postgres:
            stores.append(("postgresql", *postgres_schema()))
        for name, url, admin in stores:
            try:
                results["append"][name], results["requests"][name] = measure_store(url, args, seconds)
            finally:
                if admin is not None:
                    drop_schema(admin, url)
        if not args.no_export:
            results["export"] = export_run(Path(tmp) / "export.db", records)
    results["max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print(table(results))
    print(f"\n(load average at start {results['machine']['load_avg']}; figures in {args.output})")
    if "export" in results:
        return 0 if min(results["export"][f]["records_per_s"] for f in ("jsonl", "csv")) >= TARGET_EXPORT_RPS else 1
    return 0

if __name__ == "__main__":
    sys.exit(main())
