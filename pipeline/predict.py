"""Stage 7, predict: theme scores, themes and evidence for batches of documents.

The core is :func:`predict_batch`, a pure function from a fitted model and a list of texts to a
list of result dicts, with no global state and no heavy imports: it can run inside a Spark
``mapPartitions`` or a model server as well as in the CLI. A document is split into paragraphs the
way ingest splits training documents; its score for a theme is the highest score any of its
paragraphs gets, so its themes are the union of its paragraphs' themes.

A long document touches most themes somewhere, so beside that union each record says how much of
the document is about each theme: ``coverage``, the share of its text (paragraphs weighted by
their length in characters) in paragraphs tagged with the theme, and ``main_themes``, the themes
covering at least :data:`MAIN_SHARE` of it (always at least the best-covered one), ranked by
coverage. A one-paragraph document's main themes are its themes. ``scripts/document_quality.py``
measured the rule on real multi-paragraph documents.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.classifiers import coef_of
from pipeline.paragraphs import split_paragraphs, split_sentences

# A theme is a main theme of a document from this share of its text on. Chosen on 174 real
# multi-paragraph documents (scripts/document_quality.py): against gold themes carried by at
# least 15 % of a document's labelled paragraphs, 0.12 had the best document macro-F1 (0.616)
# and micro-F1 (0.721) of the shares 0.05-0.4 (0.10: 0.604/0.698; 0.15: 0.544/0.711). In-sample
# figures (the default model was trained on those paragraphs); the shares compare on one scoring.
MAIN_SHARE = 0.12


def document_themes(
    proba: np.ndarray,
    lengths: np.ndarray,
    thresholds: np.ndarray,
    *,
    share: float = MAIN_SHARE,
) -> tuple[np.ndarray, list[int], list[int]]:
    """A document's theme coverage, themes and main themes from its paragraphs' scores.

    Parameters
    ----------
    proba : array (paragraphs, themes)
        Each paragraph's score for each theme.
    lengths : array (paragraphs,)
        Each paragraph's length in characters: its weight.
    thresholds : array (themes,)
        A paragraph is tagged with a theme when its score reaches the theme's threshold.
    share : float
        A theme covering at least this share of the text is a main theme.

    Returns
    -------
    coverage : array (themes,)
        Per theme, the share of the text in paragraphs tagged with it, in [0, 1]; over themes it
        sums to the length-weighted mean number of themes a paragraph has.
    themes : list of int
        Themes whose best paragraph reaches the threshold, highest best score first (the
        ``themes`` of a record: every theme some paragraph is tagged with).
    main : list of int
        Of ``themes``, those covering at least ``share`` of the text, and always the best-covered
        one; by coverage, then by best score.
    """
    best = proba.max(axis=0)
    themes = [int(j) for j in np.argsort(-best) if best[j] >= thresholds[j]]
    coverage = lengths @ (proba >= thresholds) / max(float(lengths.sum()), 1.0)
    ranked = sorted(themes, key=lambda j: -coverage[j])  # stable: equal coverage keeps score order
    main = [j for k, j in enumerate(ranked) if k == 0 or coverage[j] >= share]
    return coverage, themes, main


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
        self,
        texts: Sequence[str],
        *,
        paragraphs: bool = False,
        evidence: bool = True,
        top_k: int | None = None,
    ) -> list[dict[str, Any]]:
        """Score documents; see :func:`predict_batch`."""
        if isinstance(texts, str):
            raise ValueError("Iterable over raw text documents expected, string object received.")
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be a positive number of themes, got {top_k}")
        para_lists = [split_paragraphs(t) for t in texts]
        flat = [p for ps in para_lists for p in ps]
        if flat:
            _, proba, X = self.score_paragraphs(flat)
        else:
            proba, X = np.zeros((0, len(self.themes))), None
        lengths = np.fromiter(map(len, flat), dtype=np.float64, count=len(flat))
        out: list[dict[str, Any]] = []
        pairs: list[tuple[int, int, int]] = []  # (record, paragraph row, theme) needing evidence
        start = 0
        for ps in para_lists:
            n = len(ps)
            P = proba[start : start + n]
            rec: dict[str, Any]
            if n == 0:
                rec = {
                    "themes": [],
                    "scores": dict.fromkeys(self.themes, 0.0),
                    "main_themes": [],
                    "coverage": dict.fromkeys(self.themes, 0.0),
                }
            else:
                doc_scores = P.max(axis=0)
                coverage, chosen, main = document_themes(
                    P, lengths[start : start + n], self.thresholds
                )
                chosen, main = chosen[:top_k], main[:top_k]
                rec = {
                    "themes": [self.themes[j] for j in chosen],
                    "scores": {
                        t: round(float(doc_scores[j]), 4) for j, t in enumerate(self.themes)
                    },
                    "main_themes": [self.themes[j] for j in main],
                    "coverage": {
                        t: round(float(coverage[j]), 4) for j, t in enumerate(self.themes)
                    },
                }
                if evidence:
                    rec["evidence"] = {}
                    shown = chosen + [j for j in main if j not in chosen]  # top_k may cut apart
                    best = P[:, shown].argmax(axis=0).tolist() if shown else []
                    pairs.extend(
                        (len(out), start + i, int(j)) for i, j in zip(best, shown, strict=True)
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
    top_k: int | None = None,
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
    top_k : int or None
        Keep only the first ``top_k`` of ``themes`` and of ``main_themes`` (``scores`` and
        ``coverage`` keep every theme).

    Returns
    -------
    list of dict
        One record per text, in input order: ``themes`` (every theme some paragraph reaches the
        threshold of, highest best-paragraph score first), ``scores`` (every theme's best
        paragraph score), ``main_themes`` (the themes most of the text is about, by coverage;
        see :func:`document_themes`), ``coverage`` (every theme's share of the text, paragraphs
        weighted by length), ``evidence``, optionally ``paragraphs``.

    Examples
    --------
    >>> recs = predict_batch(model, ["全面开展安全生产隐患排查整治。"])  # doctest: +SKIP
    >>> recs[0]["themes"]  # doctest: +SKIP
    ['safety']
    """
    return Predictor(model, name=name).predict(
        texts, paragraphs=paragraphs, evidence=evidence, top_k=top_k
    )
