"""Stage 5, evaluate: honest, repeated grouped cross-validation on the real seed units.

Folds are made of whole articles (never one article's paragraphs on both sides). Written units
are always on the training side, and every figure is computed on real seed units only. The same
folds score three things, so they can be compared: the model trained with the written corpus,
the model trained on the seed units alone, and the keyword baseline.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.metrics import f1_score, precision_recall_curve, precision_recall_fscore_support
from sklearn.model_selection import GroupKFold

from pipeline.config import ExperimentConfig
from pipeline.labels import Example
from pipeline.segment import SegmentedDoc
from pipeline.train import KeywordBaseline, build_head, fit_head

log = logging.getLogger(__name__)


@dataclass
class EvalData:
    """Segmented, labelled data for evaluation."""

    seed_docs: list[SegmentedDoc]
    seed: list[Example]
    Y_seed: np.ndarray
    written_docs: list[SegmentedDoc]  # every unit on the training side only (written, and
    written: list[Example]  # real pool paragraphs when the experiment uses them)
    Y_written: np.ndarray
    written_real: np.ndarray | None = None  # which of those are real text


def grouped_folds(
    groups: Sequence[str], folds: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Shuffled grouped K-fold splits (fixed seed) over the seed units."""
    n_groups = len(set(groups))
    k = min(folds, n_groups)
    splitter = GroupKFold(n_splits=k, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(groups)), groups=list(groups)))


def scores_of(Y: np.ndarray, P: np.ndarray, themes: Sequence[str]) -> dict[str, Any]:
    """Macro/micro F1 and per-theme precision, recall, F1 and support."""
    p, r, f, s = precision_recall_fscore_support(Y, P, average=None, zero_division=0)
    fp = ((P == 1) & (Y == 0)).sum(axis=0)
    fn = ((P == 0) & (Y == 1)).sum(axis=0)
    return {
        "macro_f1": float(f1_score(Y, P, average="macro", zero_division=0)),
        "micro_f1": float(f1_score(Y, P, average="micro", zero_division=0)),
        "per_theme": {
            t: {
                "precision": float(p[j]),
                "recall": float(r[j]),
                "f1": float(f[j]),
                "support": int(s[j]),
                "false_positives": int(fp[j]),
                "false_negatives": int(fn[j]),
            }
            for j, t in enumerate(themes)
        },
    }


def document_scores(
    Y: np.ndarray, P: np.ndarray, groups: Sequence[str], themes: Sequence[str]
) -> dict[str, Any]:
    """Document-level F1: an article's themes are the union of its paragraphs' themes."""
    order = sorted(set(groups))
    idx = {g: i for i, g in enumerate(order)}
    Yd = np.zeros((len(order), Y.shape[1]), dtype=int)
    Pd = np.zeros_like(Yd)
    for i, g in enumerate(groups):
        Yd[idx[g]] |= Y[i]
        Pd[idx[g]] |= P[i]
    out = scores_of(Yd, Pd, themes)
    out["documents"] = len(order)
    return out


def _summary(values: Sequence[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=float)
    return {"mean": float(a.mean()), "std": float(a.std()), "median": float(np.median(a))}


# (documents, labels, groups, mask of real units) -> a fitted model
Fitter = Callable[[list[SegmentedDoc], np.ndarray, list[str], np.ndarray], Any]


def cross_validate(
    data: EvalData,
    make_and_fit: Fitter,
    themes: Sequence[str],
    *,
    folds: int,
    repeats: int,
    seed: int,
    use_written: bool,
    train_fraction: float = 1.0,
    seed_fraction: float = 1.0,
) -> dict[str, Any]:
    """Run repeated grouped CV; return per-repeat metrics and the first repeat's predictions."""
    groups = [e.group for e in data.seed]
    runs: list[dict[str, Any]] = []
    first: dict[str, np.ndarray] = {}
    choices: list[dict[str, Any]] = []
    for r in range(repeats):
        P = np.zeros_like(data.Y_seed)
        S = np.zeros(data.Y_seed.shape, dtype=float)
        rng = np.random.default_rng(seed + 1000 + r)
        for tr, te in grouped_folds(groups, folds, seed + r):
            if seed_fraction < 1.0:
                tr_groups = sorted({groups[i] for i in tr})
                n_keep = max(2, int(len(tr_groups) * seed_fraction))
                keep_g = set(rng.choice(tr_groups, n_keep, replace=False))
                tr = np.array([i for i in tr if groups[i] in keep_g])
            docs = [data.seed_docs[i] for i in tr]
            Y = data.Y_seed[tr]
            grp = [groups[i] for i in tr]
            real = np.ones(len(tr), dtype=bool)
            if use_written and data.written:
                docs = docs + data.written_docs
                Y = np.vstack([Y, data.Y_written])
                grp = grp + [e.group for e in data.written]
                extra_real = (
                    data.written_real
                    if data.written_real is not None
                    else np.zeros(len(data.written), dtype=bool)
                )
                real = np.r_[real, extra_real]
            if train_fraction < 1.0:
                keep = np.sort(
                    rng.choice(len(docs), max(8, int(len(docs) * train_fraction)), replace=False)
                )
                docs = [docs[i] for i in keep]
                Y = Y[keep]
                grp = [grp[i] for i in keep]
                real = real[keep]
            model = make_and_fit(docs, Y, grp, real)
            if hasattr(model, "search_choice_"):
                choices.append(model.search_choice_)
            test = [data.seed_docs[i] for i in te]
            proba = model.predict_proba(test) if hasattr(model, "predict_proba") else None
            P[te] = model.predict(test)
            if proba is not None:
                S[te] = proba
        unit = scores_of(data.Y_seed, P, themes)
        unit["document"] = document_scores(data.Y_seed, P, groups, themes)
        runs.append(unit)
        if r == 0:
            first = {"pred": P, "scores": S}
    macro = [x["macro_f1"] for x in runs]
    micro = [x["micro_f1"] for x in runs]
    doc_macro = [x["document"]["macro_f1"] for x in runs]
    per_theme = {
        t: {
            k: float(np.mean([x["per_theme"][t][k] for x in runs]))
            for k in ("precision", "recall", "f1", "false_positives", "false_negatives")
        }
        | {"support": runs[0]["per_theme"][t]["support"]}
        for t in themes
    }
    return {
        "macro_f1": _summary(macro),
        "micro_f1": _summary(micro),
        "document_macro_f1": _summary(doc_macro),
        "per_theme": per_theme,
        "repeats": macro,
        "search_choices": choices,
        "_first": first,
    }


def model_fitter(
    cfg: ExperimentConfig, themes: Sequence[str], lexicons: dict[str, tuple[str, ...]]
) -> Fitter:
    template = build_head(cfg, themes, lexicons)

    def fit(docs: list[SegmentedDoc], Y: np.ndarray, groups: list[str], real: np.ndarray) -> Any:
        return fit_head(clone(template), docs, Y, groups, real)

    return fit


def search_grid(search: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the search space's values."""
    import itertools

    keys = sorted(search)
    return [
        dict(zip(keys, vals, strict=True)) for vals in itertools.product(*(search[k] for k in keys))
    ]


def search_fitter(
    cfg: ExperimentConfig, themes: Sequence[str], lexicons: dict[str, tuple[str, ...]]
) -> Fitter:
    """Nested hyper-parameter search: on the training side only, pick the grid point with the
    best macro average precision over inner grouped folds (threshold-free, so cheap and stable),
    then fit it, thresholds tuned, on the whole training side."""
    from sklearn.metrics import average_precision_score

    from pipeline.config import with_override

    candidates = []
    for point in search_grid(cfg.search):
        c = cfg
        for k, v in point.items():
            c = with_override(c, k, v)
        candidates.append((point, c))

    def fit(docs: list[SegmentedDoc], Y: np.ndarray, groups: list[str], real: np.ndarray) -> Any:
        k = min(cfg.thresholds.inner_folds, len(set(groups)))
        splitter = GroupKFold(n_splits=k, shuffle=True, random_state=cfg.seed)
        splits = list(splitter.split(np.zeros(len(docs)), groups=groups))
        best = (-1.0, 0)
        for ci, (_point, c) in enumerate(candidates):
            quick = with_override(c, "thresholds.tune", False)
            scores = []
            for tr, te in splits:
                head = fit_head(
                    build_head(quick, themes, lexicons),
                    [docs[i] for i in tr],
                    Y[tr],
                    [groups[i] for i in tr],
                )
                P = head.predict_proba([docs[i] for i in te])
                cols = [j for j in range(Y.shape[1]) if Y[te, j].sum() > 0]
                scores.append(np.mean([average_precision_score(Y[te, j], P[:, j]) for j in cols]))
            if float(np.mean(scores)) > best[0]:
                best = (float(np.mean(scores)), ci)
        point, chosen = candidates[best[1]]
        model = fit_head(build_head(chosen, themes, lexicons), docs, Y, groups, real)
        model.search_choice_ = point
        return model

    return fit


def fitter_for(
    cfg: ExperimentConfig, themes: Sequence[str], lexicons: dict[str, tuple[str, ...]]
) -> Fitter:
    """The nested search when the experiment has a search space, else the plain model."""
    return (
        search_fitter(cfg, themes, lexicons) if cfg.search else model_fitter(cfg, themes, lexicons)
    )


def baseline_fitter(lexicons: dict[str, tuple[str, ...]]) -> Fitter:
    def fit(docs: list[SegmentedDoc], Y: np.ndarray, groups: list[str], real: np.ndarray) -> Any:
        return KeywordBaseline(lexicons=lexicons).fit(docs, Y)

    return fit


def evaluate_experiment(
    cfg: ExperimentConfig,
    data: EvalData,
    themes: Sequence[str],
    lexicons: dict[str, tuple[str, ...]],
    *,
    learning_curve: bool = True,
) -> dict[str, Any]:
    """The full evaluation report of one experiment (a JSON-serialisable dict)."""
    ev = cfg.evaluation
    common = {"folds": ev.folds, "repeats": ev.repeats, "seed": cfg.seed}
    extra = bool(data.written)  # units on the training side only (written, real pool paragraphs)
    log.info("cross-validating the model (with %d training-side units)", len(data.written))
    model = cross_validate(
        data,
        fitter_for(cfg, themes, lexicons),
        themes,
        use_written=extra,
        **common,
    )
    log.info("cross-validating the model on seed units only")
    seed_only = (
        cross_validate(data, fitter_for(cfg, themes, lexicons), themes, use_written=False, **common)
        if extra
        else model
    )
    log.info("cross-validating the keyword baseline")
    baseline = cross_validate(data, baseline_fitter(lexicons), themes, use_written=extra, **common)
    first = model.pop("_first")
    seed_only.pop("_first", None)
    baseline.pop("_first", None)
    report: dict[str, Any] = {
        "experiment": cfg.name,
        "protocol": {
            **common,
            "grouping": "article (document:article)",
            "scored_on": "real seed units only",
            "written_units_on_training_side": extra,
            "threshold_tuning": "per theme, inner grouped folds of the training side only"
            if cfg.thresholds.tune
            else f"fixed {cfg.thresholds.default}",
        },
        "data": {
            "seed_units": len(data.seed),
            "seed_articles": len({e.group for e in data.seed}),
            "written_units": len(data.written),
        },
        "themes": list(themes),
        "model": model,
        "model_seed_only": seed_only,
        "baseline": baseline,
        "gain_over_baseline": model["macro_f1"]["mean"] - baseline["macro_f1"]["mean"],
        "written_corpus_effect": model["macro_f1"]["mean"] - seed_only["macro_f1"]["mean"],
    }
    report["errors"] = worst_errors(data, first["pred"], first["scores"], themes)
    report["pr_curves"] = pr_curves(data.Y_seed, first["scores"], themes)
    if model["search_choices"]:
        report["search"] = model["search_choices"]
    if learning_curve and ev.learning_curve:
        # the full-data point is the model's first repeat (same folds, same fitter) unless a
        # nested search chose the model's parameters
        full = None if cfg.search else model
        report["learning_curve"] = learning_curve_points(cfg, data, themes, lexicons, full=full)
        if extra:
            report["learning_curve_seed"] = learning_curve_points(
                cfg, data, themes, lexicons, vary="seed", full=full
            )
    return report


def worst_errors(
    data: EvalData, P: np.ndarray, S: np.ndarray, themes: Sequence[str], n: int = 20
) -> list[dict[str, Any]]:
    """The units the model got most wrong (by total score distance to the gold labels)."""
    wrong = np.abs(data.Y_seed - S).sum(axis=1) * (data.Y_seed != P).any(axis=1)
    order = np.argsort(-wrong)[:n]
    out = []
    for i in order:
        if wrong[i] <= 0:
            break
        ex = data.seed[i]
        out.append(
            {
                "id": ex.id,
                "text": ex.text,
                "gold": [t for j, t in enumerate(themes) if data.Y_seed[i, j]],
                "predicted": [t for j, t in enumerate(themes) if P[i, j]],
                "scores": {t: round(float(S[i, j]), 3) for j, t in enumerate(themes)},
            }
        )
    return out


def pr_curves(Y: np.ndarray, S: np.ndarray, themes: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for j, t in enumerate(themes):
        if Y[:, j].sum() == 0:
            continue
        p, r, _ = precision_recall_curve(Y[:, j], S[:, j])
        out[t] = {
            "precision": [round(float(x), 4) for x in p],
            "recall": [round(float(x), 4) for x in r],
        }
    return out


def learning_curve_points(
    cfg: ExperimentConfig,
    data: EvalData,
    themes: Sequence[str],
    lexicons: dict[str, tuple[str, ...]],
    vary: str = "all",
    full: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Macro-F1 against the number of labelled training units (same folds, one repeat each).

    ``vary="all"`` subsamples every training unit; ``vary="seed"`` subsamples only the real seed
    articles on the training side and keeps the written corpus whole, which shows what more
    *real* labelled text would buy. ``full``, the model's own cross-validation result, supplies
    the point at fraction 1.0 (its first repeat is that very computation), saving its fits.
    """
    points = []
    n_seed = int(len(data.seed) * (1 - 1 / cfg.evaluation.folds))
    n_written = len(data.written)
    for frac in cfg.evaluation.learning_curve:
        if frac >= 1.0 and full is not None:
            f1 = float(full["repeats"][0])
        else:
            f1 = cross_validate(
                data,
                model_fitter(cfg, themes, lexicons),
                themes,
                folds=cfg.evaluation.folds,
                repeats=1,
                seed=cfg.seed,
                use_written=bool(data.written),
                train_fraction=frac if vary == "all" else 1.0,
                seed_fraction=frac if vary == "seed" else 1.0,
            )["macro_f1"]["mean"]
        units = (
            int((n_seed + n_written) * frac) if vary == "all" else int(n_seed * frac) + n_written
        )
        points.append(
            {
                "fraction": frac,
                "train_units": units,
                "seed_units": int(n_seed * frac) if vary == "seed" else None,
                "macro_f1": f1,
            }
        )
    return points
