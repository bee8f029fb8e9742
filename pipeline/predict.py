"""Stage 7, predict: theme scores, themes and evidence for batches of documents.

The core is :func:`predict_batch`, a pure function from a fitted model and a list of texts to a
list of result dicts, with no global state and no heavy imports: it can run inside a Spark
``mapPartitions`` or a model server as well as in the CLI. A document is split into paragraphs the
way ingest splits training documents; its score for a theme is the highest score any of its
paragraphs gets, so its themes are the union of its paragraphs' themes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.ingest import ingest_text, split_sentences
from pipeline.textio import normalize_text


def split_paragraphs(text: str) -> list[str]:
    """The paragraphs of a document after the same cleaning ingest applies.

    A text that cleaning would drop entirely (a bare headline, a caption) is scored as it is.
    """
    units = ingest_text("doc", text).units
    if units:
        return [u.text for u in units]
    norm = normalize_text(text).replace("\n", " ")
    return [norm] if norm else []


def _linear_coef(estimator: Any) -> np.ndarray | None:
    """Coefficients of a linear binary classifier (averaged over calibration folds)."""
    if hasattr(estimator, "coef_"):
        return np.asarray(estimator.coef_).ravel()
    if hasattr(estimator, "model_"):  # CalibratedSVC
        return _linear_coef(estimator.model_)
    cals = getattr(estimator, "calibrated_classifiers_", None)
    if cals:
        coefs = [_linear_coef(c.estimator) for c in cals]
        if all(c is not None for c in coefs):
            return np.mean(np.vstack(coefs), axis=0)  # type: ignore[arg-type]
    return None


@dataclass
class Predictor:
    """A fitted model ready to score batches; caches feature names and coefficients.

    Parameters
    ----------
    model : sklearn.pipeline.Pipeline
        ``segment`` → ``features`` (→ ``select``) → ``clf`` as built by :func:`pipeline.train.build_model`.
    name : str
        Model name and version, copied into every record (e.g. ``"gov-topics:3"``).
    """

    model: Any
    name: str = ""
    top_terms: int = 5
    _coef: np.ndarray | None = field(default=None, init=False, repr=False)
    _names: np.ndarray | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        clf = self.model.named_steps["clf"]
        self.themes: list[str] = list(clf.themes)
        self.thresholds: np.ndarray = np.asarray(clf.thresholds_)
        self._segment = self.model.named_steps["segment"]
        self._head = self.model[1:]

    def _evidence_tables(self) -> tuple[np.ndarray | None, np.ndarray]:
        if self._names is None:
            names = self.model.named_steps["features"].get_feature_names_out()
            sel = self.model.named_steps.get("select")
            if sel is not None:
                names = names[sel.get_support()]
            self._names = names
            clf = self.model.named_steps["clf"]
            coefs = [_linear_coef(e) for e in clf.ovr_.estimators_]
            if all(c is not None for c in coefs):
                self._coef = np.vstack(coefs)  # type: ignore[arg-type]
        return self._coef, self._names

    def score_paragraphs(self, paragraphs: Sequence[str]) -> tuple[list[Any], np.ndarray, Any]:
        docs = self._segment.transform(paragraphs)
        Xt: Any = docs
        for _, step in self._head.steps[:-1]:
            Xt = step.transform(Xt)
        proba = self._head.steps[-1][1].predict_proba(Xt)
        if hasattr(Xt, "tocsr"):
            Xt = Xt.tocsr()
        return docs, proba, Xt

    def evidence(self, X: Any, row: int, theme: int, text: str) -> dict[str, Any]:
        """The terms that pushed a paragraph towards a theme and the sentence that carries them."""
        coef, names = self._evidence_tables()
        terms: list[str] = []
        if coef is not None:
            if hasattr(X, "indptr"):  # CSR: read the row's slice directly (scipy's X[row] is slow)
                lo, hi = X.indptr[row], X.indptr[row + 1]
                idx, vals = X.indices[lo:hi], X.data[lo:hi]
            else:
                dense = np.asarray(X[row]).ravel()
                idx = np.nonzero(dense)[0]
                vals = dense[idx]
            contrib = vals * coef[theme, idx]
            for k in np.argsort(-contrib):
                if contrib[k] <= 0 or len(terms) >= self.top_terms:
                    break
                branch, _, term = str(names[idx[k]]).partition("__")
                if branch == "lexicon":
                    continue
                term = term.replace(" ", "")
                if len(term) < 2 or any(term in t or t in term for t in terms):
                    continue
                terms.append(term)
        sentences = split_sentences(text)
        best = (
            max(sentences, key=lambda s: sum(len(t) for t in terms if t in s))
            if sentences
            else text
        )
        return {"terms": terms, "sentence": best}

    def predict(
        self, texts: Sequence[str], *, paragraphs: bool = False, evidence: bool = True
    ) -> list[dict[str, Any]]:
        """Score documents; see :func:`predict_batch`."""
        if isinstance(texts, str):
            raise ValueError("Iterable over raw text documents expected, string object received.")
        para_lists = [split_paragraphs(t) for t in texts]
        flat = [p for ps in para_lists for p in ps]
        if flat:
            _, proba, X = self.score_paragraphs(flat)
        else:
            proba, X = np.zeros((0, len(self.themes))), None
        out: list[dict[str, Any]] = []
        start = 0
        for ps in para_lists:
            n = len(ps)
            P = proba[start : start + n]
            rec: dict[str, Any]
            if n == 0:
                rec = {"themes": [], "scores": dict.fromkeys(self.themes, 0.0)}
            else:
                doc_scores = P.max(axis=0)
                chosen = [j for j in np.argsort(-doc_scores) if doc_scores[j] >= self.thresholds[j]]
                rec = {
                    "themes": [self.themes[j] for j in chosen],
                    "scores": {
                        t: round(float(doc_scores[j]), 4) for j, t in enumerate(self.themes)
                    },
                }
                if evidence:
                    ev = {}
                    for j in chosen:
                        i = int(np.argmax(P[:, j]))
                        ev[self.themes[j]] = self.evidence(X, start + i, j, ps[i])
                    rec["evidence"] = ev
                if paragraphs:
                    rec["paragraphs"] = [
                        {
                            "text": ps[i],
                            "themes": [
                                self.themes[j]
                                for j in np.argsort(-P[i])
                                if P[i, j] >= self.thresholds[j]
                            ],
                            "scores": {
                                t: round(float(P[i, j]), 4) for j, t in enumerate(self.themes)
                            },
                        }
                        for i in range(n)
                    ]
            if self.name:
                rec["model"] = self.name
            out.append(rec)
            start += n
        return out


def predict_batch(
    model: Any,
    texts: Sequence[str],
    *,
    paragraphs: bool = False,
    evidence: bool = True,
    name: str = "",
) -> list[dict[str, Any]]:
    """Score a batch of documents with a fitted model.

    Parameters
    ----------
    model : Pipeline
        A fitted model from the store.
    texts : sequence of str
        Raw document texts.
    paragraphs : bool
        Include per-paragraph themes and scores.
    evidence : bool
        For each predicted theme, the top contributing terms and the sentence carrying them.

    Returns
    -------
    list of dict
        One record per text, in input order: ``themes`` (above their thresholds, highest
        first), ``scores`` (every theme's probability), ``evidence``, optionally ``paragraphs``.

    Examples
    --------
    >>> recs = predict_batch(model, ["全面开展安全生产隐患排查整治。"])  # doctest: +SKIP
    >>> recs[0]["themes"]  # doctest: +SKIP
    ['safety']
    """
    return Predictor(model, name=name).predict(texts, paragraphs=paragraphs, evidence=evidence)
