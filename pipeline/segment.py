"""Stage 2, segment: Chinese word segmentation with jieba (or the jieba-compatible rjieba).

:class:`Segmenter` is the first step of every model :class:`~sklearn.pipeline.Pipeline`: it turns
raw text into :class:`SegmentedDoc` records (normalised text plus tokens). It carries its user
dictionary and stopwords *by value*, so a pickled model segments the same way on any machine, and
it keeps its tokenizer instance to itself: no global jieba state is touched.

:func:`segment_texts` runs a segmenter over many texts in a process pool whose workers build the
dictionary once each.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing as mp
import os
import re
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

from sklearn.base import BaseEstimator, TransformerMixin

from pipeline.errors import ConfigError
from pipeline.textio import normalize_text

BACKENDS = ("jieba", "rjieba")
_NOISE = re.compile(r"^[\W\d_]+$")  # punctuation, digits, spaces: no theme
_MEMO_MAX = 1 << 21  # distinct tokens remembered per segmenter before the memo starts afresh


class SegmentedDoc(NamedTuple):
    """A text after normalisation and segmentation."""

    text: str
    tokens: tuple[str, ...]


def read_userdict(path: Path) -> tuple[tuple[str, int | None, str | None], ...]:
    """Read a jieba user dictionary (``word [freq] [tag]`` per line)."""
    entries: list[tuple[str, int | None, str | None]] = []
    for lineno, line in enumerate(Path(path).read_text("utf-8-sig").splitlines(), 1):
        parts = line.strip().split()
        if not parts:
            continue
        freq: int | None = None
        tag: str | None = None
        if len(parts) >= 2:
            if not parts[1].isdigit():
                raise ConfigError(
                    f"{path}:{lineno}: frequency {parts[1]!r} is not a whole number",
                    "use jieba's format: word [freq] [tag]",
                )
            freq = int(parts[1])
        if len(parts) >= 3:
            tag = parts[2]
        if len(parts) > 3:
            raise ConfigError(f"{path}:{lineno}: too many fields", "use: word [freq] [tag]")
        entries.append((parts[0], freq, tag))
    return tuple(entries)


def read_stopwords(path: Path) -> tuple[str, ...]:
    """Read a stopword list, one word per line."""
    words = (w.strip() for w in Path(path).read_text("utf-8-sig").splitlines())
    return tuple(sorted({w for w in words if w}))


def dictionary_hash(
    backend: str, user_words: Iterable[tuple[str, int | None, str | None]], stopwords: Iterable[str]
) -> str:
    """A sha256 over everything that decides how text is segmented."""
    h = hashlib.sha256(backend.encode())
    for word, freq, tag in user_words:
        h.update(f"{word}\t{freq}\t{tag}\n".encode())
    h.update(b"--stopwords--\n")
    for w in stopwords:
        h.update(f"{w}\n".encode())
    return h.hexdigest()


def _load_backend(backend: str, user_words: Sequence[tuple[str, int | None, str | None]]) -> Any:
    if backend == "jieba":
        import jieba

        logging.getLogger("jieba").setLevel(logging.WARNING)
        tok = jieba.Tokenizer()
        tok.initialize()
        for word, freq, tag in user_words:
            tok.add_word(word, freq, tag)
        return tok
    if backend == "rjieba":
        try:
            import rjieba
        except ImportError as exc:
            raise ConfigError(
                "segmenter backend 'rjieba' is not installed",
                "pip install rjieba (a dependency of gov-topics) or use backend: jieba",
            ) from exc
        tok = rjieba.Jieba()
        for word, freq, tag in user_words:
            tok.add_word(word, freq, tag)
        return tok
    raise ConfigError(f"unknown segmenter backend {backend!r}", f"choose one of {BACKENDS}")


class Segmenter(TransformerMixin, BaseEstimator):
    """Normalise and segment raw text into :class:`SegmentedDoc` records.

    Parameters
    ----------
    backend : {"jieba", "rjieba"}
        jieba (the reference) or rjieba (the jieba-rs binding, much faster, same dictionary
        format). A model always predicts with the backend it was trained with.
    user_words : tuple of (word, freq, tag)
        The user dictionary, carried by value.
    stopwords : tuple of str
        Tokens dropped after segmentation.
    hmm : bool
        Let jieba guess unknown words with its HMM.

    Examples
    --------
    >>> seg = Segmenter(user_words=(("新质生产力", 2000, None),)).fit([])
    >>> seg.transform(["发展新质生产力"])[0].tokens
    ('发展', '新质生产力')
    """

    def __init__(
        self,
        *,
        backend: str = "jieba",
        user_words: tuple[tuple[str, int | None, str | None], ...] = (),
        stopwords: tuple[str, ...] = (),
        hmm: bool = True,
    ) -> None:
        self.backend = backend
        self.user_words = user_words
        self.stopwords = stopwords
        self.hmm = hmm

    def fit(self, X: Any = None, y: Any = None) -> Segmenter:
        if self.backend not in BACKENDS:
            raise ConfigError(
                f"unknown segmenter backend {self.backend!r}", f"choose one of {BACKENDS}"
            )
        self.dictionary_hash_ = dictionary_hash(self.backend, self.user_words, self.stopwords)
        return self

    def _tokenizer(self) -> Any:
        tok = self.__dict__.get("_tok")
        if tok is None:
            tok = _load_backend(self.backend, self.user_words)
            self._tok = tok
        return tok

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_tok", None)  # a tokenizer is rebuilt lazily where the model is loaded
        state.pop("_memo", None)
        return state

    def tokens(self, text: str) -> tuple[str, ...]:
        """Segment one normalised text, dropping stopwords, punctuation and bare numbers."""
        tok = self._tokenizer()
        words = tok.lcut(text, HMM=self.hmm) if self.backend == "jieba" else tok.cut(text, self.hmm)
        # Whether a token is kept is memoised per segmenter instance: set operations and
        # ``filter`` run in C, where a per-token regex and stopword test would run in Python.
        memo = self.__dict__.get("_memo")
        if memo is None or len(memo[0]) + len(memo[1]) > _MEMO_MAX:
            memo = (set(), set(), frozenset(self.stopwords))
            self._memo: tuple[set[str], set[str], frozenset[str]] = memo
        keep, drop, stop = memo
        new = set(words).difference(keep, drop)
        if new:
            for w in new:
                ok = bool(w.strip()) and w not in stop and not _NOISE.match(w)
                (keep if ok else drop).add(w)
        return tuple(filter(keep.__contains__, words))

    def segment(self, text: str) -> SegmentedDoc:
        if not isinstance(text, str):
            raise TypeError(f"expected a text (str), got {type(text).__name__}")
        norm = normalize_text(text).replace("\n", " ")
        return SegmentedDoc(norm, self.tokens(norm))

    def transform(self, X: Iterable[str]) -> list[SegmentedDoc]:
        if isinstance(X, str):
            raise ValueError("Iterable over raw text documents expected, string object received.")
        return [self.segment(t) for t in X]


# -- process pool ------------------------------------------------------------------------------

_WORKER: dict[str, Segmenter] = {}  # one segmenter per worker process, set by the initializer


def _init_worker(params: dict[str, Any]) -> None:
    seg = Segmenter(**params).fit()
    seg._tokenizer()  # load the dictionary once per worker
    _WORKER["seg"] = seg


def _segment_chunk(texts: list[str]) -> list[SegmentedDoc]:
    return _WORKER["seg"].transform(texts)


def pool_context() -> mp.context.BaseContext:
    """fork where the platform has it (workers inherit loaded code), spawn elsewhere."""
    return mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")


def default_jobs() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def segment_texts(
    texts: Sequence[str], segmenter: Segmenter, jobs: int | None = None, chunk_size: int = 256
) -> list[SegmentedDoc]:
    """Segment many texts on ``jobs`` processes (all cores by default), keeping input order."""
    jobs = jobs or default_jobs()
    if jobs <= 1 or len(texts) < 2 * chunk_size:
        return segmenter.fit().transform(texts)
    chunks = [list(texts[i : i + chunk_size]) for i in range(0, len(texts), chunk_size)]
    with ProcessPoolExecutor(
        max_workers=jobs,
        mp_context=pool_context(),
        initializer=_init_worker,
        initargs=(segmenter.get_params(),),
    ) as pool:
        out: list[SegmentedDoc] = []
        for part in pool.map(_segment_chunk, chunks):
            out.extend(part)
    return out
