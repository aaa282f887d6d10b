#!/usr/bin/env python
"""Scaling: throughput of one gateway with one worker process against the same with two, in ONE run.

    .venv/bin/python bench/scaling.py                        # PostgreSQL and SQLite, 5 rounds of 10 s a side
    .venv/bin/python bench/scaling.py --quick                # smoke check
    .venv/bin/python bench/scaling.py --nice -10 --database postgresql --rounds 7

Per store (a fresh PostgreSQL schema, or one SQLite file that both workers of a gateway share) it
starts two gateways, `shuhi serve --workers 1` and `--workers 2`, behind one fake upstream, and
alternates closed-loop rounds between them (`--concurrency` keep-alive connections, 1 KB chat
prompts, audit log on), so that the machine's noise hits both alike; the median round counts.

Nothing is pinned: two workers need both CPUs, and whatever else serves a request shares them. So
every round also measures the CPU each part spends per request: the gateway's processes (G), the
fake upstream, the load generator and the gateway's PostgreSQL backends (together L; SQLite runs
inside the gateway), and other jobs on the machine. With G and L per request on 2 cores, two
workers serve at most 2 / (G + L) requests a second while one serves 1 / G: the ratio cannot
exceed 2G / (G + L), printed beside the measured one, so a reader sees why the ratio is what it is.
To keep L small, the load generator is `wrk` (with `bench/chat_post.lua`) when installed, else
the Python client of `proxy_overhead.py`, and the upstream is `bench/lean_upstream.py`
(`--upstream demo`: the full demo upstream).

It also measures what the registry costs in memory per million fingerprints (a registry filled
with random text in this process; the resident memory it adds, divided by its fingerprints).

Writes `bench/results/scaling.json` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import audit_throughput as at  # noqa: E402  (sibling scripts, not a package)
import proxy_overhead as po  # noqa: E402

ROOT = BENCH.parent
OUTPUT = ROOT / "bench" / "results" / "scaling.json"
WRK_SCRIPT = BENCH / "chat_post.lua"
PARTS = ("gateway", "upstream", "loadgen", "database")  # who spends CPU per request; L: all but the gateway


def children(pid: int) -> list[int]:
    with contextlib.suppress(OSError):
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return []


@dataclass
class Side:
    """One gateway under test: its name, store, load target and the pids of its processes."""

    name: str
    url: str
    target: po.Target
    key: str
    pids: list[int]


def start_gateway(procs: po.Processes, name: str, workers: int, upstream_port: int, database_url: str
                  ) -> tuple[int, str, list[int]]:
    """(port, gateway key, pids of the gateway's processes: the supervisor and its workers)."""
    config = {"database_url": database_url, "admin_token": po.ADMIN_TOKEN, "secret_key": po.SECRET_KEY,
              "destinations": [{"id": "fake", "base_url": f"http://127.0.0.1:{upstream_port}/v1",
                                "api_format": "openai", "models": [po.MODEL], "third_party": True}]}
    path = procs.workdir / f"{name}.yaml"
    path.write_text(json.dumps(config))
    port = po.free_port()
    env = {k: "" for k in os.environ if k.startswith("SHUHI_")}
    # migrated before the workers start: two workers migrating one new SQLite file at once race
    # (`table alembic_version already exists`); PostgreSQL serialises them with a lock
    subprocess.run([*po.gateway_command(), "--config", str(path), "migrate"], check=True, cwd=procs.workdir,
                   env={**os.environ, **env}, stdout=subprocess.DEVNULL)
    proc = procs.start(name, [*po.gateway_command(), "--config", str(path), "serve", "--host", "127.0.0.1",
                              "--port", str(port), "--workers", str(workers)], None, env)
    base = f"http://127.0.0.1:{port}"
    po.wait_for(lambda: po.healthy(base + "/readyz"), proc, name, procs, name, timeout=120)
    principal = f"bench-{name}"
    po.http_json("POST", base + "/admin/v1/principals", {"id": principal, "groups": []}, po.ADMIN_TOKEN)
    status, _, raw = po.http_json("POST", base + "/admin/v1/keys", {"principal": principal}, po.ADMIN_TOKEN)
    if status != 201:
        raise RuntimeError(f"{name}: key: HTTP {status} {raw[:200]!r}")
    deadline = time.monotonic() + 60
    while workers > 1 and len(children(proc.pid)) < workers and time.monotonic() < deadline:
        time.sleep(0.2)
    return port, json.loads(raw)["key"], [proc.pid, *(children(proc.pid) if workers > 1 else [])]


# --------------------------------------------------------------------------- load generators


@dataclass
class Load:
    ok: int
    errors: int
    error_kinds: dict[str, int]
    seconds: float
    loadgen_cpu: float  # CPU-seconds the load generator itself spent


def wrk_load(side: Side, bodies: Path, concurrency: int, seconds: float, nice: int) -> Load:
    """One closed-loop run of `wrk` (one thread, `concurrency` keep-alive connections); its CPU from wait4."""
    argv = ["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "--timeout", "30s", "-s",
            str(WRK_SCRIPT), f"http://127.0.0.1:{side.target.port}", "--", str(bodies), side.key]
    if nice:
        argv = ["nice", "-n", str(nice), *argv]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    output = proc.stdout.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    line = next((ln for ln in output.splitlines() if ln.startswith("wrk-summary ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}):\n{output[-2000:]}")
    found = json.loads(line.split(" ", 1)[1])
    kinds = {kind: found[kind] for kind in ("connect", "read", "write", "status", "timeout") if found[kind]}
    return Load(found["requests"] - found["status"], sum(kinds.values()), kinds, found["duration_us"] / 1e6,
                usage.ru_utime + usage.ru_stime)


def python_load(side: Side, concurrency: int, seconds: float) -> Load:
    """One closed-loop run of the Python client (`proxy_overhead.closed_loop`); its CPU is this process's."""
    before = po.own_cpu_seconds()
    stats, elapsed = asyncio.run(po.closed_loop(side.target, concurrency, seconds, record=False))
    return Load(stats.ok, stats.errors, stats.error_kinds, elapsed, po.own_cpu_seconds() - before)


# --------------------------------------------------------------------------- rounds


def one_round(side: Side, procs: po.Processes, upstream_pid: int, stores: at.Stores, bodies: Path | None,
              args: argparse.Namespace) -> dict[str, Any]:
    """Warm-up, then one measured run: req/s and every part's CPU per request."""
    def load(seconds: float) -> Load:
        if bodies is None:
            return python_load(side, args.concurrency, seconds)
        try:
            return wrk_load(side, bodies, args.concurrency, seconds, args.nice)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\n{side.target.name}'s log:\n{procs.log_tail(side.target.name)}") from None

    load(args.warmup)
    meter_pids = {f"gw{i}": pid for i, pid in enumerate(side.pids)} | {"upstream": upstream_pid}
    with po.CpuMeter(meter_pids) as meter, at.DbSampler(stores, {"db": side.url} if side.url.startswith(
            "postgresql") else {}, None, interval=0.5) as db:
        run = load(args.seconds)
        cpu, noise = meter.used()
    seconds = {"gateway": sum(v for k, v in cpu.items() if k.startswith("gw")), "upstream": cpu["upstream"],
               "loadgen": run.loadgen_cpu, "database": db.used().get("db", 0.0)}
    ok = max(run.ok, 1)
    ours = sum(seconds.values())
    # other jobs on the machine: the meter's busy time of all CPUs less the gateway, the upstream and this
    # process, less what it could not see (the database backends; wrk, a child process)
    other = noise.get("cpu", 0.0) * run.seconds - seconds["database"] - (run.loadgen_cpu if bodies else 0.0)
    other = max(0.0, other)
    us = {part: round(value * 1e6 / ok, 1) for part, value in seconds.items()}
    return {"rps": round(run.ok / run.seconds, 1), "errors": run.errors, "error_kinds": run.error_kinds,
            "cpu_us_per_request": us, "other_jobs_us_per_request": round(other * 1e6 / ok, 1),
            "cores_busy": {part: round(value / run.seconds, 2) for part, value in seconds.items()}
            | {"other_jobs": round(other / run.seconds, 2)}, "ours_cores_busy": round(ours / run.seconds, 2)}


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def summarise(database: str, measured: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Medians per side, the ratio, and the bound 2G/(G+L) that CPU per request puts on it."""
    one_name, two_name = list(measured)
    per_part = {name: {part: round(median([r["cpu_us_per_request"][part] for r in rounds]), 1) for part in PARTS}
                for name, rounds in measured.items()}
    one, two = (median([r["rps"] for r in measured[n]]) for n in (one_name, two_name))
    g1, g2 = per_part[one_name]["gateway"], per_part[two_name]["gateway"]
    rest = sum(v for part, v in per_part[two_name].items() if part != "gateway")
    other = median([r["other_jobs_us_per_request"] for r in measured[two_name]])
    return {
        "database": database, "rounds": measured, "rps_1_worker": one, "rps_2_workers": two,
        "ratio": round(two / one, 2), "cpu_us_per_request": per_part,
        "other_jobs_us_per_request_2_workers": other,
        # two workers on 2 cores: at most 2 / (G2 + L2) req/s; one worker: 1 / G1 when it has a core of its own
        "bound_2g_over_g_plus_l": round(2 * g2 / (g2 + rest), 2),
        "bound_with_g_of_one_worker": round(2 * g1 / (g2 + rest), 2),
        "errors": sum(r["errors"] for rounds in measured.values() for r in rounds),
    }


def measure_store(database: str, procs: po.Processes, stores: at.Stores, upstream: tuple[int, int],
                  bodies: Path | None, args: argparse.Namespace) -> dict[str, Any]:
    upstream_pid, upstream_port = upstream
    sides: list[Side] = []
    for workers in (1, 2):
        name = f"{database}-{workers}-worker{'s' if workers > 1 else ''}"
        if database == "postgresql":
            url = stores.url(database, name)  # a schema each; SQLite: each gateway's own file, shared by its workers
        else:
            url = f"sqlite:///{procs.workdir / (name + '.db')}"
        port, key, pids = start_gateway(procs, name, workers, upstream_port, url)
        payloads = [po.http_request("127.0.0.1", port, po.PATH, key, po.chat_body(v, False)) for v in range(16)]
        sides.append(Side(f"{workers}-worker{'s' if workers > 1 else ''}", url,
                          po.Target(name, "127.0.0.1", port, payloads), key, pids))
    measured: dict[str, list[dict[str, Any]]] = {side.name: [] for side in sides}
    for r in range(args.rounds):
        for side in (sides if r % 2 == 0 else sides[::-1]):
            result = one_round(side, procs, upstream_pid, stores, bodies, args)
            measured[side.name].append(result)
            print(database, side.name, json.dumps(result), flush=True)
    return summarise(database, measured)


# --------------------------------------------------------------------------- registry memory


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def memory_per_million_fingerprints(target: int) -> dict[str, Any]:
    """Resident memory a registry adds per million fingerprints (random Latin and Japanese text)."""
    from gateway.detection.registry import Registry

    rng = random.Random(7)
    latin = "abcdefghijklmnopqrstuvwxyz     "
    kana = "あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほまみむめもやゆよらりるれろわをん設計学習評価"
    registry = Registry(b"bench-secret-key-0123456789abcdef")
    before = rss_mb()
    n = 0
    while len(registry.index) < target:
        alphabet = latin if n % 2 else kana
        text = "".join(rng.choice(alphabet) for _ in range(20_000))
        registry.add_item(f"item_{n}", "nda", "ai_technology", text)
        n += 1
    after = rss_mb()
    fingerprints = len(registry.index)
    return {"fingerprints": fingerprints, "items": n, "rss_added_mb": round(after - before, 1),
            "mb_per_million": round((after - before) / fingerprints * 1e6, 1)}


# --------------------------------------------------------------------------- output


def markdown(result: dict[str, Any]) -> str:
    lines = [f"load generator: {result['loadgen']}; upstream: {result['upstream']}; c={result['concurrency']}; "
             f"median of {result['rounds']} rounds of {result['seconds']:g} s", ""]
    for store in result["stores"]:
        per = store["cpu_us_per_request"]
        lines += [f"### {store['database']}", "",
                  "| workers | req/s | gateway G | upstream | load generator | database | L (all but G) | "
                  "2G/(G+L) |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for name, rps in zip(per, (store["rps_1_worker"], store["rps_2_workers"]), strict=True):
            g = per[name]["gateway"]
            rest = sum(v for part, v in per[name].items() if part != "gateway")
            lines.append(f"| {name.split('-')[0]} | {rps:,.0f} | {g:,.0f} µs | {per[name]['upstream']:,.0f} µs | "
                         f"{per[name]['loadgen']:,.0f} µs | {per[name]['database']:,.0f} µs | {rest:,.0f} µs | "
                         f"×{2 * g / (g + rest):.2f} |")
        lines += ["", f"ratio 2/1: ×{store['ratio']:.2f} (bar ≥ 1.7); bound from the two-worker rounds' CPU "
                      f"2G/(G+L) = ×{store['bound_2g_over_g_plus_l']:.2f}, with one worker's G: "
                      f"×{store['bound_with_g_of_one_worker']:.2f}; other jobs on the machine "
                      f"{store['other_jobs_us_per_request_2_workers']:,.0f} µs/request; errors {store['errors']}", ""]
    memory = result["registry_memory"]
    lines.append(f"registry: {memory['mb_per_million']} MB per million fingerprints ({memory['fingerprints']:,} "
                 f"measured); load average {result['load_average'][0]:.1f}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--database", nargs="+", choices=["postgresql", "sqlite"], default=["postgresql", "sqlite"])
    parser.add_argument("--postgres-url", default=at.POSTGRES_URL)
    parser.add_argument("--loadgen", choices=["auto", "wrk", "python"], default="auto",
                        help="auto: wrk when installed (apt-get install wrk), else the Python client")
    parser.add_argument("--upstream", choices=["lean", "demo"], default="lean",
                        help="lean: bench/lean_upstream.py; demo: python -m gateway.demo.upstream")
    parser.add_argument("--fingerprints", type=int, default=1_000_000)
    po.add_nice_option(parser)
    parser.add_argument("--quick", action="store_true", help="2 rounds of 3 s; 200,000 fingerprints")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, stores)")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.seconds, args.warmup, args.fingerprints = 2, 3.0, 1.0, 200_000
    args.database = list(dict.fromkeys(args.database))
    if args.loadgen == "auto":
        args.loadgen = "wrk" if shutil.which("wrk") else "python"
    elif args.loadgen == "wrk" and not shutil.which("wrk"):
        parser.error("wrk is not installed (apt-get install wrk)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, po._terminate)
    po.renice_self(args.nice)
    if args.loadgen == "python" and po.uvloop is not None:
        po.uvloop.install()
    workdir = Path(tempfile.mkdtemp(prefix="shuhi-scaling-"))
    upstream_procs, gateway_procs = po.Processes(workdir, args.nice), po.Processes(workdir, args.nice)
    stores = at.Stores(workdir, args.postgres_url)
    command = shlex.join([".venv/bin/python", "bench/scaling.py", *(sys.argv[1:] if argv is None else argv)])
    try:
        lean = [sys.executable, str(BENCH / "lean_upstream.py")] if args.upstream == "lean" else None
        upstream, upstream_port = po.start_upstream(upstream_procs, None, lean)
        bodies: Path | None = None
        if args.loadgen == "wrk":
            bodies = workdir / "bodies.jsonl"
            bodies.write_bytes(b"".join(po.chat_body(v, False) + b"\n" for v in range(16)))
        measured = []
        for database in args.database:
            try:
                measured.append(measure_store(database, gateway_procs, stores, (upstream.pid, upstream_port),
                                              bodies, args))
            finally:
                po.clean_up(gateway_procs.stop_all, stores.drop_all)
        memory = memory_per_million_fingerprints(args.fingerprints)
        result: dict[str, Any] = {
            "benchmark": "scaling", "command": command, "commit": po.git_commit(),
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cpus": os.cpu_count(),
            "load_average": os.getloadavg(), "loadgen": args.loadgen, "upstream": args.upstream,
            "concurrency": args.concurrency, "rounds": args.rounds, "seconds": args.seconds, "nice": args.nice,
            "stores": measured, "registry_memory": memory,
        }
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(result, indent=2) + "\n")
        print("\n" + markdown(result))
        return 0
    except (po.Interrupted, KeyboardInterrupt):
        print("interrupted: stopping the processes", file=sys.stderr)
        return 130
    finally:
        po.finish(workdir, args.keep, gateway_procs.stop_all, upstream_procs.stop_all, stores.drop_all)


if __name__ == "__main__":
    sys.exit(main())
