"""Benchmark of the detection core: scan latency vs registry size, registration speed, index size.

    .venv/bin/python bench/detection_scan.py                 # 1, 10, 100 MB registries
    .venv/bin/python bench/detection_scan.py --sizes 1 10     # quicker
    .venv/bin/python bench/detection_scan.py --sizes 1 10 100 1000   # the curve to 1 GB (about 6 min)

`--synthetic MB` extends the registry beyond the real-text sizes with synthetic
fingerprints loaded straight into the index (as many per MB as the real text
produced, random keyed values, 64 KB "items", then merged with the real ones
into one segment as a gateway starting on the store would), for sizes whose
text would take too long to generate. Prompts still carry an excerpt of a
real item, so the match rate is checked at every size. Each registry of
real text is compacted into one segment after registering, as a gateway
starting on that store has it (`registration.load`).

Registered material is synthetic but varied: English sentences drawn from the
vocabulary of Python's own documentation (`pydoc_data.topics`) and Japanese
sentences of business words, kanji compounds and katakana loanwords, in
64 KB items. Latency is printed as wall
time and as the scanning thread's CPU time (the latter is what to compare on a
shared, loaded machine), with the CPU p50 as a ratio to the smallest registry's
(the flatness of the curve, measured in one run); registration speed is text
bytes per second of the registering thread's CPU time, and `sys%` the share of
that time spent in the kernel (mostly giving the index's merges memory the
process has not used before). Prompts are 16 KB of UTF-8: unrelated text of the same kind with
one 600-byte excerpt of a registered item. The false-positive check scans
real English paragraphs of the Python documentation against a registry built
from other paragraphs of it.

`--stages` also times the parts of each scan on the same prompt (CPU p50/p99):
normalizing and fingerprinting it, looking its fingerprints up in the index,
the registry's whole scan (those two plus turning hits into matches), and
`gateway.scan.scan` (that plus the check for encoded text and any decoding).
"""

from __future__ import annotations

import argparse
import re
import resource
import time

import numpy as np
import pydoc_data.topics

from gateway.detection.registry import Registry
from gateway.domain import Category, TextPart
from gateway.normalize import normalize
from gateway.scan import scan

SECRET = b"benchmark-secret-0123456789abcdef"
ITEM_BYTES = 64 * 1024
PROMPT_BYTES = 16 * 1024

JA_WORDS = (
    "本契約 秘密情報 開示者 受領者 学習データ 評価データ 推論 モデル 構造 パラメータ 設計 顧客 情報 事業計画 営業 "
    "売上 利益 予測 四半期 開発 導入 検討 共同 事業 可能性 目的 範囲 期間 終了 返還 破棄 証明 書面 通知 同意 "
    "第三者 提供 委託 管理 保存 複製 改変 解析 逆コンパイル アルゴリズム 手法 ノウハウ 特許 出願 権利 帰属 "
    "損害 賠償 責任 制限 準拠法 管轄 裁判所 協議 誠実 有効期間 存続 解除 違反 是正 催告 重要 機密 社外秘 "
    "サーバー 障害 復旧 手順 監視 指標 遅延 スループット 精度 再現率 適合率 学習率 バッチ 勾配 損失 関数 "
    "注意機構 埋め込み 検索 再ランキング 蒸留 量子化 圧縮 推定 分類 回帰 クラスタ 異常検知 需要予測 在庫 "
    "物流 配送 倉庫 工場 品質 検査 不良 改善 原価 価格 見積 契約書 請求書 支払 期日 延滞 与信 審査 担当 "
    "部門 部長 課長 会議 議事録 資料 報告 承認 決裁 稟議 予算 実績 差異 分析 施策 効果 顧客満足 解約率"
).split()
JA_PARTICLES = "は が を に で と の も から まで より へ や".split()
JA_ENDINGS = ["する。", "した。", "である。", "とする。", "を行う。", "が必要である。", "に関する情報である。"]


def english_vocabulary() -> np.ndarray:
    words = re.findall(r"[A-Za-z]{2,14}", " ".join(pydoc_data.topics.topics.values()))
    return np.array(sorted(set(w.lower() for w in words)))


def english_text(rng: np.random.Generator, vocab: np.ndarray, nbytes: int) -> str:
    out: list[str] = []
    size = 0
    while size < nbytes:
        words = vocab[rng.integers(0, vocab.shape[0], rng.integers(8, 22))]
        sentence = " ".join(words).capitalize() + ". "
        out.append(sentence)
        size += len(sentence)
    return "".join(out)


KANJI = np.array([chr(c) for c in range(0x4E00, 0x4E00 + 20000, 13)])  # 1,539 kanji spread over the block
KATAKANA = np.array([chr(c) for c in range(0x30A2, 0x30F3)])


def japanese_word(rng: np.random.Generator) -> str:
    """A business word from the list, or a random kanji compound or katakana loanword."""
    roll = rng.random()
    if roll < 0.4:
        return JA_WORDS[int(rng.integers(0, len(JA_WORDS)))]
    if roll < 0.85:
        return "".join(KANJI[rng.integers(0, KANJI.shape[0], int(rng.integers(2, 4)))])
    return "".join(KATAKANA[rng.integers(0, KATAKANA.shape[0], int(rng.integers(3, 6)))]) + "ー"


def japanese_text(rng: np.random.Generator, nbytes: int) -> str:
    out: list[str] = []
    size = 0
    while size < nbytes:
        n = int(rng.integers(3, 7))
        parts = [japanese_word(rng) + JA_PARTICLES[j] for j in rng.integers(0, len(JA_PARTICLES), n)]
        sentence = "".join(parts) + JA_WORDS[int(rng.integers(0, len(JA_WORDS)))] + JA_ENDINGS[int(rng.integers(0, 7))]
        out.append(sentence)
        size += len(sentence.encode())
    return "".join(out)


def item_text(rng: np.random.Generator, vocab: np.ndarray, index: int) -> str:
    return english_text(rng, vocab, ITEM_BYTES) if index % 2 == 0 else japanese_text(rng, ITEM_BYTES // 1)


def percentile(samples: list[float], p: float) -> float:
    return float(np.percentile(np.array(samples) * 1e3, p))


def add_synthetic(registry: Registry, fingerprints: int, item_fingerprints: int, rng: np.random.Generator) -> None:
    """Load `fingerprints` random text-channel values for new 64 KB-like items as one index segment."""
    from gateway.detection import index as ix

    items = max(1, fingerprints // item_fingerprints)
    first = len(registry._items)
    keys = rng.integers(0, 1 << 62, fingerprints, dtype=np.uint64)  # channel tag 0: text
    keys = ix._rotate(keys)
    keys.sort()
    slots = (first + rng.integers(0, items, fingerprints)).astype(np.uint32)
    registry.index._grow(first + items)
    registry.index._alive[first : first + items] = True
    registry.index._counts[first : first + items] = np.bincount(slots - first, minlength=items)
    registry.index._segments.append(ix._Segment(keys, slots, ordered=True))
    registry._items.extend([None] * items)


def stage_times(registry: Registry, parts: list[TextPart]) -> dict[str, float]:
    """CPU seconds of each part of scanning `parts` (one text part), measured one after the other."""
    times: dict[str, float] = {}
    c0 = time.thread_time()
    prints = registry.fingerprinter.text(normalize(parts[0].text).text)
    c1 = time.thread_time()
    registry.index.lookup(prints.values)
    c2 = time.thread_time()
    registry.scan(parts)
    c3 = time.thread_time()
    scan(parts, registry)
    c4 = time.thread_time()
    times["fingerprint"], times["lookup"], times["registry"], times["scan"] = c1 - c0, c2 - c1, c3 - c2, c4 - c3
    return times


def warm_up(registry: Registry, rng: np.random.Generator, vocab: np.ndarray, scans: int) -> float:
    """Scan `scans` unrelated prompts, untimed; returns the CPU ms of the first (reported apart).

    Right after a large index is built, its first scans run far slower (at
    1 GB on the machine of these figures: 10 to 140 ms for the first, nearly
    all of it in the index's gathers, settling over some ten scans), as the
    machine first reads the new arrays at random; the figures are of the
    steady state a serving gateway is in, and the first scan is printed.
    """
    first = 0.0
    for i in range(scans):
        text = english_text(rng, vocab, PROMPT_BYTES) if i % 2 == 0 else japanese_text(rng, PROMPT_BYTES)
        c0 = time.thread_time()
        scan([TextPart("messages[0].content", text)], registry)
        first = first or (time.thread_time() - c0) * 1e3
    return first


def bench(sizes_mb: list[int], runs: int, synthetic_mb: list[int] | None = None, stages: bool = False,
          warmup: int = 30) -> None:
    rng = np.random.default_rng(2026)
    vocab = english_vocabulary()
    registry = Registry(SECRET)
    registered_bytes = 0
    register_seconds = 0.0
    register_system = 0.0  # the part of it spent in the kernel (first use of fresh memory by the index's merges)
    items: list[str] = []
    print(f"{'registry':>9} {'items':>6} {'fingerprints':>12} {'B/fp':>5} {'reg MB/s':>8} {'sys%':>4} "
          f"{'prompt':>7} {'p50 ms':>7} {'p99 ms':>7} {'cpu p50':>7} {'cpu p99':>7} {'cpu p50/first':>13} {'matches':>7}")
    first_p50: dict[str, float] = {}
    real_fingerprints = 0
    for size_mb in [*sizes_mb, *(synthetic_mb or [])]:
        synthetic = size_mb not in sizes_mb
        if synthetic:
            per_byte = real_fingerprints / registered_bytes
            target = int(per_byte * size_mb * 1024 * 1024)
            t0 = time.perf_counter()
            add_synthetic(registry, target - len(registry.index), int(per_byte * ITEM_BYTES), rng)
            registry.index.compact()  # one segment, as a gateway starting on this store has (`registration.load`)
            print(f"(loaded {target - real_fingerprints:,} synthetic fingerprints in {time.perf_counter() - t0:.0f} s)")
        while not synthetic and registered_bytes < size_mb * 1024 * 1024:
            text = item_text(rng, vocab, len(items))
            t0, s0 = time.thread_time(), resource.getrusage(resource.RUSAGE_THREAD).ru_stime
            registry.add_item(f"item-{len(items)}", f"nda-{len(items) % 17}", Category.BUSINESS, text)
            register_seconds += time.thread_time() - t0
            register_system += resource.getrusage(resource.RUSAGE_THREAD).ru_stime - s0
            registered_bytes += len(text.encode())
            items.append(text) if len(items) < 64 else items.append("")
        if not synthetic:
            registry.index.compact()
            real_fingerprints = len(registry.index)
        if warmup:
            print(f"(first scan after building the index: {warm_up(registry, rng, vocab, warmup):.1f} ms CPU; "
                  f"{warmup} warm-up scans untimed)")
        for lang in ("en", "ja"):
            samples: list[float] = []
            cpu: list[float] = []
            parts_cpu: dict[str, list[float]] = {}
            found = 0
            for run in range(runs):
                source = items[(run * 2 + (lang == "ja")) % min(len(items), 64)]
                start = int(rng.integers(0, len(source) - 400))
                excerpt = source[start : start + (600 if lang == "en" else 200)]
                filler = english_text(rng, vocab, PROMPT_BYTES) if lang == "en" else japanese_text(rng, PROMPT_BYTES)
                prompt = filler[: len(filler) // 2] + excerpt + filler[len(filler) // 2 :]
                prompt = prompt.encode()[:PROMPT_BYTES].decode("utf-8", "ignore")
                parts = [TextPart("messages[0].content", prompt)]
                t0, c0 = time.perf_counter(), time.thread_time()
                matches = scan(parts, registry)
                samples.append(time.perf_counter() - t0)
                cpu.append(time.thread_time() - c0)
                found += any(m.kind == "fingerprint" for m in matches)
                if stages:
                    for name, seconds in stage_times(registry, parts).items():
                        parts_cpu.setdefault(name, []).append(seconds)
            label = f"{size_mb}MB" + ("*" if synthetic else "")
            print(f"{label:>9} {len(registry._items):>6} {len(registry.index):>12} "
                  f"{registry.index.bytes_per_fingerprint():>5.1f} "
                  f"{registered_bytes / 1e6 / register_seconds:>8.1f} {100 * register_system / register_seconds:>4.0f} "
                  f"{lang:>7} {percentile(samples, 50):>7.3f} "
                  f"{percentile(samples, 99):>7.3f} {percentile(cpu, 50):>7.3f} {percentile(cpu, 99):>7.3f} "
                  f"{percentile(cpu, 50) / first_p50.setdefault(lang, percentile(cpu, 50)):>13.2f} {found:>4}/{runs}")
            if stages:
                print(f"{'':>9} stages, CPU p50/p99 ms: " + ", ".join(
                    f"{name} {percentile(v, 50):.3f}/{percentile(v, 99):.3f}" for name, v in parts_cpu.items()))


def false_positives() -> None:
    """Real English paragraphs against a registry of other real paragraphs of the same documentation.

    Paragraphs of one manual share stock phrases ("raise an AttributeError"),
    so single-gram matches with tiny coverage are expected; the policy's
    coverage thresholds are what decides. Reported per threshold.
    """
    paragraphs = list(dict.fromkeys(p for t in pydoc_data.topics.topics.values() for p in t.split("\n\n") if len(p) > 400))
    registered, probes = paragraphs[::2], paragraphs[1::2]
    for background in (False, True):
        registry = Registry(SECRET)
        for i, p in enumerate(registered):
            registry.add_item(f"p{i}", "nda", Category.BUSINESS, p)
        if background:
            for p in probes[::2]:
                registry.add_background(p)
        checked = probes[1::2] if background else probes
        best = []
        for p in checked:
            cov = [max(m.item_coverage, m.request_coverage) for m in scan([TextPart("m", p)], registry)]
            best.append(max(cov, default=0.0))
        arr = np.array(best)
        label = "with background corpus" if background else "no background corpus"
        print(f"false positives ({label}): {len(checked)} unrelated real paragraphs vs {len(registered)} registered: "
              + ", ".join(f"score>{t:g}: {int((arr > t).sum())}" for t in (0, 0.1, 0.25, 0.5)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 100], help="registry sizes in MB")
    parser.add_argument("--runs", type=int, default=300, help="scans per size and language")
    parser.add_argument("--warmup", type=int, default=30, help="untimed scans after each registry is built")
    parser.add_argument("--synthetic", type=int, nargs="*", default=[],
                        help="further registry sizes in MB filled with synthetic fingerprints (marked *)")
    parser.add_argument("--no-false-positives", action="store_true", help="skip the false-positive check")
    parser.add_argument("--stages", action="store_true",
                        help="also time fingerprinting, index lookup, the registry's scan and the whole scan apart")
    args = parser.parse_args()
    bench(args.sizes, args.runs, args.synthetic, args.stages, args.warmup)
    if not args.no_false_positives:
        false_positives()


if __name__ == "__main__":
    main()
