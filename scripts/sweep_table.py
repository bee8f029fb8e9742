"""Rank every experiment by out-of-source macro-F1 (the headline) and write experiments/SWEEP.md.

Reads ``build/<name>/evaluation.json`` of each ``experiments/*.yaml`` (run `make sweep` first, or
`make evaluate EXP=...` for each). Every experiment is scored on the same real units with the
same leave-one-source-out folds, so the figures compare.

    python scripts/sweep_table.py            # prints the table and writes experiments/SWEEP.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCTYPES = ("news", "notice", "policy", "work_report")


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from pipeline.config import load_config

    rows = []
    for path in sorted((ROOT / "experiments").glob("*.yaml")):
        cfg = load_config(path)
        ev_path = ROOT / "build" / cfg.name / "evaluation.json"
        if not ev_path.exists():
            print(f"{path.name}: not evaluated yet ({ev_path} missing)", file=sys.stderr)
            continue
        ev = json.loads(ev_path.read_text("utf-8"))
        oos = ev.get("out_of_source")
        if not oos:
            continue
        worst = min(oos["per_source"].items(), key=lambda kv: kv[1]["macro_f1"])
        rows.append(
            (
                oos["model"]["macro_f1"],
                cfg.name,
                oos["baseline"]["macro_f1"],
                [oos["per_doctype"].get(d, {}).get("macro_f1") for d in DOCTYPES],
                min(v["f1"] for v in oos["model"]["per_theme"].values()),
                f"{worst[0].removeprefix('pool:').split('/')[-1]} {worst[1]['macro_f1']:.3f}",
                ev["model"]["macro_f1"]["mean"],
                oos["units"],
                oos.get("real_training_units_per_fold", 0),
            )
        )
    rows.sort(key=lambda r: (-r[0], r[1]))
    head = (
        "| experiment | out-of-source macro-F1 | keyword baseline | "
        + " | ".join(DOCTYPES)
        + " | weakest theme F1 | weakest source | seed-unit CV | real units scored | trained on per fold |\n|---|"
        + "---:|" * (7 + len(DOCTYPES))
        + "\n"
    )
    body = "".join(
        f"| {name} | **{f1:.3f}** | {base:.3f} | "
        + " | ".join("" if d is None else f"{d:.3f}" for d in dts)
        + f" | {wt:.3f} | {worst} | {seed:.3f} | {scored} | {n_real} |\n"
        for f1, name, base, dts, wt, worst, seed, scored, n_real in rows
    )
    text = (
        "# Sweep: every experiment ranked by out-of-source macro-F1\n\n"
        "Written by `make sweep` (scripts/sweep_table.py) from each experiment's "
        "`build/<name>/evaluation.json`. Leave one source out over the real units: each of the "
        "sources is scored by a model trained on every other source and the written corpus, on "
        "the same folds for every row. Per doctype, "
        "macro-F1 over the themes present. The seed-unit CV is the old, secondary yardstick. "
        "Rows evaluated after the label queue's batch joined the real corpus train on its 360 "
        "queue-chosen units too (never scored) and are scored on 40 more random units (its "
        "random share): compare rows with the same unit counts (last two columns); a change under "
        "0.01 is noise.\n\n" + head + body
    )
    (ROOT / "experiments" / "SWEEP.md").write_text(text, "utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
