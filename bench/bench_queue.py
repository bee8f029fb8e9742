"""``make bench`` (queue part): how long the label queue takes to choose from the pool, and its
peak memory as the pool grows. Writes bench/results_queue.json and its table in bench/README.md.

Pools: the first 5,000, 10,000 and all 20,231 paragraphs of ``seeds/pool/pool.jsonl.gz``; each
``topics queue POOL -n 400`` with the default model (copied into a private store under
bench/data/). Times are medians of ``--repeats`` runs; memory (whole process tree, PSS) is
measured in runs of its own.
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from bench import DATA, cpu_reference, run_command  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from pipeline.registry import ModelStore

    DATA.mkdir(parents=True, exist_ok=True)
    artefact = ROOT / "build" / "default" / "model.joblib"
    if not artefact.exists():
        raise SystemExit(f"{artefact} missing: run `make train`")
    store = ModelStore(DATA / "models")
    v = store.add_version("bench-queue", artefact, {"experiment": "default", "metrics": {}})
    with gzip.open(ROOT / "seeds" / "pool" / "pool.jsonl.gz", "rt", encoding="utf-8") as fh:
        lines = fh.readlines()
    results: dict = {"cpu_reference_seconds": cpu_reference(), "pools": []}
    for n in (5000, 10000, len(lines)):
        pool = DATA / f"pool_{n}.jsonl"
        pool.write_text("".join(lines[:n]), "utf-8")
        args = [str(pool), "-n", "400", "--models", str(DATA / "models")]
        args += ["--model", f"bench-queue:{v}", "-o", str(DATA / "queue.jsonl")]
        times = [run_command("queue", args)[0] for _ in range(a.repeats)]
        _, rss, pss = run_command("queue", args, watch_memory=True)
        row = {
            "paragraphs": n,
            "seconds_median": round(statistics.median(times), 2),
            "seconds": [round(t, 2) for t in times],
            "peak_pss_mb": round(pss / 1024),
            "peak_rss_mb": round(rss / 1024),
        }
        results["pools"].append(row)
        print(json.dumps(row), flush=True)
    (ROOT / "bench" / "results_queue.json").write_text(json.dumps(results, indent=2) + "\n")
    rows = "".join(
        f"| {r['paragraphs']:,} | {r['seconds_median']} | {r['peak_pss_mb']} | {r['peak_rss_mb']} |\n"
        for r in results["pools"]
    )
    section = (
        "\n## The label queue\n\n"
        "`topics queue POOL -n 400` with the default model, written by `bench/bench_queue.py` "
        "(`bench/results_queue.json`): reading the pool, cutting it into units, scoring every "
        f"unit and choosing 400; median of {a.repeats} runs on 2 CPUs (reference loop "
        f"{results['cpu_reference_seconds']} s). Memory is the peak of the process.\n\n"
        "| pool paragraphs | seconds | peak PSS (MB) | peak RSS (MB) |\n|---:|---:|---:|---:|\n"
        + rows
    )
    readme = ROOT / "bench" / "README.md"
    text = readme.read_text("utf-8").split("\n## The label queue\n")[0].rstrip() + "\n"
    readme.write_text(text + section, "utf-8")


if __name__ == "__main__":
    main()
