"""Stage 3, features: TF-IDF on segmented text, character n-grams and lexicon counts.

Every transformer here takes :class:`~pipeline.segment.SegmentedDoc` records, so the word branch
uses the segmenter's tokens and the character branch the normalised text, with no second pass of
segmentation. All callables are module-level functions, so fitted models pickle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import FeatureUnion

from pipeline.config import FeaturesConfig
from pipeline.segment import SegmentedDoc


def doc_tokens(doc: SegmentedDoc) -> str:
    """Preprocessor of the word branch: the doc's tokens joined by spaces."""
    return " ".join(doc.tokens)


def split_spaces(text: str) -> list[str]:
    """Tokenizer of the word branch: the segmenter already split the words."""
    return text.split(" ")


def doc_text(doc: SegmentedDoc) -> str:
    """Preprocessor of the character branch: the normalised text without spaces."""
    return doc.text.replace(" ", "")


class LexiconCounter(TransformerMixin, BaseEstimator):
    """Per theme, how many distinct terms of its lexicon a text contains (scaled).

    The lexicon carries knowledge a few hundred labelled paragraphs cannot teach. Terms are
    matched against the segmenter's tokens (the user dictionary keeps them whole) and, for terms
    the segmenter splits, against the text.

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

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.array([f"lexicon:{t}" for t in self.themes_], dtype=object)

    def counts(self, docs: Sequence[SegmentedDoc]) -> np.ndarray:
        """Raw per-theme counts of distinct lexicon terms."""
        out = np.zeros((len(docs), len(self.themes_)), dtype=np.float64)
        for i, doc in enumerate(docs):
            toks = set(doc.tokens)
            for j, terms in enumerate(self.terms_):
                out[i, j] = len(terms & toks)
        return out

    def matched_terms(self, doc: SegmentedDoc) -> dict[str, list[str]]:
        toks = set(doc.tokens)
        return {t: sorted(terms & toks) for t, terms in zip(self.themes_, self.terms_, strict=True)}

    def transform(self, X: Sequence[SegmentedDoc]) -> sp.csr_matrix:
        c = self.counts(X)
        if self.scale == "log":
            c = np.log1p(c)
        elif self.scale == "binary":
            c = (c > 0).astype(np.float64)
        return sp.csr_matrix(c * self.weight)


def build_features(cfg: FeaturesConfig, lexicons: Mapping[str, Sequence[str]]) -> FeatureUnion:
    """Return an *unfitted* feature union for an experiment's feature settings."""
    parts: list[tuple[str, Any]] = []
    if cfg.word.enabled:
        parts.append(
            (
                "word",
                TfidfVectorizer(
                    preprocessor=doc_tokens,
                    tokenizer=split_spaces,
                    token_pattern=None,
                    lowercase=False,
                    ngram_range=tuple(cfg.word.ngram_range),
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
                TfidfVectorizer(
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
