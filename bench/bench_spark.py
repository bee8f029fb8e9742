"""``make bench``, the Spark engine: ``topics predict --engine spark --master local[2]`` against
``topics predict --jobs 2`` on the same input in the same run, and how Spark's time and memory
grow with the input. Figures go to bench/results.json under ``"spark"`` (merged: the rest of the
file is kept).

- Comparison (``--compare`` MB, default 200): wall time of each engine, interleaved over
  ``--repeats``; Spark's JVM start-up as ``topics predict`` reports it, and its throughput once
  the JVM is up (wall time less start-up: the Python workers' start and model loading stay
  in); peak memory of the whole process tree (PSS and RSS sums: driver, JVM, Python workers),
  sampled in runs of their own.
- Scaling (``--sizes``, default 20 200 1000 MB): Spark's wall time, time once the JVM is up, and
  peak memory per size.

Both engines write JSONL (the same records); the corpus is bench.py's (documents of 3-8 seed
paragraphs, fixed seed), the model the default experiment's, in bench.py's private store.
``--quick`` (2 MB, one repeat) checks the script end to end in a minute.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent.parent))  # the project (bench/ is first)

from bench import (
    BIN,
    DATA,
    ROOT,
    _tree_memory_kb,
    build_corpus,
    cpu_reference,
    run_predict,
    text_megabytes,
)

SUMMARY = re.compile(r"in (?P<secs>[\d.]+)s.* on Spark \(\+(?P<startup>[\d.]+)s start-up\)")


def run_spark(args: list[str], watch_memory: bool = False) -> tuple[float, float, int, int]:
    """Wall time, Spark's start-up (as the command reports it) and, with ``watch_memory``, the
    peak RSS and PSS sums (KB) of the whole process tree of one Spark run."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [str(BIN / "topics"), "predict", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    peak = [0, 0]
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            rss, pss = _tree_memory_kb(proc.pid)
            peak[0], peak[1] = max(peak[0], rss), max(peak[1], pss)
            time.sleep(0.1)

    th = threading.Thread(target=poll, daemon=True)
    if watch_memory:
        th.start()
    _, err = proc.communicate()
    wall = time.perf_counter() - t0
    stop.set()
    if watch_memory:
        th.join()
    m = SUMMARY.search(err)
    if proc.returncode != 0 or m is None:
        raise SystemExit(f"topics predict {' '.join(args)} failed:\n{err}")
    return wall, float(m.group("startup")), peak[0], peak[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sizes", type=float, nargs="+", default=[20.0, 200.0, 1000.0])
    ap.add_argument("--compare", type=float, default=200.0, help="MB of the comparison")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--quick", action="store_true", help="2 MB, one repeat: a check of the script")
    ap.add_argument(
        "--results", type=Path, default=ROOT / "bench" / "results.json", help="merged into"
    )
    a = ap.parse_args()
    if a.quick:
        a.sizes, a.compare, a.repeats = [2.0], 2.0, 1
    from pipeline.registry import ModelStore
    from pipeline.spark import check_requirements

    check_requirements()
    artefact = ROOT / "build" / "default" / "model.joblib"
    if not artefact.exists():
        raise SystemExit(f"{artefact} missing: run `make train`")
    import joblib

    themes = list(joblib.load(artefact).named_steps["clf"].themes)
    DATA.mkdir(parents=True, exist_ok=True)
    store = ModelStore(DATA / "models")
    version = store.add_version(
        "bench-rjieba", artefact, {"experiment": "default", "metrics": {}, "themes": themes}
    )
    model = ["--models", str(DATA / "models"), "--model", f"bench-rjieba:{version}"]
    out_local, out_spark = DATA / "spark_local.jsonl", DATA / "spark_out"

    def local_args(corpus: Path) -> list[str]:
        return [str(corpus), "-o", str(out_local), "--jobs", "2", *model]

    def spark_args(corpus: Path) -> list[str]:
        shutil.rmtree(out_spark, ignore_errors=True)
        spark = ["--engine", "spark", "--master", a.master, "--format", "jsonl"]
        return [str(corpus), "-o", str(out_spark), *spark, *model]

    results: dict[str, object] = {"master": a.master, "repeats": a.repeats}
    cpu = [cpu_reference(1)]

    # the comparison: same input, same run, interleaved
    corpus = DATA / "spark_corpus.jsonl"
    info = build_corpus(corpus, a.compare, seed=14)
    mb = text_megabytes(corpus)
    local_runs: list[float] = []
    spark_runs: list[tuple[float, float]] = []
    for rep in range(a.repeats):
        local_runs.append(run_predict(local_args(corpus))[0])
        spark_runs.append(run_spark(spark_args(corpus))[:2])
        print(f"repeat {rep + 1}: local {local_runs[-1]:.1f}s, spark {spark_runs[-1]}", flush=True)
    same = (DATA / "spark_local.jsonl").read_text("utf-8") == "".join(
        p.read_text("utf-8") for p in sorted(out_spark.glob("part-*"))
    )
    _, local_rss, local_pss = run_predict(local_args(corpus), watch_memory=True)
    _, spark_rss, spark_pss = run_predict(spark_args(corpus), watch_memory=True)
    local_s = statistics.median(local_runs)
    spark_wall = statistics.median(w for w, _ in spark_runs)
    startup = statistics.median(s for _, s in spark_runs)
    spark_up = statistics.median(w - s for w, s in spark_runs)
    results["comparison"] = {
        "text_megabytes": round(mb, 1),
        "documents": info["documents"],
        "identical_records": same,
        "local_jobs2": {
            "seconds": round(local_s, 1),
            "mb_per_s": round(mb / local_s, 3),
            "peak_pss_mb": round(local_pss / 1024, 1),
            "peak_rss_mb": round(local_rss / 1024, 1),
            "runs": [round(r, 1) for r in local_runs],
        },
        "spark": {
            "seconds": round(spark_wall, 1),
            "startup_seconds": round(startup, 1),
            "seconds_jvm_up": round(spark_up, 1),
            "mb_per_s": round(mb / spark_wall, 3),
            "mb_per_s_jvm_up": round(mb / spark_up, 3),
            "peak_pss_mb": round(spark_pss / 1024, 1),
            "peak_rss_mb": round(spark_rss / 1024, 1),
            "runs": [[round(w, 1), round(s, 1)] for w, s in spark_runs],
        },
        "throughput_ratio_jvm_up": round(local_s / spark_up, 3),
        "throughput_ratio_with_startup": round(local_s / spark_wall, 3),
    }
    print(f"comparison: {results['comparison']}", flush=True)

    # scaling: Spark alone, one size after another (the comparison's size is measured again)
    scaling = []
    for size in a.sizes:
        cpu.append(cpu_reference(1))
        path = DATA / f"spark_{size:g}mb.jsonl"
        info = build_corpus(path, size, seed=15)
        mb = text_megabytes(path)
        # one run per size, watched: its time is a little slower than an unwatched run's, alike
        # for every size, so the growth it shows is the engine's (and 1 GB is run once, not twice)
        wall, startup, rss, pss = run_spark(spark_args(path), watch_memory=True)
        row = {
            "text_megabytes": round(mb, 1),
            "documents": info["documents"],
            "seconds": round(wall, 1),
            "startup_seconds": round(startup, 1),
            "seconds_jvm_up": round(wall - startup, 1),
            "seconds_per_mb_jvm_up": round((wall - startup) / mb, 3),
            "peak_pss_mb": round(pss / 1024, 1),
            "peak_rss_mb": round(rss / 1024, 1),
        }
        scaling.append(row)
        print(f"{size:g} MB: {row}", flush=True)
        path.unlink(missing_ok=True)
    results["scaling"] = scaling
    per_mb = [r["seconds_per_mb_jvm_up"] for r in scaling]
    pss = [r["peak_pss_mb"] for r in scaling]
    results["cpu_reference_seconds"] = [*cpu, cpu_reference(1)]
    # time = fixed + per_mb * MB, least squares: linear when the points sit on the line
    xs = [float(r["text_megabytes"]) for r in scaling]
    ys = [float(r["seconds"]) for r in scaling]
    if len(set(xs)) > 1:
        slope, fixed = statistics.linear_regression(xs, ys)
        fit = {
            "fixed_seconds": round(fixed, 1),
            "seconds_per_mb": round(slope, 3),
            "worst_residual_share": round(
                max(abs(y - fixed - slope * x) / y for x, y in zip(xs, ys, strict=True)), 3
            ),
        }
        results["scaling_fit"] = fit
    results["targets"] = {
        "throughput_ratio_jvm_up_ge_0_7": local_s / spark_up >= 0.7,
        "time_linear_seconds_per_mb_spread": round(max(per_mb) / min(per_mb), 3),
        "memory_flat_peak_pss_spread": round(max(pss) / min(pss), 3),
    }
    for p in (corpus, out_local):
        p.unlink(missing_ok=True)
    shutil.rmtree(out_spark, ignore_errors=True)

    path = a.results
    merged = json.loads(path.read_text("utf-8")) if path.exists() else {}
    merged["spark"] = results
    path.write_text(json.dumps(merged, indent=2) + "\n", "utf-8")
    print(json.dumps(results["targets"], indent=2))


if __name__ == "__main__":
    main()
