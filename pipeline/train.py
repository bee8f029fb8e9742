"""Stage 4, train: the multi-label theme classifier and the model pipeline.

:func:`build_model` returns the *unfitted* end-to-end :class:`~sklearn.pipeline.Pipeline`
(``segment`` → ``features`` → ``clf``): raw text in, theme scores out; :func:`fit_model` fits it
with ``Pipeline.fit``. The binary classifier inside comes from :mod:`pipeline.classifiers`. :class:`ThemeClassifier`
wraps one-vs-rest binary classifiers and per-theme decision thresholds that are tuned on inner
grouped folds of the training data only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.feature_selection import SelectKBest, chi2
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold, KFold
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import Pipeline

from pipeline.classifiers import CalibratedSVC, build_estimator
from pipeline.config import ExperimentConfig
from pipeline.features import LexiconCounter, TokenText, build_features
from pipeline.segment import Segmenter

__all__ = ["CalibratedSVC", "KeywordBaseline", "ThemeClassifier", "build_model", "fit_model"]


def best_threshold(y: np.ndarray, scores: np.ndarray, default: float = 0.5) -> float:
    """The cut-off on ``scores`` that maximises F1 for one theme (midpoints between scores)."""
    if y.sum() == 0:
        return max(default, float(scores.max()) + 1e-6) if scores.size else default
    order = np.argsort(-scores)
    s = scores[order]
    t = y[order]
    tp = np.cumsum(t)
    fp = np.cumsum(1 - t)
    fn = t.sum() - tp
    f1 = 2 * tp / np.maximum(2 * tp + fp + fn, 1)
    # only cut between distinct scores
    distinct = np.r_[s[1:] < s[:-1], True]
    f1 = np.where(distinct, f1, -1)
    i = int(np.argmax(f1))
    nxt = s[i + 1] if i + 1 < len(s) else s[i] - 1e-3
    # never at or below zero (that would tag every unit, whatever its score)
    return float(max((s[i] + nxt) / 2, s[i] / 2, MIN_THRESHOLD))


MIN_THRESHOLD = 1e-6
# below these counts of labelled units a theme cannot be learnt (refused) or not reliably (warned)
MIN_POSITIVES = 3
FEW_POSITIVES = 20


def check_positives(Y: np.ndarray, themes: Sequence[str], where: str) -> list[str]:
    """Refuse to train a theme with fewer than MIN_POSITIVES labelled units; return warnings
    for themes with fewer than FEW_POSITIVES.

    >>> check_positives(np.array([[1, 0]] * 25), ["a", "b"], "x")
    Traceback (most recent call last):
    ...
    pipeline.errors.DataError: x: theme b has 0 labelled units; a model cannot learn it (label at least 3 units of b by seeds/ANNOTATION.md, or remove b from the themes file)
    """
    from pipeline.errors import DataError

    counts = np.asarray(Y).sum(axis=0)
    for t, c in zip(themes, counts, strict=True):
        if c < MIN_POSITIVES:
            raise DataError(
                f"{where}: theme {t} has {int(c)} labelled unit{'' if c == 1 else 's'}; "
                "a model cannot learn it",
                f"label at least {MIN_POSITIVES} units of {t} by seeds/ANNOTATION.md, or remove "
                f"{t} from the themes file",
            )
    return [
        f"theme {t} has only {int(c)} labelled units: its scores and threshold will be "
        f"unreliable (aim for {FEW_POSITIVES} or more)"
        for t, c in zip(themes, counts, strict=True)
        if c < FEW_POSITIVES
    ]


class ThemeClassifier(ClassifierMixin, BaseEstimator):
    """One-vs-rest classifier over themes with per-theme tuned thresholds.

    Parameters
    ----------
    estimator : estimator
        The binary classifier (needs ``predict_proba``) cloned for each theme.
    themes : sequence of str
        Theme ids, the columns of ``Y``.
    tune_thresholds : bool
        Tune one cut-off per theme on out-of-fold scores of the training data (grouped folds
        when ``groups`` are given to :meth:`fit`); otherwise use ``default_threshold``.
    inner_folds : int
    default_threshold : float
    random_state : int
    """

    def __init__(
        self,
        estimator: BaseEstimator | None = None,
        *,
        themes: Sequence[str] = (),
        tune_thresholds: bool = True,
        inner_folds: int = 3,
        default_threshold: float = 0.5,
        tune_on: str = "real",
        min_real_positives: int = 3,
        random_state: int = 0,
    ) -> None:
        self.estimator = estimator
        self.themes = themes
        self.tune_thresholds = tune_thresholds
        self.inner_folds = inner_folds
        self.default_threshold = default_threshold
        self.tune_on = tune_on
        self.min_real_positives = min_real_positives
        self.random_state = random_state

    def _ovr(self) -> OneVsRestClassifier:
        base = self.estimator if self.estimator is not None else LogisticRegression(max_iter=2000)
        return OneVsRestClassifier(clone(base))

    def fit(
        self,
        X: Any,
        Y: np.ndarray,
        groups: Sequence[Any] | None = None,
        tune_mask: Sequence[bool] | np.ndarray | None = None,
    ) -> ThemeClassifier:
        """Fit; ``tune_mask`` marks the real (not written) units, on whose out-of-fold scores the
        thresholds are tuned when ``tune_on="real"`` and a theme has at least
        ``min_real_positives`` of them; otherwise every unit is used."""
        Y = np.asarray(Y)
        if Y.ndim != 2 or Y.shape[1] != len(self.themes):
            raise ValueError(
                f"Y must have one column per theme ({len(self.themes)}), got shape {Y.shape}"
            )
        self.ovr_ = _fit_ovr(self._ovr(), X, Y)
        self.classes_ = np.arange(Y.shape[1])
        if not self.tune_thresholds:
            self.thresholds_ = np.full(Y.shape[1], self.default_threshold)
            return self
        oof = self._oof_scores(X, Y, groups)
        mask = np.asarray(tune_mask, dtype=bool) if tune_mask is not None else None
        thresholds = []
        for j in range(Y.shape[1]):
            rows = slice(None)
            if (
                self.tune_on == "real"
                and mask is not None
                and Y[mask, j].sum() >= self.min_real_positives
            ):
                rows = mask  # type: ignore[assignment]
            thresholds.append(best_threshold(Y[rows, j], oof[rows, j], self.default_threshold))
        self.thresholds_ = np.array(thresholds)
        return self

    def _oof_scores(self, X: Any, Y: np.ndarray, groups: Sequence[Any] | None) -> np.ndarray:
        n = Y.shape[0]
        oof = np.zeros(Y.shape, dtype=float)
        if groups is not None and len(set(groups)) >= self.inner_folds:
            splitter: Any = GroupKFold(
                n_splits=self.inner_folds, shuffle=True, random_state=self.random_state
            )
            splits = splitter.split(np.zeros(n), groups=groups)
        else:
            splits = KFold(self.inner_folds, shuffle=True, random_state=self.random_state).split(
                np.zeros(n)
            )
        for tr, te in splits:
            model = _fit_ovr(self._ovr(), X[tr], Y[tr])
            oof[te] = _proba(model, X[te])
        return oof

    def predict_proba(self, X: Any) -> np.ndarray:
        """Theme scores, one column per theme (``themes`` order)."""
        return _proba(self.ovr_, X)

    def decide(self, proba: np.ndarray) -> np.ndarray:
        """Apply the per-theme thresholds to scores."""
        return (proba >= self.thresholds_).astype(int)

    def predict(self, X: Any) -> np.ndarray:
        return self.decide(self.predict_proba(X))


def _fit_ovr(ovr: OneVsRestClassifier, X: Any, Y: np.ndarray) -> OneVsRestClassifier:
    import warnings

    with warnings.catch_warnings():
        # a theme with no positive unit in a small fold is expected: it gets a constant score
        warnings.filterwarnings("ignore", message="Label .* is present in all training examples")
        warnings.filterwarnings("ignore", message="Label not .* is present in all training")
        return ovr.fit(X, Y)


def _proba(ovr: OneVsRestClassifier, X: Any) -> np.ndarray:
    p = np.asarray(ovr.predict_proba(X), dtype=float)
    if not ovr.multilabel_ and p.shape[1] == 2:
        # a one-theme taxonomy: OvR saw a binary target and returns both classes' columns
        return p[:, 1:]
    return p


class KeywordBaseline(ClassifierMixin, BaseEstimator):
    """The lexicon as rules: a theme applies when at least *k* of its terms occur.

    *k* is tuned per theme on the training data, like the model's thresholds, so the comparison
    is fair. Scores are the term counts squashed to [0, 1) by ``c / (c + 1)``.
    """

    def __init__(
        self, *, lexicons: Mapping[str, Sequence[str]] | None = None, max_k: int = 4
    ) -> None:
        self.lexicons = lexicons
        self.max_k = max_k

    def fit(self, X: Sequence[Any], Y: np.ndarray, groups: Any = None) -> KeywordBaseline:
        self.counter_ = LexiconCounter(lexicons=self.lexicons, scale="linear").fit()
        counts = self.counter_.counts(X)
        Y = np.asarray(Y)
        ks = []
        for j in range(Y.shape[1]):
            best_k, best_f1 = 1, -1.0
            for k in range(1, self.max_k + 1):
                pred = counts[:, j] >= k
                tp = float((pred & (Y[:, j] == 1)).sum())
                denom = float(pred.sum() + Y[:, j].sum())
                f1 = 2 * tp / denom if denom else 0.0
                if f1 > best_f1:
                    best_k, best_f1 = k, f1
            ks.append(best_k)
        self.k_ = np.array(ks)
        self.thresholds_ = (self.k_ - 0.5) / (self.k_ + 0.5)
        self.classes_ = np.arange(Y.shape[1])
        return self

    def predict_proba(self, X: Sequence[Any]) -> np.ndarray:
        c = self.counter_.counts(X)
        return c / (c + 1.0)

    def predict(self, X: Sequence[Any]) -> np.ndarray:
        return (self.counter_.counts(X) >= self.k_).astype(int)


def build_head(
    cfg: ExperimentConfig, themes: Sequence[str], lexicons: Mapping[str, Sequence[str]]
) -> Pipeline:
    """Features and classifier: the part of the model that runs on segmented documents."""
    from pipeline.classifiers import kind

    if kind(cfg.classifier.kind).input == "tokens":
        features: Any = TokenText()
    else:
        features = build_features(cfg.features, lexicons)
    steps: list[tuple[str, Any]] = [("features", features)]
    if cfg.features.chi2_k and not isinstance(features, TokenText):
        steps.append(("select", _MultiLabelChi2(k=cfg.features.chi2_k)))
    steps.append(
        (
            "clf",
            ThemeClassifier(
                build_estimator(cfg.classifier.kind, cfg.classifier.params, cfg.seed),
                themes=tuple(themes),
                tune_thresholds=cfg.thresholds.tune,
                inner_folds=cfg.thresholds.inner_folds,
                default_threshold=cfg.thresholds.default,
                tune_on=cfg.thresholds.tune_on,
                random_state=cfg.seed,
            ),
        )
    )
    return Pipeline(steps)


def build_model(
    cfg: ExperimentConfig,
    themes: Sequence[str],
    lexicons: Mapping[str, Sequence[str]],
    segmenter: Segmenter,
) -> Pipeline:
    """The unfitted end-to-end model: ``segment`` → ``features`` (→ ``select``) → ``clf``."""
    return Pipeline([("segment", segmenter), *build_head(cfg, themes, lexicons).steps])


class _MultiLabelChi2(SelectKBest):
    """chi² selection for multi-label targets: a feature's score is its best over themes."""

    def __init__(self, k: int = 20000) -> None:
        super().__init__(score_func=chi2, k=k)

    def fit(self, X: Any, y: Any = None, **kw: Any) -> _MultiLabelChi2:
        Y = np.asarray(y)
        scores = np.zeros(X.shape[1])
        for j in range(Y.shape[1]):
            s, _ = chi2(X, Y[:, j])
            scores = np.maximum(scores, np.nan_to_num(s))
        self.scores_ = scores
        self.pvalues_ = np.zeros_like(scores)
        self.n_features_in_ = X.shape[1]
        return self

    def _get_support_mask(self) -> np.ndarray:
        k = min(self.k if isinstance(self.k, int) else self.n_features_in_, len(self.scores_))
        mask = np.zeros(len(self.scores_), dtype=bool)
        mask[np.argsort(-self.scores_, kind="stable")[:k]] = True
        return mask


def fit_head(
    head: Pipeline,
    docs: Sequence[Any],
    Y: np.ndarray,
    groups: Sequence[Any],
    tune_mask: Sequence[bool] | np.ndarray | None = None,
) -> Pipeline:
    """Fit a head pipeline (``Pipeline.fit``), routing ``groups`` and ``tune_mask`` to the
    classifier step, whose threshold tuning needs them."""
    return head.fit(docs, Y, clf__groups=list(groups), clf__tune_mask=tune_mask)


def fit_model(
    cfg: ExperimentConfig,
    themes: Sequence[str],
    lexicons: Mapping[str, Sequence[str]],
    segmenter: Segmenter,
    docs: Sequence[Any],
    Y: np.ndarray,
    groups: Sequence[Any],
    tune_mask: Sequence[bool] | np.ndarray | None = None,
) -> Pipeline:
    """Fit the end-to-end model: raw text in, theme scores out.

    ``docs`` are the training units already segmented by ``segmenter`` (the segment stage's
    output), so the head is fitted on them directly; the segmenter, which learns nothing, becomes
    the model's first step and segments raw text the same way at prediction time.
    """
    from pipeline.evidence import domain_terms, evidence_mask, theme_specific
    from pipeline.predict import feature_terms

    model = build_model(cfg, themes, lexicons, segmenter)
    fit_head(model[1:], docs, Y, groups, tune_mask)  # a slice shares the model's fitted steps
    model.named_steps["segment"].fit()
    clf = model.named_steps["clf"]
    if hasattr(model.named_steps["features"], "transformer_list"):  # terms to explain with
        domain = domain_terms(lexicons, segmenter.user_words)
        clf.evidence_mask_ = evidence_mask(feature_terms(model), domain)
        clf.evidence_themes_ = theme_specific(model[1:-1].transform(docs), Y)
    return model
