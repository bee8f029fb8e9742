"""Out-of-source evaluation on a tiny real fixture: labelled pool paragraphs from three sources.

The property that matters: a held-out source's units are scored by a model that saw nothing from
that source, and the figures are computed on real units only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.evaluate import baseline_fitter
from pipeline.labels import load_real, load_written
from pipeline.segment import Segmenter, read_stopwords, read_userdict
from pipeline.sources import (
    SourceData,
    evaluate_out_of_source,
    leave_one_source_out,
    present_macro_f1,
)
from pipeline.themes import load_taxonomy

SEEDS = Path(__file__).resolve().parent.parent / "seeds"
SOURCES = (
    "pool:johncodes404/china-provincial-gov-reports-2026",
    "pool:briny-fish/gov_Text_proc",
    "pool:jiaoluoli/spider-on-Chinese-government-websites",
)


@pytest.fixture(scope="module")
def data() -> SourceData:
    """60 real paragraphs from each of three sources, plus 60 written ones (training only)."""
    pool = load_real(SEEDS / "real")
    real = [e for s in SOURCES for e in [x for x in pool if x.source == s][:60]]
    written = load_written(SEEDS / "extra")[:60]
    examples = real + written
    tax = load_taxonomy(SEEDS / "themes.yaml")
    seg = Segmenter(
        backend="rjieba",
        user_words=read_userdict(SEEDS / "userdict.txt"),
        stopwords=read_stopwords(SEEDS / "stopwords.txt"),
    )
    from pipeline.labels import label_matrix

    return SourceData(
        docs=seg.transform([e.text for e in examples]),
        Y=label_matrix(examples, tax.ids),
        ids=[e.id for e in examples],
        texts=[e.text for e in examples],
        sources=[e.source for e in examples],
        groups=[e.source if e.real else e.group for e in examples],
        doctypes=[e.doctype or "unknown" for e in examples],
        real=np.array([e.real for e in examples]),
        documents=[e.group for e in examples],
        usable=np.ones(len(examples), dtype=bool),
    )


class Spy:
    """A fitter that records what it was trained on and predicts the training prevalence."""

    def __init__(self) -> None:
        self.seen: list[set[str]] = []

    def __call__(self, docs: list[Any], Y: np.ndarray, groups: list[str], real: np.ndarray) -> Any:
        self.seen.append({d.text for d in docs})
        prevalence = Y.mean(axis=0)

        class Model:
            def predict_proba(self, X: list[Any]) -> np.ndarray:
                return np.tile(prevalence, (len(X), 1))

            def predict(self, X: list[Any]) -> np.ndarray:
                return (self.predict_proba(X) >= 0.5).astype(int)

        return Model()


def test_each_source_is_scored_by_a_model_that_never_saw_it(data: SourceData) -> None:
    spy = Spy()
    leave_one_source_out(data, spy)
    assert len(spy.seen) == 3  # one fold per real source; written text is never held out
    for source, seen in zip(sorted(SOURCES), spy.seen, strict=True):
        held_out = {d.text for d, s in zip(data.docs, data.sources, strict=True) if s == source}
        assert held_out and not (held_out & seen)
        written = {d.text for d, r in zip(data.docs, data.real, strict=True) if not r}
        assert written <= seen  # the written corpus is always on the training side


def test_units_the_experiment_does_not_learn_from_are_only_scored(data: SourceData) -> None:
    spy = Spy()
    usable = data.real.copy()  # e.g. an experiment without the written corpus
    restricted = SourceData(**{**data.__dict__, "usable": usable})
    _, _, real_train = leave_one_source_out(restricted, spy)
    written = {d.text for d, r in zip(data.docs, data.real, strict=True) if not r}
    assert written and all(not (written & seen) for seen in spy.seen)
    assert real_train == pytest.approx(120)  # two of three 60-unit sources per fold


def test_report_scores_real_units_only_per_source_and_doctype(data: SourceData) -> None:
    from pipeline.config import parse_config
    from pipeline.evaluate import model_fitter

    tax = load_taxonomy(SEEDS / "themes.yaml")
    cfg = parse_config({"classifier": {"kind": "logreg"}, "thresholds": {"inner_folds": 2}})
    rep = evaluate_out_of_source(
        data,
        model_fitter(cfg, tax.ids, tax.lexicons()),
        baseline_fitter(tax.lexicons()),
        tax.ids,
        learning_curve=(0.5, 1.0),
    )
    assert rep["units"] == 180
    assert set(rep["per_source"]) == set(SOURCES)
    assert sum(v["units"] for v in rep["per_source"].values()) == 180
    assert sum(v["units"] for v in rep["per_doctype"].values()) == 180
    assert 0.0 < rep["model"]["macro_f1"] <= 1.0
    assert 0.0 < rep["baseline"]["macro_f1"] <= 1.0
    assert [p["fraction"] for p in rep["learning_curve_real"]] == [0.5, 1.0]
    lc = rep["learning_curve_real"]
    assert lc[0]["real_training_units"] < lc[1]["real_training_units"] == 120
    assert all(len(v) <= 3 for v in rep["errors_per_source"].values())


def test_present_macro_f1_ignores_themes_a_source_lacks() -> None:
    Y = np.array([[1, 0], [0, 0]])
    assert present_macro_f1(Y, np.array([[1, 1], [0, 1]])) == 1.0
    assert present_macro_f1(np.zeros((2, 2), int), np.zeros((2, 2), int)) == 0.0


def test_queue_units_train_but_are_never_scored_and_arms_match_in_size(data: SourceData) -> None:
    queue = np.zeros(len(data.real), dtype=bool)
    queue[[i for i, s in enumerate(data.sources) if s == SOURCES[0]][:20]] = True
    q = SourceData(**{**data.__dict__, "queue": queue})
    assert q.scored.sum() == 160 and not (q.scored & queue).any()
    spy = Spy()
    leave_one_source_out(q, spy)
    queue_texts = {d.text for d, m in zip(q.docs, queue, strict=True) if m}
    assert queue_texts <= spy.seen[1] | spy.seen[2]  # trained on by the other sources' folds
    _, _, n_queue = leave_one_source_out(q, Spy(), real_fraction=0.5, arm="queue")
    _, _, n_random = leave_one_source_out(q, Spy(), real_fraction=0.5, arm="random")
    assert abs(n_queue - n_random) <= 2  # equal labelling effort (whole documents)
