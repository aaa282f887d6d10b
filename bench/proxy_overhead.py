#!/usr/bin/env python
"""Proxy overhead: the fake upstream called directly against the same call through the gateway, in ONE run.

    .venv/bin/python bench/proxy_overhead.py            # full run (about two minutes)
    .venv/bin/python bench/proxy_overhead.py --quick    # smoke check (a few seconds of load)

It starts every process itself and stops them all at the end (also on error or Ctrl-C):

* the fake upstream (``python -m gateway.demo.upstream``) pinned to CPU 1,
* the gateway (``shuhi serve``, one worker) pinned to CPU 0, with a throw-away SQLite store,
  one destination pointing at the upstream, one principal and one gateway key,
* this load generator, pinned to CPU 1 beside the upstream.

The load generator is a lean asyncio client on raw sockets (uvloop, HTTP/1.1 keep-alive, httptools'
C parser for the status line, headers, Content-Length and chunked bodies), so that it costs a small
fraction of what the system under test costs per request (its own CPU per request is reported).

Measured, with 1 KB English/Japanese chat prompts and a warm-up before each phase:

1. latency at concurrency 1, direct and gateway requests interleaved one by one (p50/p99, added);
2. throughput at concurrency 32 and 128, gateway and direct (req/s, errors), alternating;
3. time to the first body byte of a streamed (``"stream": true``) answer at concurrency 1, interleaved.

Results: ``bench/results/proxy_overhead.json`` and a Markdown table on stdout.
Read the *added* figures and the ratios, not the absolute numbers: both sides ran on the same
machine in the same minute, so noise hits them alike.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import math
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httptools

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a dependency of the gateway on Linux
    uvloop = None  # type: ignore[assignment]

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = ROOT / "bench" / "results" / "proxy_overhead.json"
MODEL = "gpt-4o-mini"
PATH = "/v1/chat/completions"
ADMIN_TOKEN = "bench-admin-token-0123456789abcdef"
SECRET_KEY = "bench-secret-key-0123456789abcdef"
REQUEST_TIMEOUT = 30.0  # seconds; a request without an answer by then counts as an error

TARGETS = {
    "added_p50_ms": 1.5,
    "added_p99_ms": 4.0,
    "throughput_c32_rps": 1000.0,
    "added_first_byte_ms": 2.0,
}

# Realistic office prose, English and Japanese, nothing that looks like personal data or registered
# material, so that the request is allowed whatever the gateway scans for.
_PARAGRAPHS = [
    "Please summarise the following notes from this week's planning meeting and list the open questions. "
    "The team agreed to move the release of the reporting dashboard to the second half of the quarter, "
    "because the data pipeline still drops late events when the nightly batch overruns. ",
    "来週の定例会議までに、在庫管理システムの移行計画を見直してください。現行システムは月末の締め処理に"
    "時間がかかりすぎており、営業部門からは請求書の発行が遅れるという声が上がっています。",
    "We also discussed whether the caching layer should be rewritten or simply tuned. Most people preferred "
    "tuning first, measuring for two weeks, and only then deciding, since a rewrite would delay other work. ",
    "移行にあたっては、旧データの整合性確認、利用者向けの操作説明会、障害時の切り戻し手順の三点を優先し、"
    "それぞれの担当と期限を明確にすることが合意されました。",
    "Finally, the support team asked for a short written guide on the new approval flow, in both English and "
    "Japanese, before the change goes live, so that customers are not surprised by the extra step. ",
    "なお、予算の再配分については部長会での承認が必要なため、資料の初版を今週中に共有する予定です。",
]


def prompt_text(variant: int, size: int = 1024) -> str:
    """About `size` bytes (UTF-8) of mixed English/Japanese prose; variants start at different paragraphs."""
    parts: list[str] = []
    used = 0
    i = variant
    while True:
        paragraph = _PARAGRAPHS[i % len(_PARAGRAPHS)]
        for ch in paragraph:
            n = len(ch.encode())
            if used + n > size:
                return "".join(parts)
            parts.append(ch)
            used += n
        i += 1


def chat_body(variant: int, stream: bool) -> bytes:
    body: dict[str, Any] = {
        "model": MODEL,
        "messages": [
            {"role": "system", "content": "You are a helpful assistant for an engineering team."},
            {"role": "user", "content": prompt_text(variant)},
        ],
        "temperature": 0.2,
    }
    if stream:
        body["stream"] = True
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def http_request(host: str, port: int, path: str, token: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        f"Authorization: Bearer {token}\r\n"
        "Content-Type: application/json\r\n"
        "Accept: application/json\r\n"
        "User-Agent: shuhi-bench/1\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


# --------------------------------------------------------------------------- the lean client


class RequestFailed(Exception):
    pass


class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, one request at a time; times in perf_counter_ns."""

    __slots__ = ("transport", "parser", "waiter", "status", "t_first", "t_headers", "last_body", "closed",
                 "keep_alive")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[int] | None = None
        self.status = 0
        self.t_first = 0
        self.t_headers = 0
        self.last_body = b""
        self.closed = False
        self.keep_alive = True

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(RequestFailed(f"bad HTTP response: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(RequestFailed("connection closed"))

    # httptools callbacks
    def on_headers_complete(self) -> None:
        self.t_headers = time.perf_counter_ns()
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        if not self.t_first:
            self.t_first = time.perf_counter_ns()
        self.last_body = body

    def on_message_complete(self) -> None:
        waiter = self.waiter
        self.waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_result(time.perf_counter_ns())

    def _fail(self, exc: Exception) -> None:
        waiter = self.waiter
        self.waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    async def request(self, payload: bytes) -> tuple[int, int, int, int]:
        """(start, first body byte, end, status) of one request."""
        if self.closed or self.transport is None:
            raise RequestFailed("connection closed")
        self.t_first = 0
        self.last_body = b""
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self.waiter = waiter
        watchdog = loop.call_later(REQUEST_TIMEOUT, self._timed_out)
        start = time.perf_counter_ns()
        self.transport.write(payload)
        try:
            end = await waiter
        finally:
            watchdog.cancel()
        if not self.keep_alive:
            self.close()
        return start, self.t_first or end, end, self.status

    def _timed_out(self) -> None:
        self._fail(RequestFailed("timeout"))
        self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


async def connect(host: str, port: int) -> Connection:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(Connection, host, port)
    sock = protocol.transport.get_extra_info("socket") if protocol.transport else None
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return protocol


@dataclass
class Target:
    name: str
    host: str
    port: int
    payloads: list[bytes]
    streaming: bool = False

    def check(self, conn: Connection, status: int) -> bool:
        if status != 200:
            return False
        if self.streaming:
            return conn.last_body.endswith(b"data: [DONE]\n\n")
        return True


# --------------------------------------------------------------------------- statistics


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, math.ceil(p / 100.0 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def summary_ms(values_ns: list[int]) -> dict[str, Any]:
    values = sorted(v / 1e6 for v in values_ns)
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "mean": round(sum(values) / len(values), 4),
        "min": round(values[0], 4),
        "p50": round(percentile(values, 50), 4),
        "p90": round(percentile(values, 90), 4),
        "p99": round(percentile(values, 99), 4),
        "p99_9": round(percentile(values, 99.9), 4),
        "max": round(values[-1], 4),
    }


# --------------------------------------------------------------------------- CPU accounting


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (and of its threads), from /proc."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def busy_seconds_per_cpu() -> dict[str, float]:
    """CPU-seconds each CPU (and all together, key "cpu") spent busy since boot, from /proc/stat."""
    out: dict[str, float] = {}
    try:
        with open("/proc/stat", "rb") as handle:
            for line in handle:
                if not line.startswith(b"cpu"):
                    break
                name, *fields = line.split()
                user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
                out[name.decode()] = (user + nice + system + irq + softirq + steal) / CLOCK_TICKS
    except OSError:
        pass
    return out


#: Which benchmark processes run on which CPU, set once the processes are pinned: {"cpu0": ["gateway"], ...}.
PLACEMENT: dict[str, list[str]] = {}


class CpuMeter:
    """CPU-seconds used over one phase by the gateway, the upstream and this process, and by everything
    else on their CPUs ("other_…": other jobs on the machine, and kernel work not charged to a process)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.start: dict[str, float] = {}
        self.started = 0.0

    def _sample(self) -> dict[str, float]:
        now = {name: process_cpu_seconds(pid) for name, pid in self.pids.items()}
        now["loadgen"] = own_cpu_seconds()
        for cpu, busy in busy_seconds_per_cpu().items():
            now["busy_" + cpu] = busy
        return now

    def __enter__(self) -> CpuMeter:
        self.start = self._sample()
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def used(self) -> tuple[dict[str, float], dict[str, float]]:
        """(CPU-seconds per benchmark process, busy share 0..1 of each of their CPUs spent on anything else)."""
        now = self._sample()
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        delta = {name: now[name] - self.start.get(name, now[name]) for name in now}
        used = {name: round(v, 3) for name, v in delta.items() if not name.startswith("busy_")}
        placement = PLACEMENT or {"cpu": list(used)}
        noise: dict[str, float] = {}
        for cpu, names in placement.items():
            ours = sum(delta.get(n, 0.0) for n in names)
            # ticks are 10 ms, so a few hundredths are rounding
            noise[cpu] = round(max(0.0, delta.get("busy_" + cpu, 0.0) - ours) / elapsed, 2)
        return used, noise


def per_request_us(cpu: dict[str, float], requests: int) -> dict[str, float]:
    if requests <= 0:
        return {}
    return {name: round(seconds * 1e6 / requests, 1) for name, seconds in cpu.items()}


# --------------------------------------------------------------------------- phases


async def interleaved(targets: list[Target], count: int, warmup_s: float, meter_pids: dict[str, int]
                      ) -> dict[str, Any]:
    """Concurrency 1: request i goes to every target, in an order that alternates, `count` times."""
    conns = [await connect(t.host, t.port) for t in targets]
    results: dict[str, dict[str, list[int]]] = {t.name: {"total": [], "first": []} for t in targets}
    errors = {t.name: 0 for t in targets}

    async def one(index: int, k: int, record: bool) -> None:
        target = targets[index]
        conn = conns[index]
        payload = target.payloads[k % len(target.payloads)]
        try:
            start, first, end, status = await conn.request(payload)
        except RequestFailed:
            errors[target.name] += record
            conns[index] = await connect(target.host, target.port)
            return
        if not target.check(conn, status):
            errors[target.name] += record
            return
        if record:
            results[target.name]["total"].append(end - start)
            results[target.name]["first"].append(first - start)

    deadline = time.perf_counter() + warmup_s
    k = 0
    while time.perf_counter() < deadline:
        for index in range(len(targets)):
            await one(index, k, False)
        k += 1
    with CpuMeter(meter_pids) as meter:
        started = time.perf_counter()
        for k in range(count):
            order = range(len(targets)) if k % 2 == 0 else reversed(range(len(targets)))
            for index in order:
                await one(index, k, True)
        elapsed = time.perf_counter() - started
        cpu, noise = meter.used()
    for conn in conns:
        conn.close()
    out: dict[str, Any] = {"seconds": round(elapsed, 3), "cpu_seconds": cpu, "noise": noise}
    for target in targets:
        out[target.name] = {
            "errors": errors[target.name],
            "total_ms": summary_ms(results[target.name]["total"]),
            "first_byte_ms": summary_ms(results[target.name]["first"]),
        }
    if "gateway" in cpu and count:
        out["gateway_cpu_us_per_request"] = round(cpu["gateway"] * 1e6 / count, 1)
    return out


@dataclass
class LoadStats:
    ok: int = 0
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    latencies: list[int] = field(default_factory=list)

    def error(self, kind: str) -> None:
        self.errors += 1
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1


async def closed_loop(target: Target, concurrency: int, seconds: float, record: bool = True
                      ) -> tuple[LoadStats, float]:
    """`concurrency` connections, each sending its next request as soon as the last one is answered."""
    stats = LoadStats()
    conns = await asyncio.gather(*(connect(target.host, target.port) for _ in range(concurrency)))
    payloads = target.payloads
    n_payloads = len(payloads)
    started = time.perf_counter()
    deadline = started + seconds

    async def worker(slot: int) -> None:
        conn = conns[slot]
        k = slot
        latencies = stats.latencies
        perf = time.perf_counter
        while perf() < deadline:
            k += 1
            try:
                start, _first, end, status = await conn.request(payloads[k % n_payloads])
            except RequestFailed as exc:
                stats.error(str(exc))
                conn.close()
                try:
                    conn = await connect(target.host, target.port)
                except OSError as oserr:
                    stats.error(f"connect: {oserr.strerror}")
                    await asyncio.sleep(0.05)
                conns[slot] = conn
                continue
            if target.check(conn, status):
                stats.ok += 1
                if record:
                    latencies.append(end - start)
            else:
                stats.error(f"status {status}" if status != 200 else "incomplete stream")

    tasks = [asyncio.ensure_future(worker(i)) for i in range(concurrency)]
    done, pending = await asyncio.wait(tasks, timeout=seconds + 30)
    for task in pending:
        task.cancel()
        stats.error("timeout")
    for task in done:
        if task.exception() is not None:
            stats.error(type(task.exception()).__name__)
    elapsed = time.perf_counter() - started
    for conn in conns:
        conn.close()
    return stats, elapsed


async def throughput(target: Target, concurrency: int, seconds: float, warmup_s: float,
                     meter_pids: dict[str, int]) -> dict[str, Any]:
    """One closed-loop run after a warm-up; the latencies (ns) are kept under "_latencies" for merging."""
    await closed_loop(target, concurrency, warmup_s, record=False)
    with CpuMeter(meter_pids) as meter:
        stats, elapsed = await closed_loop(target, concurrency, seconds)
        cpu, noise = meter.used()
    return {
        "seconds": round(elapsed, 3),
        "ok": stats.ok,
        "errors": stats.errors,
        "error_kinds": stats.error_kinds,
        "rps": round(stats.ok / elapsed, 1) if elapsed > 0 else 0.0,
        "cpu_seconds": cpu,
        "noise": noise,
        "_latencies": stats.latencies,
    }


def merge_rounds(target: str, concurrency: int, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The runs of one (target, concurrency): median req/s, summed errors and CPU, latencies pooled."""
    latencies = [v for run in runs for v in run.pop("_latencies")]
    completed = sum(run["ok"] + run["errors"] for run in runs)
    cpu: dict[str, float] = {}
    kinds: dict[str, int] = {}
    for run in runs:
        for name, value in run["cpu_seconds"].items():
            cpu[name] = cpu.get(name, 0.0) + value
        for kind, n in run["error_kinds"].items():
            kinds[kind] = kinds.get(kind, 0) + n
    rates = sorted(run["rps"] for run in runs)
    return {
        "target": target,
        "concurrency": concurrency,
        "rounds": len(runs),
        "rps": rates[len(rates) // 2] if len(rates) % 2 else round((rates[len(rates) // 2 - 1] + rates[len(rates) // 2]) / 2, 1),
        "rps_per_round": [run["rps"] for run in runs],
        "ok": sum(run["ok"] for run in runs),
        "errors": sum(run["errors"] for run in runs),
        "error_kinds": kinds,
        "latency_ms": summary_ms(latencies),
        "cpu_us_per_request": per_request_us(cpu, completed),
        "noise": {cpu_name: round(sum(run["noise"][cpu_name] for run in runs) / len(runs), 2)
                  for cpu_name in runs[0]["noise"]},
        "runs": runs,
    }


# --------------------------------------------------------------------------- processes


class Processes:
    """Every process this benchmark starts, stopped in `stop_all` whatever happened."""

    def __init__(self, workdir: Path, nice: int = 0) -> None:
        self.workdir = workdir
        self.nice = nice  # scheduling priority of every process started (and its threads); 0: as usual
        self.started: list[tuple[str, subprocess.Popen[bytes], Path]] = []

    def start(self, name: str, argv: list[str], cpu: int | None, env: dict[str, str] | None = None
              ) -> subprocess.Popen[bytes]:
        if cpu is not None and shutil.which("taskset"):
            argv = ["taskset", "-c", str(cpu), *argv]
        if self.nice:
            argv = ["nice", "-n", str(self.nice), *argv]
        log_path = self.workdir / f"{name}.log"
        log = open(log_path, "wb")  # noqa: SIM115 - kept open for the child's lifetime
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir,
                                env={**os.environ, **(env or {})}, start_new_session=True)
        log.close()
        if self.nice:
            set_autogroup_nice(proc.pid, self.nice)  # its own session, so its own autogroup
        self.started.append((name, proc, log_path))
        return proc

    def log_tail(self, name: str, lines: int = 30) -> str:
        for started_name, _proc, path in self.started:
            if started_name == name:
                with contextlib.suppress(OSError):
                    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop_all(self) -> None:
        for _name, proc, _path in reversed(self.started):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        for _name, proc, _path in reversed(self.started):
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:  # e.g. held by a debugger: say so, stop the others
                    print(f"process {proc.pid} ({_name}) did not exit after SIGKILL", file=sys.stderr)
        self.started.clear()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], bool], proc: subprocess.Popen[bytes], what: str, procs: Processes,
             name: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{procs.log_tail(name)}")
        if check():
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not become ready in {timeout:.0f} s:\n{procs.log_tail(name)}")


def http_json(method: str, url: str, body: Any = None, token: str | None = None
              ) -> tuple[int, dict[str, str], Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            raw = response.read()
            return response.status, {k.lower(): v for k, v in response.headers.items()}, raw
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


@dataclass
class Stack:
    upstream_port: int
    gateway_port: int
    gateway_key: str
    pids: dict[str, int]


def gateway_command() -> list[str]:
    shuhi = Path(sys.executable).parent / "shuhi"
    return [str(shuhi)] if shuhi.exists() else [sys.executable, "-m", "gateway.cli"]


def start_upstream(procs: Processes, cpu: int | None, command: list[str] | None = None
                   ) -> tuple[subprocess.Popen[bytes], int]:
    """The fake upstream on a free port: (process, port). `command` (default `python -m
    gateway.demo.upstream`) takes `--host` and `--port` and prints "listening on http://HOST:PORT"."""
    workdir = procs.workdir
    upstream = procs.start("upstream", [*(command or [sys.executable, "-m", "gateway.demo.upstream"]), "--host",
                                        "127.0.0.1", "--port", "0"], cpu)
    upstream_port = 0

    def upstream_listening() -> bool:
        nonlocal upstream_port
        found = re.search(rb"listening on http://127\.0\.0\.1:(\d+)", (workdir / "upstream.log").read_bytes())
        if found:
            upstream_port = int(found.group(1))
            return healthy(f"http://127.0.0.1:{upstream_port}/_fake/stats")
        return False

    wait_for(upstream_listening, upstream, "fake upstream", procs, "upstream")
    return upstream, upstream_port


def start_gateway(procs: Processes, cpu: int | None, upstream_port: int, *, name: str = "gateway",
                  database_url: str | None = None, command: list[str] | None = None
                  ) -> tuple[subprocess.Popen[bytes], int, str]:
    """One gateway worker (`command`, default `shuhi`, then `--config FILE serve …`) with one destination
    `fake` pointing at the upstream, one principal and its gateway key: (process, port, key).

    The store is `database_url`, default a throw-away SQLite file in the work directory."""
    workdir = procs.workdir
    config = {
        "database_url": database_url or f"sqlite:///{workdir / (name + '.db')}",
        "admin_token": ADMIN_TOKEN,
        "secret_key": SECRET_KEY,
        "destinations": [{"id": "fake", "base_url": f"http://127.0.0.1:{upstream_port}/v1", "api_format": "openai",
                          "models": [MODEL], "third_party": True}],
    }
    if POLICY["path"] is not None:
        config["policy"] = str(POLICY["path"])
    config["audit_sync"] = AUDIT_SYNC["value"]
    config_path = workdir / f"{name}.yaml"
    config_path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    gateway_port = free_port()
    env = {k: "" for k in os.environ if k.startswith("SHUHI_")}  # the file alone decides
    gateway = procs.start(name, [*(command or gateway_command()), "--config", str(config_path), "serve", "--host",
                                 "127.0.0.1", "--port", str(gateway_port)], cpu, env)
    base = f"http://127.0.0.1:{gateway_port}"
    wait_for(lambda: healthy(base + "/healthz"), gateway, name, procs, name)

    status, _, raw = http_json("POST", base + "/admin/v1/principals", {"id": "bench", "groups": []}, ADMIN_TOKEN)
    if status not in (200, 201):
        raise RuntimeError(f"{name}: creating the principal: HTTP {status}: {raw[:300]!r}")
    status, _, raw = http_json("POST", base + "/admin/v1/keys", {"principal": "bench"}, ADMIN_TOKEN)
    if status not in (200, 201):
        raise RuntimeError(f"{name}: creating the gateway key: HTTP {status}: {raw[:300]!r}")
    return gateway, gateway_port, json.loads(raw)["key"]


def start_stack(procs: Processes, gateway_cpu: int | None, other_cpu: int | None) -> Stack:
    upstream, upstream_port = start_upstream(procs, other_cpu)
    gateway, gateway_port, key = start_gateway(procs, gateway_cpu, upstream_port)
    return Stack(upstream_port, gateway_port, key, {"gateway": gateway.pid, "upstream": upstream.pid})


def sanity_check(stack: Stack) -> dict[str, Any]:
    """Both paths answer 200 with the same echo; the gateway adds its decision headers."""
    body = json.loads(chat_body(0, stream=False))
    direct = http_json("POST", f"http://127.0.0.1:{stack.upstream_port}{PATH}", body, "sk-direct")
    via = http_json("POST", f"http://127.0.0.1:{stack.gateway_port}{PATH}", body, stack.gateway_key)
    for name, (status, _headers, raw) in (("direct", direct), ("gateway", via)):
        if status != 200:
            raise RuntimeError(f"{name} call answered HTTP {status}: {raw[:300]!r}")
    d_text = json.loads(direct[2])["choices"][0]["message"]["content"]
    g_text = json.loads(via[2])["choices"][0]["message"]["content"]
    if d_text != g_text:
        raise RuntimeError("the gateway's answer differs from the upstream's")
    if "x-gateway-decision-id" not in via[1]:
        raise RuntimeError("the gateway's answer has no X-Gateway-Decision-Id")
    return {"request_bytes": len(chat_body(0, stream=False)), "response_bytes_direct": len(direct[2]),
            "response_bytes_gateway": len(via[2]), "decision": via[1].get("x-gateway-decision")}


# --------------------------------------------------------------------------- report


def machine_info(gateway_cpu: int | None, other_cpu: int | None) -> dict[str, Any]:
    cpu_model = platform.processor() or "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu_model,
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "pinning": (f"gateway on CPU {gateway_cpu}; upstream and load generator on CPU {other_cpu}"
                    if gateway_cpu is not None else "not pinned"),
    }


def git_commit() -> str | None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None
    return None


def fmt(value: float, digits: int = 2) -> str:
    return f"{value:.{digits}f}"


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    lat = result["latency_c1"]
    ttfb = result["first_byte_c1"]
    checks = result["checks"]

    def mark(ok: bool) -> str:
        return "✅" if ok else "❌"

    lines = [
        f"Machine: {m['cpu']}, {m['cpus']} CPUs, Linux {m['kernel']}, Python {m['python']}; {m['pinning']}"
        + (f"; benchmark processes at nice {result['settings']['nice']}." if result["settings"].get("nice") else "."),
        f"Command: `{result['command']}`" + (f" (commit {result['commit']})" if result.get("commit") else "")
        + ("; policy: the default without PII entities (no personal-information analyzer)"
           if result["settings"].get("policy") == "no-pii" else "")
        + (f"; SHUHI_AUDIT_SYNC={result['settings']['audit_sync']}" if result["settings"].get("audit_sync") else ""),
        "",
        "| measure | direct | via gateway | added / ratio | target |",
        "|---|---:|---:|---:|---|",
    ]
    for label, key in (("p50", "p50"), ("p99", "p99")):
        d, g = lat["direct"]["total_ms"][key], lat["gateway"]["total_ms"][key]
        ok = checks[f"added_{key}"]
        lines.append(f"| latency c=1 {label} (ms) | {fmt(d)} | {fmt(g)} | +{fmt(g - d)} | "
                     f"≤ +{TARGETS[f'added_{key}_ms']} ms {mark(ok)} |")
    for label, key in (("p50", "p50"), ("p99", "p99")):
        d, g = ttfb["direct"]["first_byte_ms"][key], ttfb["gateway"]["first_byte_ms"][key]
        ok = checks[f"added_first_byte_{key}"]
        lines.append(f"| first SSE byte c=1 {label} (ms) | {fmt(d)} | {fmt(g)} | +{fmt(g - d)} | "
                     f"≤ +{TARGETS['added_first_byte_ms']} ms {mark(ok)} |")
    for c in result["concurrencies"]:
        d, g = result["throughput"][f"direct_c{c}"], result["throughput"][f"gateway_c{c}"]
        ratio = g["rps"] / d["rps"] if d["rps"] else float("nan")
        target = ""
        if c == 32:
            target = f"≥ {TARGETS['throughput_c32_rps']:.0f} req/s, 0 errors {mark(checks['throughput_c32'])}"
        else:
            target = f"0 errors {mark(g['errors'] == 0)}"
        lines.append(f"| throughput c={c} (req/s) | {d['rps']:.0f} | {g['rps']:.0f} | ×{fmt(ratio)} | {target} |")
        lines.append(f"| latency c={c} p50 / p99 (ms) | {fmt(d['latency_ms'].get('p50', 0), 1)} / "
                     f"{fmt(d['latency_ms'].get('p99', 0), 1)} | {fmt(g['latency_ms'].get('p50', 0), 1)} / "
                     f"{fmt(g['latency_ms'].get('p99', 0), 1)} | | |")
        lines.append(f"| errors c={c} | {d['errors']} | {g['errors']} | | |")
    gw_cpu = [f"{lat.get('gateway_cpu_us_per_request', 0):.0f}"]
    labels = ["c=1"]
    for c in result["concurrencies"]:
        gw_cpu.append(f"{result['throughput'][f'gateway_c{c}']['cpu_us_per_request'].get('gateway', 0):.0f}")
        labels.append(f"c={c}")
    lines.append(f"| gateway CPU per request (µs), {' / '.join(labels)} | | {' / '.join(gw_cpu)} | | |")
    c0 = result["concurrencies"][0]
    d, g = result["throughput"][f"direct_c{c0}"], result["throughput"][f"gateway_c{c0}"]
    lines.append(f"| upstream / load generator CPU per request at c={c0} (µs) | "
                 f"{d['cpu_us_per_request'].get('upstream', 0):.0f} / {d['cpu_us_per_request'].get('loadgen', 0):.0f} | "
                 f"{g['cpu_us_per_request'].get('upstream', 0):.0f} / {g['cpu_us_per_request'].get('loadgen', 0):.0f}"
                 " | | |")
    def other(noise: dict[str, float]) -> str:
        return "/".join(f"{v:.2f}" for _k, v in sorted(noise.items()))

    noise = [f"latency c=1 {other(lat['noise'])}", f"streaming c=1 {other(ttfb['noise'])}"]
    for name, run in result["throughput"].items():
        noise.append(f"{name.replace('_c', ' c=')} {other(run['noise'])}")
    lines.append("")
    lines.append(f"Noise: share of {'/'.join(sorted(lat['noise']))} busy with anything but the benchmark's processes "
                 "(other jobs, kernel network work), per phase: " + ", ".join(noise) + ".")
    lines.append(f"Requests: {result['request']['request_bytes']} B chat completion (≈1 KB English/Japanese user "
                 f"message), answers {result['request']['response_bytes_direct']} B; "
                 f"{lat['direct']['total_ms']['n']} interleaved requests per side at c=1, "
                 f"{ttfb['direct']['first_byte_ms']['n']} per side streamed, "
                 f"throughput: median of {result['settings']['rounds']} runs of "
                 f"{result['settings']['throughput_seconds']:g} s per side, alternating, after "
                 f"{result['settings']['warmup_seconds']:g} s warm-up.")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


POLICY: dict[str, Path | None] = {"path": None}  # the gateways' policy file; None: the shipped default


AUDIT_SYNC: dict[str, str] = {"value": "full"}  # the gateways' `audit_sync` setting


def add_policy_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--policy", choices=("default", "no-pii"), default="default",
                        help="the gateway's policy: the shipped default, or the same without PII entities (no "
                             "personal-information analyzer on the request path), to measure the proxy itself "
                             "(default: default)")
    parser.add_argument("--audit-sync", choices=("full", "normal"), default="full",
                        help="the gateway's SHUHI_AUDIT_SYNC: full (the default: an audit record is on disk before "
                             "the call is forwarded) or normal (it survives a crash of the process, not of the "
                             "machine)")


def use_policy(choice: str, workdir: Path) -> None:
    """Point every gateway this run starts at the chosen policy (written into `workdir` for `no-pii`)."""
    if choice == "default":
        POLICY["path"] = None
        return
    import yaml

    document = yaml.safe_load((ROOT / "policies" / "default.yaml").read_text(encoding="utf-8"))
    document.setdefault("pii", {})["entities"] = {}  # with no entity listed, no analyzer is loaded
    path = workdir / "policy-no-pii.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False), encoding="utf-8")
    POLICY["path"] = path


def add_nice_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--nice", type=int, default=0, metavar="N",
                        help="run the benchmark's processes at this nice value (and their sessions' autogroups); "
                             "on a shared machine, -10 (as root) gives them priority over other jobs on their "
                             "CPUs, so that the noise is smaller (default 0: as usual)")


def set_autogroup_nice(pid: int, nice: int) -> int | None:
    """With the kernel's autogroup scheduling (sched_autogroup_enabled), CPU is shared between sessions
    first and nice values count only within one: so set the nice value of `pid`'s session too.
    Returns the previous value (None when there is no autogroup or it may not be changed)."""
    path = Path(f"/proc/{pid}/autogroup")
    try:
        previous = int(path.read_text().split("nice")[1])
        path.write_text(str(nice))
    except (OSError, ValueError, IndexError):
        return None
    return previous


def renice_self(nice: int) -> None:
    """This load generator at the same priority as the processes it starts (before any thread exists);
    its session's autogroup gets its nice value back at exit."""
    if not nice:
        return
    os.setpriority(os.PRIO_PROCESS, 0, nice)
    previous = set_autogroup_nice(os.getpid(), nice)
    if previous is not None:
        import atexit

        atexit.register(set_autogroup_nice, os.getpid(), previous)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="short smoke run (a few seconds of load)")
    parser.add_argument("--requests", type=int, help="requests per side at concurrency 1 (default 2000)")
    parser.add_argument("--seconds", type=float, help="seconds per throughput run (default 5)")
    parser.add_argument("--rounds", type=int, help="throughput runs per target and concurrency, alternating "
                                                   "gateway and direct; the median counts (default 3)")
    parser.add_argument("--warmup", type=float, help="seconds of warm-up before each phase (default 3)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[32, 128],
                        help="concurrencies of the throughput runs (default 32 128)")
    parser.add_argument("--gateway-cpu", type=int, default=0, help="CPU of the gateway worker (default 0)")
    parser.add_argument("--other-cpu", type=int, default=1,
                        help="CPU of the fake upstream and of this load generator (default 1)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    add_nice_option(parser)
    add_policy_option(parser)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="where the JSON results go")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, store)")
    parser.add_argument("--hold", type=float, default=0.0, metavar="SECONDS",
                        help="after the run, keep the gateway loaded at the first concurrency for this long "
                             "(for attaching a profiler: py-spy record --pid <gateway pid>)")
    args = parser.parse_args(argv)
    quick = args.quick
    args.requests = args.requests or (200 if quick else 2000)
    args.seconds = args.seconds or (2.0 if quick else 5.0)
    args.rounds = args.rounds or (1 if quick else 3)
    args.warmup = args.warmup if args.warmup is not None else (0.5 if quick else 3.0)
    return args


async def measure(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    host = "127.0.0.1"
    variants = range(8)

    def target(name: str, stream: bool) -> Target:
        port = stack.gateway_port if name == "gateway" else stack.upstream_port
        token = stack.gateway_key if name == "gateway" else "sk-direct"
        payloads = [http_request(host, port, PATH, token, chat_body(v, stream)) for v in variants]
        return Target(name, host, port, payloads, streaming=stream)

    direct, gateway = target("direct", False), target("gateway", False)
    direct_s, gateway_s = target("direct", True), target("gateway", True)
    pids = stack.pids
    out: dict[str, Any] = {}

    print(f"latency c=1: {args.requests} interleaved requests per side …", file=sys.stderr, flush=True)
    out["latency_c1"] = await interleaved([direct, gateway], args.requests, args.warmup, pids)
    print(f"first streamed byte c=1: {args.requests} interleaved requests per side …", file=sys.stderr, flush=True)
    out["first_byte_c1"] = await interleaved([direct_s, gateway_s], args.requests, args.warmup, pids)
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in range(args.rounds):
        for c in args.concurrency:
            for t in ((gateway, direct) if r % 2 == 0 else (direct, gateway)):
                warmup = args.warmup if r == 0 else min(args.warmup, 1.0)
                print(f"throughput {t.name} c={c}, round {r + 1}/{args.rounds}: {args.seconds:g} s …",
                      file=sys.stderr, flush=True)
                runs.setdefault((t.name, c), []).append(await throughput(t, c, args.seconds, warmup, pids))
    out["throughput"] = {f"{name}_c{c}": merge_rounds(name, c, found) for (name, c), found in runs.items()}
    if args.hold > 0:
        print(f"holding the gateway at c={args.concurrency[0]} for {args.hold:g} s "
              f"(gateway pid {pids['gateway']}) …", file=sys.stderr, flush=True)
        await closed_loop(gateway, args.concurrency[0], args.hold, record=False)
    return out


def evaluate(result: dict[str, Any]) -> dict[str, bool]:
    lat, ttfb = result["latency_c1"], result["first_byte_c1"]

    def added(section: dict[str, Any], kind: str, key: str) -> float:
        return float(section["gateway"][kind][key] - section["direct"][kind][key])

    checks = {
        "added_p50": added(lat, "total_ms", "p50") <= TARGETS["added_p50_ms"],
        "added_p99": added(lat, "total_ms", "p99") <= TARGETS["added_p99_ms"],
        "added_first_byte_p50": added(ttfb, "first_byte_ms", "p50") <= TARGETS["added_first_byte_ms"],
        "added_first_byte_p99": added(ttfb, "first_byte_ms", "p99") <= TARGETS["added_first_byte_ms"],
        "errors_c1": lat["gateway"]["errors"] == 0 and ttfb["gateway"]["errors"] == 0,
    }
    g32 = result["throughput"].get("gateway_c32")
    checks["throughput_c32"] = bool(g32 and g32["rps"] >= TARGETS["throughput_c32_rps"] and g32["errors"] == 0)
    for name, run in result["throughput"].items():
        if name.startswith("gateway_"):
            checks[f"no_errors_{name}"] = run["errors"] == 0
    return checks


class Interrupted(Exception):
    pass


def _terminate(signum: int, _frame: Any) -> None:
    raise Interrupted(signal.Signals(signum).name)


def clean_up(*steps: Callable[[], object]) -> None:
    """Run every step, whatever the ones before raised (a stuck process must not leave a schema behind)."""
    for step in steps:
        try:
            step()
        except Exception as exc:  # noqa: BLE001 - report and go on
            print(f"clean-up: {step.__qualname__}: {type(exc).__name__}: {exc}", file=sys.stderr)


def finish(workdir: Path, keep: bool, *steps: Callable[[], object]) -> None:
    """The end of a benchmark run, whatever happened: signals ignored from here on (a second Ctrl-C
    must not cut the clean-up short), every step run, then the work directory kept or removed."""
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    clean_up(*steps)
    if keep:
        print(f"work directory kept: {workdir}", file=sys.stderr)
    else:
        shutil.rmtree(workdir, ignore_errors=True)


async def _cancellable(args: argparse.Namespace, stack: Stack) -> dict[str, Any]:
    """`measure`, cancelled cleanly by SIGINT/SIGTERM/SIGHUP (the loop's own handlers, so they act at once)."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(signum, task.cancel)
    return await measure(stack, args)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    pin = not args.no_pin and shutil.which("taskset") is not None and (os.cpu_count() or 1) > max(
        args.gateway_cpu, args.other_cpu)
    gateway_cpu = args.gateway_cpu if pin else None
    other_cpu = args.other_cpu if pin else None
    if other_cpu is not None:
        os.sched_setaffinity(0, {other_cpu})
        PLACEMENT.update({f"cpu{gateway_cpu}": ["gateway"], f"cpu{other_cpu}": ["upstream", "loadgen"]})
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _terminate)

    renice_self(args.nice)
    workdir = Path(tempfile.mkdtemp(prefix="shuhi-bench-"))
    procs = Processes(workdir, args.nice)
    use_policy(args.policy, workdir)
    AUDIT_SYNC["value"] = args.audit_sync
    command = shlex.join([".venv/bin/python", "bench/proxy_overhead.py", *(sys.argv[1:] if argv is None else argv)])
    try:
        stack = start_stack(procs, gateway_cpu, other_cpu)
        request_info = sanity_check(stack)
        if uvloop is not None:
            uvloop.install()
        started = dt.datetime.now(dt.UTC)
        measured = asyncio.run(_cancellable(args, stack))
        result: dict[str, Any] = {
            "benchmark": "proxy_overhead",
            "started_at": started.isoformat(timespec="seconds"),
            "command": command,
            "commit": git_commit(),
            "quick": args.quick,
            "machine": machine_info(gateway_cpu, other_cpu),
            "settings": {"requests_c1": args.requests, "throughput_seconds": args.seconds, "rounds": args.rounds,
                         "warmup_seconds": args.warmup, "loop": "uvloop" if uvloop else "asyncio", "nice": args.nice,
                         "policy": args.policy, "audit_sync": args.audit_sync},
            "request": request_info,
            "targets": TARGETS,
            "concurrencies": args.concurrency,
            **measured,
        }
        result["checks"] = evaluate(result)
        result["all_targets_met"] = all(result["checks"].values())
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
        print(markdown(result))
        print(f"\nJSON: {args.output.relative_to(ROOT) if args.output.is_relative_to(ROOT) else args.output}",
              file=sys.stderr)
        return 0 if result["all_targets_met"] else 1
    except (Interrupted, KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted: stopping the processes", file=sys.stderr)
        return 130
    finally:
        finish(workdir, args.keep, procs.stop_all)


if __name__ == "__main__":
    sys.exit(main())
