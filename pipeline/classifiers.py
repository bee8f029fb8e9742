"""Classifier kinds: the one place a binary classifier is declared.

A kind is what ``classifier.kind`` in an experiment file names. Each :class:`ClassifierKind`
says how to build the per-theme binary estimator from the experiment's ``classifier.params``,
how to read its linear coefficients (for the evidence terms of a prediction), which types a saved
model of this kind contains (the skops allow-list of the model store) and which packages it
needs beyond the core (the MLflow model's requirements). The config, the trainer, the predictor,
the store and the tracker all read this table, so adding a classifier means adding one entry here
and one experiment file.

Examples
--------
>>> sorted(KINDS)
['complement_nb', 'fasttext', 'linear_svc', 'logreg', 'ridge', 'sgd']
>>> build_estimator("logreg", {"C": 2.0}, seed=0)
LogisticRegression(C=2.0, max_iter=2000, random_state=0, solver='liblinear')
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression, RidgeClassifier, SGDClassifier
from sklearn.naive_bayes import ComplementNB
from sklearn.svm import LinearSVC

from pipeline.errors import ConfigError


@dataclass(frozen=True)
class ClassifierKind:
    """One classifier an experiment may name.

    Parameters
    ----------
    name : str
        The ``classifier.kind`` value.
    build : callable
        ``build(params, seed) -> estimator``: the unfitted binary estimator (it must have
        ``predict_proba``); ``params`` is a copy of the experiment's ``classifier.params``.
    coef : callable
        ``coef(fitted_estimator) -> array or None``: the linear coefficients, one per feature,
        used to explain predictions (``None`` when the model is not linear).
    types : tuple of str
        Fully qualified names of the types a fitted estimator of this kind holds, beyond the
        project's own pipeline types: the skops allow-list, exact names, no prefixes.
    requirements : tuple of str
        Extra pip requirements of a saved model of this kind.
    input : {"features", "tokens"}
        What the estimator reads: the experiment's feature union (TF-IDF, lexicon, vectors), or
        each unit's tokens as one space-separated string (a model with its own text features).
    """

    name: str
    build: Callable[[dict[str, Any], int], BaseEstimator]
    coef: Callable[[Any], np.ndarray | None]
    types: tuple[str, ...] = ()
    requirements: tuple[str, ...] = ()
    input: str = "features"


def plain_coef(estimator: Any) -> np.ndarray | None:
    """``coef_`` of a fitted linear binary classifier, as one row."""
    coef = getattr(estimator, "coef_", None)
    return None if coef is None else np.asarray(coef).ravel()


def calibrated_coef(estimator: Any) -> np.ndarray | None:
    """Coefficients of a :class:`CalibratedLinear` (averaged over its calibration folds)."""
    inner = getattr(estimator, "model_", estimator)
    cals = getattr(inner, "calibrated_classifiers_", None)
    if cals:
        coefs = [plain_coef(c.estimator) for c in cals]
        if all(c is not None for c in coefs):
            return np.mean(np.vstack(coefs), axis=0)  # type: ignore[arg-type]
        return None
    return plain_coef(inner)  # the fallback for a thin theme


class CalibratedLinear(ClassifierMixin, BaseEstimator):
    """A linear margin classifier with calibrated probabilities that survives thin themes.

    Calibrates with ``min(cv, positives, negatives)`` folds; a theme with fewer than 2 positive
    (or negative) units falls back to a balanced logistic regression, which needs no calibration.
    Subclasses name the margin classifier in :meth:`_base`.
    """

    def __init__(
        self,
        *,
        svc_params: dict[str, Any] | None = None,
        method: str = "sigmoid",
        cv: int = 3,
        random_state: int = 0,
    ) -> None:
        self.svc_params = svc_params
        self.method = method
        self.cv = cv
        self.random_state = random_state

    def _base(self) -> BaseEstimator:
        raise NotImplementedError

    def fit(self, X: Any, y: Any) -> CalibratedLinear:
        y = np.asarray(y)
        self.classes_ = np.unique(y)
        k = min(self.cv, int(np.bincount(y.astype(int)).min())) if len(self.classes_) == 2 else 0
        if k >= 2:
            self.model_ = CalibratedClassifierCV(self._base(), method=self.method, cv=k).fit(X, y)
        else:
            self.model_ = LogisticRegression(
                class_weight="balanced", max_iter=2000, solver="liblinear"
            ).fit(X, y)
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        return np.asarray(self.model_.predict_proba(X))

    def predict(self, X: Any) -> np.ndarray:
        return np.asarray(self.model_.predict(X))


class CalibratedSVC(CalibratedLinear):
    """A linear SVM (``LinearSVC``) with calibrated probabilities; see :class:`CalibratedLinear`."""

    def _base(self) -> BaseEstimator:
        return LinearSVC(random_state=self.random_state, **(self.svc_params or {}))


class CalibratedRidge(CalibratedLinear):
    """A ridge classifier with calibrated probabilities; see :class:`CalibratedLinear`.

    ``svc_params`` are :class:`~sklearn.linear_model.RidgeClassifier`'s parameters.
    """

    def _base(self) -> BaseEstimator:
        return RidgeClassifier(random_state=self.random_state, **(self.svc_params or {}))


class FastTextBinary(ClassifierMixin, BaseEstimator):
    """fastText's supervised classifier for one theme, on token strings.

    fastText learns its own word and word-n-gram embeddings from the labelled text (Joulin et
    al., "Bag of Tricks for Efficient Text Classification"): the usual peer of a linear TF-IDF
    model. Single-threaded with a fixed seed, so a fit is reproducible. The trained model is kept
    as bytes (``model_bytes_``), so it pickles with the pipeline.
    """

    def __init__(
        self,
        *,
        epoch: int = 25,
        lr: float = 0.5,
        dim: int = 50,
        word_ngrams: int = 2,
        min_count: int = 1,
        bucket: int = 50000,
        random_state: int = 0,
    ) -> None:
        self.bucket = bucket
        self.epoch = epoch
        self.lr = lr
        self.dim = dim
        self.word_ngrams = word_ngrams
        self.min_count = min_count
        self.random_state = random_state

    def fit(self, X: Any, y: Any) -> FastTextBinary:
        import os
        import tempfile

        y = np.asarray(y).astype(int)
        self.classes_ = np.unique(y)
        self.prior_: float | None = None
        with tempfile.TemporaryDirectory() as tmp:
            train = os.path.join(tmp, "train.txt")
            with open(train, "w", encoding="utf-8") as fh:
                for text, label in zip(X, y, strict=True):
                    fh.write(f"__label__{label} {_one_line(text)}\n")
            lr = self.lr
            while True:
                model_bytes = _train_fasttext_in_fresh_process(train, self._args(lr))
                if model_bytes is not None:
                    break
                if lr < self.lr / 16:  # it never converged: predict the theme's prevalence
                    self.lr_used_ = 0.0
                    self.prior_ = float(y.mean())
                    self.model_bytes_ = b""
                    return self
                lr /= 2  # "Encountered NaN": the rate diverged on this data
        self.lr_used_ = lr
        self.model_bytes_ = model_bytes
        return self

    def _args(self, lr: float) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "lr": lr,
            "dim": self.dim,
            "wordNgrams": self.word_ngrams,
            "minCount": self.min_count,
            "bucket": self.bucket,  # hashed word n-grams: fastText's 2M default is 400 MB
            "thread": 1,
            "seed": self.random_state,
            "verbose": 0,
        }

    def _loaded(self) -> Any:
        model = self.__dict__.get("_model")
        if model is None:
            import os
            import tempfile

            import fasttext

            with tempfile.TemporaryDirectory() as tmp:
                path = os.path.join(tmp, "model.bin")
                with open(path, "wb") as fh:
                    fh.write(self.model_bytes_)
                model = self.__dict__["_model"] = fasttext.load_model(path)
        return model

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_model", None)
        return state

    def predict_proba(self, X: Any) -> np.ndarray:
        texts = [_one_line(t) for t in X]
        p1 = np.zeros(len(texts))
        if getattr(self, "prior_", None) is not None:
            p1[:] = self.prior_
        elif texts:
            labels, probs = self._loaded().predict(texts, k=2)
            for i, (ls, ps) in enumerate(zip(labels, probs, strict=True)):
                p1[i] = dict(zip(ls, ps, strict=True)).get("__label__1", 0.0)
        p1 = np.clip(p1, 0.0, 1.0)
        return np.column_stack([1.0 - p1, p1])

    def predict(self, X: Any) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)


def _train_fasttext_in_fresh_process(train: str, args: dict[str, Any]) -> bytes | None:
    """Train one fastText model in a fresh interpreter; its saved bytes, or None if it diverged.

    fasttext-numpy2 0.10.4 is not safe to train twice in one process: on repeated calls with the
    same data, seed and single thread, 2 of 8 stopped at once with "Encountered NaN" and 1 of 6
    returned a different model, while every first call in a fresh process gave the same model.
    So each fit runs in its own ``python -c`` (a clean heap; no fork of this one, no re-import of
    the caller's main module), at about 0.3 s per fit.
    """
    import json
    import subprocess
    import sys

    out = train + ".bin"
    proc = subprocess.run(
        [sys.executable, "-c", _FASTTEXT_FIT, train, json.dumps(args), out],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode == 3:  # diverged
        return None
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        raise RuntimeError(f"fastText training failed: {tail}")
    with open(out, "rb") as fh:
        return fh.read()


_FASTTEXT_FIT = """
import json, sys
import fasttext
train, args, out = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
try:
    model = fasttext.train_supervised(input=train, **args)
except RuntimeError as exc:
    if "NaN" in str(exc):
        sys.exit(3)
    raise
model.save_model(out)
"""


def _one_line(text: Any) -> str:
    return str(text).replace("\n", " ")


def _logreg(params: dict[str, Any], seed: int) -> BaseEstimator:
    params.setdefault("max_iter", 2000)
    params.setdefault("solver", "liblinear")
    params.setdefault("C", 4.0)
    return LogisticRegression(random_state=seed, **params)


def _calibrated(cls: type[CalibratedLinear], base: type[BaseEstimator]) -> Callable[..., Any]:
    def build(params: dict[str, Any], seed: int) -> BaseEstimator:
        method = params.pop("calibration", "sigmoid")
        base(**params)  # reject unknown parameters now, with the config's name
        return cls(svc_params=params, method=method, random_state=seed)

    return build


def _sgd(params: dict[str, Any], seed: int) -> BaseEstimator:
    params.setdefault("loss", "modified_huber")
    return SGDClassifier(random_state=seed, **params)


_CALIBRATION = (
    "sklearn.calibration.CalibratedClassifierCV",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.isotonic.IsotonicRegression",
    "sklearn.linear_model._logistic.LogisticRegression",  # the thin-theme fallback
)

KINDS: Mapping[str, ClassifierKind] = {
    k.name: k
    for k in (
        ClassifierKind(
            "logreg", _logreg, plain_coef, ("sklearn.linear_model._logistic.LogisticRegression",)
        ),
        ClassifierKind(
            "linear_svc",
            _calibrated(CalibratedSVC, LinearSVC),
            calibrated_coef,
            ("pipeline.classifiers.CalibratedSVC", "sklearn.svm._classes.LinearSVC", *_CALIBRATION),
        ),
        ClassifierKind(
            "ridge",
            _calibrated(CalibratedRidge, RidgeClassifier),
            calibrated_coef,
            (
                "pipeline.classifiers.CalibratedRidge",
                "sklearn.linear_model._ridge.RidgeClassifier",
                *_CALIBRATION,
            ),
        ),
        ClassifierKind(
            "complement_nb",
            lambda params, seed: ComplementNB(**params),
            lambda est: None,
            ("sklearn.naive_bayes.ComplementNB",),
        ),
        ClassifierKind(
            "fasttext",
            lambda params, seed: FastTextBinary(random_state=seed, **params),
            lambda est: None,
            ("pipeline.classifiers.FastTextBinary",),
            requirements=("fasttext-numpy2",),
            input="tokens",
        ),
        ClassifierKind(
            "sgd",
            _sgd,
            plain_coef,
            (
                "sklearn.linear_model._stochastic_gradient.SGDClassifier",
                "sklearn.linear_model._sgd_fast.ModifiedHuber",
                "sklearn.linear_model._sgd_fast.Hinge",
                "sklearn.linear_model._sgd_fast.Log",
            ),
        ),
    )
}


def kind(name: str) -> ClassifierKind:
    """The classifier kind called ``name``."""
    try:
        return KINDS[name]
    except KeyError:
        raise ConfigError(
            f"classifier.kind {name!r} is not known", f"choose one of {sorted(KINDS)}"
        ) from None


def build_estimator(name: str, params: Mapping[str, Any], seed: int) -> BaseEstimator:
    """The unfitted binary estimator of kind ``name`` with the experiment's parameters."""
    k = kind(name)
    try:
        return k.build(dict(params), seed)
    except TypeError as exc:
        raise ConfigError(
            f"classifier.params {dict(params)} do not fit {name}: {exc}",
            "check the parameter names in scikit-learn's documentation",
        ) from exc


def coef_of(estimator: Any) -> np.ndarray | None:
    """The linear coefficients of a fitted binary estimator of any kind (``None`` if none)."""
    name = _qualname(estimator)
    for k in KINDS.values():
        if k.types and k.types[0] == name:
            return k.coef(estimator)
    return plain_coef(estimator)


def safe_types() -> frozenset[str]:
    """Every type any classifier kind may hold (the kinds' part of the skops allow-list)."""
    return frozenset(t for k in KINDS.values() for t in k.types)


def requirements() -> tuple[str, ...]:
    """Extra requirements of every kind, for the MLflow model."""
    return tuple(sorted({r for k in KINDS.values() for r in k.requirements}))


def _qualname(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"
