#!/usr/bin/env python
"""Audit throughput: the gateway's throughput at concurrency 32 with the audit log on and off, in ONE run.

    .venv/bin/python bench/audit_throughput.py                        # SQLite and PostgreSQL (about a minute)
    .venv/bin/python bench/audit_throughput.py --database postgresql  # one store only
    .venv/bin/python bench/audit_throughput.py --quick                # smoke check

Target (issue "Admin policy API and the tamper-evident audit log"): with auditing on, throughput at
concurrency 32 stays ≥ 85% of throughput with auditing off, on SQLite and on PostgreSQL.

It reuses `bench/proxy_overhead.py` (CPU accounting and process handling) and starts, per store, two
gateway workers side by side, both pinned to CPU 0, behind one fake upstream (pinned to CPU 1 with the
load generator). The load generator is `wrk` with `bench/chat_post.lua` when installed (`--loadgen`),
the upstream `bench/lean_upstream.py` (`--upstream`), as in `bench/scaling.py`: together about 50 µs
of CPU 1 per call instead of the 150 µs of the Python client and demo provider, so that CPU 1 keeps
room for the PostgreSQL backends and the gateway is what limits throughput on both sides:

* "audit on": the normal `shuhi --config FILE serve`;
* "audit off": the same through `bench/_gateway_without_audit.py`, which replaces
  `AuditLog.append`/`append_nowait` with no-ops. The product has no switch to turn auditing off (on
  purpose); that wrapper exists only for this comparison.

Each gateway has its own store: a throw-away SQLite file (synchronous=FULL for audit commits, as in
production), or a throw-away schema `bench_<random>_on|off` in the PostgreSQL database `test`
(`--postgres-url`, default postgresql://postgres@127.0.0.1:5432/test), dropped at the end whatever
happens. The CPU of the gateway's PostgreSQL backends (found by their application_name) is sampled and
reported per request; they are left to the scheduler (`--pin-postgres` pins them beside the upstream).
On a shared machine, `--nice -10` gives the benchmark's processes priority over other jobs.

Measured per store: `--rounds` closed-loop runs of `--seconds` at `--concurrency` per gateway, on and
off alternating (the order flips each round), each after a warm-up; the median round counts. Then the
audit-on store is checked: two records (decision, outcome) per request, and the chain verifies.

Results: a Markdown table on stdout and `bench/results/audit_throughput.json`. Exit status 0 when
every store met the target with no errors, 1 otherwise, other values on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import math
import os
import re
import secrets
import shlex
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import proxy_overhead as po
import scaling as sc

ROOT = po.ROOT
DEFAULT_OUTPUT = ROOT / "bench" / "results" / "audit_throughput.json"
WITHOUT_AUDIT = BENCH / "_gateway_without_audit.py"
POSTGRES_URL = os.environ.get("SHUHI_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
TARGET_RATIO = 0.85
SIDES = ("on", "off")


# --------------------------------------------------------------------------- stores


class Stores:
    """The throw-away stores of this run; `drop_all` removes every PostgreSQL schema it created."""

    def __init__(self, workdir: Path, postgres_url: str) -> None:
        self.workdir = workdir
        self.postgres_url = postgres_url
        self.schemas: list[str] = []

    def _admin(self) -> Any:
        import psycopg

        return psycopg.connect(self.postgres_url, autocommit=True, connect_timeout=10)

    def url(self, database: str, name: str) -> str:
        if database == "sqlite":
            return f"sqlite:///{self.workdir / (name + '.db')}"
        schema = f"bench_{secrets.token_hex(4)}_" + re.sub(r"\W", "_", name.rsplit("-", 1)[-1].lower())
        with self._admin() as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        self.schemas.append(schema)
        joiner = "&" if "?" in self.postgres_url else "?"
        return f"{self.postgres_url}{joiner}options=-csearch_path%3D{schema}&application_name={schema}"

    def backends(self, url: str) -> list[int]:
        """Server pids of the connections a gateway opened on `url` (PostgreSQL; by application_name)."""
        if not url.startswith("postgresql"):
            return []
        app = url.rsplit("application_name=", 1)[1]
        with self._admin() as conn:
            return [int(row[0]) for row in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (app,)).fetchall()]

    def drop_all(self) -> None:
        if not self.schemas:
            return
        try:
            with self._admin() as conn:
                for schema in list(self.schemas):
                    conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
                    self.schemas.remove(schema)
        except Exception as exc:  # noqa: BLE001 - say what is left, never hide it
            print(f"could not drop the schemas {', '.join(self.schemas)}: {exc}", file=sys.stderr)


def audit_counts(url: str) -> dict[str, int]:
    """Records per kind in a store's audit log (read directly, beside the running gateway)."""
    import sqlalchemy as sa

    from gateway.storage.database import engine_url

    engine = sa.create_engine(engine_url(url))
    try:
        with engine.connect() as conn:
            return {str(kind): int(n) for kind, n in
                    conn.exec_driver_sql("SELECT kind, count(*) FROM audit_log GROUP BY kind").all()}
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- one store


class Gateway:
    def __init__(self, side: str, url: str, proc: Any, port: int, key: str) -> None:
        self.side, self.url, self.proc, self.port, self.key = side, url, proc, port, key
        payloads = [po.http_request("127.0.0.1", port, po.PATH, key, po.chat_body(v, stream=False)) for v in range(8)]
        self.target = po.Target(f"gateway_audit_{side}", "127.0.0.1", port, payloads)


def start_gateways(procs: po.Processes, stores: Stores, database: str, cpu: int | None,
                   upstream_port: int) -> dict[str, Gateway]:
    commands = {"on": None, "off": [sys.executable, str(WITHOUT_AUDIT)]}
    gateways: dict[str, Gateway] = {}
    for side in SIDES:
        name = f"gateway-{database}-audit-{side}"
        url = stores.url(database, name)
        proc, port, key = po.start_gateway(procs, cpu, upstream_port, name=name, database_url=url,
                                           command=commands[side])
        gateways[side] = Gateway(side, url, proc, port, key)
        po.sanity_check(po.Stack(upstream_port, port, key, {}))
    return gateways


class DbSampler:
    """CPU of the gateways' PostgreSQL backends over one run, sampled every `interval` s in a thread.

    The gateway's pool opens and closes connections under load, so its backends come and go: each is
    found by its application_name, pinned to `pin` (if given) as soon as it is seen, and counted from
    its CPU when first seen (0 if it was born during the run) to its CPU when last seen."""

    def __init__(self, stores: Stores, urls: dict[str, str], pin: int | None, nice: int = 0,
                 interval: float = 0.05) -> None:
        self.stores, self.urls, self.pin, self.nice, self.interval = stores, urls, pin, nice, interval
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.owner: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="db-sampler", daemon=True)
        self.seconds = 0.0

    def _sample(self, starting: bool) -> None:
        for name, url in self.urls.items():
            for pid in self.stores.backends(url):
                cpu = po.process_cpu_seconds(pid)
                if math.isnan(cpu):  # gone already
                    continue
                if pid not in self.first:
                    self.first[pid] = cpu if starting else 0.0
                    self.owner[pid] = name
                    if self.pin is not None:
                        with contextlib.suppress(OSError):
                            os.sched_setaffinity(pid, {self.pin})
                            if self.nice:
                                os.setpriority(os.PRIO_PROCESS, pid, self.nice)
                self.last[pid] = cpu

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with contextlib.suppress(Exception):  # a failed sample only loses precision
                self._sample(False)

    def __enter__(self) -> DbSampler:
        if self.urls:
            self._sample(True)
            self._thread.start()
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.started
        if self.urls:
            self._stop.set()
            self._thread.join()
            with contextlib.suppress(Exception):
                self._sample(False)

    def used(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for pid, last in self.last.items():
            out[self.owner[pid]] = out.get(self.owner[pid], 0.0) + last - self.first[pid]
        return {name: round(v, 3) for name, v in out.items()}


def thread_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """tid -> (role, CPU seconds) of a process's threads: "main" (the event loop) or "other" (the AuditLog's
    writer thread, anyio's workers for store look-ups …; Python does not name its threads for the OS)."""
    out: dict[int, tuple[str, float]] = {}
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            tid = int(task)
            try:
                with open(f"/proc/{pid}/task/{tid}/stat", "rb") as handle:
                    raw = handle.read()
            except OSError:
                continue
            fields = raw.rsplit(b")", 1)[1].split()
            role = "main" if tid == pid else "other"
            out[tid] = (role, (int(fields[11]) + int(fields[12])) / po.CLOCK_TICKS)
    return out


def thread_delta(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds per thread role between two `thread_cpu` samples (threads born meanwhile count from 0)."""
    out = {"main": 0.0, "other": 0.0}
    for tid, (role, cpu) in after.items():
        out[role] += cpu - before.get(tid, (role, 0.0))[1]
    return {role: round(v, 3) for role, v in out.items()}


def _side(active: Gateway) -> sc.Side:
    """The gateway as `scaling.wrk_load` takes it."""
    return sc.Side(active.side, active.url, active.target, active.key, [])


async def warm_up(active: Gateway, c: int, seconds: float, args: argparse.Namespace) -> None:
    if args.bodies:
        await asyncio.to_thread(sc.wrk_load, _side(active), args.bodies, c, seconds, args.nice)
    else:
        await po.closed_loop(active.target, c, seconds, record=False)


async def wrk_run(active: Gateway, c: int, args: argparse.Namespace, pids: dict[str, int]) -> dict[str, Any]:
    """One closed-loop run of `wrk` (a child process pinned with this one): `po.throughput`'s result shape,
    wrk's own CPU as the load generator's and not as noise; latencies are wrk's concern, not kept."""
    with po.CpuMeter(pids) as meter:
        load = await asyncio.to_thread(sc.wrk_load, _side(active), args.bodies, c, args.seconds, args.nice)
        cpu, noise = meter.used()
    cpu["loadgen"] = load.loadgen_cpu
    if load.seconds > 0:
        for name in noise:
            if name == f"cpu{args.other_cpu}":
                noise[name] = round(max(0.0, noise[name] - load.loadgen_cpu / load.seconds), 2)
    return {"seconds": round(load.seconds, 3), "ok": load.ok, "errors": load.errors,
            "error_kinds": load.error_kinds, "rps": round(load.ok / load.seconds, 1) if load.seconds > 0 else 0.0,
            "cpu_seconds": cpu, "noise": noise, "_latencies": []}


def audit_commits(port: int) -> tuple[int, int]:
    """The writer's (group commits, committed records) so far, from the gateway's /metrics."""
    status, _, raw = po.http_json("GET", f"http://127.0.0.1:{port}/metrics", token=po.ADMIN_TOKEN)
    found = dict(re.findall(r"^(shuhi_audit_group_commits|shuhi_audit_committed_records) ([0-9.e+]+)$",
                            raw.decode() if status == 200 else "", re.M))
    return (int(float(found.get("shuhi_audit_group_commits", 0))),
            int(float(found.get("shuhi_audit_committed_records", 0))))


async def measured_run(active: Gateway, idle: Gateway, upstream_pid: int, stores: Stores, c: int,
                       args: argparse.Namespace, gateway_cpu: int | None, other_cpu: int | None) -> dict[str, Any]:
    """One closed-loop run (after its warm-up), with the CPU of the gateways, the upstream, this process and
    the gateways' PostgreSQL backends ("db": the loaded gateway's, "db_idle": the other's)."""
    pids = {"gateway": active.proc.pid, "gateway_idle": idle.proc.pid, "upstream": upstream_pid}
    po.PLACEMENT.clear()
    if gateway_cpu is not None and other_cpu is not None:
        po.PLACEMENT.update({f"cpu{gateway_cpu}": ["gateway", "gateway_idle"],
                             f"cpu{other_cpu}": ["upstream", "loadgen"]})
    urls = {"db": active.url, "db_idle": idle.url} if active.url.startswith("postgresql") else {}
    pin = other_cpu if args.pin_postgres else None
    threads_before = thread_cpu(active.proc.pid)
    commits_before = audit_commits(active.port)
    with DbSampler(stores, urls, pin, args.nice) as sampler:
        run = await (wrk_run(active, c, args, pids) if args.bodies else po.throughput(active.target, c, args.seconds,
                                                                                       0.0, pids))
    run["gateway_threads_cpu_seconds"] = thread_delta(threads_before, thread_cpu(active.proc.pid))
    commits_after = audit_commits(active.port)
    run["audit_commits"] = commits_after[0] - commits_before[0]
    run["audit_records_committed"] = commits_after[1] - commits_before[1]
    db = sampler.used()
    run["cpu_seconds"].update(db)
    if pin is not None and db:  # the pinned backends ran beside the upstream: theirs is not noise
        key = f"cpu{pin}"
        ours = sum(db.values()) / max(sampler.seconds, 1e-9)
        run["noise"][key] = round(max(0.0, run["noise"].get(key, 0.0) - ours), 2)
    return run


async def measure_store(database: str, gateways: dict[str, Gateway], upstream_pid: int, stores: Stores,
                        args: argparse.Namespace, gateway_cpu: int | None, other_cpu: int | None
                        ) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
    c = args.concurrency
    for r in range(args.rounds):
        for side in (SIDES if r % 2 == 0 else SIDES[::-1]):
            active, idle = gateways[side], gateways["off" if side == "on" else "on"]
            warmup = args.warmup if r == 0 else min(args.warmup, 1.0)
            print(f"{database}: audit {side}, c={c}, round {r + 1}/{args.rounds}: {warmup:g} s warm-up, "
                  f"{args.seconds:g} s …", file=sys.stderr, flush=True)
            await warm_up(active, c, warmup, args)
            runs[side].append(await measured_run(active, idle, upstream_pid, stores, c, args, gateway_cpu,
                                                 other_cpu))
    merged = {side: po.merge_rounds(f"audit_{side}", c, runs[side]) for side in SIDES}
    for side in SIDES:
        per = merged[side]["cpu_us_per_request"]
        merged[side]["gateway_cpu_us_per_request"] = per.get("gateway", 0.0)
        merged[side]["db_cpu_us_per_request"] = per.get("db", 0.0)
        completed = sum(run["ok"] + run["errors"] for run in merged[side]["runs"])
        threads = {role: sum(run["gateway_threads_cpu_seconds"][role] for run in merged[side]["runs"])
                   for role in ("main", "other")}
        merged[side]["gateway_threads_cpu_us_per_request"] = po.per_request_us(threads, completed)
        merged[side]["gateway_busy_share"] = [round(run["cpu_seconds"]["gateway"] / run["seconds"], 2)
                                              for run in merged[side]["runs"]]
        commits = sum(run["audit_commits"] for run in merged[side]["runs"])
        merged[side]["audit_records_per_commit"] = (
            round(sum(run["audit_records_committed"] for run in merged[side]["runs"]) / commits, 1) if commits else None)
    on, off = merged["on"], merged["off"]
    ratio = on["rps"] / off["rps"] if off["rps"] else float("nan")
    paired = [round(a["rps"] / b["rps"], 3) if b["rps"] else None
              for a, b in zip(on["runs"], off["runs"], strict=True)]
    out: dict[str, Any] = {"database": database, "concurrency": c, "ratio": round(ratio, 3),
                           "ratio_per_round": paired, "audit_on": on, "audit_off": off}
    out["records"] = {side: audit_counts(gateways[side].url) for side in SIDES}
    status, _, raw = po.http_json("GET", f"http://127.0.0.1:{gateways['on'].port}/admin/v1/audit/verify",
                                  token=po.ADMIN_TOKEN)
    verified = json.loads(raw) if status == 200 else {"ok": False, "http_status": status}
    out["verify_audit_on"] = {k: verified.get(k) for k in ("ok", "records", "head_seq", "first_bad", "http_status")
                              if k in verified}
    out["target_met"] = bool(ratio >= TARGET_RATIO and on["errors"] == 0 and off["errors"] == 0)
    if args.hold > 0:
        print(f"holding the audit-on gateway ({database}) at c={c} for {args.hold:g} s "
              f"(gateway pid {gateways['on'].proc.pid}) …", file=sys.stderr, flush=True)
        await po.closed_loop(gateways["on"].target, c, args.hold, record=False)
    return out


# --------------------------------------------------------------------------- report


def _latency(summary: dict[str, Any]) -> str:
    """p50 / p99 in ms, or a dash when the load generator (wrk) kept no latencies."""
    return f"{summary['p50']:.1f} / {summary['p99']:.1f}" if summary.get("n") else "–"


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    s = result["settings"]
    lines = [
        f"Machine: {m['cpu']}, {m['cpus']} CPUs, Linux {m['kernel']}, Python {m['python']}; {m['pinning']}"
        + ("; PostgreSQL backends pinned beside the upstream" if s["pin_postgres"] and "not pinned" not in m["pinning"]
           else "; PostgreSQL backends not pinned") + (f"; benchmark processes at nice {s['nice']}." if s.get("nice") else "."),
        f"Command: `{result['command']}`" + (f" (commit {result['commit']})" if result.get("commit") else "")
        + ("; policy: the default without PII entities (no personal-information analyzer)"
           if result["settings"].get("policy") == "no-pii" else "")
        + (f"; SHUHI_AUDIT_SYNC={result['settings']['audit_sync']}" if result["settings"].get("audit_sync") else ""),
        "",
        f"| store | audit on (req/s) | audit off (req/s) | ratio on/off (target ≥ {TARGET_RATIO}) | "
        "gateway CPU µs/req on / off | DB backend CPU µs/req on / off | latency p50 / p99 on (ms) | "
        "latency p50 / p99 off (ms) | errors on / off |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for store in result["stores"]:
        on, off = store["audit_on"], store["audit_off"]
        mark = "✅" if store["target_met"] else "❌"
        db = (f"{on['db_cpu_us_per_request']:.0f} / {off['db_cpu_us_per_request']:.0f}"
              if store["database"] == "postgresql" else "–")
        lines.append(
            f"| {store['database']} | {on['rps']:.0f} | {off['rps']:.0f} | ×{store['ratio']:.3f} {mark} | "
            f"{on['gateway_cpu_us_per_request']:.0f} / {off['gateway_cpu_us_per_request']:.0f} | {db} | "
            f"{_latency(on['latency_ms'])} | {_latency(off['latency_ms'])} | {on['errors']} / {off['errors']} |")
    lines.append("")
    for store in result["stores"]:
        on, off = store["audit_on"], store["audit_off"]
        rounds = ", ".join(f"{a:.0f}/{b:.0f}" for a, b in zip(on["rps_per_round"], off["rps_per_round"], strict=True))
        noise = "; ".join(f"audit {side} " + ", ".join(
            "/".join(f"{v:.2f}" for _k, v in sorted(run["noise"].items())) for run in store[f"audit_{side}"]["runs"])
            for side in SIDES)
        rec = store["records"]
        v = store["verify_audit_on"]
        lines.append(
            f"- {store['database']}: req/s on/off per round {rounds} (paired ratios "
            f"{', '.join(f'{x:.2f}' for x in store['ratio_per_round'] if x is not None)}); "
            f"audit records on: {rec['on'].get('decision', 0)} decision + {rec['on'].get('outcome', 0)} outcome, "
            f"off: {rec['off'].get('decision', 0)} + {rec['off'].get('outcome', 0)}; chain verified: "
            f"{'ok' if v.get('ok') else 'FAILED'} ({v.get('records', '?')} records).")
        split = " vs ".join(
            "/".join(f"{store[f'audit_{side}']['gateway_threads_cpu_us_per_request'].get(role, 0):.0f}"
                     for role in ("main", "other")) for side in SIDES)
        busy = "; ".join(f"audit {side} " + ", ".join(f"{b:.2f}" for b in store[f"audit_{side}"]["gateway_busy_share"])
                         for side in SIDES)
        lines.append(f"  Gateway CPU µs/req, event loop thread / other threads (audit writer, store look-ups), "
                     f"on vs off: {split}. "
                     f"Share of cpu0 the gateway used, per round: {busy}. Audit records per group commit: "
                     f"{store['audit_on']['audit_records_per_commit']}.")
        lines.append(f"  Noise ({'/'.join(sorted(on['noise']))} busy with anything but the benchmark's processes, "
                     f"per round): {noise}.")
    lines.append(f"Concurrency {s['concurrency']}, closed loop; median of {s['rounds']} rounds of "
                 f"{s['seconds']:g} s per side, on and off alternating, after {s['warmup_seconds']:g} s warm-up "
                 "(1 s from round 2). Requests: ≈1 KB English/Japanese chat completions, allowed, not streamed. "
                 f"Load generator: {s.get('loadgen', 'python')}; upstream: {s.get('upstream', 'demo')}.")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--database", nargs="+", choices=("sqlite", "postgresql"), default=["sqlite", "postgresql"],
                        help="stores to measure (default both)")
    parser.add_argument("--postgres-url", default=POSTGRES_URL,
                        help="PostgreSQL database holding the throw-away schemas (default $SHUHI_TEST_POSTGRES_URL "
                             "or postgresql://postgres@127.0.0.1:5432/test)")
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    parser.add_argument("--seconds", type=float, help="seconds per run (default 5)")
    parser.add_argument("--rounds", type=int, help="runs per side, on and off alternating; the median counts "
                                                   "(default 3)")
    parser.add_argument("--warmup", type=float, help="seconds of warm-up before the first run of each side "
                                                     "(default 3; 1 s before later runs)")
    parser.add_argument("--concurrency", type=int, default=32, help="connections (default 32)")
    parser.add_argument("--gateway-cpu", type=int, default=0, help="CPU of both gateway workers (default 0)")
    parser.add_argument("--other-cpu", type=int, default=1,
                        help="CPU of the fake upstream and this load generator (default 1)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    parser.add_argument("--pin-postgres", action="store_true",
                        help="pin the gateways' PostgreSQL backends to --other-cpu, beside the upstream (default: "
                             "left to the scheduler; pinned, they queue behind any other job on that CPU)")
    parser.add_argument("--loadgen", choices=["auto", "wrk", "python"], default="auto",
                        help="auto: wrk when installed (apt-get install wrk), else the Python client")
    parser.add_argument("--upstream", choices=["lean", "demo"], default="lean",
                        help="lean: bench/lean_upstream.py; demo: python -m gateway.demo.upstream")
    po.add_nice_option(parser)
    po.add_policy_option(parser)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="where the JSON results go")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, SQLite stores)")
    parser.add_argument("--hold", type=float, default=0.0, metavar="SECONDS",
                        help="after each store's runs, keep its audit-on gateway loaded this long "
                             "(to attach py-spy record --pid <gateway pid>)")
    args = parser.parse_args(argv)
    args.seconds = args.seconds or (2.0 if args.quick else 5.0)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.warmup = args.warmup if args.warmup is not None else (0.5 if args.quick else 3.0)
    args.database = list(dict.fromkeys(args.database))
    if args.loadgen == "auto":
        args.loadgen = "wrk" if shutil.which("wrk") else "python"
    elif args.loadgen == "wrk" and not shutil.which("wrk"):
        parser.error("wrk is not installed (apt-get install wrk)")
    args.bodies = None  # set in main: the request bodies wrk sends
    return args


async def _cancellable(coro: Any) -> Any:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(signum, task.cancel)
    return await coro


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    pin = not args.no_pin and shutil.which("taskset") is not None and (os.cpu_count() or 1) > max(
        args.gateway_cpu, args.other_cpu)
    gateway_cpu = args.gateway_cpu if pin else None
    other_cpu = args.other_cpu if pin else None
    if not pin:
        args.pin_postgres = False
    if other_cpu is not None:
        os.sched_setaffinity(0, {other_cpu})
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, po._terminate)

    po.renice_self(args.nice)
    workdir = Path(tempfile.mkdtemp(prefix="shuhi-bench-audit-"))
    upstream_procs = po.Processes(workdir, args.nice)
    gateway_procs = po.Processes(workdir, args.nice)
    stores = Stores(workdir, args.postgres_url)
    po.use_policy(args.policy, workdir)
    po.AUDIT_SYNC["value"] = args.audit_sync
    command = shlex.join([".venv/bin/python", "bench/audit_throughput.py", *(sys.argv[1:] if argv is None else argv)])
    if po.uvloop is not None:
        po.uvloop.install()
    try:
        lean = [sys.executable, str(BENCH / "lean_upstream.py")] if args.upstream == "lean" else None
        upstream, upstream_port = po.start_upstream(upstream_procs, other_cpu, lean)
        if args.loadgen == "wrk":
            args.bodies = workdir / "bodies.jsonl"
            args.bodies.write_bytes(b"".join(po.chat_body(v, False) + b"\n" for v in range(16)))
        started = dt.datetime.now(dt.UTC)
        measured = []
        for database in args.database:
            try:
                gateways = start_gateways(gateway_procs, stores, database, gateway_cpu, upstream_port)
                measured.append(asyncio.run(_cancellable(measure_store(
                    database, gateways, upstream.pid, stores, args, gateway_cpu, other_cpu))))
            finally:
                for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # the loop reset them
                    signal.signal(signum, po._terminate)
                po.clean_up(gateway_procs.stop_all, stores.drop_all)
        result: dict[str, Any] = {
            "benchmark": "audit_throughput",
            "started_at": started.isoformat(timespec="seconds"),
            "command": command,
            "commit": po.git_commit(),
            "quick": args.quick,
            "machine": po.machine_info(gateway_cpu, other_cpu),
            "settings": {"concurrency": args.concurrency, "seconds": args.seconds, "rounds": args.rounds,
                         "warmup_seconds": args.warmup, "pin_postgres": args.pin_postgres, "nice": args.nice, "policy": args.policy, "audit_sync": args.audit_sync,
                         "loadgen": args.loadgen, "upstream": args.upstream,
                         "loop": "uvloop" if po.uvloop else "asyncio"},
            "target_ratio": TARGET_RATIO,
            "stores": measured,
        }
        result["all_targets_met"] = all(store["target_met"] for store in measured)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
        print(markdown(result))
        print(f"\nJSON: {args.output.relative_to(ROOT) if args.output.is_relative_to(ROOT) else args.output}",
              file=sys.stderr)
        return 0 if result["all_targets_met"] else 1
    except (po.Interrupted, KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted: stopping the processes", file=sys.stderr)
        return 130
    finally:
        po.finish(workdir, args.keep, gateway_procs.stop_all, upstream_procs.stop_all, stores.drop_all)


if __name__ == "__main__":
    sys.exit(main())
