from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.errors import DataError
from pipeline.ingest import ingest_corpus
from pipeline.labels import GoldRecord, check_labels, load_gold, load_written
from pipeline.themes import load_taxonomy

from .conftest import SEEDS


@pytest.fixture(scope="module")
def units():
    return ingest_corpus(SEEDS / "raw").units


def test_repository_labels_pass_the_check(units) -> None:
    rep = check_labels(
        units,
        load_gold(SEEDS / "gold.jsonl"),
        load_written(SEEDS / "extra"),
        load_taxonomy(SEEDS / "themes.yaml"),
    )
    assert rep.problems == []
    assert rep.seed_counts["industry"] > 20 and rep.seed_counts["rural"] > 0


def test_check_reports_stale_sha1_and_unlabelled_unit(units) -> None:
    gold = load_gold(SEEDS / "gold.jsonl")
    first = gold[0]
    gold[0] = GoldRecord(first.id, "0" * 40, first.labels, first.line)
    rep = check_labels(units, gold, [], load_taxonomy(SEEDS / "themes.yaml"))
    assert any("stale label" in p and first.id in p for p in rep.problems)
    assert any(f"unit {first.id} has no label" in p for p in rep.problems)


def test_check_reports_unknown_theme_id(units) -> None:
    gold = load_gold(SEEDS / "gold.jsonl")
    g = gold[3]
    gold[3] = GoldRecord(g.id, g.sha1, ("sports",), g.line)
    rep = check_labels(units, gold, [], load_taxonomy(SEEDS / "themes.yaml"))
    assert any("unknown theme id 'sports'" in p for p in rep.problems)


def test_load_gold_names_file_and_line_of_bad_json(tmp_path: Path) -> None:
    p = tmp_path / "gold.jsonl"
    p.write_text(json.dumps({"id": "a", "sha1": "b", "labels": []}) + "\n{oops\n", "utf-8")
    with pytest.raises(DataError, match=r"gold\.jsonl:2: invalid JSON"):
        load_gold(p)
