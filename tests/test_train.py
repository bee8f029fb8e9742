from __future__ import annotations

import numpy as np
import pytest

from pipeline.train import ThemeClassifier, best_threshold


def test_best_threshold_cuts_between_scores_to_maximise_f1() -> None:
    y = np.array([1, 1, 0, 1, 0, 0])
    s = np.array([0.9, 0.8, 0.7, 0.6, 0.3, 0.1])
    t = best_threshold(y, s)
    assert 0.3 < t < 0.6  # keeps all three positives, admits one false positive: F1 0.857
    assert ((s >= t) == np.array([1, 1, 1, 1, 0, 0], bool)).all()


def test_best_threshold_with_no_positive_predicts_nothing() -> None:
    s = np.array([0.2, 0.4])
    assert best_threshold(np.array([0, 0]), s) > s.max()


def _data(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Real rows are harder (weaker signal) than written rows, as in our corpus."""
    rng = np.random.default_rng(seed)
    n_written, n_real = 300, 60
    y = rng.integers(0, 2, n_written + n_real)
    signal = np.r_[np.full(n_written, 3.0), np.full(n_real, 0.8)]
    X = np.c_[y * signal + rng.normal(0, 1, len(y)), rng.normal(0, 1, len(y))]
    real = np.r_[np.zeros(n_written, bool), np.ones(n_real, bool)]
    return X, y.reshape(-1, 1), real


@pytest.mark.parametrize("tune_on", ["real", "all"])
def test_thresholds_follow_the_tune_on_setting(tune_on: str) -> None:
    X, Y, real = _data()
    clf = ThemeClassifier(themes=("t",), tune_on=tune_on, random_state=0)
    with_mask = clf.fit(X, Y, tune_mask=real).thresholds_[0]
    without = (
        ThemeClassifier(themes=("t",), tune_on=tune_on, random_state=0).fit(X, Y).thresholds_[0]
    )
    if tune_on == "all":
        assert with_mask == without  # the mask is ignored
    else:
        assert with_mask < without  # real rows score lower: their best cut-off is lower


def test_too_few_real_positives_fall_back_to_all_units() -> None:
    X, Y, real = _data()
    mask = real & (Y[:, 0] == 0)  # real rows, but none positive
    a = ThemeClassifier(themes=("t",), random_state=0).fit(X, Y, tune_mask=mask).thresholds_[0]
    b = ThemeClassifier(themes=("t",), random_state=0).fit(X, Y).thresholds_[0]
    assert a == b


def test_calibrated_svc_survives_a_theme_with_two_positives() -> None:
    from pipeline.classifiers import CalibratedSVC

    rng = np.random.default_rng(0)
    X = rng.normal(0, 1, (40, 3))
    y = np.zeros(40, int)
    y[:2] = 1  # too few positives for 3-fold calibration
    X[:2] += 3
    p = CalibratedSVC().fit(X, y).predict_proba(X)
    assert p.shape == (40, 2) and p[:2, 1].mean() > p[2:, 1].mean()
    y[1] = 0  # one positive: falls back to logistic regression
    assert CalibratedSVC().fit(X, y).predict_proba(X).shape == (40, 2)


def test_token_ngrams_analyzer_gives_sklearns_word_ngrams_on_real_text() -> None:
    """The word branch's analyzer builds the same vocabulary and matrix as sklearn's own word
    n-grams over the joined tokens."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    from pipeline.features import TokenNgrams
    from pipeline.paragraphs import ingest_text
    from pipeline.segment import Segmenter, read_stopwords, read_userdict

    from .conftest import SEEDS, raw_text

    seg = Segmenter(
        user_words=read_userdict(SEEDS / "userdict.txt"),
        stopwords=read_stopwords(SEEDS / "stopwords.txt"),
    ).fit()
    docs = seg.transform([u.text for u in ingest_text("d", raw_text("004")).units])
    ours = TfidfVectorizer(analyzer=TokenNgrams((1, 3)), sublinear_tf=True)  # type: ignore[arg-type]
    ref = TfidfVectorizer(
        preprocessor=lambda d: " ".join(d.tokens),
        tokenizer=str.split,
        token_pattern=None,
        lowercase=False,
        ngram_range=(1, 3),
        sublinear_tf=True,
    )
    A = ours.fit_transform(docs[::2])
    B = ref.fit_transform(docs[::2])
    assert ours.vocabulary_ == ref.vocabulary_ and len(ours.vocabulary_) > 1000
    assert (A != B).nnz == 0
    assert (ours.transform(docs[1::2]) != ref.transform(docs[1::2])).nnz == 0


@pytest.mark.parametrize("branch", ["word", "char"])
def test_fast_vectorizer_transforms_exactly_like_sklearns(branch: str) -> None:
    """FastTfidfVectorizer only replaces the counting in transform: same matrix, for the word
    branch's analyzer and for character n-grams, on real seed text."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    from pipeline.features import FastTfidfVectorizer, TokenNgrams, doc_text
    from pipeline.paragraphs import ingest_text
    from pipeline.segment import Segmenter, read_stopwords, read_userdict

    from .conftest import SEEDS, raw_text

    seg = Segmenter(
        user_words=read_userdict(SEEDS / "userdict.txt"),
        stopwords=read_stopwords(SEEDS / "stopwords.txt"),
    ).fit()
    units = [u.text for p in ("001", "003", "004") for u in ingest_text(p, raw_text(p)).units]
    docs = seg.transform(units)
    kw: dict = (
        {"analyzer": TokenNgrams((1, 2))}
        if branch == "word"
        else {"analyzer": "char", "preprocessor": doc_text, "ngram_range": (1, 3), "min_df": 2}
    )
    ref = TfidfVectorizer(sublinear_tf=True, dtype=np.float32, **kw).fit(docs[::2])
    fast = FastTfidfVectorizer(sublinear_tf=True, dtype=np.float32, **kw).fit(docs[::2])
    assert fast.vocabulary_ == ref.vocabulary_
    A, B = ref.transform(docs[1::2]), fast.transform(docs[1::2])
    assert A.nnz > 1000 and (A != B).nnz == 0
    assert (A.indices == B.indices).all() and (A.indptr == B.indptr).all()


def test_a_tuned_threshold_is_never_zero_or_negative() -> None:
    # a theme whose few positives all score 0 (what a toy dataset gave): the best cut used to be
    # -0.0005, which tagged every unit with the theme
    from pipeline.train import best_threshold

    y = np.array([1, 0, 1, 0])
    t = best_threshold(y, np.zeros(4))
    assert t > 0 and not (np.zeros(4) >= t).any()
    assert best_threshold(y, np.array([0.9, 0.2, 0.0, 0.0])) > 0


def test_a_theme_without_enough_labelled_units_is_refused_or_warned() -> None:
    from pipeline.errors import DataError
    from pipeline.train import check_positives

    Y = np.zeros((40, 3), dtype=int)
    Y[:30, 0] = 1
    Y[:5, 1] = 1
    Y[:2, 2] = 1
    with pytest.raises(DataError, match="theme c has 2 labelled units"):
        check_positives(Y, ["a", "b", "c"], "toy.jsonl")
    Y[:3, 2] = 1
    assert [w.split()[1] for w in check_positives(Y, ["a", "b", "c"], "toy.jsonl")] == ["b", "c"]
