from __future__ import annotations

import pickle

import pytest

from pipeline.paragraphs import ingest_text
from pipeline.segment import Segmenter, read_stopwords, read_userdict, segment_texts

from .conftest import SEEDS, raw_text


@pytest.fixture(scope="module")
def seg() -> Segmenter:
    return Segmenter(
        user_words=read_userdict(SEEDS / "userdict.txt"),
        stopwords=read_stopwords(SEEDS / "stopwords.txt"),
    ).fit()


def test_userdict_keeps_domain_terms_whole(seg: Segmenter) -> None:
    tokens = seg.transform(["加快发展新质生产力,营商环境持续改善,做好接诉即办和隐患排查。"])[
        0
    ].tokens
    for term in ("新质生产力", "营商环境", "接诉即办", "隐患排查"):
        assert term in tokens


def test_segmenter_drops_stopwords_punctuation_and_numbers(seg: Segmenter) -> None:
    tokens = seg.transform(["2024年,我们的工作取得了成效。"])[0].tokens
    assert "的" not in tokens and "," not in tokens and "2024" not in tokens


def test_segmenter_pickles_without_its_tokenizer_and_segments_the_same(seg: Segmenter) -> None:
    text = raw_text("001")[:400]
    before = seg.transform([text])
    blob = pickle.dumps(seg)
    assert b"jieba.Tokenizer" not in blob
    assert pickle.loads(blob).transform([text]) == before


def test_process_pool_keeps_input_order(seg: Segmenter) -> None:
    texts = [u.text for u in ingest_text("004", raw_text("004")).units] * 12
    assert segment_texts(texts, seg, jobs=2, chunk_size=32) == seg.transform(texts)


def test_rjieba_backend_segments_with_the_same_user_words() -> None:
    fast = Segmenter(backend="rjieba", user_words=(("新质生产力", 20000, None),)).fit()
    assert "新质生产力" in fast.transform(["发展新质生产力"])[0].tokens


def test_segmenter_rejects_a_bare_string(seg: Segmenter) -> None:
    with pytest.raises(ValueError, match="Iterable over raw text documents expected"):
        seg.transform("一段文字")


def test_memoised_token_filter_matches_the_rule_on_real_text(seg: Segmenter) -> None:
    """The per-instance memo of kept tokens gives what the stopword/noise rule gives."""
    from pipeline.segment import _NOISE

    fresh = Segmenter(**seg.get_params()).fit()
    stop = set(seg.stopwords)
    units = [u.text for u in ingest_text("d", raw_text("003")).units]
    for text in units + units:  # the second pass runs on a full memo
        got = fresh.tokens(text)
        raw = fresh._tokenizer().lcut(text)
        assert got == tuple(w for w in raw if w.strip() and w not in stop and not _NOISE.match(w))
    assert "_memo" not in pickle.loads(pickle.dumps(fresh)).__dict__
