from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import DataError
from pipeline.ingest import ingest_corpus, write_checksums
from pipeline.paragraphs import ingest_text, split_long
from pipeline.textio import decode_bytes

from .conftest import SEEDS, raw_text


def test_ingest_rejoins_sentence_broken_across_lines() -> None:
    units = ingest_text("001", raw_text("001")).units
    joined = [u.text for u in units if "要充分发挥协同机制作用" in u.text]
    assert len(joined) == 1
    assert not any(u.text.startswith("挥协同机制作用") for u in units)


def test_ingest_keeps_one_copy_of_paragraph_repeated_four_times() -> None:
    units = ingest_text("001", raw_text("001")).units
    npc = [u for u in units if "认真履行宪法法律赋予的监督权" in u.text]
    assert len(npc) == 1
    assert not npc[0].text.startswith("本报讯")  # dateline stripped


def test_ingest_drops_trailing_credits_link_list_and_share_prompt_of_000() -> None:
    result = ingest_text("000", raw_text("000"))
    texts = [u.text for u in result.units]
    assert texts[-1] == "工委委员、管委会副主任李全,管委会副主任傅大瑞分别参加调研。"
    reasons = {d.text: d.reason for d in result.dropped}
    assert reasons["END"] == "credit"
    assert reasons["编辑:王弈鸥"] == "credit"
    assert reasons["校对:耿静"] == "credit"
    assert reasons["热点回顾"] == "link_list"
    assert reasons["点亮在看,为北京亦庄加油"] == "link_list"


def test_ingest_splits_newspaper_page_into_articles_at_headings() -> None:
    units = ingest_text("003", raw_text("003")).units
    article_of = {u.text[:12]: u.article for u in units}
    meeting = next(a for t, a in article_of.items() if t.startswith("近日,通州区召开月度"))
    xinchuang = next(a for t, a in article_of.items() if t.startswith("信创产业作为国家"))
    sports = next(a for t, a in article_of.items() if t.startswith("昨日,由通州区政府"))
    assert len({meeting, xinchuang, sports}) == 3
    assert len({u.article for u in units}) >= 8


def test_ingest_drops_captions_between_paragraphs() -> None:
    result = ingest_text("002", raw_text("002"))
    captions = [d.text for d in result.dropped if d.reason == "caption"]
    assert "察看氢能设备" in captions
    assert all(u.text != "察看氢能设备" for u in result.units)


def test_ingest_unit_ids_are_stable_and_sha1_matches_text() -> None:
    a = ingest_text("004", raw_text("004")).units
    b = ingest_text("004", raw_text("004")).units
    assert [u.id for u in a] == [u.id for u in b]
    import hashlib

    assert all(u.sha1 == hashlib.sha1(u.text.encode()).hexdigest() for u in a)
    assert a[0].id == "004:1:1"


def test_split_long_cuts_at_sentence_ends_into_balanced_chunks() -> None:
    paras = [u.text for u in ingest_text("004", raw_text("004")).units]
    long_text = "".join(paras[1:8])
    assert len(long_text) > 1000
    chunks = split_long(long_text, 500)
    assert "".join(chunks) == long_text
    assert all(c.endswith(("。", ";", "”")) for c in chunks[:-1])
    assert max(len(c) for c in chunks) <= 500


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gb18030", "gbk", "utf-16"])
def test_decode_bytes_reads_supported_encodings(encoding: str) -> None:
    text = "强化安全生产隐患排查。"
    assert decode_bytes(text.encode(encoding)) == text


def test_decode_bytes_names_the_file_when_it_cannot_decode() -> None:
    with pytest.raises(DataError, match=r"bad\.txt: cannot decode"):
        decode_bytes(b"abc\xffdef", "bad.txt")


def test_ingest_corpus_refuses_an_edited_raw_file(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    for p in (SEEDS / "raw").glob("*.txt"):
        (raw / p.name).write_bytes(p.read_bytes())
    write_checksums(raw, sorted(raw.glob("*.txt")))
    assert len(ingest_corpus(raw).units) > 100
    victim = sorted(raw.glob("*.txt"))[0]
    victim.write_text(victim.read_text("utf-8") + "\n新增一段。", "utf-8")
    with pytest.raises(DataError, match=f"{victim.name}: content changed"):
        ingest_corpus(raw)


def test_seed_raw_files_match_their_recorded_checksums() -> None:
    result = ingest_corpus(SEEDS / "raw")
    assert len(result.units) == sum(1 for _ in (SEEDS / "gold.jsonl").open())


def test_prediction_split_keeps_near_repeats_but_not_exact_repeats() -> None:
    """001 repeats one paragraph four times, with small edits: ingest keeps one copy; the
    prediction split (near_duplicates=False) drops only the exact copies."""
    text = raw_text("001")
    train = ingest_text("001", text)
    pred = ingest_text("001", text, near_duplicates=False)
    near = [d for d in train.dropped if d.reason == "near_duplicate"]
    assert near and not [d for d in pred.dropped if d.reason == "near_duplicate"]
    assert len(pred.units) > len(train.units)
    assert {u.text for u in train.units} <= {u.text for u in pred.units}
    texts = [u.text for u in pred.units]
    assert len(texts) == len(set(texts))  # exact repeats are still dropped


def test_normalize_fast_paths_match_the_full_rule_on_real_and_noisy_text() -> None:
    """normalize_line skips its regular expressions when no space-like character survives NFKC,
    and normalize_text handles one line directly; both must give what the full rule gives."""
    import json
    import random
    import re
    import unicodedata

    from pipeline.textio import _CJK_GAP, normalize_line, normalize_text

    spaces = re.compile(r"[ \t\u00a0\u2000-\u200b\u202f\u205f\ufeff]+")

    def line_rule(x: str) -> str:
        return _CJK_GAP.sub("", spaces.sub(" ", unicodedata.normalize("NFKC", x)).strip())

    def text_rule(t: str) -> str:
        lines = (line_rule(x) for x in t.replace("\r\n", "\n").replace("\r", "\n").split("\n"))
        return "\n".join(x for x in lines if x)

    texts = [raw_text(p) for p in ("000", "001", "002", "003", "004")]
    with (SEEDS / "extra" / "written_wa.jsonl").open(encoding="utf-8") as fh:
        texts += [json.loads(x)["text"] for x in fh]
    rng = random.Random(7)
    noise = " \t\u00a0\u2000\u200b\u202f\u205f\ufeff\u3000\x0c\x85\n\r"
    for _ in range(2000):
        chars = list(rng.choice(texts)[:200])
        for _ in range(5):
            chars.insert(rng.randrange(len(chars) + 1), rng.choice(noise))
        texts.append("".join(chars))
    for t in texts:
        assert normalize_text(t) == text_rule(t)
        for x in t.split("\n"):
            assert normalize_line(x) == line_rule(x)
