#!/usr/bin/env python
"""PII evaluation report: recall and precision per entity, with and without GiNZA's NER, and findings on
real technical text.

    .venv/bin/python bench/pii_eval.py                    # about two minutes
    .venv/bin/python bench/pii_eval.py --per-template 40 --passages 600

The labelled set is `tests/pii/labelled.py` (Faker ja_JP/en_US values in ordinary sentences; a value
counts as found when findings of its entity cover 80% of it, a finding counts as right when it overlaps
a value of its entity), at `--per-template` values per sentence template, with another seed than the
test's. The technical text is `tests/pii/technical.py` (Debian manuals and Python's standard library,
credit lines removed; corpus prepared by `.ci/corpus`). Minimum scores and deny list: the shipped
`policies/default.yaml`, every entity looked for. Bar (issue 6): recall and precision >= 95% per
pattern entity, >= 85% for Japanese person names. Results: Markdown on stdout and
`bench/results/pii_eval.json`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.pii.analyzer import PiiAnalyzer  # noqa: E402
from gateway.pii.entities import ALL_ENTITIES, PATTERN_ENTITIES, PERSON  # noqa: E402
from gateway.pii.lookup import Lookup, lookup_for  # noqa: E402
from gateway.policy.loader import PolicyStore  # noqa: E402
from tests.pii.labelled import samples, tally  # noqa: E402
from tests.pii.technical import passages  # noqa: E402

OUTPUT = ROOT / "bench" / "results" / "pii_eval.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-template", type=int, default=40)
    parser.add_argument("--passages", type=int, default=600)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args(argv)
    default = lookup_for(PolicyStore(ROOT / "policies" / "default.yaml").current.pii, "third_party")
    assert default is not None
    analyzer = PiiAnalyzer(japanese_ner=True)
    labelled = samples(args.per_template, args.seed)
    result: dict[str, object] = {"samples": len(labelled), "per_template": args.per_template, "seed": args.seed}
    configs = {"dictionary names (default)": False, "dictionary + GiNZA NER": True}
    table: dict[str, dict[str, dict[str, float]]] = {}
    for name, ner in configs.items():
        lookup = Lookup(frozenset(ALL_ENTITIES), default.min_scores, default.deny_list, japanese_ner=ner)
        started = time.perf_counter()
        rows: dict[str, dict[str, float]] = {}
        for lang in ("ja", "en"):
            mine = [s for s in labelled if s.lang == lang]
            found = [[(r.entity_type, r.start, r.end) for r in analyzer.analyze_text(s.text, lookup)] for s in mine]
            for entity, t in tally(mine, found).items():
                rows[f"{lang} {entity}"] = {"recall": round(t.recall, 4), "precision": round(t.precision, 4),
                                            "found": t.found, "missed": t.missed, "false": t.false}
        table[name] = rows
        result[f"seconds {name}"] = round(time.perf_counter() - started, 1)
    result["labelled"] = table
    lookup = Lookup(frozenset(ALL_ENTITIES), default.min_scores, default.deny_list)
    texts = passages(args.passages, seed=args.seed)
    hits: dict[str, int] = {}
    names: list[str] = []
    for _lang, _source, text in texts:
        for r in analyzer.analyze_text(text, lookup):
            hits[r.entity_type] = hits.get(r.entity_type, 0) + 1
            if r.entity_type == PERSON:
                names.append(text[r.start:r.end])
    result["technical"] = {"passages": len(texts), "findings": hits, "person_findings": names}
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(f"{len(labelled)} labelled sentences ({args.per_template} per template, seed {args.seed})\n")
    print("| entity | " + " | ".join(f"{n}: recall / precision" for n in configs) + " |")
    print("|---|" + "---|" * len(configs))
    ok = True
    for key in sorted(table["dictionary names (default)"]):
        cells = []
        for name in configs:
            row = table[name].get(key, {"recall": 1.0, "precision": 1.0})
            cells.append(f"{row['recall']:.3f} / {row['precision']:.3f}")
        print(f"| {key} | " + " | ".join(cells) + " |")
        row = table["dictionary names (default)"][key]
        entity = key.split(" ", 1)[1]
        bar = 0.95 if entity in PATTERN_ENTITIES else 0.85
        ok = ok and row["recall"] >= bar and row["precision"] >= bar
    print(f"\ntechnical text: {len(texts)} passages, findings {hits or 'none'}; names found: {names}")
    print(f"\nbar (default configuration): {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
