#!/usr/bin/env python
"""Latency of `decide()` on realistic inputs: p50 / p99 / p99.9 per scenario. Target: p99 <= 0.2 ms.

    .venv/bin/python bench/decide_latency.py              # 20,000 calls per scenario
    .venv/bin/python bench/decide_latency.py --calls 2000 # quick check
    .venv/bin/python bench/decide_latency.py --json out.json

Every scenario has 5 matches across 2 agreements (fingerprints, a term, a
record match) plus 3 consents on record, under the shipped default policy;
they differ in where the request goes and which consents apply, so that each
branch of the engine is timed: held for consent, let through by consent,
internal and marked, refused as not authorized, training, and the redacting
permissive policy. Each call is timed alone with `perf_counter_ns` after a
warm-up; the garbage collector stays on, as in the gateway.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.decide import decide  # noqa: E402
from gateway.domain import (  # noqa: E402
    Agreement, ApiFormat, Category, Consent, ConsentPurpose, Destination, Endpoint, ItemInfo, Match, Principal,
)
from gateway.policy import DecisionInput, Policy, load_policy  # noqa: E402

UTC = datetime.timezone.utc
NOW = datetime.datetime(2026, 6, 15, 9, 30, tzinfo=UTC)

AGREEMENTS = {
    "agr_forecast": Agreement("agr_forecast", "需要予測AI共同開発に関する秘密保持契約", "北星リテール株式会社",
                              "需要予測モデルの共同開発の検討", datetime.date(2026, 4, 1), 2, 3,
                              authorized_groups=("ai-lab", "data-platform")),
    "agr_speech": Agreement("agr_speech", "Speech model evaluation NDA", "Koeru AI Inc.",
                            "evaluation of a speech recognition engine", datetime.date(2025, 10, 1), 1, 2),
}
ITEMS = {
    "itm_arch": ItemInfo("itm_arch", "agr_forecast", Category.AI_TECHNOLOGY, "モデル構成書 v3"),
    "itm_sales": ItemInfo("itm_sales", "agr_forecast", Category.DATA, "店舗別販売データ 2025"),
    "itm_call": ItemInfo("itm_call", "agr_forecast", Category.ORAL, "定例会議での口頭説明", provisional=True,
                         disclosed_at=datetime.datetime(2026, 6, 1, tzinfo=UTC)),
    "itm_asr_api": ItemInfo("itm_asr_api", "agr_speech", Category.SOURCE_CODE, "ASR API specification"),
    "rs_customers": ItemInfo("rs_customers", "agr_speech", Category.BUSINESS, "Pilot customer list"),
}
MATCHES = (
    Match("fingerprint", "messages[1].content", 0, 420, "agr_forecast", "itm_arch", "ai_technology",
          score=0.92, item_coverage=0.18, request_coverage=0.55),
    Match("fingerprint", "messages[1].content", 510, 780, "agr_forecast", "itm_sales", "data",
          score=0.81, item_coverage=0.05, request_coverage=0.31),
    Match("term", "messages[2].content", 12, 24, "agr_forecast", "itm_call", "oral", score=1.0,
          item_coverage=1.0),
    Match("fingerprint", "tools[0].function.description", 0, 160, "agr_speech", "itm_asr_api", "source_code",
          score=0.77, item_coverage=0.4, request_coverage=0.9),
    Match("record", "messages[3].content", 40, 118, "agr_speech", "rs_customers", "business", score=0.67,
          item_coverage=0.001),
)
CONSENTS = (
    Consent("cns_speech_openai", "agr_speech", ("openai",), ConsentPurpose.INFERENCE,
            valid_from=datetime.datetime(2026, 1, 1, tzinfo=UTC),
            valid_until=datetime.datetime(2026, 12, 31, tzinfo=UTC)),
    Consent("cns_forecast_items", "agr_forecast", ("anthropic",), ConsentPurpose.INFERENCE,
            item_ids=("itm_arch", "itm_sales", "itm_call"), valid_until=datetime.datetime(2027, 3, 31, tzinfo=UTC)),
    Consent("cns_forecast_old", "agr_forecast", ("openai",), ConsentPurpose.INFERENCE,
            revoked_at=datetime.datetime(2026, 5, 20, tzinfo=UTC)),
)
OPENAI = Destination("openai", "https://api.openai.com/v1", ApiFormat.OPENAI, ("gpt-4.1",))
ANTHROPIC = Destination("anthropic", "https://api.anthropic.com", ApiFormat.ANTHROPIC, ("claude-sonnet-4",))
INTERNAL = Destination("onprem", "http://llm.internal:8000/v1", ApiFormat.OPENAI, ("qwen3-32b",), third_party=False)
ENGINEER = Principal("tanaka", ("engineering", "ai-lab"), key_id="key_01")

BASE = DecisionInput("dec_bench", ENGINEER, OPENAI, Endpoint.CHAT_COMPLETIONS, MATCHES, NOW, AGREEMENTS, ITEMS,
                     CONSENTS)


def scenarios(default: Policy, permissive: Policy) -> dict[str, tuple[DecisionInput, Policy]]:
    """Each branch of the engine, with the same 5 matches / 2 agreements / 3 consents."""
    speech_consent_anthropic = replace(CONSENTS[0], destinations=("openai", "anthropic"))
    return {
        "third party, held for consent": (BASE, default),
        "third party, let through by consents": (
            replace(BASE, destination=ANTHROPIC, consents=(speech_consent_anthropic, *CONSENTS[1:])), default),
        "internal, marked": (replace(BASE, destination=INTERNAL), default),
        "not authorized": (replace(BASE, principal=Principal("suzuki", ("sales",))), default),
        "fine-tuning job": (replace(BASE, endpoint=Endpoint.FINE_TUNING_JOBS), default),
        "permissive, redact": (BASE, permissive),
    }


def _percentiles(timings: list[int], prefix: str) -> dict[str, float]:
    timings.sort()

    def pct(p: float) -> float:
        return timings[min(len(timings) - 1, int(p * len(timings)))] / 1000

    return {f"{prefix}p50_us": pct(0.50), f"{prefix}p99_us": pct(0.99), f"{prefix}p999_us": pct(0.999),
            f"{prefix}mean_us": statistics.fmean(timings) / 1000}


def measure(request: DecisionInput, policy: Policy, calls: int) -> dict[str, float]:
    """Per-call latency in microseconds: wall clock, and CPU time of this thread.

    On a shared machine the wall-clock tail measures the scheduler (another
    process preempting this one mid-call); the CPU-time tail measures the
    engine. Both are reported; the target applies to the CPU figure, and the
    wall figure is what to quote on an idle, pinned core.
    """
    for _ in range(min(2000, calls)):
        decide(request, policy)
    wall: list[int] = []
    cpu: list[int] = []
    clock, cpu_clock = time.perf_counter_ns, time.thread_time_ns
    for _ in range(calls):
        start, cpu_start = clock(), cpu_clock()
        decide(request, policy)
        cpu_end, end = cpu_clock(), clock()
        wall.append(end - start)
        cpu.append(cpu_end - cpu_start)
    return {**_percentiles(wall, "wall_"), **_percentiles(cpu, "cpu_")}


def main() -> int:
    """Run every scenario, print a Markdown table, optionally write JSON; exit 1 if a p99 misses the target."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--target-us", type=float, default=200.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    default = load_policy(ROOT / "policies" / "default.yaml")
    permissive = load_policy(ROOT / "policies" / "permissive.yaml")
    print(f"decide() latency, {args.calls} calls per scenario, Python {platform.python_version()}, "
          f"{platform.machine()}\n")
    print("| scenario | decision | CPU p50 µs | CPU p99 µs | CPU p99.9 µs | wall p50 µs | wall p99 µs |")
    print("|---|---|---:|---:|---:|---:|---:|")
    results: dict[str, dict[str, object]] = {}
    for name, (request, policy) in scenarios(default, permissive).items():
        figures = measure(request, policy, args.calls)
        decision = decide(request, policy)
        label = f"{decision.kind.value}{'/' + decision.code if decision.code else ''}"
        results[name] = {"decision": label, **figures}
        print(f"| {name} | {label} | {figures['cpu_p50_us']:.1f} | {figures['cpu_p99_us']:.1f} | "
              f"{figures['cpu_p999_us']:.1f} | {figures['wall_p50_us']:.1f} | {figures['wall_p99_us']:.1f} |")
    worst = max(float(r["cpu_p99_us"]) for r in results.values())  # type: ignore[arg-type]
    worst_wall = max(float(r["wall_p99_us"]) for r in results.values())  # type: ignore[arg-type]
    verdict = "ok" if worst <= args.target_us else "MISSED"
    print(f"\nworst CPU p99: {worst:.1f} µs (target {args.target_us:.0f} µs): {verdict}; "
          f"worst wall p99: {worst_wall:.1f} µs, load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    if args.json:
        args.json.write_text(json.dumps({"calls": args.calls, "target_us": args.target_us, "scenarios": results},
                                        indent=2, ensure_ascii=False), encoding="utf-8")
    return 0 if worst <= args.target_us else 1


if __name__ == "__main__":
    raise SystemExit(main())
