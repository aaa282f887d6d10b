#!/usr/bin/env python
"""PII throughput: the gateway's throughput at concurrency 32 with PII analysis on and off, in ONE run.

    .venv/bin/python bench/pii_throughput.py              # about a minute and a half
    .venv/bin/python bench/pii_throughput.py --quick      # smoke check

Target (issue 6): with PII analysis on, throughput at concurrency 32 stays >= 50% of throughput with
it off.

It reuses `bench/proxy_overhead.py` (load generator, CPU accounting, process handling) and starts two
gateway workers side by side, both pinned to CPU 0, behind one fake upstream (pinned to CPU 1 with this
load generator), each with its own throw-away SQLite store:

* "PII on": the shipped `policies/default.yaml` (names, phones, addresses… reversible; My Number and
  cards blocked);
* "PII off": the same policy with `pii.entities` emptied, so no analyzer is loaded.

Every request is a chat completion whose user message is about 1 KB of mixed English/Japanese office
prose (`proxy_overhead.prompt_text`); every other one also carries a customer's name, phone number and
address, so the "on" gateway redacts them into placeholders and restores them in the echoed answer.
A counter makes every prompt unique, and
there are more of them than a run sends: the analyzer's cache of repeated texts only ever answers for
the system prompt (as it would for any client). `--rounds` runs of `--seconds` per side, on and off alternating
(the order flips each round), each after a warm-up; the median round counts. Results: a Markdown table
on stdout and `bench/results/pii_throughput.json`; exit status 0 when the target is met with no errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import proxy_overhead as po  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "bench" / "results" / "pii_throughput.json"
CUSTOMER = " 顧客の山田 太郎様（電話 090-1234-5678、住所 東京都港区芝公園4丁目2番8号）への返信もお願いします。"
TARGET = 0.5


def payloads(count: int) -> list[bytes]:
    out = []
    for i in range(count):
        text = po.prompt_text(i) + f" (#{i})" + (CUSTOMER if i % 2 else "")
        body = {"model": po.MODEL, "messages": [
            {"role": "system", "content": "You are a helpful assistant for an engineering team."},
            {"role": "user", "content": text}]}
        out.append(json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode())
    return out


def policy_without_pii(workdir: Path) -> Path:
    document = yaml.safe_load((ROOT / "policies" / "default.yaml").read_text(encoding="utf-8"))
    document["pii"]["entities"] = {}
    path = workdir / "policy-pii-off.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    return path


async def measure(args: argparse.Namespace, ports: dict[str, tuple[int, str]], pids: dict[str, int]
                  ) -> dict[str, Any]:
    bodies = payloads(args.payloads)
    runs: dict[str, list[dict[str, Any]]] = {"on": [], "off": []}
    for round_index in range(args.rounds):
        order = ["on", "off"] if round_index % 2 == 0 else ["off", "on"]
        for side in order:
            port, key = ports[side]
            target = po.Target(f"pii-{side}", "127.0.0.1", port,
                               [po.http_request("127.0.0.1", port, po.PATH, key, b) for b in bodies])
            meter = {"gateway": pids[side], "upstream": pids["upstream"]}
            runs[side].append(await po.throughput(target, args.concurrency, args.seconds, args.warmup, meter))
    merged = {side: po.merge_rounds(f"pii-{side}", args.concurrency, side_runs) for side, side_runs in runs.items()}
    ratio = merged["on"]["rps"] / merged["off"]["rps"] if merged["off"]["rps"] else 0.0
    return {"concurrency": args.concurrency, "rounds": args.rounds, "seconds": args.seconds,
            "ratio_on_off": round(ratio, 3), "target": TARGET, "sides": merged}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--payloads", type=int, default=40000,
                        help="distinct prompts; more than a run sends, so the analyzer's cache never answers")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-pin", action="store_true")
    po.add_nice_option(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.rounds, args.warmup = 1.5, 1, 0.5
    if args.nice:
        po.renice_self(args.nice)
    gateway_cpu, other_cpu = (None, None) if args.no_pin else (0, 1)
    with tempfile.TemporaryDirectory(prefix="shuhi-pii-bench-") as tmp:
        workdir = Path(tmp)
        procs = po.Processes(workdir, args.nice)
        try:
            upstream, upstream_port = po.start_upstream(procs, other_cpu)
            off_policy = policy_without_pii(workdir)
            started = {
                "on": po.start_gateway(procs, gateway_cpu, upstream_port, name="gateway-pii-on",
                                       command=["env", f"SHUHI_POLICY={ROOT / 'policies' / 'default.yaml'}",
                                                *po.gateway_command()]),
                "off": po.start_gateway(procs, gateway_cpu, upstream_port, name="gateway-pii-off",
                                        command=["env", f"SHUHI_POLICY={off_policy}", *po.gateway_command()]),
            }
            ports = {side: (port, key) for side, (_proc, port, key) in started.items()}
            pids = {side: proc.pid for side, (proc, _port, _key) in started.items()}
            pids["upstream"] = upstream.pid
            result = asyncio.run(measure(args, ports, pids))
        finally:
            procs.stop_all()
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    for side in result["sides"].values():
        side.pop("runs", None)
    OUTPUT.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(f"concurrency {args.concurrency}, {args.rounds} rounds of {args.seconds} s per side (median counts)\n")
    print("| side | req/s (median) | per round | errors | p50 ms | p99 ms | gateway CPU µs/request |")
    print("|---|---|---|---|---|---|---|")
    for side, row in result["sides"].items():
        print(f"| PII {side} | {row['rps']} | {row['rps_per_round']} | {row['errors']} | "
              f"{row['latency_ms'].get('p50')} | {row['latency_ms'].get('p99')} | "
              f"{row['cpu_us_per_request'].get('gateway')} |")
    met = result["ratio_on_off"] >= TARGET and all(r["errors"] == 0 for r in result["sides"].values())
    print(f"\non/off = {result['ratio_on_off']} (target >= {TARGET}): {'met' if met else 'NOT met'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
