"""The file-to-file stage runners the CLI and the Makefile call.

Each ``run_<stage>`` reads its inputs from the :class:`~pipeline.workspace.Workspace`, calls the
stage module's pure functions and writes its output atomically, returning a small summary dict.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import joblib
import numpy as np

from pipeline import ingest as ingest_mod
from pipeline.errors import DataError
from pipeline.evaluate import EvalData, evaluate_experiment
from pipeline.features import vocabulary_summary
from pipeline.fsutil import atomic_write_bytes, atomic_write_text, sha256_file
from pipeline.labels import (
    Example,
    label_matrix,
    load_gold,
    load_written,
    seed_examples,
    written_files,
)
from pipeline.registry import DEFAULT_NAME, ModelStore, git_commit, library_versions
from pipeline.segment import SegmentedDoc, Segmenter, dictionary_hash, segment_texts
from pipeline.train import build_head
from pipeline.workspace import Workspace

log = logging.getLogger(__name__)


def _dump_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


def run_ingest(ws: Workspace, raw: Path | None = None) -> dict[str, Any]:
    raw_dir = raw or ws.data_path(ws.cfg.data.raw)
    result = ingest_mod.ingest_corpus(raw_dir)
    ingest_mod.write_units(result.units, ws.units)
    summary = result.summary()
    report = {
        "raw": str(raw_dir),
        **summary,
        "dropped_items": [
            {"doc": d.doc, "line": d.line, "reason": d.reason, "text": d.text}
            for d in result.dropped
        ],
    }
    _dump_json(ws.ingest_report, report)
    return summary


def training_examples(ws: Workspace) -> tuple[list[Example], list[Example]]:
    """The labelled seed units and the written corpus (empty when disabled in the config)."""
    units = list(ingest_mod.read_units(ws.require(ws.units, "ingest")))
    gold = load_gold(ws.data_path(ws.cfg.data.gold))
    seed = seed_examples(units, gold)
    written = load_written(ws.data_path(ws.cfg.data.extra)) if ws.cfg.data.use_written else []
    return seed, written


def segmenter_of(ws: Workspace) -> Segmenter:
    return Segmenter(
        backend=ws.cfg.segmenter.backend,
        user_words=ws.user_words(),
        stopwords=ws.stopwords(),
        hmm=ws.cfg.segmenter.hmm,
    )


def run_segment(ws: Workspace, jobs: int | None = None) -> dict[str, Any]:
    seed, written = training_examples(ws)
    examples = seed + written
    seg = segmenter_of(ws)
    t0 = time.perf_counter()
    docs = segment_texts([e.text for e in examples], seg, jobs=jobs)
    elapsed = time.perf_counter() - t0
    lines = []
    for ex, doc in zip(examples, docs, strict=True):
        lines.append(
            json.dumps(
                {
                    "id": ex.id,
                    "source": ex.source,
                    "group": ex.group,
                    "labels": list(ex.labels),
                    "text": doc.text,
                    "tokens": list(doc.tokens),
                },
                ensure_ascii=False,
            )
        )
    atomic_write_text(ws.segmented, "\n".join(lines) + "\n")
    meta = {
        "units": len(examples),
        "seed_units": len(seed),
        "written_units": len(written),
        "backend": seg.backend,
        "dictionary_sha256": dictionary_hash(seg.backend, seg.user_words, seg.stopwords),
        "user_words": len(seg.user_words),
        "stopwords": len(seg.stopwords),
        "seconds": round(elapsed, 2),
    }
    _dump_json(ws.segmented.with_suffix(".meta.json"), meta)
    return meta


def read_segmented(ws: Workspace) -> tuple[list[Example], list[SegmentedDoc]]:
    path = ws.require(ws.segmented, "segment")
    examples: list[Example] = []
    docs: list[SegmentedDoc] = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            try:
                o = json.loads(line)
                examples.append(
                    Example(o["id"], o["text"], tuple(o["labels"]), o["source"], o["group"])
                )
                docs.append(SegmentedDoc(o["text"], tuple(o["tokens"])))
            except (json.JSONDecodeError, KeyError) as exc:
                raise DataError(
                    f"{path}:{lineno}: not a segmented record", "rerun `make segment`"
                ) from exc
    return examples, docs


def run_features(ws: Workspace) -> dict[str, Any]:
    examples, docs = read_segmented(ws)
    tax = ws.taxonomy()
    Y = label_matrix(examples, tax.ids)
    head = build_head(ws.cfg, tax.ids, tax.lexicons())
    union = head.named_steps["features"]
    X = union.fit_transform(docs, Y)
    summary = vocabulary_summary(union, X, Y, tax.ids)
    buf = _joblib_bytes(
        {
            "features": union,
            "X": X,
            "Y": Y,
            "groups": [e.group for e in examples],
            "real": np.array([e.source != "written" for e in examples]),
        }
    )
    atomic_write_bytes(ws.features, buf)
    _dump_json(ws.vocabulary, summary)
    return {
        "n_features": summary["n_features"],
        "by_branch": summary["by_branch"],
        "units": len(examples),
    }


def _joblib_bytes(obj: Any) -> bytes:
    import io

    buf = io.BytesIO()
    joblib.dump(obj, buf, compress=3)
    return buf.getvalue()


def run_train(ws: Workspace) -> dict[str, Any]:
    """Fit the classifier on the features stage's matrix and assemble the end-to-end model."""
    saved = joblib.load(ws.require(ws.features, "features"))
    tax = ws.taxonomy()
    head = build_head(ws.cfg, tax.ids, tax.lexicons())
    steps = head.steps
    X, Y, groups = saved["X"], saved["Y"], saved["groups"]
    Xt = X
    for name, step in steps[1:-1]:  # optional selection between features and classifier
        Xt = step.fit_transform(Xt, Y)
        log.info("fitted %s", name)
    clf = steps[-1][1].fit(Xt, Y, groups=groups, tune_mask=saved.get("real"))
    from sklearn.pipeline import Pipeline

    model = Pipeline(
        [
            ("segment", segmenter_of(ws).fit()),
            ("features", saved["features"]),
            *steps[1:-1],
            ("clf", clf),
        ]
    )
    atomic_write_bytes(ws.classifier, _joblib_bytes(model))
    return {
        "units": int(Y.shape[0]),
        "thresholds": {
            t: round(float(v), 4) for t, v in zip(tax.ids, clf.thresholds_, strict=True)
        },
    }


def eval_data(ws: Workspace) -> EvalData:
    examples, docs = read_segmented(ws)
    tax = ws.taxonomy()
    seed_idx = [i for i, e in enumerate(examples) if e.source == "seed"]
    writ_idx = [i for i, e in enumerate(examples) if e.source != "seed"]
    seed = [examples[i] for i in seed_idx]
    written = [examples[i] for i in writ_idx]
    return EvalData(
        seed_docs=[docs[i] for i in seed_idx],
        seed=seed,
        Y_seed=label_matrix(seed, tax.ids),
        written_docs=[docs[i] for i in writ_idx],
        written=written,
        Y_written=label_matrix(written, tax.ids) if written else np.zeros((0, len(tax.ids)), int),
    )


def run_evaluate(ws: Workspace, learning_curve: bool = True) -> dict[str, Any]:
    tax = ws.taxonomy()
    data = eval_data(ws)
    t0 = time.perf_counter()
    report = evaluate_experiment(
        ws.cfg, data, tax.ids, tax.lexicons(), learning_curve=learning_curve
    )
    report["seconds"] = round(time.perf_counter() - t0, 1)
    _dump_json(ws.evaluation, report)
    from pipeline.report import render_report, write_plots

    atomic_write_text(ws.report, render_report(report, f"gov-topics: {ws.cfg.name}"))
    write_plots(report, ws.plots)
    return {
        "macro_f1": report["model"]["macro_f1"]["mean"],
        "macro_f1_seed_only": report["model_seed_only"]["macro_f1"]["mean"],
        "baseline_macro_f1": report["baseline"]["macro_f1"]["mean"],
        "micro_f1": report["model"]["micro_f1"]["mean"],
        "document_macro_f1": report["model"]["document_macro_f1"]["mean"],
    }


def training_data_sha256(ws: Workspace) -> str:
    """One hash over everything the model learned from: units, gold labels, written corpus."""
    h = hashlib.sha256()
    paths = [ws.units, ws.data_path(ws.cfg.data.gold)]
    if ws.cfg.data.use_written:
        paths += written_files(ws.data_path(ws.cfg.data.extra))
    for p in paths:
        h.update(p.name.encode())
        h.update(sha256_file(p).encode())
    return h.hexdigest()


def run_register(
    ws: Workspace,
    store: ModelStore,
    name: str = DEFAULT_NAME,
    track: bool = True,
    fmt: str = "pickle",
) -> dict[str, Any]:
    """Save the trained model as a new version with its manifest, and log the run to MLflow."""
    from pipeline import tracking

    model_path = ws.require(ws.classifier, "train")
    evaluation = json.loads(ws.require(ws.evaluation, "evaluate").read_text("utf-8"))
    seg_meta = json.loads(ws.segmented.with_suffix(".meta.json").read_text("utf-8"))
    tax = ws.taxonomy()
    model = joblib.load(model_path)
    clf = model.named_steps["clf"]
    data_sha = training_data_sha256(ws)
    commit = git_commit(ws.root)
    metrics = tracking.metrics_of(evaluation)
    run_id = None
    if track:
        run_id = tracking.log_training(
            run_name=f"{ws.cfg.name}",
            params=ws.cfg.flat(),
            metrics=metrics,
            tags={
                "data_sha256": data_sha,
                "git_commit": commit,
                "config_sha256": ws.cfg.sha256(),
                "themes_sha256": tax.sha256,
                "segmenter": seg_meta["backend"],
                "description": ws.cfg.description,
            },
            artifacts=[
                ("", ws.evaluation),
                ("report", ws.report),
                ("features", ws.vocabulary),
                *(("plots", p) for p in sorted(ws.plots.glob("*.png"))),
            ],
            root=ws.root,
        )
    manifest = {
        "experiment": ws.cfg.name,
        "config": ws.cfg.to_dict(),
        "config_sha256": ws.cfg.sha256(),
        "training_data_sha256": data_sha,
        "training_units": {"seed": seg_meta["seed_units"], "written": seg_meta["written_units"]},
        "themes": tax.ids,
        "themes_sha256": tax.sha256,
        "thresholds": {t: float(v) for t, v in zip(tax.ids, clf.thresholds_, strict=True)},
        "segmenter": {
            "backend": seg_meta["backend"],
            "dictionary_sha256": seg_meta["dictionary_sha256"],
        },
        "metrics": metrics,
        "libraries": library_versions(),
        "git_commit": commit,
        "mlflow_run_id": run_id,
    }
    model_uri = tracking.log_model(run_id, model_path, root=ws.root) if track and run_id else ""
    version = store.add_version(
        name,
        model_path,
        manifest,
        {"evaluation.json": ws.evaluation, "report.html": ws.report},
        fmt=fmt,
    )
    vdir = store.model_dir(name) / str(version)
    if track and run_id:
        tracking.log_artifact(run_id, vdir / "manifest.json", root=ws.root)
        mlflow_version = tracking.register_model(model_uri, name, version, root=ws.root)
        store.update_manifest(name, version, mlflow_model_version=mlflow_version)
    out = {
        "name": name,
        "version": version,
        "path": str(vdir),
        "mlflow_run_id": run_id,
        "macro_f1": metrics["macro_f1"],
    }
    _dump_json(ws.registered, out)
    return out


def gate_scores(
    ws: Workspace, candidate: dict[str, Any], production: dict[str, Any]
) -> dict[str, Any]:
    """Cross-validated macro-F1 of two versions on the current gold set under the same folds.

    When both versions were evaluated on the same training data with the same folds, their stored
    figures already are that comparison; otherwise both configs are re-evaluated here with the
    workspace's folds and seed on the current data.
    """
    from pipeline.config import parse_config
    from pipeline.evaluate import cross_validate, model_fitter
    from pipeline.registry import same_evaluation_basis

    if same_evaluation_basis(candidate, production):
        return {
            "basis": "stored (same training data, folds, repeats and seed)",
            "candidate": candidate["metrics"]["macro_f1"],
            "production": production["metrics"]["macro_f1"],
        }
    tax = ws.taxonomy()
    seed_ex, written = training_examples(ws)
    ev = ws.cfg.evaluation
    scores = {}
    for role, man in (("candidate", candidate), ("production", production)):
        cfg = parse_config(man["config"], f"{man['name']}:{man['version']}")
        seg = Segmenter(
            backend=cfg.segmenter.backend,
            user_words=ws.user_words(),
            stopwords=ws.stopwords(),
            hmm=cfg.segmenter.hmm,
        )
        use = written if cfg.data.use_written else []
        docs = segment_texts([e.text for e in seed_ex + use], seg)
        data = EvalData(
            seed_docs=docs[: len(seed_ex)],
            seed=seed_ex,
            Y_seed=label_matrix(seed_ex, tax.ids),
            written_docs=docs[len(seed_ex) :],
            written=use,
            Y_written=label_matrix(use, tax.ids) if use else np.zeros((0, len(tax.ids)), int),
        )
        res = cross_validate(
            data,
            model_fitter(cfg, tax.ids, tax.lexicons()),
            tax.ids,
            folds=ev.folds,
            repeats=ev.repeats,
            seed=ws.cfg.seed,
            use_written=cfg.data.use_written,
        )
        scores[role] = res["macro_f1"]["mean"]
    return {
        "basis": f"re-evaluated on the current gold set ({ev.repeats}x{ev.folds} folds, seed {ws.cfg.seed})",
        **scores,
    }
