"""Domain word vectors: word2vec trained on the unlabelled pool, and a unit's mean vector.

`topics vectors` trains word2vec (gensim) on the 20,231 unlabelled pool paragraphs, segmented
like the training units, and saves the vocabulary and vectors as a plain ``.npz`` file.
:class:`MeanVectors` reads that file when fitted and keeps the vectors as numpy arrays, so the
model carries them by value and scoring needs neither gensim nor the file.

The vectors see the pool's text (never its labels), including the paragraphs of a source that
out-of-source evaluation holds out: unsupervised pre-training on in-domain text, which a user's
own archive would also allow, but a slight advantage over text from nowhere in the pool.
"""

from __future__ import annotations

import gzip
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin

from pipeline.errors import StageError
from pipeline.segment import SegmentedDoc

log = logging.getLogger(__name__)


def pool_texts(path: Path) -> list[str]:
    """The texts of the unlabelled pool (``seeds/pool/pool.jsonl.gz``)."""
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line)["text"] for line in fh if line.strip()]


def train_vectors(
    token_lists: Sequence[Sequence[str]],
    *,
    dim: int = 100,
    window: int = 5,
    min_count: int = 3,
    epochs: int = 10,
    seed: int = 42,
) -> tuple[list[str], np.ndarray]:
    """word2vec (CBOW) on tokenised paragraphs; single-threaded with a seed, so reproducible."""
    from gensim.models import Word2Vec

    model = Word2Vec(
        sentences=[list(t) for t in token_lists],
        vector_size=dim,
        window=window,
        min_count=min_count,
        epochs=epochs,
        seed=seed,
        workers=1,
    )
    words = list(model.wv.index_to_key)
    return words, np.asarray(model.wv.vectors, dtype=np.float32)


def save_vectors(path: Path, words: list[str], vectors: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial.npz")
    np.savez_compressed(tmp, words=np.array(words, dtype=object), vectors=vectors)
    tmp.replace(path)


class MeanVectors(TransformerMixin, BaseEstimator):
    """A unit's mean word vector (L2-normalised, times ``weight``) as sparse columns.

    Parameters
    ----------
    path : str
        The ``.npz`` file written by `topics vectors`; read once, at ``fit``.
    weight : float
        Multiplier, to balance these dense columns against the TF-IDF columns.
    """

    def __init__(self, *, path: str = "build/vectors/pool.npz", weight: float = 1.0) -> None:
        self.path = path
        self.weight = weight

    def fit(self, X: Any = None, y: Any = None) -> MeanVectors:
        p = Path(self.path)
        if not p.exists():
            raise StageError(f"{p}: no word vectors", "run `make vectors` (topics vectors) first")
        with np.load(p, allow_pickle=True) as npz:
            words = [str(w) for w in npz["words"]]
            self.vectors_ = np.asarray(npz["vectors"], dtype=np.float32)
        self.index_ = {w: i for i, w in enumerate(words)}
        return self

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.array([f"vec{i}" for i in range(self.vectors_.shape[1])], dtype=object)

    def transform(self, X: Sequence[SegmentedDoc]) -> sp.csr_matrix:
        out = np.zeros((len(X), self.vectors_.shape[1]), dtype=np.float32)
        get = self.index_.get
        for i, doc in enumerate(X):
            rows = [r for r in map(get, doc.tokens) if r is not None]
            if rows:
                v = self.vectors_[rows].mean(axis=0)
                n = float(np.linalg.norm(v))
                if n > 0:
                    out[i] = v / n
        return sp.csr_matrix(out * self.weight)
