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

from pipeline.classifiers import coef_of
from pipeline.paragraphs import split_paragraphs, split_sentences


def feature_terms(model: Any) -> np.ndarray:
    """Per column of the model's feature matrix, its term ("" for columns that are not terms).
    Built from the vectorizers' vocabularies directly: sklearn's ``get_feature_names_out``
    sorts and prefixes every name, a tenth of a second on start."""
    parts = []
    features = model.named_steps["features"]
    for _, step in getattr(features, "transformer_list", []):  # none: a tokens-in classifier
        vocab = getattr(step, "vocabulary_", None)
        if vocab is not None:
            terms = np.empty(len(vocab), dtype=object)
            terms[np.fromiter(vocab.values(), dtype=np.intp, count=len(vocab))] = list(vocab)
        else:
            terms = np.full(len(step.get_feature_names_out()), "", dtype=object)
        parts.append(terms)
    names = np.concatenate(parts) if parts else np.empty(0, dtype=object)
    sel = model.named_steps.get("select")
    if sel is not None:
        names = names[sel.get_support()]
    return names


@dataclass
class Predictor:
    """A fitted model ready to score batches; caches feature names and coefficients.

    Parameters
    ----------
    model : sklearn.pipeline.Pipeline
        ``segment`` → ``features`` (→ ``select``) → ``clf`` as fitted by :func:`pipeline.train.fit_model`.
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

    def warm(self) -> Predictor:
        """Build everything built lazily (the tokenizer, the evidence tables), so that worker
        processes forked afterwards share it instead of building their own."""
        self._segment._tokenizer()
        self._evidence_tables()
        return self

    def _evidence_tables(self) -> tuple[np.ndarray | None, np.ndarray]:
        """Per-theme coefficients and, per feature column, the term to show ("" for columns that
        are no words to show: lexicon counts, vectors, and terms the model's evidence mask hides,
        see :mod:`pipeline.evidence`)."""
        if self._names is None:
            names = feature_terms(self.model)
            clf = self.model.named_steps["clf"]
            mask = getattr(clf, "evidence_mask_", None)
            if mask is not None and len(mask) == len(names):
                names = np.where(mask, names, "")
            self._names = names
            coefs = [coef_of(e) for e in clf.ovr_.estimators_]
            if all(c is not None for c in coefs):
                coef = np.vstack(coefs)  # type: ignore[arg-type]
                specific = getattr(clf, "evidence_themes_", None)
                if specific is not None and specific.shape == coef.shape:
                    coef = np.where(specific, coef, 0.0)  # a term shown only for its themes
                self._coef = coef
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

    def evidence_terms(self, X: Any, rows: Sequence[int], themes: Sequence[int]) -> list[list[str]]:
        """For each (row of ``X``, theme) pair, the terms that pushed that paragraph towards that
        theme, strongest first: the positive products of TF-IDF weight and coefficient, without
        lexicon columns, one-character terms and terms inside a stronger one.

        All pairs of a batch are scored together in a few array operations; only walking each
        pair's few best candidates is done in Python.
        """
        coef, names = self._evidence_tables()
        if coef is None or not len(rows):
            return [[] for _ in rows]
        import scipy.sparse as sp

        sub = sp.csr_matrix(X)[np.asarray(rows)]  # the pairs' rows, in pair order
        counts = np.diff(sub.indptr)
        pair = np.repeat(np.arange(len(rows)), counts)
        contrib = sub.data * coef[np.repeat(np.asarray(themes), counts), sub.indices]
        pos = np.flatnonzero(contrib > 0)  # only terms that push towards the theme
        pair, contrib, cols = pair[pos], contrib[pos], sub.indices[pos]
        order = np.lexsort((-contrib, pair))  # by pair, then strongest first
        words = names[cols[order]].tolist()
        bounds = np.concatenate(([0], np.cumsum(np.bincount(pair, minlength=len(rows))))).tolist()
        out: list[list[str]] = []
        for p in range(len(rows)):
            terms: list[str] = []
            for q in range(bounds[p], bounds[p + 1]):
                if len(terms) >= self.top_terms:
                    break
                term = str(words[q]).replace(" ", "")
                if len(term) < 2 or any(term in t or t in term for t in terms):
                    continue
                terms.append(term)
            out.append(terms)
        return out

    @staticmethod
    def carrying_sentence(text: str, terms: Sequence[str], sentences: Sequence[str]) -> str:
        """Of ``text``'s sentences, the one that carries most of ``terms`` (by characters)."""
        if not sentences:
            return text
        return max(sentences, key=lambda s: sum(len(t) for t in terms if t in s))

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
        pairs: list[tuple[int, int, int]] = []  # (record, paragraph row, theme) needing evidence
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
                    rec["evidence"] = {}
                    best = P[:, chosen].argmax(axis=0).tolist() if chosen else []
                    pairs.extend(
                        (len(out), start + i, int(j)) for i, j in zip(best, chosen, strict=True)
                    )
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
        if pairs:
            found = self.evidence_terms(X, [r for _, r, _ in pairs], [j for _, _, j in pairs])
            sentences: dict[int, list[str]] = {}
            for (k, row, j), terms in zip(pairs, found, strict=True):
                text = flat[row]
                if row not in sentences:
                    sentences[row] = split_sentences(text)
                out[k]["evidence"][self.themes[j]] = {
                    "terms": terms,
                    "sentence": self.carrying_sentence(text, terms, sentences[row]),
                }
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
