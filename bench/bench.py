"""``make bench``: prediction speed and memory, measured in one run, written to bench/results.json
and the table in bench/README.md.

Corpus: documents of 3-8 seed paragraphs drawn with a fixed seed (about 20 MB of UTF-8 JSONL), and
a 200 MB one for peak memory. Models: the default experiment (rjieba) and the jieba experiment,
copied into a private store under bench/data/. Timings are medians of ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / "data"
BIN = Path(sys.executable).parent


def build_corpus(path: Path, megabytes: float, seed: int = 13) -> dict[str, float]:
    """JSONL documents of 3-8 shuffled seed paragraphs until the file reaches ``megabytes``."""
    units = [
        json.loads(x)["text"]
        for x in (ROOT / "build" / "default" / "units.jsonl").open(encoding="utf-8")
    ]
    rng = random.Random(seed)
    target = int(megabytes * 1e6)
    size = docs = 0
    with path.open("w", encoding="utf-8") as fh:
        while size < target:
            text = "\n".join(rng.sample(units, rng.randint(3, 8)))
            line = json.dumps({"id": f"b{docs}", "text": text}, ensure_ascii=False) + "\n"
            fh.write(line)
            size += len(line.encode())
            docs += 1
    return {"megabytes": size / 1e6, "documents": docs}


def text_megabytes(path: Path) -> float:
    return sum(len(json.loads(x)["text"].encode()) for x in path.open(encoding="utf-8")) / 1e6


def _tree_memory_kb(pid: int) -> tuple[int, int]:
    """Resident memory of a process and all its descendants, from /proc: the sum of their RSS
    (pages shared between the processes, such as a model inherited through fork, are counted once
    per process) and the sum of their PSS (each shared page divided among the processes sharing
    it: what the tree really occupies)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(d.name))
    rss = pss = 0
    stack = [pid]
    while stack:
        p = stack.pop()
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
        except OSError:
            pass
        stack.extend(children.get(p, []))
    return rss, pss


def run_predict(args: list[str], watch_memory: bool = False) -> tuple[float, int, int]:
    """:func:`run_command` for ``topics predict``."""
    return run_command("predict", args, watch_memory)


def run_command(
    command: str, args: list[str], watch_memory: bool = False
) -> tuple[float, int, int]:
    """Wall time and, with ``watch_memory``, peak resident memory (whole process tree: RSS sum,
    PSS sum, in KB) of one ``topics COMMAND``.

    Memory is watched in runs of its own: reading a process's memory map takes the kernel lock
    that its page faults need, so a watched run is slower and its time is not used."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [str(BIN / "topics"), command, *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    peak_rss = peak_pss = 0
    stop = threading.Event()

    def poll() -> None:
        nonlocal peak_rss, peak_pss
        while not stop.is_set():
            rss, pss = _tree_memory_kb(proc.pid)
            peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
            time.sleep(0.1)

    th = threading.Thread(target=poll, daemon=True)
    if watch_memory:
        th.start()
    _, err = proc.communicate()
    stop.set()
    if watch_memory:
        th.join()
    if proc.returncode != 0:
        raise SystemExit(f"topics {command} {' '.join(args)} failed:\n{err}")
    return time.perf_counter() - t0, peak_rss, peak_pss


def cpu_reference(repeats: int = 3) -> float:
    """Seconds for a fixed pure-Python loop (median of ``repeats``): this machine's speed at the
    time of the run, so figures from different runs or machines can be put side by side."""

    def once() -> float:
        t0 = time.perf_counter()
        x = 0
        for i in range(10_000_000):
            x += i
        return time.perf_counter() - t0

    return round(statistics.median(once() for _ in range(repeats)), 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--megabytes", type=float, default=20.0)
    ap.add_argument("--big-megabytes", type=float, default=200.0)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from pipeline.registry import ModelStore

    DATA.mkdir(parents=True, exist_ok=True)
    store = ModelStore(DATA / "models")
    models = {}
    for backend, exp in (("jieba", "jieba"), ("rjieba", "default")):
        artefact = ROOT / "build" / exp / "model.joblib"
        if not artefact.exists():
            raise SystemExit(f"{artefact} missing: run `make train EXP=experiments/{exp}.yaml`")
        v = store.add_version(f"bench-{backend}", artefact, {"experiment": exp, "metrics": {}})
        models[backend] = f"bench-{backend}:{v}"

    corpus = DATA / "corpus.jsonl"
    info = build_corpus(corpus, a.megabytes)
    mb = text_megabytes(corpus)
    docs = info["documents"]
    out = DATA / "out.jsonl"
    results: dict[str, object] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "corpus": {
            "text_megabytes": round(mb, 2),
            "documents": docs,
            "file_megabytes": round(info["megabytes"], 2),
        },
        "repeats": a.repeats,
    }

    # Timings are interleaved: each repeat runs every configuration once, in turn, so that a
    # change in the host's speed during the run falls on all of them alike, and ratios are taken
    # within a repeat. Memory is measured afterwards, in runs of its own.
    from pipeline.paragraphs import split_paragraphs
    from pipeline.segment import Segmenter, read_stopwords, read_userdict, segment_texts

    paras = []  # the paragraphs `topics predict` segments (for the segmentation ceiling)
    for line in corpus.open(encoding="utf-8"):
        paras.extend(split_paragraphs(json.loads(line)["text"]))
    seg = Segmenter(
        user_words=read_userdict(ROOT / "seeds/userdict.txt"),
        stopwords=read_stopwords(ROOT / "seeds/stopwords.txt"),
    )
    small = DATA / "small.txt"
    small.write_text(json.loads(corpus.open(encoding="utf-8").readline())["text"], "utf-8")

    def e2e_args(ref: str, jobs: int) -> list[str]:
        args = [str(corpus), "-o", str(out), "--models", str(DATA / "models")]
        return [*args, "--model", ref, "--jobs", str(jobs)]

    configs = [(b, j) for b in models for j in (1, 2)]
    times: dict[str, list[float]] = {f"{b}_jobs{j}": [] for b, j in configs}
    ceiling_runs: list[float] = []
    cold_runs: dict[str, list[float]] = {b: [] for b in models}
    cpu_ref: list[float] = []
    for rep in range(a.repeats):
        cpu_ref.append(cpu_reference(1))
        for b, j in configs:
            times[f"{b}_jobs{j}"].append(run_predict(e2e_args(models[b], j))[0])
        t0 = time.perf_counter()
        segment_texts(paras, seg, jobs=2)  # jieba over a two-process pool, no classification
        ceiling_runs.append(time.perf_counter() - t0)
        for b, ref in models.items():
            for _ in range(2):
                small_args = [str(small), "--models", str(DATA / "models"), "--model", ref]
                cold_runs[b].append(run_predict(small_args)[0])
        print(f"repeat {rep + 1}: { {k: round(v[-1], 2) for k, v in times.items()} }", flush=True)

    e2e = {}
    for key, runs in times.items():
        b, j = key.split("_jobs")
        _, rss, pss = run_predict(e2e_args(models[b], int(j)), watch_memory=True)
        secs = statistics.median(runs)
        e2e[key] = {
            "mb_per_s": round(mb / secs, 3),
            "docs_per_s": round(docs / secs, 1),
            "seconds": round(secs, 2),
            "peak_rss_mb": round(rss / 1024, 1),
            "peak_pss_mb": round(pss / 1024, 1),
            "runs": [round(r, 2) for r in runs],
        }
        print(f"end to end {key}: {e2e[key]}", flush=True)
    results["end_to_end"] = e2e
    ceiling = mb / statistics.median(ceiling_runs)
    share = statistics.median(
        c / t for c, t in zip(ceiling_runs, times["jieba_jobs2"], strict=True)
    )
    results["segmentation_ceiling_jieba_2proc"] = {
        "mb_per_s": round(ceiling, 3),
        "runs": [round(t, 2) for t in ceiling_runs],
        "jieba_jobs2_share_per_repeat_median": round(share, 3),
    }
    cold = {
        b: {"median": round(statistics.median(r), 3), "runs": [round(x, 3) for x in r]}
        for b, r in cold_runs.items()
    }
    results["small_file_seconds"] = cold
    results["cpu_reference_seconds"] = {"per_repeat": [round(x, 3) for x in cpu_ref]}

    # the naive loop: one document at a time through the model
    import joblib

    model = joblib.load(ROOT / "build" / "jieba" / "model.joblib")
    sample = [
        json.loads(x)["text"]
        for _, x in zip(range(max(50, docs // 20)), corpus.open(encoding="utf-8"), strict=False)
    ]
    sample_mb = sum(len(t.encode()) for t in sample) / 1e6
    t0 = time.perf_counter()
    for text in sample:
        model.predict_proba([text])
    naive = time.perf_counter() - t0
    results["naive_loop_jieba"] = {
        "mb_per_s": round(sample_mb / naive, 3),
        "docs_per_s": round(len(sample) / naive, 1),
        "documents": len(sample),
    }
    print(f"naive per-document loop: {results['naive_loop_jieba']}", flush=True)

    # peak memory on a big input (fast backend, two workers, streaming)
    big = DATA / "big.jsonl"
    big_info = build_corpus(big, a.big_megabytes, seed=14)
    big_args = [str(big), "-o", str(out), "--models", str(DATA / "models")]
    big_args += ["--model", models["rjieba"], "--jobs", "2"]
    secs, _, _ = run_predict(big_args)
    _, peak_rss, peak_pss = run_predict(big_args, watch_memory=True)
    big_mb = text_megabytes(big)
    results["big_input"] = {
        "file_megabytes": round(big_info["megabytes"], 1),
        "text_megabytes": round(big_mb, 1),
        "mb_per_s": round(big_mb / secs, 2),
        "documents": big_info["documents"],
        "backend": "rjieba",
        "jobs": 2,
        "seconds": round(secs, 1),
        "peak_rss_mb": round(peak_rss / 1024, 1),
        "peak_pss_mb": round(peak_pss / 1024, 1),
        "same_run_on_20mb_peak_pss_mb": round(e2e["rjieba_jobs2"]["peak_pss_mb"], 1),
    }
    print(f"200 MB input: {results['big_input']}", flush=True)
    out.unlink(missing_ok=True)
    big.unlink(missing_ok=True)

    results["cpu_reference_seconds"]["end"] = cpu_reference()  # type: ignore[index]
    results["targets"] = {
        "fast_backend_mb_per_s_ge_6": e2e["rjieba_jobs2"]["mb_per_s"] >= 6,
        "fast_backend_mb_per_s_ge_6_on_200mb": results["big_input"]["mb_per_s"] >= 6,  # type: ignore[index]
        "jieba_ge_90pct_of_ceiling": share >= 0.9,
        "jieba_share_of_ceiling": round(share, 3),
        "peak_memory_lt_500mb": results["big_input"]["peak_pss_mb"] < 500,  # type: ignore[index]
        "small_file_lt_1_5s": {b: c["median"] < 1.5 for b, c in cold.items()},
    }
    (ROOT / "bench" / "results.json").write_text(json.dumps(results, indent=2) + "\n", "utf-8")
    write_table(results)
    print(json.dumps(results["targets"], indent=2))


def write_table(r: dict) -> None:
    e = r["end_to_end"]
    rows = "\n".join(
        f"| `topics predict`, {k.replace('_jobs', ', --jobs ')} | {v['mb_per_s']:.2f} | "
        f"{v['docs_per_s']:.0f} | {v['peak_pss_mb']:.0f} | {v['peak_rss_mb']:.0f} |"
        for k, v in e.items()
    )
    t = r["targets"]
    big = r["big_input"]
    cold = r["small_file_seconds"]
    ceiling = r["segmentation_ceiling_jieba_2proc"]["mb_per_s"]
    text = f"""# Benchmarks

`make bench` measures prediction speed and memory in one run and writes `results.json`; this
file is generated from it. Corpus: {r["corpus"]["documents"]} documents of 3-8 shuffled seed
paragraphs ({r["corpus"]["text_megabytes"]} MB of text; fixed seed). Timings are medians of
{r["repeats"]} runs on {r["machine"]["cpus"]} CPUs; MB are megabytes of UTF-8 document text.

The machine's speed varies with its host: a fixed pure-Python loop took
{", ".join(str(x) for x in r["cpu_reference_seconds"]["per_repeat"])} s in the repeats and
{r["cpu_reference_seconds"]["end"]} s at the end. So the repeats are interleaved (each runs every
configuration once, in turn), and the jieba share of its ceiling is the median of per-repeat
ratios.

Memory is the peak over the whole process tree, sampled every 100 ms in a run of its own: **PSS** counts a page
shared by several processes once in all (divided among them), which is what the run really
occupies; **RSS** counts it once per process. With `--jobs 2` the workers are forked from the
main process after it loaded the model, so they share its pages and the RSS sum counts the model
three times.

| what | MB/s | documents/s | peak PSS (MB) | peak RSS sum (MB) |
|---|---:|---:|---:|---:|
{rows}
| jieba segmentation ceiling (2 processes, no classification) | {ceiling:.2f} | | | |
| naive loop (one document at a time through the model, jieba) | {r["naive_loop_jieba"]["mb_per_s"]:.2f} | {r["naive_loop_jieba"]["docs_per_s"]:.0f} | | |

- One small file, cold start (median of 6): jieba {cold["jieba"]["median"]} s, rjieba
  {cold["rjieba"]["median"]} s.
- {big["file_megabytes"]} MB input ({big["documents"]} documents), rjieba, `--jobs 2`:
  {big["seconds"]} s, {big["mb_per_s"]} MB/s; peak PSS {big["peak_pss_mb"]} MB (RSS sum {big["peak_rss_mb"]} MB), against
  {big["same_run_on_20mb_peak_pss_mb"]} MB PSS for the same command on the 20 MB corpus.

Targets:
- fast backend >= 6 MB/s on 2 cores: on the 20 MB corpus **{t["fast_backend_mb_per_s_ge_6"]}**
  ({e["rjieba_jobs2"]["mb_per_s"]:.2f} MB/s, start-up included); on the 200 MB input
  **{t["fast_backend_mb_per_s_ge_6_on_200mb"]}** ({big["mb_per_s"]} MB/s);
- plain jieba >= 90% of its two-process ceiling: **{t["jieba_ge_90pct_of_ceiling"]}**
  ({t["jieba_share_of_ceiling"]:.0%});
- peak memory < 500 MB on the big input: **{t["peak_memory_lt_500mb"]}** (PSS);
- one small file < 1.5 s: jieba **{t["small_file_lt_1_5s"]["jieba"]}**, rjieba
  **{t["small_file_lt_1_5s"]["rjieba"]}**.
"""
    (ROOT / "bench" / "README.md").write_text(text, "utf-8")


if __name__ == "__main__":
    main()
