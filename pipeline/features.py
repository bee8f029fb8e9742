"""Stage 3, features: TF-IDF on segmented text, character n-grams and lexicon counts.

Every transformer here takes :class:`~pipeline.segment.SegmentedDoc` records, so the word branch
uses the segmenter's tokens and the character branch the normalised text, with no second pass of
segmentation. All callables are module-level functions, so fitted models pickle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import FeatureUnion

from pipeline.config import FeaturesConfig
from pipeline.segment import SegmentedDoc


def doc_tokens(doc: SegmentedDoc) -> str:
    """Preprocessor of the word branch in models trained before :class:`TokenNgrams` (kept so
    that they still load)."""
    return " ".join(doc.tokens)


def split_spaces(text: str) -> list[str]:
    """Tokenizer of the word branch in models trained before :class:`TokenNgrams`."""
    return text.split(" ")


@dataclass(frozen=True)
class TokenNgrams:
    """Analyzer of the word branch: a doc's tokens and their word n-grams ("a b").

    The segmenter already split the words, so the vectorizer gets them directly, without
    joining and re-splitting a string; the features are those of ``ngram_range`` in a word
    analyzer.

    Examples
    --------
    >>> TokenNgrams((1, 2))(SegmentedDoc("", ("安全", "生产", "检查")))
    ['安全', '生产', '检查', '安全 生产', '生产 检查']
    """

    ngram_range: tuple[int, int] = (1, 1)

    def __call__(self, doc: SegmentedDoc) -> list[str]:
        toks = doc.tokens
        lo, hi = self.ngram_range
        out = list(toks) if lo <= 1 else []
        for n in range(max(lo, 2), hi + 1):
            out += map(" ".join, zip(*(toks[i:] for i in range(n)), strict=False))
        return out


def doc_text(doc: SegmentedDoc) -> str:
    """Preprocessor of the character branch: the normalised text without spaces."""
    return doc.text.replace(" ", "")


class FastTfidfVectorizer(TfidfVectorizer):
    """scikit-learn's :class:`~sklearn.feature_extraction.text.TfidfVectorizer`, with a faster
    count of known terms when transforming.

    Fitting is scikit-learn's own. Transforming counts a fitted vocabulary's terms with C-level
    ``map`` and numpy/scipy array operations instead of a Python loop over every term: on 3,000
    bench documents 0.27 s instead of 0.43 s for the word branch, with an identical matrix
    (tested against the parent class).
    """

    def _count_vocab(self, raw_documents: Any, fixed_vocab: bool) -> tuple[Any, Any]:
        if not fixed_vocab:
            return super()._count_vocab(raw_documents, fixed_vocab)
        vocabulary = self.vocabulary_
        known = vocabulary.get
        analyze = self.build_analyzer()
        ids: list[int] = []  # every term's column, -1 when it is not in the vocabulary
        ends = [0]
        for doc in raw_documents:
            ids.extend(map(known, analyze(doc), repeat(-1)))
            ends.append(len(ids))
        cols = np.asarray(ids, dtype=np.int64)
        kept = cols >= 0
        indptr = np.concatenate(([0], np.cumsum(kept)))[np.asarray(ends)]
        idx_dtype = np.int64 if indptr[-1] > np.iinfo(np.int32).max else np.int32
        X = sp.csr_matrix(
            (
                np.ones(int(indptr[-1]), dtype=self.dtype),
                cols[kept].astype(idx_dtype),
                indptr.astype(idx_dtype),
            ),
            shape=(len(ends) - 1, len(vocabulary)),
        )
        X.sum_duplicates()  # counts repeated terms and sorts each row's indices
        return vocabulary, X


class LexiconCounter(TransformerMixin, BaseEstimator):
    """Per theme, how many distinct terms of its lexicon a text contains (scaled).

    The lexicon carries knowledge a few hundred labelled paragraphs cannot teach. Terms are
    matched against the segmenter's tokens (the user dictionary keeps them whole).

    Parameters
    ----------
    lexicons : mapping of theme id to terms
    scale : {"log", "binary", "linear"}
        ``log1p(count)``, ``count > 0`` or the raw count.
    weight : float
        Multiplier, to balance these few columns against many TF-IDF columns.
    """

    def __init__(
        self,
        *,
        lexicons: Mapping[str, Sequence[str]] | None = None,
        scale: str = "log",
        weight: float = 1.0,
    ) -> None:
        self.lexicons = lexicons
        self.scale = scale
        self.weight = weight

    def fit(self, X: Any = None, y: Any = None) -> LexiconCounter:
        lex = dict(self.lexicons or {})
        self.themes_ = list(lex)
        self.terms_ = [frozenset(lex[t]) for t in self.themes_]
        return self

    def _index(self) -> dict[str, tuple[int, ...]]:
        """Term -> the themes whose lexicon has it (built once per instance)."""
        index = self.__dict__.get("_term_index")
        if index is None:
            acc: dict[str, list[int]] = {}
            for j, terms in enumerate(self.terms_):
                for term in terms:
                    acc.setdefault(term, []).append(j)
            index = self._term_index = {t: tuple(js) for t, js in acc.items()}
        return index

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_term_index", None)
        return state

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.array([f"lexicon:{t}" for t in self.themes_], dtype=object)

    def counts(self, docs: Sequence[SegmentedDoc]) -> np.ndarray:
        """Raw per-theme counts of distinct lexicon terms."""
        out = np.zeros((len(docs), len(self.themes_)), dtype=np.float64)
        index = self._index()
        for i, doc in enumerate(docs):
            for term in index.keys() & doc.tokens:
                for j in index[term]:
                    out[i, j] += 1
        return out

    def transform(self, X: Sequence[SegmentedDoc]) -> sp.csr_matrix:
        c = self.counts(X)
        if self.scale == "log":
            c = np.log1p(c)
        elif self.scale == "binary":
            c = (c > 0).astype(np.float64)
        return sp.csr_matrix(c * self.weight)


class TokenText(TransformerMixin, BaseEstimator):
    """Each unit's tokens as one space-separated string (for a classifier with its own text
    features, such as fastText), as a 1-D object array."""

    def fit(self, X: Any = None, y: Any = None) -> TokenText:
        return self

    def transform(self, X: Sequence[SegmentedDoc]) -> np.ndarray:
        return np.array([" ".join(d.tokens) for d in X], dtype=object)


def build_features(cfg: FeaturesConfig, lexicons: Mapping[str, Sequence[str]]) -> FeatureUnion:
    """Return an *unfitted* feature union for an experiment's feature settings."""
    parts: list[tuple[str, Any]] = []
    if cfg.word.enabled:
        parts.append(
            (
                "word",
                FastTfidfVectorizer(
                    analyzer=TokenNgrams(tuple(cfg.word.ngram_range)),  # type: ignore[arg-type]
                    lowercase=False,
                    min_df=cfg.word.min_df,
                    max_df=cfg.word.max_df,
                    sublinear_tf=cfg.word.sublinear_tf,
                    max_features=cfg.word.max_features,
                    dtype=np.float32,
                ),
            )
        )
    if cfg.char.enabled:
        parts.append(
            (
                "char",
                FastTfidfVectorizer(
                    analyzer="char",
                    preprocessor=doc_text,
                    lowercase=False,
                    ngram_range=tuple(cfg.char.ngram_range),
                    min_df=cfg.char.min_df,
                    max_df=cfg.char.max_df,
                    sublinear_tf=cfg.char.sublinear_tf,
                    max_features=cfg.char.max_features,
                    dtype=np.float32,
                ),
            )
        )
    if cfg.lexicon.enabled:
        parts.append(
            (
                "lexicon",
                LexiconCounter(
                    lexicons={k: tuple(v) for k, v in lexicons.items()},
                    scale=cfg.lexicon.scale,
                    weight=cfg.lexicon.weight,
                ),
            )
        )
    if cfg.vectors.enabled:
        from pipeline.vectors import MeanVectors

        parts.append(("vectors", MeanVectors(path=cfg.vectors.path, weight=cfg.vectors.weight)))
    return FeatureUnion(parts)


def vocabulary_summary(
    union: FeatureUnion, X: sp.spmatrix, Y: np.ndarray, themes: Sequence[str], top: int = 20
) -> dict[str, Any]:
    """Vocabulary size per branch and, per theme, the terms with the highest mean TF-IDF among
    that theme's units relative to the rest."""
    names = union.get_feature_names_out()
    sizes: dict[str, int] = {}
    for name, _ in union.transformer_list:
        sizes[name] = int(sum(1 for n in names if n.startswith(f"{name}__")))
    X = sp.csr_matrix(X)
    per_theme: dict[str, list[str]] = {}
    for j, theme in enumerate(themes):
        pos = Y[:, j] == 1
        if not pos.any() or pos.all():
            per_theme[theme] = []
            continue
        diff = np.asarray(X[pos].mean(axis=0)).ravel() - np.asarray(X[~pos].mean(axis=0)).ravel()
        order = np.argsort(-diff)[:top]
        per_theme[theme] = [str(names[i]).split("__", 1)[1] for i in order if diff[i] > 0]
    return {"n_features": int(X.shape[1]), "by_branch": sizes, "top_terms": per_theme}
