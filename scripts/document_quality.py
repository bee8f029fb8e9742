"""Document-level theme quality on real multi-paragraph documents (issue #15).

A document's ``themes`` are every theme one of its paragraphs reaches (the maximum over
paragraphs); its ``main_themes`` are the themes covering a share of its text
(:func:`pipeline.predict.document_themes`). This script measures both against gold document
themes built from the real labelled paragraphs:

- documents: every ``repo`` + ``path`` of ``seeds/real/labelled.jsonl`` and
  ``seeds/real/queue1.jsonl`` with at least ``--min-labelled`` (3) labelled paragraphs; a
  document's text is all of its paragraphs in ``seeds/pool/pool.jsonl.gz``, in pool order (the
  pool keeps each file's paragraphs together and in file order; it has no paragraph index),
  joined by blank lines. Files that hold many separate items (a spreadsheet of news releases, one
  day of newspaper items, one file of many municipal plans) are scored but reported apart, as
  "collections": they are not documents.
- gold: a theme is a gold theme of a document when at least ``--gold-share`` (0.15) of its
  labelled paragraphs carry it (paragraphs labelled with no theme count in the denominator);
  the "any paragraph" gold (one labelled paragraph is enough) is reported too.
- per group: documents, mean number of gold and predicted themes, document macro-F1 (per theme,
  F1 over the group's documents, averaged over the themes that are gold or predicted in the
  group) and top-1 (the first theme predicted is one of the document's most-labelled themes).

The model: ``--model-file`` (joblib), else ``--model`` from the store ``--models``; when the
store cannot load it (no signed manifest, no key), the script says so and falls back to
``build/default/model.joblib``. The default model is trained on these labelled paragraphs, so
its figures are IN-SAMPLE and optimistic; the comparison between the rules on the same scores
still holds. A held-out figure needs a model that never saw the documents' paragraphs: one model
per held-out source (as ``pipeline.sources`` trains for paragraphs) scoring that source's
documents, or at least a model trained without ``seeds/real`` (``experiments/no_real.yaml``,
``topics train --exp experiments/no_real.yaml``, then ``--model-file build/no_real/model.joblib``;
a weaker model than the default, without character n-grams and vectors).

    .venv/bin/python scripts/document_quality.py                # table + build/document_quality.json
    .venv/bin/python scripts/document_quality.py --model-file build/no_real/model.joblib
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
LABELLED = ("seeds/real/labelled.jsonl", "seeds/real/queue1.jsonl")
POOL = "seeds/pool/pool.jsonl.gz"
FALLBACK = "build/default/model.joblib"
SHARES = (0.05, 0.08, 0.1, 0.12, 0.15, 0.2, 0.25, 0.3, 0.4)  # main-theme shares compared
GOLD_SHARES = (0.1, 0.15, 0.25)  # gold rules the choice is checked against
EXAMPLE = "2026_广东省_政府工作报告"  # a long work report shown rule against rule

# files of many separate items (seeds/pool/SOURCES.md), scored but not counted as documents
COLLECTION_REPOS = {
    "jiaoluoli/spider-on-Chinese-government-websites",  # one spreadsheet row per news release
    "jiayangrui05160031-cmyk/people-daily-economy-daily",  # one day of newspaper items
}
COLLECTION_FILES = {("ShirleyLoveGIS/PolicyTextMining", "policytxt.txt")}  # many plans, one file


def is_collection(repo: str, path: str) -> bool:
    return repo in COLLECTION_REPOS or (repo, path) in COLLECTION_FILES


def read_jsonl(path: Path) -> Iterable[dict[str, Any]]:
    opener: Any = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def build_documents(root: Path, min_labelled: int) -> list[dict[str, Any]]:
    """Every repo + path with at least ``min_labelled`` labelled paragraphs: its pool text and
    its labelled paragraphs' labels."""
    labelled: dict[str, dict[str, Any]] = {}
    for name in LABELLED:
        for e in read_jsonl(root / name):
            labelled[e["id"]] = e  # a later file's adjudication wins
    by_doc: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for e in labelled.values():
        by_doc[(e["repo"], e["path"])].append(e)
    keep = {k for k, v in by_doc.items() if len(v) >= min_labelled}
    paras: dict[tuple[str, str], list[str]] = defaultdict(list)
    ids: dict[tuple[str, str], set[str]] = defaultdict(set)
    meta: dict[tuple[str, str], str] = {}
    for p in read_jsonl(root / POOL):
        k = (p["repo"], p["path"])
        if k in keep:
            paras[k].append(p["text"])
            ids[k].add(p["id"])
            meta[k] = p["doctype"]
    docs = []
    for k in sorted(keep):
        if not paras[k]:
            continue
        labels = [e["labels"] for e in by_doc[k]]
        docs.append(
            {
                "repo": k[0],
                "path": k[1],
                "doctype": meta[k],
                "collection": is_collection(*k),
                "pool_paragraphs": len(paras[k]),
                "labelled_paragraphs": len(labels),
                "labelled_in_pool": sum(e["id"] in ids[k] for e in by_doc[k]),
                "text": "\n\n".join(paras[k]),
                "label_share": {
                    t: c / len(labels) for t, c in Counter(t for ls in labels for t in ls).items()
                },
            }
        )
    return docs


def load_model(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    import joblib

    if args.model_file:
        path = Path(args.model_file)
        return joblib.load(path), {"source": str(path), "training": training_of(path)}
    from pipeline.errors import GovTopicsError
    from pipeline.registry import ModelStore, parse_ref

    try:
        model, man = ModelStore(Path(args.models)).load(parse_ref(args.model))
    except GovTopicsError as exc:
        path = ROOT / FALLBACK
        print(
            f"document_quality: cannot load {args.model} from the store {args.models}: {exc}\n"
            f"document_quality: falling back to {FALLBACK} (joblib.load); nothing is trained",
            file=sys.stderr,
        )
        return joblib.load(path), {
            "source": FALLBACK,
            "store_error": str(exc),
            "training": training_of(path),
        }
    return model, {
        "source": f"{args.models}:{man['name']}:{man['version']}",
        "training": man.get("training_units"),
    }


def training_of(path: Path) -> Any:
    ev = path.parent / "evaluation.json"
    if not ev.exists():
        return None
    return json.loads(ev.read_text("utf-8")).get("data")


def macro_f1(gold: list[set[str]], pred: list[set[str]], themes: Sequence[str]) -> float:
    """Per theme, F1 over documents; the mean over themes gold or predicted somewhere."""
    f1s = []
    for t in themes:
        tp = sum(t in g and t in p for g, p in zip(gold, pred, strict=True))
        fp = sum(t not in g and t in p for g, p in zip(gold, pred, strict=True))
        fn = sum(t in g and t not in p for g, p in zip(gold, pred, strict=True))
        if tp + fp + fn:
            f1s.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(f1s)) if f1s else float("nan")


def micro_f1(gold: list[set[str]], pred: list[set[str]]) -> float:
    tp = sum(len(g & p) for g, p in zip(gold, pred, strict=True))
    n = sum(len(g) + len(p) for g, p in zip(gold, pred, strict=True))
    return 2 * tp / n if n else float("nan")


def top1(docs: list[dict[str, Any]], ranked: list[list[str]]) -> float:
    """Share of documents whose first predicted theme is one of their most-labelled themes."""
    hits = []
    for d, r in zip(docs, ranked, strict=True):
        share = d["label_share"]
        if not share:
            continue
        best = max(share.values())
        hits.append(bool(r) and share.get(r[0], 0.0) == best)
    return float(np.mean(hits)) if hits else float("nan")


def gold_of(d: dict[str, Any], share: float | None) -> set[str]:
    """Gold themes: on at least ``share`` of the labelled paragraphs (None: on any)."""
    return {t for t, s in d["label_share"].items() if s > 0 and (share is None or s >= share)}


def evaluate(
    docs: list[dict[str, Any]], rules: dict[str, list[list[str]]], themes: Sequence[str]
) -> dict[str, Any]:
    """Figures of every rule on ``docs`` against every gold rule."""
    golds = {f"share>={g:g}": [gold_of(d, g) for d in docs] for g in GOLD_SHARES}
    golds["any"] = [gold_of(d, None) for d in docs]
    out: dict[str, Any] = {
        "documents": len(docs),
        "gold_themes_mean": {k: float(np.mean([len(s) for s in v])) for k, v in golds.items()},
        "rules": {},
    }
    for name, ranked in rules.items():
        pred = [set(r) for r in ranked]
        out["rules"][name] = {
            "themes_mean": float(np.mean([len(r) for r in ranked])),
            "top1": top1(docs, ranked),
            "macro_f1": {k: macro_f1(g, pred, themes) for k, g in golds.items()},
            "micro_f1": {k: micro_f1(g, pred) for k, g in golds.items()},
        }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=str(ROOT / "models"), help="model store folder")
    ap.add_argument("--model", default="gov-topics@latest", help="NAME[@ALIAS|:VERSION]")
    ap.add_argument("--model-file", help="a joblib model file instead of the store")
    ap.add_argument("--min-labelled", type=int, default=3)
    ap.add_argument("--gold-share", type=float, default=0.15, help="the gold rule of the table")
    ap.add_argument("--example", default=EXAMPLE, help="path fragment of the document shown")
    ap.add_argument("-o", "--output", default=str(ROOT / "build" / "document_quality.json"))
    args = ap.parse_args(argv)
    if args.gold_share not in GOLD_SHARES:
        ap.error(f"--gold-share must be one of {GOLD_SHARES}")

    from pipeline.paragraphs import split_paragraphs
    from pipeline.predict import MAIN_SHARE, Predictor, document_themes

    docs = build_documents(ROOT, args.min_labelled)
    model, model_info = load_model(args)
    predictor = Predictor(model)
    themes = predictor.themes

    t0 = time.perf_counter()
    recs = predictor.predict([d["text"] for d in docs], evidence=False)
    seconds = time.perf_counter() - t0
    # every paragraph's scores once more, to compare shares on the same scores
    rules: dict[str, list[list[str]]] = defaultdict(list)
    for d, rec in zip(docs, recs, strict=True):
        paras = split_paragraphs(d["text"])
        _, proba, _ = predictor.score_paragraphs(paras)
        lengths = np.array([len(p) for p in paras], dtype=np.float64)
        d["paragraphs_scored"] = len(paras)
        rules["max (themes)"].append(rec["themes"])
        rules["main_themes"].append(rec["main_themes"])
        for share in SHARES:
            _, _, main = document_themes(proba, lengths, predictor.thresholds, share=share)
            rules[f"main@{share:g}"].append([themes[j] for j in main])
            if share == MAIN_SHARE:
                assert [themes[j] for j in main] == rec["main_themes"], d["path"]
        coverage, _, main = document_themes(proba, lengths, predictor.thresholds)
        rules[f"main@{MAIN_SHARE:g}, no top fallback"].append(
            [themes[j] for j in main if coverage[j] >= MAIN_SHARE]
        )
        rules["max, top 3 by score"].append(rec["themes"][:3])

    groups: dict[str, list[int]] = defaultdict(list)
    for i, d in enumerate(docs):
        if d["collection"]:
            groups["collections"].append(i)
            continue
        groups[d["doctype"]].append(i)
        groups["all documents"].append(i)
        if d["labelled_paragraphs"] >= 10:
            groups["documents, >=10 labelled"].append(i)
    order = ["work_report", "policy", "notice", "news", "all documents"]
    order += ["documents, >=10 labelled", "collections"]
    result: dict[str, Any] = {
        "model": model_info,
        "in_sample": "the default model is trained on these labelled paragraphs: optimistic",
        "main_share": MAIN_SHARE,
        "min_labelled": args.min_labelled,
        "gold_rule": f"theme on >= {args.gold_share:g} of the document's labelled paragraphs",
        "scoring_seconds": round(seconds, 2),
        "groups": {},
    }
    for g in order:
        idx = groups.get(g, [])
        if not idx:
            continue
        sub = [docs[i] for i in idx]
        ev = evaluate(sub, {k: [v[i] for i in idx] for k, v in rules.items()}, themes)
        ev["pool_paragraphs_mean"] = float(np.mean([d["pool_paragraphs"] for d in sub]))
        ev["labelled_paragraphs_mean"] = float(np.mean([d["labelled_paragraphs"] for d in sub]))
        result["groups"][g] = ev

    key = f"share>={args.gold_share:g}"
    print(
        f"document quality: {len(groups['all documents'])} real documents with >= "
        f"{args.min_labelled} labelled paragraphs (+ {len(groups['collections'])} collections), "
        f"model {model_info['source']}"
    )
    print(
        "IN-SAMPLE if the model was trained on seeds/real (the default is): optimistic figures; "
        "the rules compare on the same scores"
    )
    print(f"gold: themes on >= {args.gold_share:g} of a document's labelled paragraphs\n")
    head = (
        f"{'group':<26}{'docs':>5}{'paras':>7}{'gold':>6}{'#max':>6}{'#main':>6}"
        f"{'F1 max':>8}{'F1 main':>8}{'F1any max':>10}{'F1any main':>11}{'top1 max':>9}"
        f"{'top1 main':>10}"
    )
    print(head)
    for g, ev in result["groups"].items():
        mx, mn = ev["rules"]["max (themes)"], ev["rules"]["main_themes"]
        print(
            f"{g:<26}{ev['documents']:>5}{ev['pool_paragraphs_mean']:>7.0f}"
            f"{ev['gold_themes_mean'][key]:>6.1f}{mx['themes_mean']:>6.1f}{mn['themes_mean']:>6.1f}"
            f"{mx['macro_f1'][key]:>8.3f}{mn['macro_f1'][key]:>8.3f}"
            f"{mx['macro_f1']['any']:>10.3f}{mn['macro_f1']['any']:>11.3f}"
            f"{mx['top1']:>9.2f}{mn['top1']:>10.2f}"
        )
    alld = result["groups"]["all documents"]
    print(
        "\nall documents, each rule against each gold: mean themes, macro-F1 per gold, "
        f"micro-F1 against {key}, top-1"
    )
    gks = list(alld["gold_themes_mean"])
    print(f"{'rule':<30}{'#':>5}" + "".join(f"{k:>12}" for k in gks) + f"{'micro':>7}{'top1':>6}")
    print(
        f"{'(gold: mean themes)':<30}{'':>5}"
        + "".join(f"{alld['gold_themes_mean'][k]:>12.1f}" for k in gks)
    )
    for name, r in alld["rules"].items():
        print(
            f"{name:<30}{r['themes_mean']:>5.1f}"
            + "".join(f"{r['macro_f1'][k]:>12.3f}" for k in gks)
            + f"{r['micro_f1'][key]:>7.3f}{r['top1']:>6.2f}"
        )

    ex = next((i for i, d in enumerate(docs) if args.example in d["path"]), None)
    if ex is not None:
        d, rec = docs[ex], recs[ex]
        shown = {
            "repo": d["repo"],
            "path": d["path"],
            "paragraphs": d["paragraphs_scored"],
            "characters": len(d["text"]),
            "max_rule": [(t, rec["scores"][t]) for t in rec["themes"]],
            "main_themes": [(t, rec["coverage"][t]) for t in rec["main_themes"]],
            "gold_label_share": dict(sorted(d["label_share"].items(), key=lambda kv: -kv[1])),
            "labelled_paragraphs": d["labelled_paragraphs"],
        }
        result["example"] = shown
        print(f"\nexample: {d['path']} ({shown['paragraphs']} paragraphs, {len(d['text'])} chars)")
        print("  max rule (themes, by best paragraph score):")
        print("    " + ", ".join(f"{t} {s:.2f}" for t, s in shown["max_rule"]))
        print("  main_themes (by coverage of the text):")
        print("    " + ", ".join(f"{t} {c:.2f}" for t, c in shown["main_themes"]))
        print(f"  coverage of every theme: {rec['coverage']}")
        print(
            f"  gold ({d['labelled_paragraphs']} labelled paragraphs, share carrying each theme): "
            + ", ".join(f"{t} {s:.2f}" for t, s in shown["gold_label_share"].items())
        )
    result["documents"] = [
        {k: v for k, v in d.items() if k not in ("text",)}
        | {"themes": r["themes"], "main_themes": r["main_themes"], "coverage": r["coverage"]}
        for d, r in zip(docs, recs, strict=True)
    ]
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, ensure_ascii=False, indent=1) + "\n", "utf-8")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
