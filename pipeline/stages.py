"""The file-to-file stage runners the CLI and the Makefile call.

Each ``run_<stage>`` reads its inputs from the :class:`~pipeline.workspace.Workspace`, calls the
stage module's pure functions and writes its output atomically, returning a small typed result.
Nothing here decides anything: cleaning is :mod:`pipeline.paragraphs`, the model
:mod:`pipeline.train`, evaluation :mod:`pipeline.evaluate`, the store :mod:`pipeline.registry`.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np

from pipeline import ingest as ingest_mod
from pipeline.errors import DataError
from pipeline.evaluate import EvalData, evaluate_experiment
from pipeline.features import vocabulary_summary
from pipeline.fsutil import atomic_write_bytes, atomic_write_text, pause_for_tests
from pipeline.labels import (
    Example,
    label_matrix,
    load_gold,
    load_real,
    load_written,
    real_files,
    seed_examples,
    written_files,
)
from pipeline.paragraphs import sha1_text
from pipeline.provenance import files_sha256, git_commit, manifest_fields
from pipeline.registry import DEFAULT_NAME, ModelStore
from pipeline.segment import SegmentedDoc, Segmenter, dictionary_hash, segment_texts
from pipeline.sources import SourceData
from pipeline.train import build_head, check_positives, fit_model
from pipeline.workspace import Workspace

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestOutcome:
    documents: int
    articles: int
    units: int
    dropped: dict[str, int]
    actions: dict[str, int]


@dataclass(frozen=True)
class SegmentOutcome:
    units: int
    seed_units: int
    written_units: int
    real_units: int
    backend: str
    dictionary_sha256: str
    user_words: int
    stopwords: int
    seconds: float


@dataclass(frozen=True)
class FeaturesOutcome:
    n_features: int
    by_branch: dict[str, int]
    units: int


@dataclass(frozen=True)
class TrainOutcome:
    units: int
    thresholds: dict[str, float]


@dataclass(frozen=True)
class EvaluateOutcome:
    out_of_source_macro_f1: float | None
    out_of_source_baseline_macro_f1: float | None
    macro_f1: float
    macro_f1_seed_only: float
    baseline_macro_f1: float
    micro_f1: float
    document_macro_f1: float


@dataclass(frozen=True)
class RegisterOutcome:
    name: str
    version: int
    path: str
    mlflow_run_id: str | None
    macro_f1: float


def _dump_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, ensure_ascii=False, indent=2) + "\n")


def run_ingest(ws: Workspace) -> IngestOutcome:
    raw_dir = ws.data_path(ws.cfg.data.raw)
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
    return IngestOutcome(**summary)  # type: ignore[arg-type]


@dataclass(frozen=True)
class TrainingSet:
    """The labelled units of an experiment, by kind.

    The real pool paragraphs are always loaded (when the folder exists): every experiment is
    scored on the same real units out of source; ``use_real`` says whether it also learns from
    them. The written corpus is loaded only when the experiment learns from it (it is never
    scored).
    """

    seed: list[Example]
    written: list[Example]
    real: list[Example]
    use_real: bool

    @property
    def all(self) -> list[Example]:
        return self.seed + self.written + self.real

    @property
    def train_mask(self) -> list[bool]:
        """Which of :attr:`all` the experiment learns from."""
        return [True] * (len(self.seed) + len(self.written)) + [self.use_real] * len(self.real)


def training_examples(ws: Workspace, cfg: Any = None) -> TrainingSet:
    """The labelled seed units, the written corpus (when the config, ``cfg`` or the
    workspace's, uses it) and the real labelled pool paragraphs."""
    data = (cfg or ws.cfg).data
    units = list(ingest_mod.read_units(ws.require(ws.units, "ingest")))
    gold = load_gold(ws.data_path(data.gold))
    raw = ws.data_path(data.raw)
    seed = seed_examples(units, gold, ingest_mod.doctypes(raw) if raw.is_dir() else None)
    written = load_written(ws.data_path(data.extra)) if data.use_written else []
    real = load_real(ws.data_path(data.real)) if data.real else []
    return TrainingSet(seed, written, real, data.use_real)


def labelled_fingerprints(ws: Workspace) -> set[str]:
    """The sha1 of every labelled text and every labelled id of the experiment's data (seed
    units, written corpus, real labelled corpus): the label queue never proposes them again."""
    ts = training_examples(ws)
    out = {sha1_text(e.text) for e in ts.all}
    out.update(e.id for e in ts.all)
    return out


def inner_groups(cfg: Any, examples: list[Example]) -> list[str]:
    """The groups of the threshold-tuning folds: whole sources for real units when the config
    says ``thresholds.inner_groups: source``, else articles, documents and written paragraphs."""
    if cfg.thresholds.inner_groups == "source":
        return [e.source if e.real else e.group for e in examples]
    return [e.group for e in examples]


def segmenter_of(ws: Workspace, cfg: Any = None) -> Segmenter:
    """The experiment's segmenter (or ``cfg``'s) with the workspace's dictionary and stopwords."""
    seg_cfg = (cfg or ws.cfg).segmenter
    return Segmenter(
        backend=seg_cfg.backend,
        user_words=ws.user_words(),
        stopwords=ws.stopwords(),
        hmm=seg_cfg.hmm,
    )


def run_segment(ws: Workspace, jobs: int | None = None) -> SegmentOutcome:
    ts = training_examples(ws)
    examples = ts.all
    seg = segmenter_of(ws)
    t0 = time.perf_counter()
    docs = segment_texts([e.text for e in examples], seg, jobs=jobs)
    elapsed = time.perf_counter() - t0
    lines = []
    for ex, doc, train in zip(examples, docs, ts.train_mask, strict=True):
        lines.append(
            json.dumps(
                {
                    "id": ex.id,
                    "source": ex.source,
                    "group": ex.group,
                    "doctype": ex.doctype,
                    "selected_by": ex.selected_by,
                    "train": train,
                    "labels": list(ex.labels),
                    "text": doc.text,
                    "tokens": list(doc.tokens),
                },
                ensure_ascii=False,
            )
        )
    atomic_write_text(ws.segmented, "\n".join(lines) + "\n")
    outcome = SegmentOutcome(
        units=len(examples),
        seed_units=len(ts.seed),
        written_units=len(ts.written),
        real_units=len(ts.real) if ts.use_real else 0,
        backend=seg.backend,
        dictionary_sha256=dictionary_hash(seg.backend, seg.user_words, seg.stopwords),
        user_words=len(seg.user_words),
        stopwords=len(seg.stopwords),
        seconds=round(elapsed, 2),
    )
    _dump_json(ws.segmented_meta, outcome.__dict__)
    return outcome


@dataclass
class Segmented:
    """The segment stage's output: every labelled unit, its tokens, and whether the experiment
    trains on it (``train``) or only scores it out of source."""

    examples: list[Example]
    docs: list[SegmentedDoc]
    train: list[bool]

    def training(self) -> tuple[list[Example], list[SegmentedDoc]]:
        keep = [i for i, t in enumerate(self.train) if t]
        return [self.examples[i] for i in keep], [self.docs[i] for i in keep]


def read_segmented(ws: Workspace) -> Segmented:
    path = ws.require(ws.segmented, "segment")
    examples: list[Example] = []
    docs: list[SegmentedDoc] = []
    train: list[bool] = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            try:
                o = json.loads(line)
                examples.append(
                    Example(
                        o["id"],
                        o["text"],
                        tuple(o["labels"]),
                        o["source"],
                        o["group"],
                        o.get("doctype", ""),
                        o.get("selected_by", ""),
                    )
                )
                docs.append(SegmentedDoc(o["text"], tuple(o["tokens"])))
                train.append(bool(o.get("train", True)))
            except (json.JSONDecodeError, KeyError) as exc:
                raise DataError(
                    f"{path}:{lineno}: not a segmented record", "rerun `make segment`"
                ) from exc
    return Segmented(examples, docs, train)


def run_features(ws: Workspace) -> FeaturesOutcome:
    """Fit the feature union alone to summarise the vocabulary (``vocabulary.json``).

    The model is fitted whole by the train stage; this stage is what a user reads to see which
    terms the features found per theme, and what MLflow keeps beside each run.
    """
    examples, docs = read_segmented(ws).training()
    tax = ws.taxonomy()
    Y = label_matrix(examples, tax.ids)
    union = build_head(ws.cfg, tax.ids, tax.lexicons()).named_steps["features"]
    if hasattr(union, "transformer_list"):
        summary = vocabulary_summary(union, union.fit_transform(docs, Y), Y, tax.ids)
    else:  # a classifier that reads tokens and learns its own features (fastText)
        summary = {"n_features": 0, "by_branch": {}, "top_terms": {}}
    _dump_json(ws.vocabulary, summary)
    return FeaturesOutcome(summary["n_features"], summary["by_branch"], len(examples))


def _joblib_bytes(obj: Any) -> bytes:
    import io

    buf = io.BytesIO()
    joblib.dump(obj, buf, compress=3)
    return buf.getvalue()


def run_train(ws: Workspace) -> TrainOutcome:
    """Fit the end-to-end model on the segmented units; write ``model.joblib``."""
    examples, docs = read_segmented(ws).training()
    tax = ws.taxonomy()
    Y = label_matrix(examples, tax.ids)
    for warning in check_positives(Y, tax.ids, str(ws.segmented)):
        log.warning("%s", warning)
    model = fit_model(
        ws.cfg,
        tax.ids,
        tax.lexicons(),
        segmenter_of(ws),
        docs,
        Y,
        groups=inner_groups(ws.cfg, examples),
        tune_mask=np.array([e.real for e in examples]),
    )
    atomic_write_bytes(ws.classifier, _joblib_bytes(model))
    thresholds = model.named_steps["clf"].thresholds_
    return TrainOutcome(
        units=int(Y.shape[0]),
        thresholds={t: round(float(v), 4) for t, v in zip(tax.ids, thresholds, strict=True)},
    )


def split_eval_data(
    examples: list[Example],
    docs: list[SegmentedDoc],
    themes: list[str],
    train: list[bool] | None = None,
) -> EvalData:
    """Real seed units (scored) and the other units the experiment trains on (training side
    only) for the seed-unit cross-validation."""
    train = train if train is not None else [True] * len(examples)
    seed_idx = [i for i, e in enumerate(examples) if e.source == "seed"]
    writ_idx = [i for i, e in enumerate(examples) if e.source != "seed" and train[i]]
    seed = [examples[i] for i in seed_idx]
    written = [examples[i] for i in writ_idx]
    return EvalData(
        seed_docs=[docs[i] for i in seed_idx],
        seed=seed,
        Y_seed=label_matrix(seed, themes),
        written_docs=[docs[i] for i in writ_idx],
        written=written,
        Y_written=label_matrix(written, themes) if written else np.zeros((0, len(themes)), int),
        written_real=np.array([e.real for e in written], dtype=bool),
    )


def source_data(
    cfg: Any,
    examples: list[Example],
    docs: list[Any],
    themes: list[str],
    train: list[bool] | None = None,
) -> SourceData:
    """Every labelled unit for the out-of-source evaluation; ``train`` marks the units the
    experiment may learn from (the others are only scored)."""
    return SourceData(
        docs=docs,
        Y=label_matrix(examples, themes),
        ids=[e.id for e in examples],
        texts=[e.text for e in examples],
        sources=[e.source for e in examples],
        groups=inner_groups(cfg, examples),
        doctypes=[e.doctype or "unknown" for e in examples],
        real=np.array([e.real for e in examples], dtype=bool),
        documents=[e.group for e in examples],
        usable=np.array(train if train is not None else [True] * len(examples), dtype=bool),
        queue=np.array([e.selected_by not in ("", "random") for e in examples], dtype=bool),
    )


def run_evaluate(
    ws: Workspace, learning_curve: bool = True, jobs: int | None = None
) -> EvaluateOutcome:
    tax = ws.taxonomy()
    seg = read_segmented(ws)
    examples, docs = seg.examples, seg.docs
    check_positives(
        label_matrix([e for e, t in zip(examples, seg.train, strict=True) if t], tax.ids),
        tax.ids,
        str(ws.segmented),
    )
    data = split_eval_data(examples, docs, tax.ids, seg.train)
    t0 = time.perf_counter()
    report = evaluate_experiment(
        ws.cfg, data, tax.ids, tax.lexicons(), learning_curve=learning_curve
    )
    if ws.cfg.evaluation.out_of_source:
        from pipeline.evaluate import baseline_fitter, fitter_for
        from pipeline.segment import default_jobs
        from pipeline.sources import evaluate_out_of_source

        report["out_of_source"] = evaluate_out_of_source(
            source_data(ws.cfg, examples, docs, tax.ids, seg.train),
            fitter_for(ws.cfg, tax.ids, tax.lexicons()),
            baseline_fitter(tax.lexicons()),
            tax.ids,
            learning_curve=ws.cfg.evaluation.learning_curve_real if learning_curve else (),
            queue_curve=ws.cfg.evaluation.queue_curve if learning_curve else (),
            seed=ws.cfg.seed,
            jobs=jobs or default_jobs(),
        )
    report["seconds"] = round(time.perf_counter() - t0, 1)
    _dump_json(ws.evaluation, report)
    from pipeline.report import render_report, write_plots

    atomic_write_text(ws.report, render_report(report, f"gov-topics: {ws.cfg.name}"))
    write_plots(report, ws.plots)
    oos = report.get("out_of_source")
    return EvaluateOutcome(
        out_of_source_macro_f1=oos["model"]["macro_f1"] if oos else None,
        out_of_source_baseline_macro_f1=oos["baseline"]["macro_f1"] if oos else None,
        macro_f1=report["model"]["macro_f1"]["mean"],
        macro_f1_seed_only=report["model_seed_only"]["macro_f1"]["mean"],
        baseline_macro_f1=report["baseline"]["macro_f1"]["mean"],
        micro_f1=report["model"]["micro_f1"]["mean"],
        document_macro_f1=report["model"]["document_macro_f1"]["mean"],
    )


@dataclass(frozen=True)
class VectorsOutcome:
    paragraphs: int
    words: int
    dim: int
    path: str
    seconds: float


def run_vectors(ws: Workspace) -> VectorsOutcome:
    """Train word2vec on the unlabelled pool, segmented like the training units."""
    from pipeline.vectors import pool_texts, save_vectors, train_vectors

    t0 = time.perf_counter()
    texts = pool_texts(ws.require(ws.data_path(ws.cfg.data.pool), "install"))
    docs = segment_texts(texts, segmenter_of(ws))
    words, vectors = train_vectors([d.tokens for d in docs], seed=ws.cfg.seed)
    path = ws.data_path(ws.cfg.features.vectors.path)
    save_vectors(path, words, vectors)
    return VectorsOutcome(
        len(texts), len(words), int(vectors.shape[1]), str(path), round(time.perf_counter() - t0, 1)
    )


def training_data_sha256(ws: Workspace) -> str:
    """One hash over everything the model learned from: units, gold labels, written corpus."""
    paths = [ws.units, ws.data_path(ws.cfg.data.gold)]
    if ws.cfg.data.use_written:
        paths += written_files(ws.data_path(ws.cfg.data.extra))
    if ws.cfg.data.use_real and ws.cfg.data.real:
        paths += real_files(ws.data_path(ws.cfg.data.real))
    return files_sha256(paths)


def _datasets(
    ws: Workspace, data_sha: str, seg_meta: dict[str, Any], evaluation: dict[str, Any]
) -> list[dict[str, Any]]:
    """The training and evaluation data of a run, as MLflow dataset inputs."""
    d = ws.cfg.data
    sources = [d.raw, d.gold] + ([d.extra] if d.use_written else [])
    sources += [d.real] if d.use_real and d.real else []
    oos = evaluation.get("out_of_source") or {}
    return [
        {
            "name": "labelled units",
            "digest": data_sha,
            "source": ", ".join(sources),
            "context": "training",
            "profile": {
                "seed": seg_meta["seed_units"],
                "written": seg_meta["written_units"],
                "real": seg_meta.get("real_units", 0),
            },
        },
        {
            "name": "real units, leave one source out" if oos else "seed units, grouped CV",
            "digest": data_sha,
            "source": ", ".join(sources),
            "context": "evaluation",
            "profile": {
                "units": oos.get("units", evaluation.get("data", {}).get("seed_units", 0)),
                "sources": len((oos.get("protocol") or {}).get("sources", [])),
            },
        },
    ]


def run_register(
    ws: Workspace,
    store: ModelStore,
    name: str = DEFAULT_NAME,
    track: bool = True,
    fmt: str = "pickle",
) -> RegisterOutcome:
    """Save the trained model as a new version with its manifest, and log the run to MLflow."""
    from pipeline import tracking

    model_path = ws.require(ws.classifier, "train")
    evaluation = json.loads(ws.require(ws.evaluation, "evaluate").read_text("utf-8"))
    seg_meta = json.loads(ws.require(ws.segmented_meta, "segment").read_text("utf-8"))
    tax = ws.taxonomy()
    model = joblib.load(model_path)  # loaded once: the store and MLflow both take this object
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
            datasets=_datasets(ws, data_sha, seg_meta, evaluation),
            artifacts=[
                ("", ws.evaluation),
                ("report", ws.report),
                ("features", ws.vocabulary),
                *(("plots", p) for p in sorted(ws.plots.glob("*.png"))),
            ],
            root=ws.root,
        )
    manifest = manifest_fields(
        experiment=ws.cfg.name,
        config=ws.cfg.to_dict(),
        config_sha256=ws.cfg.sha256(),
        training_data_sha256=data_sha,
        training_units={
            "seed": seg_meta["seed_units"],
            "written": seg_meta["written_units"],
            "real": seg_meta.get("real_units", 0),
        },
        themes=tax.ids,
        themes_sha256=tax.sha256,
        thresholds=model.named_steps["clf"].thresholds_,
        segmenter={
            "backend": seg_meta["backend"],
            "dictionary_sha256": seg_meta["dictionary_sha256"],
        },
        metrics=metrics,
        commit=commit,
        mlflow_run_id=run_id,
    )
    version = None
    try:
        pause_for_tests("after_run_started")
        model_uri = tracking.log_model(run_id, model_path, tax.ids, root=ws.root) if run_id else ""
        version = store.add_version(
            name,
            model_path,
            manifest,
            model,
            {"evaluation.json": ws.evaluation, "report.html": ws.report},
            fmt=fmt,
        )
        vdir = store.model_dir(name) / str(version)
        if run_id:
            tracking.log_artifact(run_id, vdir / "manifest.json", root=ws.root)
            mlflow_version = tracking.register_model(model_uri, name, version, root=ws.root)
            store.update_manifest(name, version, mlflow_model_version=mlflow_version)
            tracking.end_run(run_id, "FINISHED", root=ws.root)
    except BaseException:
        # stopped half-way (an error, Ctrl-C, SIGTERM): no store version without its MLflow
        # registration, and no run left RUNNING
        if version is not None and run_id:
            store.remove_version(name, version)
        if run_id:
            tracking.end_run(run_id, "FAILED", root=ws.root)
        raise
    out = RegisterOutcome(name, version, str(vdir), run_id, metrics["macro_f1"])
    _dump_json(ws.registered, out.__dict__)
    return out
