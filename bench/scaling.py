#!/usr/bin/env python
"""Scaling: throughput of one gateway with one worker process against the same with two, in ONE run.

    .venv/bin/python bench/scaling.py                  # 5 rounds of 10 s each side, PostgreSQL store
    .venv/bin/python bench/scaling.py --quick          # smoke check
    .venv/bin/python bench/scaling.py --nice -10 --rounds 7

It starts the fake upstream and two gateways on one fresh PostgreSQL schema (`shuhi serve
--workers 1` and `--workers 2`), then alternates closed-loop rounds (`--concurrency` keep-alive
connections, 1 KB chat prompts, audit log on) between them, so that the machine's noise hits both
alike; the median round of each side counts. Nothing is pinned: two workers need both CPUs, and
the upstream and this load generator share them too, so on a 2-core machine they take CPU the
second worker would use; the gateway's own CPU per request is printed beside the rates to tell
that apart from a gateway that does not scale.

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
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from proxy_overhead import (  # noqa: E402  (a sibling script, not a package)
    ADMIN_TOKEN, PATH, SECRET_KEY, CpuMeter, Processes, Target, chat_body, closed_loop, free_port, gateway_command,
    healthy, http_json, http_request, renice_self, start_upstream, wait_for,
)

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "bench" / "results" / "scaling.json"
POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


def children(pid: int) -> list[int]:
    with contextlib.suppress(OSError):
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return []


def start_gateway(procs: Processes, name: str, workers: int, upstream_port: int, database_url: str
                  ) -> tuple[int, str, list[int]]:
    """(port, gateway key, pids of the processes serving requests)."""
    config = {"database_url": database_url, "admin_token": ADMIN_TOKEN, "secret_key": SECRET_KEY,
              "destinations": [{"id": "fake", "base_url": f"http://127.0.0.1:{upstream_port}/v1",
                                "api_format": "openai", "models": ["gpt-4o-mini"], "third_party": True}]}
    path = procs.workdir / f"{name}.yaml"
    path.write_text(json.dumps(config))
    port = free_port()
    env = {k: "" for k in os.environ if k.startswith("SHUHI_")}
    proc = procs.start(name, [*gateway_command(), "--config", str(path), "serve", "--host", "127.0.0.1", "--port",
                              str(port), "--workers", str(workers)], None, env)
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: healthy(base + "/readyz"), proc, name, procs, name, timeout=120)
    principal = f"bench-{name}"
    http_json("POST", base + "/admin/v1/principals", {"id": principal, "groups": []}, ADMIN_TOKEN)
    status, _, raw = http_json("POST", base + "/admin/v1/keys", {"principal": principal}, ADMIN_TOKEN)
    if status != 201:
        raise RuntimeError(f"{name}: key: HTTP {status} {raw[:200]!r}")
    deadline = time.monotonic() + 60
    while workers > 1 and len(children(proc.pid)) < workers and time.monotonic() < deadline:
        time.sleep(0.2)
    serving = children(proc.pid) if workers > 1 else [proc.pid]
    return port, json.loads(raw)["key"], serving


async def rounds(targets: dict[str, tuple[Target, list[int]]], upstream_pid: int, args: argparse.Namespace
                 ) -> dict[str, list[dict[str, Any]]]:
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in targets}
    order = list(targets)
    for r in range(args.rounds):
        for name in (order if r % 2 == 0 else order[::-1]):
            target, pids = targets[name]
            await closed_loop(target, args.concurrency, args.warmup, record=False)
            meter_pids = {f"gw{i}": pid for i, pid in enumerate(pids)} | {"upstream": upstream_pid}
            with CpuMeter(meter_pids) as meter:
                stats, elapsed = await closed_loop(target, args.concurrency, args.seconds)
                cpu, noise = meter.used()
            gateway_cpu = sum(v for k, v in cpu.items() if k.startswith("gw"))
            results[name].append({"rps": round(stats.ok / elapsed, 1), "errors": stats.errors,
                                  "error_kinds": stats.error_kinds,
                                  "gateway_cpu_us_per_request": round(gateway_cpu * 1e6 / max(stats.ok, 1), 1),
                                  "gateway_cores_busy": round(gateway_cpu / elapsed, 2),
                                  "upstream_cores_busy": round(cpu.get("upstream", 0.0) / elapsed, 2),
                                  "loadgen_cores_busy": round(cpu.get("loadgen", 0.0) / elapsed, 2),
                                  "other_work_cores_busy": round(noise.get("cpu", 0.0), 2)})  # other jobs on this machine
            print(name, json.dumps(results[name][-1]), flush=True)
    return results


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--database", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--fingerprints", type=int, default=1_000_000)
    parser.add_argument("--nice", type=int, default=0, help="priority of every process (negative needs root)")
    parser.add_argument("--quick", action="store_true", help="2 rounds of 3 s; 200,000 fingerprints")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.seconds, args.warmup, args.fingerprints = 2, 3.0, 1.0, 200_000
    renice_self(args.nice)
    workdir = Path(tempfile.mkdtemp(prefix="shuhi-scaling-"))
    procs = Processes(workdir, args.nice)
    schemas: list[str] = []
    engine = None
    try:
        upstream, upstream_port = start_upstream(procs, None)
        targets: dict[str, tuple[Target, list[int]]] = {}
        for workers in (1, 2):
            name = f"{workers}-worker{'s' if workers > 1 else ''}"
            if args.database == "postgresql":
                import sqlalchemy as sa

                engine = engine or sa.create_engine(POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://"))
                schema = "scaling_" + os.urandom(4).hex()
                with engine.begin() as conn:
                    conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
                schemas.append(schema)
                database_url = f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
            else:
                database_url = f"sqlite:///{workdir / (name + '.db')}"
            port, key, pids = start_gateway(procs, name, workers, upstream_port, database_url)
            payloads = [http_request("127.0.0.1", port, PATH, key, chat_body(v, False)) for v in range(16)]
            targets[name] = (Target(name, "127.0.0.1", port, payloads), pids)
        measured = asyncio.run(rounds(targets, upstream.pid, args))
        one, two = (median([r["rps"] for r in measured[n]]) for n in targets)
        cpu_one, cpu_two = (median([r["gateway_cpu_us_per_request"] for r in measured[n]]) for n in targets)
        memory = memory_per_million_fingerprints(args.fingerprints)
        result = {
            "benchmark": "scaling", "command": shlex.join([".venv/bin/python", "bench/scaling.py", *sys.argv[1:]]),
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cpus": os.cpu_count(),
            "load_average": os.getloadavg(), "database": args.database, "concurrency": args.concurrency,
            "rounds": measured, "rps_1_worker": one, "rps_2_workers": two, "ratio": round(two / one, 2),
            "gateway_cpu_us_per_request": {"1": cpu_one, "2": cpu_two},
            "rps_per_gateway_core": round(1e6 / cpu_one, 0), "registry_memory": memory,
        }
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(result, indent=2) + "\n")
        print(f"\n| workers | req/s (median of {args.rounds}) | gateway CPU µs/request |\n|---|---:|---:|")
        print(f"| 1 | {one:,.0f} | {cpu_one:,.0f} |\n| 2 | {two:,.0f} | {cpu_two:,.0f} |")
        print(f"\nratio 2/1: ×{two / one:.2f} (bar ≥ 1.7); one gateway core serves about "
              f"{1e6 / cpu_one:,.0f} req/s; registry: {memory['mb_per_million']} MB per million fingerprints "
              f"({memory['fingerprints']:,} measured); load average {os.getloadavg()[0]:.1f}")
    finally:
        procs.stop_all()
        if engine is not None:
            import sqlalchemy as sa

            with engine.begin() as conn:
                for schema in schemas:
                    conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
            engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
