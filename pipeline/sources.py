"""Out-of-source evaluation: every real source scored by a model that saw nothing from it.

A *source* is where a unit comes from: the seed documents, or one public repository of the real
labelled corpus. Leave-one-source-out trains on every other source (and the written corpus, which
is never scored) and predicts the held-out source's units; pooled over all sources, the held-out
predictions of the real units give the headline macro-F1, and the same predictions split by
source and by doctype say where the model is weak. The keyword baseline runs under the same folds.

This is the figure that says how the model does on text from a province, year and genre it was
not trained on, which is what a user in another province gets.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.evaluate import Fitter, scores_of

log = logging.getLogger(__name__)


@dataclass
class SourceData:
    """All labelled units, segmented, with what evaluation needs to know about each."""

    docs: list[Any]
    Y: np.ndarray
    ids: list[str]
    texts: list[str]
    sources: list[str]  # "seed", "pool:<repo>" or "written"
    groups: list[str]  # the inner-fold groups (see thresholds.inner_groups)
    doctypes: list[str]
    real: np.ndarray  # not written
    documents: list[str]  # article or source document: subsampling keeps documents whole
    usable: np.ndarray  # units the experiment may train on (the others are only scored)
    queue: np.ndarray | None = None  # real units the label queue chose: trained on, not scored

    @property
    def scored(self) -> np.ndarray:
        """The units the figures are computed on: real units of representative (random or
        seed) selection; queue-chosen units are hard cases by design, so they train only."""
        return self.real & ~self.queue if self.queue is not None else self.real

    def held_out_sources(self) -> list[str]:
        return sorted({s for s, r in zip(self.sources, self.scored, strict=True) if r})


def leave_one_source_out(
    data: SourceData,
    fitter: Fitter,
    *,
    real_fraction: float = 1.0,
    seed: int = 0,
    jobs: int = 1,
    arm: str = "",
) -> tuple[np.ndarray, np.ndarray, float]:
    """Held-out predictions and scores for every real unit (rows of written units stay 0), and
    the mean number of real units on the training side of a fold.

    ``real_fraction`` < 1 keeps that share of each fold's real training documents (chosen at
    random with ``seed``), for the learning curve in real labelled units. ``arm`` compares the
    label queue with random selection at equal numbers of real training units: ``"queue"``
    adds every queue-chosen unit of the other sources to the subsample, ``"random"`` adds as
    many more random (representative) units instead; without an arm, queue-chosen units train
    like any other.
    """
    n, k = data.Y.shape
    P = np.zeros((n, k), dtype=int)
    S = np.zeros((n, k), dtype=float)
    folds = []
    sources = np.array(data.sources)
    for f, source in enumerate(data.held_out_sources()):
        test = np.flatnonzero((sources == source) & data.scored)
        train = np.flatnonzero((sources != source) & data.usable)
        if arm or real_fraction < 1.0:
            train = _subsample_real(data, train, real_fraction, seed + f, arm)
        folds.append((source, train, test))

    def run(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        model = fitter(
            [data.docs[i] for i in train],
            data.Y[train],
            [data.groups[i] for i in train],
            data.real[train],
        )
        docs = [data.docs[i] for i in test]
        return np.asarray(model.predict(docs)), np.asarray(model.predict_proba(docs))

    if jobs > 1 and len(folds) > 1:
        from joblib import Parallel, delayed

        results = Parallel(n_jobs=jobs)(delayed(run)(tr, te) for _, tr, te in folds)
    else:
        results = [run(tr, te) for _, tr, te in folds]
    for (source, _, test), (pred, proba) in zip(folds, results, strict=True):
        P[test], S[test] = pred, proba
        log.info("out of source: %s (%d units) scored", source, len(test))
    real_train = float(np.mean([data.real[tr].sum() for _, tr, _ in folds])) if folds else 0.0
    return P, S, real_train


def _subsample_real(
    data: SourceData, train: np.ndarray, fraction: float, seed: int, arm: str = ""
) -> np.ndarray:
    """Keep ``fraction`` of the training side's representative real documents (whole documents,
    at random), every non-real unit, and per ``arm`` the queue-chosen units or as many more
    random ones."""
    queue = data.queue if data.queue is not None else np.zeros(len(data.real), dtype=bool)
    base = [i for i in train if data.real[i] and not queue[i]]
    docs = sorted({data.documents[i] for i in base})
    rng = np.random.default_rng(seed)
    order = list(rng.permutation(len(docs)))
    n_keep = max(1, int(len(docs) * fraction))
    keep = {docs[k] for k in order[:n_keep]}
    rows = [i for i in train if not data.real[i]]
    rows += [i for i in base if data.documents[i] in keep]
    if arm == "queue":
        rows += [i for i in train if queue[i]]
    elif arm == "random":  # exactly as many more representative units as the queue would add
        extra = int(sum(queue[i] for i in train))
        rank = {docs[k]: r for r, k in enumerate(order[n_keep:])}
        rest = sorted(
            (i for i in base if data.documents[i] not in keep),
            key=lambda i: rank[data.documents[i]],
        )
        rows += rest[:extra]
    elif not arm:
        rows += [i for i in train if queue[i] and not data.real[i]]
    return np.array(sorted(rows))


def present_macro_f1(Y: np.ndarray, P: np.ndarray) -> float:
    """Macro-F1 over the themes that occur in ``Y`` (a source without rural text is not scored
    on rural); 0 when none does."""
    cols = [j for j in range(Y.shape[1]) if Y[:, j].sum() > 0]
    if not cols:
        return 0.0
    return float(scores_of(Y[:, cols], P[:, cols], [str(j) for j in cols])["macro_f1"])


def breakdown(
    data: SourceData, P: np.ndarray, B: np.ndarray, key: Sequence[str], themes: Sequence[str]
) -> dict[str, Any]:
    """Per value of ``key`` (a source or a doctype per unit): units, model and baseline
    macro-F1 over the themes present, and per-theme F1."""
    out: dict[str, Any] = {}
    real = np.flatnonzero(data.scored)
    for value in sorted({key[int(i)] for i in real}):
        rows = np.array([i for i in real if key[int(i)] == value])
        Y = data.Y[rows]
        s = scores_of(Y, P[rows], themes)
        out[value] = {
            "units": len(rows),
            "macro_f1": present_macro_f1(Y, P[rows]),
            "baseline_macro_f1": present_macro_f1(Y, B[rows]),
            "per_theme_f1": {
                t: round(s["per_theme"][t]["f1"], 4)
                for t in themes
                if s["per_theme"][t]["support"] > 0
            },
        }
    return out


def worst_by_source(
    data: SourceData,
    P: np.ndarray,
    S: np.ndarray,
    themes: Sequence[str],
    per_source: int = 3,
) -> dict[str, list[dict[str, Any]]]:
    """The units each source's held-out model got most wrong (by score distance to gold)."""
    wrong = np.abs(data.Y - S).sum(axis=1) * (data.Y != P).any(axis=1)
    out: dict[str, list[dict[str, Any]]] = {}
    for source in data.held_out_sources():
        rows = [i for i in np.argsort(-wrong) if data.sources[i] == source and wrong[i] > 0]
        out[source] = [
            {
                "id": data.ids[i],
                "text": data.texts[i],
                "gold": [t for j, t in enumerate(themes) if data.Y[i, j]],
                "predicted": [t for j, t in enumerate(themes) if P[i, j]],
                "scores": {t: round(float(S[i, j]), 3) for j, t in enumerate(themes)},
            }
            for i in rows[:per_source]
        ]
    return out


def evaluate_out_of_source(
    data: SourceData,
    model_fitter: Fitter,
    baseline_fitter: Fitter,
    themes: Sequence[str],
    *,
    learning_curve: Sequence[float] = (),
    queue_curve: Sequence[float] = (),
    seed: int = 0,
    jobs: int = 1,
) -> dict[str, Any]:
    """The out-of-source section of the evaluation report (JSON-serialisable)."""
    real = np.flatnonzero(data.scored)
    P, S, real_train = leave_one_source_out(data, model_fitter, jobs=jobs)
    B, _, _ = leave_one_source_out(data, baseline_fitter, jobs=jobs)
    model = scores_of(data.Y[real], P[real], themes)
    baseline = scores_of(data.Y[real], B[real], themes)
    report: dict[str, Any] = {
        "protocol": {
            "folds": "leave one source out",
            "sources": data.held_out_sources(),
            "scored_on": "real units of representative selection (seed units and randomly "
            "sampled pool paragraphs); queue-chosen units train only",
            "training_side": "every other source and the written corpus",
            "per_source_macro_f1": "over the themes present in that source",
        },
        "units": len(real),
        "real_training_units_per_fold": round(real_train),
        "model": model,
        "baseline": baseline,
        "gain_over_baseline": model["macro_f1"] - baseline["macro_f1"],
        "per_source": breakdown(data, P, B, data.sources, themes),
        "per_doctype": breakdown(data, P, B, data.doctypes, themes),
        "errors_per_source": worst_by_source(data, P, S, themes),
    }
    if learning_curve:
        points = []
        for frac in learning_curve:
            Pf, _, n_train = (
                (P, S, real_train)
                if frac >= 1.0
                else leave_one_source_out(
                    data, model_fitter, real_fraction=frac, seed=seed, jobs=jobs
                )
            )
            points.append(
                {
                    "fraction": frac,
                    "real_training_units": round(n_train),
                    "macro_f1": float(scores_of(data.Y[real], Pf[real], themes)["macro_f1"]),
                }
            )
        report["learning_curve_real"] = points
    if queue_curve and data.queue is not None and data.queue.any():
        report["queue_curve"] = queue_versus_random(
            data, model_fitter, themes, queue_curve, seed=seed, jobs=jobs
        )
    return report


def queue_versus_random(
    data: SourceData,
    fitter: Fitter,
    themes: Sequence[str],
    fractions: Sequence[float],
    *,
    seed: int = 0,
    jobs: int = 1,
) -> list[dict[str, Any]]:
    """Out-of-source macro-F1 at equal numbers of real training units: a random subsample plus
    the queue-chosen units, against the same subsample plus as many more random units. Same
    folds, same scored units: does the queue buy more per labelled unit?"""
    real = np.flatnonzero(data.scored)
    points = []
    for frac in fractions:
        row: dict[str, Any] = {"fraction": frac}
        for arm in ("queue", "random"):
            P, _, n = leave_one_source_out(
                data, fitter, real_fraction=frac, seed=seed, jobs=jobs, arm=arm
            )
            row[f"{arm}_real_training_units"] = round(n)
            row[f"{arm}_macro_f1"] = float(scores_of(data.Y[real], P[real], themes)["macro_f1"])
        points.append(row)
    return points
