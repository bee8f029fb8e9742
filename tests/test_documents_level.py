"""Document-level themes (issue #15): ``main_themes`` and ``coverage`` beside the max-over-
paragraphs ``themes``, ``--top-k``, and the CSV column. A small model fitted in seconds on written
units and the real paragraphs the documents are built from, so what is tested is the bookkeeping,
not the model's quality."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest

from pipeline.cli import main
from pipeline.predict import MAIN_SHARE, Predictor, document_themes
from pipeline.registry import ModelStore

from .conftest import SEEDS, fit_small_model


def _pick(real: list[Any], theme: str, n: int) -> list[Any]:
    """The first ``n`` real paragraphs labelled with ``theme`` alone, of ordinary length."""
    return [e for e in real if e.labels == (theme,) and 80 <= len(e.text) <= 400][:n]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from pipeline.labels import load_real, load_written

    real = load_real(SEEDS / "real")
    env, safety, rural = (
        _pick(real, "environment", 5),
        _pick(real, "safety", 3),
        _pick(real, "rural", 3),
    )
    two = [e for e in real if len(e.labels) == 2 and 80 <= len(e.text) <= 400][:10]
    train = load_written(SEEDS / "extra")[::10][:150] + env + safety + rural + two
    model = fit_small_model(train)
    # a long document: four environment paragraphs, then one safety and one rural paragraph
    long_doc = "\n\n".join([e.text for e in env[:4]] + [safety[0].text, rural[0].text])
    root = tmp_path_factory.mktemp("doclevel")
    art = root / "model.joblib"
    joblib.dump(model, art)
    clf: Any = model.named_steps["clf"]  # type: ignore[attr-defined]
    manifest = {
        "config": {"evaluation": {"folds": 5, "repeats": 1}, "seed": 42},
        "training_data_sha256": "d",
        "metrics": {"macro_f1": 0.7},
        "thresholds": dict(zip(clf.themes, map(float, clf.thresholds_), strict=True)),
    }
    ModelStore(root / "models").add_version("gov-topics", art, manifest, model)
    return {
        "model": model,
        "predictor": Predictor(model),
        "long": long_doc,
        "two_themes": [e.text for e in two],
        "root": root,
    }


def _predict_cli(setup: dict[str, Any], text: str, *args: str) -> tuple[int, Path]:
    src = setup["root"] / "doc.txt"
    src.write_text(text, "utf-8")
    out = setup["root"] / ("out.csv" if "csv" in args else "out.jsonl")
    out.unlink(missing_ok=True)
    code = main(
        [
            "predict",
            str(src),
            "--models",
            str(setup["root"] / "models"),
            "--model",
            "gov-topics@latest",
            "-o",
            str(out),
            *args,
        ]
    )
    return code, out


def test_hand_made_scores_rank_main_themes_by_coverage_not_by_best_score() -> None:
    # theme 0: one short paragraph with a very high score; theme 1: two long paragraphs, lower;
    # theme 2: nowhere above its threshold
    proba = np.array([[0.99, 0.1, 0.2], [0.1, 0.6, 0.2], [0.2, 0.7, 0.1]])
    lengths = np.array([20.0, 100.0, 80.0])
    thresholds = np.array([0.5, 0.5, 0.5])
    coverage, themes, main = document_themes(proba, lengths, thresholds)
    assert themes == [0, 1]  # by best score: the short paragraph's theme first
    assert main == [1]  # 0.9 of the text; theme 0 covers 0.1 < MAIN_SHARE, and is not the top
    assert coverage.tolist() == pytest.approx([0.1, 0.9, 0.0])
    _, _, main_low = document_themes(proba, lengths, thresholds, share=0.05)
    assert main_low == [1, 0]  # both, most text first
    # nothing over the share: the best-covered theme is still the main theme
    _, _, main_high = document_themes(proba, lengths, thresholds, share=0.95)
    assert main_high == [1]


def test_long_real_document_main_themes_by_coverage_most_text_first(
    setup: dict[str, Any],
) -> None:
    rec = setup["predictor"].predict([setup["long"]], paragraphs=True)[0]
    cov = rec["coverage"]
    assert {"environment", "safety", "rural"} <= set(rec["themes"])  # the max rule: all three
    assert rec["main_themes"][0] == "environment"  # four of six paragraphs, most of the text
    assert cov["environment"] >= 0.5
    ranked = [cov[t] for t in rec["main_themes"]]
    assert ranked == sorted(ranked, reverse=True)
    # ``themes`` keeps its meaning: by best paragraph score; here the two orders differ
    assert rec["themes"] == sorted(rec["themes"], key=lambda t: -rec["scores"][t])
    assert rec["main_themes"] != rec["themes"]
    assert all(cov[t] >= MAIN_SHARE for t in rec["main_themes"][1:])
    assert set(rec["main_themes"]) <= set(rec["themes"])
    # coverage: every theme's share of the text in paragraphs tagged with it
    paras = rec["paragraphs"]
    total = sum(len(p["text"]) for p in paras)
    for t, c in cov.items():
        assert 0.0 <= c <= 1.0
        share = sum(len(p["text"]) for p in paras if t in p["themes"]) / total
        assert c == pytest.approx(share, abs=1e-4), t
        assert (c > 0) == (t in rec["themes"])  # a theme is covered iff the max rule has it
    mean_themes = sum(len(p["text"]) * len(p["themes"]) for p in paras) / total
    assert sum(cov.values()) == pytest.approx(mean_themes, abs=1e-3)


def test_single_paragraph_document_keeps_its_themes(setup: dict[str, Any]) -> None:
    predictor = setup["predictor"]
    texts = setup["two_themes"]
    recs = predictor.predict(texts)
    _, proba, _ = predictor.score_paragraphs(texts)  # each text is one paragraph
    multi = unsorted = 0
    for rec, p in zip(recs, proba, strict=True):
        expected = [predictor.themes[j] for j in np.argsort(-p) if p[j] >= predictor.thresholds[j]]
        assert rec["themes"] == expected  # the max rule, as before
        assert rec["main_themes"] == rec["themes"]  # same themes, same order
        assert {t for t, c in rec["coverage"].items() if c} == set(rec["themes"])
        assert all(rec["coverage"][t] == 1.0 for t in rec["themes"])
        multi += len(rec["themes"]) >= 2
        unsorted += rec["themes"] != sorted(rec["themes"], key=predictor.themes.index)
    # the order was tested on documents with more than one theme, in an order of their own
    assert multi >= 3 and unsorted >= 1


def test_top_k_limits_themes_and_main_themes(setup: dict[str, Any]) -> None:
    full = setup["predictor"].predict([setup["long"]])[0]
    top = setup["predictor"].predict([setup["long"]], top_k=1)[0]
    assert len(full["themes"]) >= 3 and len(full["main_themes"]) >= 2
    assert top["themes"] == full["themes"][:1] and top["main_themes"] == full["main_themes"][:1]
    assert top["scores"] == full["scores"] and top["coverage"] == full["coverage"]
    # evidence for what is shown: the best-scored theme and the best-covered one
    assert set(top["evidence"]) == set(top["themes"]) | set(top["main_themes"])
    with pytest.raises(ValueError, match="top_k"):
        setup["predictor"].predict(["x"], top_k=0)


def test_cli_top_k_2_limits_the_lists(setup: dict[str, Any]) -> None:
    code, out = _predict_cli(setup, setup["long"])
    assert code == 0
    full = json.loads(out.read_text("utf-8"))
    assert len(full["themes"]) >= 3 and len(full["main_themes"]) >= 2
    code, out = _predict_cli(setup, setup["long"], "--top-k", "2")
    assert code == 0
    rec = json.loads(out.read_text("utf-8"))
    assert rec["themes"] == full["themes"][:2]
    assert rec["main_themes"] == full["main_themes"][:2]
    assert rec["scores"] == full["scores"]
    code, out = _predict_cli(setup, setup["long"], "--top-k", "0")
    assert code == 2 and not out.exists()  # refused, no output left


def test_csv_has_a_main_themes_column(setup: dict[str, Any]) -> None:
    code, out = _predict_cli(setup, setup["long"], "--format", "csv")
    assert code == 0
    rows = list(csv.DictReader(out.open(encoding="utf-8", newline="")))
    rec = setup["predictor"].predict([setup["long"]])[0]
    assert rows[0]["main_themes"] == ";".join(rec["main_themes"])
    assert rows[0]["themes"] == ";".join(rec["themes"])
    assert rows[0]["main_themes"] != rows[0]["themes"]  # the document's main themes, not all
    header = out.read_text("utf-8").splitlines()[0].split(",")
    assert header[:4] == ["id", "source", "themes", "main_themes"]
