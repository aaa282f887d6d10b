#!/usr/bin/env python
"""Soak: a fixed rate of mixed calls for ten minutes; memory, file descriptors and latency over time.

    .venv/bin/python bench/soak.py                    # ten minutes at 40 calls/s (SQLite store)
    .venv/bin/python bench/soak.py --minutes 1        # shorter
    .venv/bin/python bench/soak.py --postgresql --redis   # on the shared PostgreSQL and Redis

It starts the fake upstream and one gateway (`shuhi serve`), registers one agreement with one
item, and sends, open loop at `--rate` calls per second (a call is sent on schedule whether or not
the last one was answered), a mix of: clean chat completions, streamed and not; clean Anthropic
messages, streamed and not, each naming a person never named before (replaced by a placeholder on
the way out and restored in the answer); and confidential calls carrying an excerpt of the registered item,
which the default policy holds for consent (403). Every `--every` seconds it records the
gateway's resident memory and open file descriptors (from /proc) and the latency percentiles and
errors of the calls completed in that interval. Nothing else should change over a steady load:
any growth of memory or descriptors after the warm-up is a leak.

Writes `bench/results/soak.json` (every sample and the summary) and `bench/results/soak.png`
(needs the `bench` extra: `pip install -e '.[bench]'`).

`--probe` has the gateway write, at the start of the load, every `--probe-every` seconds and at the end,
what its memory is (`<output>.probe.json`): resident memory split into anonymous and file-backed (and the
largest files), what glibc's allocator holds and how much of that is free, and the size of the gateway's
bounded caches. `--tracemalloc` adds Python's allocations by file and the sites that grew most since the
previous probe; it slows the gateway two to three times, so use a lower `--rate` with it. `--distinct N`
makes the clean prompts cycle through N texts instead of all differing (by default every clean prompt is
new, as it is in real use, and fills the gateway's bounded PII result cache).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from proxy_overhead import (  # noqa: E402  (a sibling script, not a package)
    ADMIN_TOKEN, SECRET_KEY, Processes, free_port, gateway_command, healthy, http_json, start_upstream, wait_for,
)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/0"
ITEM = ("Auroraモデルは教師ネットワークの中間層表現を四つの小型生徒モデルへ段階的に蒸留する。"
        "蒸留温度は層ごとに0.7から2.5まで変化させ、生徒間の相互学習損失を重み0.3で加える。"
        "評価データは社内で収集した二十万件の対話ログで、個人情報はすべて仮名化されている。")
EXCERPT = ITEM[20:95]
#: (share, kind): what one call is, in a fixed rotation of 10
MIX = ["clean", "clean_stream", "anthropic", "anthropic_stream", "confidential", "clean", "clean_stream",
       "clean", "anthropic", "confidential"]


def proc_sample(pid: int) -> tuple[float, int]:
    """(resident memory in MB, open file descriptors) of a process and its children (the workers)."""
    pids = [pid]
    with contextlib.suppress(OSError):
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            pids.append(int(child))
    rss, fds = 0.0, 0
    for one in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{one}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss += int(line.split()[1]) / 1024
            fds += len(os.listdir(f"/proc/{one}/fd"))
    return rss, fds


PROBE_FLAG = "--run-gateway-with-probe"


def memory_now() -> dict[str, Any]:
    """This process's memory by kind: /proc's split of resident memory, the largest file-backed mappings, and
    glibc's heap (what it holds and what of that is free: freed memory an allocator keeps is resident too)."""
    import ctypes

    rollup = {}
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines()[1:]:
        name, _, rest = line.partition(":")
        if name in ("Rss", "Anonymous", "Pss_File", "Pss_Anon", "Shared_Clean", "Private_Clean"):
            rollup[name] = round(int(rest.split()[0]) / 1024, 1)
    files: dict[str, float] = {}
    current = ""
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split()
        if head and "-" in head[0] and len(head) >= 5 and not line.startswith(("Rss", "Size")):
            current = head[5] if len(head) > 5 and head[5].startswith("/") else ""
        elif line.startswith("Rss:") and current:
            files[current] = files.get(current, 0.0) + int(line.split()[1]) / 1024
    biggest = sorted(files.items(), key=lambda kv: -kv[1])[:8]

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                          "fsmblks", "uordblks", "fordblks", "keepcost")]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    info = libc.mallinfo2()
    return {"proc_mb": rollup, "largest_files_mb": {Path(k).name: round(v, 1) for k, v in biggest},
            "glibc_heap_mb": round(info.arena / 2**20, 1), "glibc_heap_free_mb": round(info.fordblks / 2**20, 1),
            "glibc_mmapped_mb": round(info.hblkhd / 2**20, 1)}


def gateway_caches(counted: dict[str, int]) -> dict[str, Any]:
    """Sizes of what the gateway keeps between calls, found among the live objects, and the types whose number of
    live objects grew most since the last call (`counted` carries the last counts from call to call)."""
    import collections
    import gc
    import threading

    found: dict[str, Any] = {"threads": threading.active_count()}
    counts: collections.Counter[str] = collections.Counter()
    for obj in gc.get_objects():
        kind = type(obj).__name__
        counts[f"{type(obj).__module__}.{kind}"] += 1
        if kind == "PiiAnalyzer":
            found["pii_result_cache"] = len(obj._cache)
            english = getattr(obj.nlp, "_english", None)
            if english is not None:
                found["spacy_english_strings"] = len(english.vocab.strings)
                found["spacy_english_lexemes"] = len(english.vocab)
        elif kind == "KeyCache":
            found["key_cache"] = len(getattr(obj, "_entries", getattr(obj, "_cache", ())))
    found["objects"] = sum(counts.values())
    if counted:
        grown = sorted(((n - counted.get(k, 0), k) for k, n in counts.items()), reverse=True)[:8]
        found["objects_grown"] = {k: d for d, k in grown if d > 0}
    counted.clear()
    counted.update(counts)
    return found


def run_probed_gateway(out: Path, traced: bool, argv: list[str]) -> None:
    """The gateway (`shuhi ARGV`), with tracemalloc on from its first import when `traced`; each SIGUSR1 appends
    one probe (see the module's docstring) to `out`, a JSON list."""
    import threading
    import tracemalloc

    if traced:
        tracemalloc.start(1)
    wanted = threading.Event()
    probes: list[dict[str, Any]] = []
    started = time.monotonic()
    counted: dict[str, int] = {}

    def probe() -> None:
        previous: tracemalloc.Snapshot | None = None
        while True:
            wanted.wait()
            wanted.clear()
            row: dict[str, Any] = {"t": round(time.monotonic() - started, 1), **memory_now(), **gateway_caches(counted)}
            if not traced:
                probes.append(row)
                out.write_text(json.dumps(probes, indent=1, ensure_ascii=False))
                continue
            snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
            row["python_traced_mb"] = round(sum(stat.size for stat in snapshot.statistics("filename")) / 2**20, 1)
            by_file = snapshot.statistics("filename")[:8]
            row["python_largest_mb"] = {f"{s.traceback[0].filename.split('site-packages/')[-1]}": round(s.size / 2**20, 1)
                                        for s in by_file}
            if previous is not None:
                row["python_grown_kb"] = {
                    f"{d.traceback[0].filename.split('site-packages/')[-1]}:{d.traceback[0].lineno}":
                    round(d.size_diff / 1024) for d in snapshot.compare_to(previous, "lineno")[:10]}
            previous = snapshot
            probes.append(row)
            out.write_text(json.dumps(probes, indent=1, ensure_ascii=False))

    threading.Thread(target=probe, name="soak-probe", daemon=True).start()
    signal.signal(signal.SIGUSR1, lambda *_: wanted.set())
    from gateway.cli import main as shuhi

    sys.argv = ["shuhi", *argv]
    shuhi()


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def name(n: int) -> str:
    """A person's name no earlier call carried (as real prompts keep bringing new names and identifiers): the
    default policy replaces it with a placeholder on the way out and puts it back into the answer."""
    letters = hashlib.blake2b(n.to_bytes(8, "little"), digest_size=12).digest()
    first, last = (bytes(97 + b % 26 for b in letters[i:i + 6]).decode() for i in (0, 6))
    return f"{first.capitalize()} {last.capitalize()}"


def request_for(kind: str, n: int, key: str) -> tuple[str, dict[str, Any], dict[str, str], int]:
    """(path, body, headers, expected status) of call number `n`."""
    text = EXCERPT if kind == "confidential" else f"Summarise what {name(n)} wrote in the planning notes, item {n}."
    if kind.startswith("anthropic"):
        return ("/v1/messages", {"model": "claude-sonnet-4-6", "max_tokens": 64, "stream": kind.endswith("stream"),
                                 "messages": [{"role": "user", "content": text}]},
                {"x-api-key": key, "anthropic-version": "2023-06-01"}, 200)
    return ("/v1/chat/completions", {"model": "gpt-4o-mini", "stream": kind.endswith("stream"),
                                     "messages": [{"role": "user", "content": text}]},
            {"authorization": f"Bearer {key}"}, 403 if kind == "confidential" else 200)


async def soak(base: str, key: str, pid: int, rate: float, seconds: float, every: float,
               probe_every: float = 0.0, distinct: int = 0) -> list[dict[str, Any]]:
    """Open-loop load at `rate`; one sample per `every` seconds; with `probe_every`, the probed gateway is asked
    for a probe at the start, that often, and at the end."""
    samples: list[dict[str, Any]] = []
    window: list[tuple[str, float, str]] = []  # (kind, latency s, "" or what went wrong) completed this interval
    in_flight: set[asyncio.Task[None]] = set()
    # idle connections closed before the gateway's own 5 s keep-alive ends, so a call never races its close
    connector = aiohttp.TCPConnector(limit=256, keepalive_timeout=3)
    async with aiohttp.ClientSession(base, connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
        async def one(n: int) -> None:
            kind = MIX[n % len(MIX)]
            path, body, headers, expected = request_for(kind, n % distinct if distinct else n, key)
            started = time.perf_counter()
            wrong = ""
            try:
                async with session.post(path, json=body, headers=headers) as response:
                    payload = await response.read()
                    if response.status != expected:
                        code = ""
                        with contextlib.suppress(ValueError, KeyError, TypeError, AttributeError):
                            code = " " + str(json.loads(payload)["error"]["code"])
                        wrong = f"status {response.status}{code}"
                    elif body.get("stream") and expected == 200 and not (b"[DONE]" in payload
                                                                         or b"message_stop" in payload):
                        wrong = "incomplete stream"
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                wrong = type(exc).__name__
            window.append((kind, time.perf_counter() - started, wrong))

        begin = time.perf_counter()
        next_sample = begin + every
        next_probe = begin + probe_every
        if probe_every:
            os.kill(pid, signal.SIGUSR1)
        n = 0
        while True:
            now = time.perf_counter()
            if now - begin >= seconds:
                break
            if probe_every and now >= next_probe:
                os.kill(pid, signal.SIGUSR1)
                next_probe += probe_every
            due = begin + n / rate
            if due > now:
                await asyncio.sleep(min(due - now, max(0.0, next_sample - now)))
                if time.perf_counter() < due and time.perf_counter() < next_sample:
                    continue
            if time.perf_counter() >= next_sample:
                rss, fds = proc_sample(pid)
                done, window[:] = list(window), []
                latencies = [d[1] * 1000 for d in done if not d[2]]
                kinds: dict[str, int] = {}
                for d in done:
                    if d[2]:
                        kinds[d[2]] = kinds.get(d[2], 0) + 1
                samples.append({"t": round(time.perf_counter() - begin, 1), "rss_mb": round(rss, 1), "fds": fds,
                                "completed": len(done), "errors": sum(kinds.values()), "error_kinds": kinds,
                                "in_flight": len(in_flight), "p50_ms": round(percentile(latencies, 50), 2),
                                "p99_ms": round(percentile(latencies, 99), 2)})
                print(json.dumps(samples[-1]), flush=True)
                next_sample += every
                continue
            task = asyncio.ensure_future(one(n))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
            n += 1
        if in_flight:
            await asyncio.wait(in_flight, timeout=35)
    if probe_every:
        os.kill(pid, signal.SIGUSR1)
        await asyncio.sleep(probe_every / 2)  # the last probe is written before the gateway is stopped
    return samples


def growth(samples: list[dict[str, Any]], warmup_s: float) -> dict[str, Any]:
    """Mean of the first and last fifth of the samples after the warm-up, and the slope per minute."""
    steady = [s for s in samples if s["t"] > warmup_s] or samples
    fifth = max(1, len(steady) // 5)
    first, last = steady[:fifth], steady[-fifth:]

    def mean(rows: list[dict[str, Any]], key: str) -> float:
        values = [r[key] for r in rows if r[key] == r[key]]
        return sum(values) / len(values) if values else float("nan")

    def slope(key: str) -> float:
        xs = [s["t"] / 60 for s in steady]
        ys = [s[key] for s in steady]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        var = sum((x - mx) ** 2 for x in xs)
        return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0

    return {"rss_mb_first": round(mean(first, "rss_mb"), 1), "rss_mb_last": round(mean(last, "rss_mb"), 1),
            "rss_mb_per_minute": round(slope("rss_mb"), 3), "fds_first": round(mean(first, "fds"), 1),
            "fds_last": round(mean(last, "fds"), 1), "fds_per_minute": round(slope("fds"), 3),
            "p50_ms_first": round(mean(first, "p50_ms"), 2), "p50_ms_last": round(mean(last, "p50_ms"), 2),
            "p99_ms_first": round(mean(first, "p99_ms"), 2), "p99_ms_last": round(mean(last, "p99_ms"), 2),
            "calls": sum(s["completed"] for s in samples), "errors": sum(s["errors"] for s in samples)}


def plot(samples: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [s["t"] / 60 for s in samples]
    fig, axes = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    axes[0].plot(minutes, [s["rss_mb"] for s in samples], color="tab:blue")
    axes[0].set_ylabel("gateway RSS (MB)")
    axes[0].set_ylim(bottom=0)
    axes[1].plot(minutes, [s["fds"] for s in samples], color="tab:green")
    axes[1].set_ylabel("open file descriptors")
    axes[1].set_ylim(bottom=0)
    axes[2].plot(minutes, [s["p50_ms"] for s in samples], label="p50")
    axes[2].plot(minutes, [s["p99_ms"] for s in samples], label="p99")
    axes[2].set_ylabel("latency (ms)")
    axes[2].set_xlabel("minutes")
    axes[2].legend()
    errors = [m for m, s in zip(minutes, samples, strict=True) if s["errors"]]
    for m in errors:
        axes[2].axvline(m, color="tab:red", alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=40.0, help="calls per second (open loop)")
    parser.add_argument("--every", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds left out of the growth figures")
    parser.add_argument("--postgresql", action="store_true", help="store on the PostgreSQL at 127.0.0.1:5432")
    parser.add_argument("--redis", action="store_true", help="Redis at 127.0.0.1:6379 (with a rate limit)")
    parser.add_argument("--output", default=str(RESULTS / "soak"), help="path without extension (.json, .png)")
    parser.add_argument("--probe", action="store_true", help="tracemalloc in the gateway; writes <output>.probe.json")
    parser.add_argument("--probe-every", type=float, default=30.0, help="seconds between probes")
    parser.add_argument("--tracemalloc", action="store_true", help="with --probe: Python's allocations too")
    parser.add_argument("--distinct", type=int, default=0, help="clean prompts cycle through this many texts")
    if sys.argv[1:2] == [PROBE_FLAG]:
        run_probed_gateway(Path(sys.argv[2]), sys.argv[3] == "traced", sys.argv[4:])
        return
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="shuhi-soak-"))
    procs = Processes(workdir)
    schema = None
    try:
        _upstream, upstream_port = start_upstream(procs, None)
        database_url = f"sqlite:///{workdir / 'soak.db'}"
        if args.postgresql:
            import sqlalchemy as sa

            schema = "soak_" + os.urandom(4).hex()
            engine = sa.create_engine(POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://"))
            with engine.begin() as conn:
                conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
            database_url = f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
        config: dict[str, Any] = {
            "database_url": database_url, "admin_token": ADMIN_TOKEN, "secret_key": SECRET_KEY,
            "destinations": [
                {"id": "fake", "base_url": f"http://127.0.0.1:{upstream_port}/v1", "api_format": "openai",
                 "models": ["gpt-4o-mini"], "third_party": True},
                {"id": "fake-anthropic", "base_url": f"http://127.0.0.1:{upstream_port}", "api_format": "anthropic",
                 "models": ["claude-sonnet-4-6"], "third_party": True}]}
        if args.redis:
            config.update(redis_url=REDIS_URL, requests_per_minute=1_000_000)
        (workdir / "gateway.yaml").write_text(json.dumps(config))
        port = free_port()
        env = {k: "" for k in os.environ if k.startswith("SHUHI_")}
        out = Path(args.output)
        command = gateway_command()
        if args.probe:
            command = [sys.executable, str(Path(__file__).resolve()), PROBE_FLAG,
                       str(out.with_suffix(".probe.json").resolve()), "traced" if args.tracemalloc else "plain"]
        gateway = procs.start("gateway", [*command, "--config", str(workdir / "gateway.yaml"), "serve",
                                          "--host", "127.0.0.1", "--port", str(port)], None, env)
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: healthy(base + "/healthz"), gateway, "gateway", procs, "gateway")
        http_json("POST", base + "/admin/v1/principals", {"id": "soak", "groups": []}, ADMIN_TOKEN)
        key = json.loads(http_json("POST", base + "/admin/v1/keys", {"principal": "soak"}, ADMIN_TOKEN)[2])["key"]
        http_json("POST", base + "/admin/v1/agreements", {
            "id": "nda-soak", "title": "Soak NDA", "counterparty": "Soak Co.", "purpose": "evaluation",
            "effective_date": "2026-01-01", "term_years": 3, "survival_years": 2}, ADMIN_TOKEN)
        status, _, raw = http_json("POST", base + "/admin/v1/agreements/nda-soak/items",
                                   {"title": "design", "category": "ai_technology", "text": ITEM}, ADMIN_TOKEN)
        if status != 201:
            raise RuntimeError(f"registering the item: HTTP {status} {raw[:200]!r}")
        samples = asyncio.run(soak(base, key, gateway.pid, args.rate, args.minutes * 60, args.every,
                                   args.probe_every if args.probe else 0.0, args.distinct))
        summary = growth(samples, min(args.warmup, args.minutes * 60 / 4))
        store = "PostgreSQL" if args.postgresql else "SQLite"
        title = (f"soak: {args.rate:g} calls/s for {args.minutes:g} min, {store}{' + Redis' if args.redis else ''} "
                 f"— {summary['calls']} calls, {summary['errors']} errors")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".json").write_text(json.dumps(
            {"command": " ".join(sys.argv), "rate": args.rate, "minutes": args.minutes, "store": store,
             "redis": args.redis, "distinct": args.distinct, "summary": summary, "samples": samples}, indent=1))
        print(json.dumps(summary, indent=1))
        try:
            plot(samples, out.with_suffix(".png"), title)
            print(f"plot: {out.with_suffix('.png')}")
        except ImportError:
            print("matplotlib is missing: pip install -e '.[bench]' for the plot", file=sys.stderr)
    finally:
        procs.stop_all()
        if schema:
            import sqlalchemy as sa

            engine = sa.create_engine(POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://"))
            with engine.begin() as conn:
                conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))


if __name__ == "__main__":
    main()
