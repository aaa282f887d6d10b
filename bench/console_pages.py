#!/usr/bin/env python
"""Console pages on a large store: the admin API calls each page makes, timed end to end over HTTP.

    nice .venv/bin/python bench/console_pages.py                         # SQLite and PostgreSQL
    nice .venv/bin/python bench/console_pages.py --database sqlite --reps 20

Target (issue "The admin web console"): every page answers in ≤ 300 ms with 100,000 audit records
and 1,000 items.

The store (a throw-away SQLite file, or a throw-away schema `bench_console_<random>` in the
PostgreSQL database `test`, dropped at the end) is filled with `--records` audit records spread over
the last 60 days (decisions, outcomes and admin changes in realistic proportions, ids and spans only,
chained as the gateway chains them), `--items` items registered through the admin API under 10
agreements (half of them under one agreement, the worst case for its material page), 100 principals
with keys, 300 pending and 100 answered consent requests. Then one gateway process (`shuhi serve`,
started by this script) answers; each page's calls (those its module makes on opening, listed in
`PAGES`) are issued one after another, so a page's time is the sum of its calls (the browser makes
some of them in parallel: the figure is an upper bound). Each page is opened `--reps` times after
a warm-up; the median and the 95th percentile are reported (the very first dashboard load after the
gateway starts is reported apart as one sample: opening the console page starts counting the settled
days in the background, and the sample is taken 3 s later, about the time a person takes to sign in).
Dry-run scans and chain verification are
actions, not page loads; they are timed too and reported apart.

Results: a Markdown table on stdout and `bench/results/console_pages.json`. Exit status 0 when the
95th percentile of every page is within the target, 1 otherwise.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import random
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.audit import prepare  # noqa: E402
from gateway.storage import audit_log  # noqa: E402
from gateway.storage import consents as consent_store  # noqa: E402
from gateway.storage.database import migrate, open_engine  # noqa: E402

POSTGRES_URL = os.environ.get("SHUHI_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
TARGET_MS = 300.0
AGREEMENTS = [f"nda-{n:02d}" for n in range(10)]
DECISIONS = [("allow", 70), ("allow_marked", 15), ("consent_required", 8), ("block", 4), ("redact", 3)]
WORDS = ("蒸留 温度 生徒 教師 ネットワーク 中間層 評価 データ 対話 ログ 仮名化 学習 損失 重み 検索 索引 分散 "
         "model layer shard tenant vector index cache rerank encoder retrieval latency budget").split()
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def prose(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) + str(rng.randrange(1000)) for _ in range(words))


def audit_records(count: int, items: dict[str, list[str]], rng: random.Random) -> Iterator[tuple[dict[str, Any], dt.datetime]]:
    """Decisions, their outcomes and some admin changes, oldest first, over the last 60 days."""
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=60)
    step = dt.timedelta(days=60) / count
    kinds, weights = zip(*DECISIONS, strict=True)
    for n in range(count):
        at = start + step * n
        roll = n % 20
        if roll == 19:
            yield {"kind": "admin", "actor": "tok_bench", "actor_role": "legal", "action": "register_item",
                   "target": rng.choice(AGREEMENTS), "details": {"method": "POST", "status": 201}}, at
            continue
        decision = rng.choices(kinds, weights)[0]
        principal = f"user{rng.randrange(100):03d}@example.co.jp"
        fields: dict[str, Any] = {"principal": principal, "key_id": f"key_{principal[:7]}", "destination": "openai",
                                  "endpoint": "chat.completions", "model": "gpt-4o-mini"}
        if roll % 2:
            yield {"kind": "outcome", **fields, "decision": decision, "upstream_status": 200, "latency_ms": 412.5}, at
            continue
        record = {"kind": "decision", **fields, "decision": decision, "body_hash": secrets.token_hex(32)}
        if decision != "allow":
            agreement = rng.choice(AGREEMENTS)
            record.update(agreements=[agreement], articles=["4(2)"] if decision != "allow_marked" else ["4(2)", "4(3)"],
                          matches=[{"agreement_id": agreement, "item_id": rng.choice(items[agreement]),
                                    "kind": "fingerprint", "category": "ai_technology",
                                    "location": "messages[1].content", "start": 12, "end": 240}])
        yield record, at


def fill_audit(engine: sa.Engine, count: int, items: dict[str, list[str]], rng: random.Random) -> None:
    batch: list[dict[str, Any]] = []
    for fields, at in audit_records(count, items, rng):
        batch.append(prepare(fields, now=at))
        if len(batch) >= 5000:
            audit_log.commit(engine, batch)
            batch = []
    if batch:
        audit_log.commit(engine, batch)


class Gateway:
    """`shuhi serve` in its own process on a throw-away store."""

    def __init__(self, database_url: str, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = "bench-admin-" + secrets.token_hex(8)
        config = workdir / "shuhi.yaml"
        config.write_text(json.dumps({"destinations": [
            {"id": "openai", "base_url": "http://127.0.0.1:9/v1", "api_format": "openai", "models": ["gpt-4o*"],
             "third_party": True},
            {"id": "in-house", "base_url": "http://127.0.0.1:9/v1", "api_format": "openai", "models": ["qwen3"],
             "third_party": False}]}))
        env = {**os.environ, "SHUHI_DATABASE_URL": database_url, "SHUHI_ADMIN_TOKEN": self.token,
               "SHUHI_SECRET_KEY": "bench-secret-" + secrets.token_hex(16), "SHUHI_LOG_LEVEL": "warning"}
        self.process = subprocess.Popen([sys.executable, "-m", "gateway.cli", "--config", str(config), "serve",
                                         "--host", "127.0.0.1", "--port", str(self.port)],
                                        cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.client = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=120)
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(self.url + "/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("gateway did not start: " + (self.process.stderr.read() or b"").decode()[-2000:]
                                   if self.process.stderr else "")
            time.sleep(0.2)

    def close(self) -> None:
        self.client.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stderr:
            self.process.stderr.close()


def fill_through_api(gw: Gateway, item_count: int, rng: random.Random) -> dict[str, list[str]]:
    items: dict[str, list[str]] = {a: [] for a in AGREEMENTS}
    for n, agreement in enumerate(AGREEMENTS):
        gw.client.post("/admin/v1/agreements", json={
            "id": agreement, "title": f"AI技術秘密保持契約 第{n + 1}号", "counterparty": f"株式会社テスト{n}",
            "purpose": "共同研究の可否の検討", "effective_date": "2026-01-01", "term_years": 3, "survival_years": 2,
            "authorized_groups": ["rd"]}).raise_for_status()
    owners = [AGREEMENTS[0]] * (item_count // 2) + [AGREEMENTS[1 + n % 9] for n in range(item_count - item_count // 2)]
    for n, agreement in enumerate(owners):
        made = gw.client.post(f"/admin/v1/agreements/{agreement}/items", json={
            "title": f"資料 {n:04d}", "category": "ai_technology", "text": prose(rng, 120)})
        made.raise_for_status()
        items[agreement].append(made.json()["id"])
    for n in range(100):
        principal = f"user{n:03d}@example.co.jp"
        gw.client.post("/admin/v1/principals", json={"id": principal, "groups": ["rd"]}).raise_for_status()
        gw.client.post("/admin/v1/keys", json={"principal": principal}).raise_for_status()
    return items


def fill_requests(engine: sa.Engine, items: dict[str, list[str]], rng: random.Random) -> None:
    for n in range(400):
        agreement = rng.choice(AGREEMENTS)
        request_id = consent_store.open_request(engine, agreement, [rng.choice(items[agreement])], "openai",
                                                "inference", f"user{n % 100:03d}@example.co.jp", f"dec_bench{n:06d}")
        if n >= 300:
            consent_store.approve_request(engine, request_id, f"同意書 {n}", None, "法務部")


def pages(gw: Gateway) -> dict[str, list[tuple[str, str, dict[str, Any] | None]]]:
    """Each page's calls on opening, as `gateway/console/static/pages/*.js` make them."""
    first = AGREEMENTS[0]
    head = int(gw.client.get("/admin/v1/audit/verify").json()["head_seq"])
    month = dt.datetime.now(dt.UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    since = {"since": (month - dt.timedelta(days=31)).isoformat()}
    agreements = ("GET", "/admin/v1/agreements", {"limit": 1000})
    return {
        "dashboard (30 days)": [("GET", "/admin/v1/stats", {"days": 30}),
                                ("GET", "/admin/v1/consent-requests", {"status": "pending", "limit": 5})],
        "dashboard (365 days)": [("GET", "/admin/v1/stats", {"days": 365}),
                                 ("GET", "/admin/v1/consent-requests", {"status": "pending", "limit": 5})],
        "agreements": [agreements],
        "agreement detail": [("GET", f"/admin/v1/agreements/{first}", None)],
        "material (500 items)": [agreements, ("GET", f"/admin/v1/agreements/{first}/items", {"limit": 1000}),
                                 ("GET", f"/admin/v1/agreements/{first}/exclusions", None),
                                 ("GET", f"/admin/v1/agreements/{first}/record-sets", None)],
        "consents": [("GET", "/admin/v1/consent-requests", {"status": "pending", "limit": 1000}),
                     ("GET", "/admin/v1/consent-requests", {"limit": 1000}),
                     ("GET", "/admin/v1/consents", {"limit": 1000}), agreements],
        "audit (latest)": [("GET", "/admin/v1/stats", {"days": 1}),
                           ("GET", "/admin/v1/audit", {"cursor": str(max(0, head - 50)), "limit": 50})],
        "audit (two months, one agreement)": [("GET", "/admin/v1/audit", {**since, "agreement_id": first, "limit": 50})],
        "audit (two months, blocked only)": [("GET", "/admin/v1/audit", {**since, "decision": "block", "limit": 50})],
        "audit (one principal)": [("GET", "/admin/v1/audit", {"principal": "user042@example.co.jp", "limit": 50})],
        "audit (rare: redact, one agreement)": [("GET", "/admin/v1/audit", {"agreement_id": AGREEMENTS[9],
                                                                           "decision": "redact", "limit": 50})],
        "destruction": [agreements],
        "playground": [("GET", "/admin/v1/destinations", None), ("GET", "/admin/v1/principals", {"limit": 1000})],
        "destinations": [("GET", "/admin/v1/destinations", None)],
        "principals": [("GET", "/admin/v1/principals", {"limit": 1000})],
        "keys": [("GET", "/admin/v1/keys", {"limit": 1000}), ("GET", "/admin/v1/principals", {"limit": 1000})],
    }


def p95(sorted_samples: list[float]) -> float:
    """The nearest-rank 95th percentile (of 40 samples, the 38th)."""
    return sorted_samples[max(0, math.ceil(0.95 * len(sorted_samples)) - 1)]


def timed(call: Callable[[], httpx.Response]) -> float:
    started = time.perf_counter()
    answer = call()
    elapsed = (time.perf_counter() - started) * 1000
    answer.raise_for_status()
    answer.read()
    return elapsed


def measure(gw: Gateway, reps: int) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    # The first dashboard after a start: opening the console starts counting the settled days, and
    # signing in takes a person a few seconds (one sample).
    gw.client.get("/console/").raise_for_status()
    time.sleep(3)
    cold = timed(lambda: gw.client.get("/admin/v1/stats", params={"days": 366}))
    out["dashboard (366 days), first load after start"] = {"median_ms": round(cold, 1), "p95_ms": round(cold, 1),
                                                            "max_ms": round(cold, 1), "calls": 1}
    for name, calls in pages(gw).items():
        def page_load(calls: list[tuple[str, str, dict[str, Any] | None]] = calls) -> float:
            return sum(timed(lambda m=m, p=p, q=q: gw.client.request(m, p, params=q)) for m, p, q in calls)
        for _ in range(2):
            page_load()
        samples = sorted(page_load() for _ in range(reps))
        out[name] = {"median_ms": round(statistics.median(samples), 1), "p95_ms": round(p95(samples), 1),
                     "max_ms": round(samples[-1], 1), "calls": len(calls)}
    text = prose(random.Random(7), 400)
    scans = sorted(timed(lambda: gw.client.post("/admin/v1/scan", json={"text": text, "destination": "openai",
                                                                       "principal": "user001@example.co.jp"}))
                   for _ in range(reps))
    out["action: dry-run scan (2,400 chars)"] = {"median_ms": round(statistics.median(scans), 1),
                                                 "p95_ms": round(p95(scans), 1),
                                                 "max_ms": round(scans[-1], 1), "calls": 1}
    verify = sorted(timed(lambda: gw.client.get("/admin/v1/audit/verify")) for _ in range(3))
    out["action: verify the whole chain"] = {"median_ms": round(statistics.median(verify), 1),
                                             "p95_ms": round(verify[-1], 1), "max_ms": round(verify[-1], 1), "calls": 1}
    return out


def run(backend: str, records: int, item_count: int, reps: int) -> dict[str, Any]:
    rng = random.Random(20261127)
    with tempfile.TemporaryDirectory(prefix="shuhi-console-bench-") as tmp:
        workdir = Path(tmp)
        schema = None
        if backend == "sqlite":
            url = f"sqlite:///{workdir / 'shuhi.db'}"
        else:
            schema = "bench_console_" + secrets.token_hex(4)
            admin_engine = open_engine(POSTGRES_URL)
            with admin_engine.begin() as conn:
                conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
            url = f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
        engine = open_engine(url)
        gw = None
        try:
            migrate(engine)
            started = time.perf_counter()
            gw = Gateway(url, workdir)
            items = fill_through_api(gw, item_count, rng)
            fill_requests(engine, items, rng)
            fill_audit(engine, records, items, rng)
            with engine.begin() as conn:
                if backend == "postgresql":
                    conn.execute(sa.text("ANALYZE"))
                else:
                    conn.execute(sa.text("ANALYZE"))
                total = conn.execute(sa.text("SELECT count(*) FROM audit_log")).scalar_one()
                item_total = conn.execute(sa.text("SELECT count(*) FROM items")).scalar_one()
            filled = time.perf_counter() - started
            results = measure(gw, reps)
            return {"backend": backend, "audit_records": total, "items": item_total, "fill_seconds": round(filled, 1),
                    "pages": results}
        finally:
            if gw is not None:
                gw.close()
            engine.dispose()
            if schema is not None:
                with admin_engine.begin() as conn:
                    conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
                admin_engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=1_000)
    parser.add_argument("--reps", type=int, default=40)
    parser.add_argument("--output", default=str(ROOT / "bench" / "results" / "console_pages.json"))
    args = parser.parse_args()
    backends = ["sqlite", "postgresql"] if args.database == "both" else [args.database]
    runs = [run(b, args.records, args.items, args.reps) for b in backends]
    ok = True
    for result in runs:
        print(f"\n### {result['backend']}: {result['audit_records']:,} audit records, {result['items']:,} items "
              f"(filled in {result['fill_seconds']} s)\n")
        print("| page | API calls | median ms | p95 ms | max ms | ≤ 300 ms |\n|---|---:|---:|---:|---:|---|")
        for name, figures in result["pages"].items():
            met = figures["p95_ms"] <= TARGET_MS
            if not name.startswith("action:"):
                ok = ok and met
            mark = ("yes" if met else "NO") if not name.startswith("action:") else "(action)"
            print(f"| {name} | {figures['calls']} | {figures['median_ms']} | {figures['p95_ms']} | "
                  f"{figures['max_ms']} | {mark} |")
    load = os.getloadavg()
    print(f"\nload average during the run: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} CPUs")
    Path(args.output).write_text(json.dumps({"target_ms": TARGET_MS, "runs": runs, "load_average": load,
                                             "command": " ".join(sys.argv)}, indent=2, ensure_ascii=False))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
