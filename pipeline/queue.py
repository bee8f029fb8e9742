"""The label queue: which unlabelled paragraphs are worth a labeller's time.

:func:`select` is a pure function from a fitted model and candidate units to the ``n`` units to
label next. Strategies are named and pluggable (:data:`STRATEGIES`):

- ``uncertainty``: units whose theme scores sit closest to a theme's threshold (and units where
  several themes are near theirs), taken greedily but spread over sources and over the themes
  the model leans to, with no near-duplicates in a batch;
- ``diverse``: round-robin over (source, leaning theme) clusters, most uncertain first in each;
- ``random``: a uniform sample, the yardstick.

Every non-random batch also carries a small random share (``random_share``), marked
``selected_by: random``, so what the queue buys can be measured on the same labelling effort.
The same model, candidates, ``n`` and seed give the same batch. Memory stays flat in the
number of candidates: they are scored in chunks and only a bounded shortlist is kept.
"""

from __future__ import annotations

import hashlib
import heapq
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.paragraphs import sha1_text

CHUNK = 2000  # candidates scored per call
SHORTLIST = 25  # keep this many candidates per requested unit
NEAR_DUP = 0.6  # Jaccard of 5-character shingles above which two units are near-duplicates


@dataclass(frozen=True)
class Candidate:
    """One unlabelled unit: a paragraph and where it came from."""

    id: str
    text: str
    source: str  # the group the batch is spread over (a repository, a file)
    origin: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Selected:
    """A unit chosen for labelling, with the model's proposal for the labeller to correct."""

    candidate: Candidate
    selected_by: str
    uncertainty: float
    proposed: list[str]
    scores: dict[str, float]

    def record(self) -> dict[str, Any]:
        c = self.candidate
        return {
            "id": c.id,
            "text": c.text,
            **c.origin,
            "source": c.source,
            "selected_by": self.selected_by,
            "uncertainty": round(self.uncertainty, 4),
            "proposed": self.proposed,
            "scores": self.scores,
            "labels": None,
        }


def uncertainty(proba: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Per unit, how close its scores are to the themes' thresholds, in [0, 1].

    A theme's closeness is ``1 - |p - t| / max(t, 1 - t)`` (1 on the threshold, 0 at the far
    end); a unit's uncertainty is its largest closeness plus a quarter of its second largest,
    so a unit torn between two themes ranks above one near a single threshold.
    """
    scale = np.maximum(thresholds, 1.0 - thresholds)
    close = 1.0 - np.abs(proba - thresholds) / scale
    top = -np.sort(-close, axis=1)
    second = top[:, 1] if top.shape[1] > 1 else 0.0
    return np.clip((top[:, 0] + 0.25 * second) / 1.25, 0.0, 1.0)


def _shingles(text: str, k: int = 5) -> set[str]:
    t = "".join(text.split())
    return {t[i : i + k] for i in range(max(1, len(t) - k + 1))}


def _near_duplicate(s: set[str], chosen: list[set[str]]) -> bool:
    return any(len(s & c) / max(1, len(s | c)) >= NEAR_DUP for c in chosen)


def _tiebreak(seed: int, uid: str) -> float:
    """A stable pseudo-random number per (seed, id): ties and random draws are reproducible."""
    h = hashlib.sha1(f"{seed}:{uid}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


@dataclass(order=True)
class _Ranked:
    key: tuple[float, float]
    candidate: Candidate = field(compare=False)
    proba: np.ndarray = field(compare=False)
    uncertainty: float = field(compare=False)


def _chunks(items: Iterable[Candidate], size: int) -> Iterator[list[Candidate]]:
    chunk: list[Candidate] = []
    for c in items:
        chunk.append(c)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _spread(
    ranked: list[_Ranked],
    n: int,
    cluster: Callable[[_Ranked], str],
    chosen_shingles: list[set[str]],
    round_robin: bool,
) -> list[_Ranked]:
    """Take ``n`` from ``ranked`` (best first), skipping near-duplicates; either round-robin over
    clusters, or greedily with no cluster taking more than its fair share twice over."""
    out: list[_Ranked] = []
    if round_robin:
        queues: dict[str, list[_Ranked]] = defaultdict(list)
        for r in ranked:
            queues[cluster(r)].append(r)
        order = sorted(queues, key=lambda k: (-queues[k][0].key[0], k))
        pos = dict.fromkeys(order, 0)
        while len(out) < n and any(pos[k] < len(queues[k]) for k in order):
            for k in order:
                while pos[k] < len(queues[k]):
                    r = queues[k][pos[k]]
                    pos[k] += 1
                    s = _shingles(r.candidate.text)
                    if not _near_duplicate(s, chosen_shingles):
                        chosen_shingles.append(s)
                        out.append(r)
                        break
                if len(out) >= n:
                    break
        return out
    n_clusters = max(1, len({cluster(r) for r in ranked}))
    cap = max(1, math.ceil(2 * n / n_clusters))
    taken: dict[str, int] = defaultdict(int)
    for r in ranked:
        if len(out) >= n:
            break
        k = cluster(r)
        if taken[k] >= cap:
            continue
        s = _shingles(r.candidate.text)
        if _near_duplicate(s, chosen_shingles):
            continue
        chosen_shingles.append(s)
        taken[k] += 1
        out.append(r)
    return out


def select(
    model: Any,
    candidates: Iterable[Candidate],
    n: int,
    *,
    strategy: str = "uncertainty",
    random_share: float = 0.1,
    seed: int = 0,
    exclude: Iterable[str] = (),
) -> list[Selected]:
    """The ``n`` candidates most worth labelling next.

    Parameters
    ----------
    model : Pipeline
        A fitted model from the store (raw text in, theme scores out).
    candidates : iterable of Candidate
        Unlabelled units; streamed, scored in chunks.
    n : int
        Batch size.
    strategy : {"uncertainty", "diverse", "random"}
    random_share : float
        Share of the batch drawn at random (marked ``selected_by: random``) when the strategy is
        not ``random`` itself.
    seed : int
        Same model, candidates, ``n`` and seed: same batch.
    exclude : iterable of str
        Texts' sha1s (or ids) already labelled anywhere: never queued again.

    Examples
    --------
    >>> select(model, [Candidate("a", "全面开展安全生产隐患排查。", "x")], 1)  # doctest: +SKIP
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {sorted(STRATEGIES)}")
    from pipeline.predict import Predictor

    predictor = Predictor(model)
    thresholds = predictor.thresholds
    themes = predictor.themes
    skip = set(exclude)
    n_random = n if strategy == "random" else round(n * random_share)
    n_main = n - n_random
    keep = max(SHORTLIST * max(n_main, 1), 1)
    shortlist: list[_Ranked] = []  # a min-heap of the best `keep` by key
    reservoir: list[tuple[float, _Ranked]] = []  # a uniform sample: the smallest random keys
    seen: set[str] = set()
    for chunk in _chunks(candidates, CHUNK):
        fresh = []
        for c in chunk:
            h = sha1_text(c.text)
            if h in skip or c.id in skip or h in seen or not c.text.strip():
                continue
            seen.add(h)
            fresh.append(c)
        if not fresh:
            continue
        _, proba, _ = predictor.score_paragraphs([c.text for c in fresh])
        unc = uncertainty(proba, thresholds)
        for c, p, u in zip(fresh, proba, unc, strict=True):
            r = _Ranked((float(u), _tiebreak(seed, c.id)), c, p, float(u))
            if n_main:
                if len(shortlist) < keep:
                    heapq.heappush(shortlist, r)
                elif r.key > shortlist[0].key:
                    heapq.heapreplace(shortlist, r)
            if n_random:
                draw = -_tiebreak(seed + 1, c.id)  # max-heap of the smallest draws
                if len(reservoir) < SHORTLIST * n_random:
                    heapq.heappush(reservoir, (draw, r))
                elif draw > reservoir[0][0]:
                    heapq.heapreplace(reservoir, (draw, r))
    ranked = sorted(shortlist, reverse=True)

    def leaning(r: _Ranked) -> str:
        return f"{r.candidate.source}|{themes[int(np.argmax(r.proba - thresholds))]}"

    chosen_shingles: list[set[str]] = []
    main = STRATEGIES[strategy](ranked, n_main, leaning, chosen_shingles) if n_main else []
    taken = {r.candidate.id for r in main}
    pool = [r for _, r in sorted(reservoir, reverse=True) if r.candidate.id not in taken]
    rand = _spread(pool, n_random, lambda r: r.candidate.id, chosen_shingles, round_robin=False)

    def selected(r: _Ranked, by: str) -> Selected:
        order = np.argsort(-r.proba)
        return Selected(
            r.candidate,
            by,
            r.uncertainty,
            [themes[j] for j in order if r.proba[j] >= thresholds[j]],
            {t: round(float(r.proba[j]), 4) for j, t in enumerate(themes)},
        )

    return [selected(r, strategy) for r in main] + [selected(r, "random") for r in rand]


def _by_uncertainty(
    ranked: list[_Ranked], n: int, cluster: Callable[[_Ranked], str], shingles: list[set[str]]
) -> list[_Ranked]:
    return _spread(ranked, n, cluster, shingles, round_robin=False)


def _diverse(
    ranked: list[_Ranked], n: int, cluster: Callable[[_Ranked], str], shingles: list[set[str]]
) -> list[_Ranked]:
    return _spread(ranked, n, cluster, shingles, round_robin=True)


def _random(
    ranked: list[_Ranked], n: int, cluster: Callable[[_Ranked], str], shingles: list[set[str]]
) -> list[_Ranked]:
    return []  # the whole batch comes from the random share


Strategy = Callable[[list[_Ranked], int, Callable[[_Ranked], str], list[set[str]]], list[_Ranked]]
STRATEGIES: dict[str, Strategy] = {
    "uncertainty": _by_uncertainty,
    "diverse": _diverse,
    "random": _random,
}


def candidates_from(items: Iterable[Any], split: Callable[[str], Sequence[str]]) -> Iterator[Any]:
    """Candidates from documents (:mod:`pipeline.documents` items): each document cut into units
    as ingest cuts them; a unit keeps its document's origin (JSONL fields such as
    ``repo``/``commit``/``path``, or the file and line). Document errors are passed through."""
    from pipeline.documents import Document

    for item in items:
        if not isinstance(item, Document):
            yield item
            continue
        meta = dict(item.meta)
        source = str(meta.get("repo") or item.source.rsplit(":", 1)[0])
        keys = ("repo", "commit", "path", "region", "year", "doctype")
        origin: dict[str, Any] = {k: meta[k] for k in keys if k in meta}
        origin.setdefault("file", item.source)
        paragraphs = split(item.text)
        if len(paragraphs) == 1:  # a paragraph already (a pool record): keep its text as it is
            yield Candidate(item.id, item.text.strip(), source, origin)
            continue
        for i, text in enumerate(paragraphs):
            yield Candidate(f"{item.id}#{i + 1}", text, source, origin)
