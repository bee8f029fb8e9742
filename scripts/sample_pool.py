"""Draw the stratified random sample of pool paragraphs for labelling (build/labelling/sample_random.jsonl).

Quotas per (repository, doctype) over-sample news, local notices and provincial reports, and cap
legal articles and pre-2000 national reports (seeds/pool/SOURCES.md says how the pool is slanted).
Reproducible: the same pool and seed give the same sample.

    python scripts/sample_pool.py            # writes build/labelling/sample_random.jsonl
"""

from __future__ import annotations

import gzip
import json
import random
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUOTAS = {  # (repo name, doctype) -> paragraphs
    ("china-provincial-gov-reports-2026", "work_report"): 420,
    ("gov_Text_proc", "notice"): 330,
    ("gov_Text_proc", "policy"): 170,
    ("Laws", "policy"): 230,
    ("Government_Report_Mining", "work_report"): 220,  # of which pre-2000 at most 70
    ("PolicyTextMining", "policy"): 170,
    ("spider-on-Chinese-government-websites", "news"): 180,
    ("People_Crawler", "news"): 140,
    ("people-daily-economy-daily", "news"): 140,
    ("GovernmentWorkReportCorpus", "work_report"): 120,
    ("policy_text_frenq", "policy"): 100,
    ("policy_text_analyse", "policy"): 80,
    ("gov-work-report-corpus-demo", "work_report"): 80,
    ("government-policy-knowledge-graph", "notice"): 50,
}
PRE_2000_CAP = 70
SEED = 20261203


def main() -> None:
    with gzip.open(ROOT / "seeds/pool/pool.jsonl.gz", "rt", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh]
    strata: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row in rows:
        strata[(row["repo"].split("/")[1], row["doctype"])].append(row)
    rng = random.Random(SEED)
    sample: list[dict] = []
    for key, quota in QUOTAS.items():
        group = sorted(strata[key], key=lambda r: r["id"])
        rng.shuffle(group)
        if key[0] == "Government_Report_Mining":
            old = [r for r in group if r["year"] and r["year"] < 2000][:PRE_2000_CAP]
            new = [r for r in group if not (r["year"] and r["year"] < 2000)]
            group = old + new[: quota - len(old)]
        sample.extend(group[:quota])
    out = ROOT / "build/labelling/sample_random.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as f:
        for row in sample:
            row["selected_by"] = "random"
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"{len(sample)} paragraphs -> {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
