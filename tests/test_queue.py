"""The label queue and the labelling round trip on real pool paragraphs: selection, import
validation, agreement and adjudication."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import DataError
from pipeline.labels import adjudicate, import_pass, load_real, load_written, read_labelled_batch
from pipeline.paragraphs import sha1_text
from pipeline.queue import Candidate, select, uncertainty
from pipeline.themes import load_taxonomy

from .conftest import fit_small_model, run_in

SEEDS = Path(__file__).resolve().parent.parent / "seeds"
TAX = load_taxonomy(SEEDS / "themes.yaml")


@pytest.fixture(scope="module")
def model() -> object:
    """A small model trained on 300 written paragraphs (seconds)."""
    examples = load_written(SEEDS / "extra")[::5][:300]
    return fit_small_model(examples)


@pytest.fixture(scope="module")
def pool() -> list[Candidate]:
    """1,500 real pool paragraphs (every 13th, so every source), plus near-duplicates of 50."""
    out = []
    with gzip.open(SEEDS / "pool" / "pool.jsonl.gz", "rt", encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            if i % 13 or len(out) >= 1500:
                continue
            o = json.loads(line)
            out.append(Candidate(o["id"], o["text"], o["repo"], {"repo": o["repo"]}))
    twins = [Candidate(c.id + "-twin", c.text[:-2] + "。", c.source) for c in out[:50]]
    return out + twins


def test_uncertainty_is_highest_on_the_threshold() -> None:
    t = np.array([0.3, 0.6])
    u = uncertainty(np.array([[0.3, 0.0], [0.9, 0.0], [0.3, 0.6]]), t)
    assert u[0] > u[1] and u[2] > u[0]


@pytest.mark.parametrize("strategy", ["uncertainty", "diverse", "random"])
def test_batch_has_no_labelled_unit_and_no_near_duplicates(
    model: object, pool: list[Candidate], strategy: str
) -> None:
    labelled = {sha1_text(c.text) for c in pool[::5]}
    batch = select(model, pool, 60, strategy=strategy, seed=3, exclude=labelled)
    assert len(batch) == 60
    texts = [s.candidate.text for s in batch]
    assert not {sha1_text(t) for t in texts} & labelled
    ids = {s.candidate.id for s in batch}
    assert len(ids) == 60
    assert not any(i.endswith("-twin") and i.removesuffix("-twin") in ids for i in ids)
    if strategy != "random":
        assert sum(s.selected_by == "random" for s in batch) == 6  # the 10 % random share
        assert len({s.candidate.source for s in batch}) >= 3  # spread over sources
        rest = [s.uncertainty for s in batch if s.selected_by == strategy]
        assert np.mean(rest) > np.mean([s.uncertainty for s in batch if s.selected_by == "random"])


def test_same_model_pool_n_and_seed_give_the_same_batch(
    model: object, pool: list[Candidate]
) -> None:
    a = [s.record() for s in select(model, pool, 40, seed=5)]
    b = [s.record() for s in select(model, iter(pool), 40, seed=5)]
    c = [s.record() for s in select(model, pool, 40, seed=6)]
    assert a == b
    assert [r["id"] for r in a if r["selected_by"] == "random"] != [
        r["id"] for r in c if r["selected_by"] == "random"
    ]


def test_records_carry_origin_proposal_and_an_empty_label_field(
    model: object, pool: list[Candidate]
) -> None:
    rec = select(model, pool, 5, seed=1)[0].record()
    assert rec["repo"] and rec["labels"] is None
    assert set(rec["scores"]) == set(TAX.ids)
    assert all(t in TAX.ids for t in rec["proposed"])


def _batch(tmp_path: Path, name: str, rows: list[dict]) -> Path:
    p = tmp_path / name
    p.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return p


REAL = load_real(SEEDS / "real")[:6]


def _rows(labels: list[list[str]]) -> list[dict]:
    return [
        {"id": e.id, "text": e.text, "repo": e.source.removeprefix("pool:"), "labels": lab}
        for e, lab in zip(REAL, labels, strict=True)
    ]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r[2].update(labels=["sports"]), r":3: .*unknown theme id\(s\) \['sports'\]"),
        (lambda r: r[1].update(labels=None), r":2: .*'labels' not filled in"),
        (lambda r: r[4].update(text=r[4]["text"] + "!"), r":5: .*text differs from the pool's"),
        (lambda r: r.append(dict(r[0])), r":7: .*duplicate id \(first at line 1\)"),
    ],
)
def test_import_refuses_a_bad_batch_whole_naming_file_and_line(
    tmp_path: Path, change, message: str
) -> None:
    rows = _rows([list(e.labels) for e in REAL])
    change(rows)
    path = _batch(tmp_path, "b.jsonl", rows)
    with pytest.raises(DataError, match=message):
        read_labelled_batch(path, TAX)
    with pytest.raises(DataError):
        import_pass(path, TAX, tmp_path / "passes", "b", "A")
    assert not (tmp_path / "passes").exists()  # nothing half-imported


def test_two_passes_agreement_and_adjudication_into_the_real_corpus(tmp_path: Path) -> None:
    gold = [list(e.labels) for e in REAL]
    other = [list(x) for x in gold]
    other[0] = ["culture"] if gold[0] != ["culture"] else ["rural"]
    passes, real = tmp_path / "passes", tmp_path / "real"
    import_pass(_batch(tmp_path, "a.jsonl", _rows(gold)), TAX, passes, "q1", "A")
    import_pass(_batch(tmp_path, "b.jsonl", _rows(other)), TAX, passes, "q1", "B")
    first = adjudicate(TAX, passes, real, "q1")
    assert first.disagreements == 1 and first.written is None and first.pending is not None
    assert first.agreement["exact"] == 5
    pending = [json.loads(x) for x in first.pending.read_text("utf-8").splitlines()]
    assert [p["id"] for p in pending] == [REAL[0].id]
    pending[0].update(labels=gold[0], reason="pass A follows the guideline")
    decided = _batch(tmp_path, "decided.jsonl", pending)
    done = adjudicate(TAX, passes, real, "q1", decided)
    assert done.written == real / "q1.jsonl"
    out = load_real(real)
    assert [e.id for e in out] == [e.id for e in REAL]
    assert [list(e.labels) for e in out] == [sorted(g, key=TAX.ids.index) for g in gold]


def test_queue_cli_writes_a_batch_without_labelled_units(trained: Path, tmp_path: Path) -> None:
    pool_file = tmp_path / "pool.jsonl"
    with gzip.open(SEEDS / "pool" / "pool.jsonl.gz", "rt", encoding="utf-8") as fh:
        pool_file.write_text("".join(next(fh) for _ in range(400)), "utf-8")
    out = tmp_path / "batch.csv"
    args = ["queue", str(pool_file), "-n", "20", "--format", "csv", "-o", str(out)]
    args += ["--exp", "experiments/small.yaml", "--models", str(trained / "models")]
    assert run_in(trained, *args) == 0
    lines = out.read_text("utf-8").splitlines()
    assert lines[0].startswith("id,text,labels,proposed") and len(lines) == 21
