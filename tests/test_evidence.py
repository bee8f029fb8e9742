"""Evidence an analyst accepts: no names, places, figures or glued fragments; theme-specific."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.evidence import evidence_mask, jieba_tags, theme_specific
from pipeline.labels import load_written
from pipeline.predict import feature_terms, predict_batch
from pipeline.segment import read_userdict
from pipeline.themes import load_taxonomy

from .conftest import fit_small_model

SEEDS = Path(__file__).resolve().parent.parent / "seeds"
TAX = load_taxonomy(SEEDS / "themes.yaml")


@pytest.fixture(scope="module")
def model_and_texts() -> tuple[object, list[str]]:
    """A model trained on the written corpus: its officials' names are frequent in it, so a
    model without the mask learns them as strong terms."""
    examples = load_written(SEEDS / "extra")[::2]
    model = fit_small_model(examples)
    held_out = [e.text for e in load_written(SEEDS / "extra")[1::2][:150]]
    return model, held_out


def test_shown_terms_are_words_not_names_places_figures_or_glued_pairs(model_and_texts) -> None:
    model, texts = model_and_texts
    tags = jieba_tags()
    shown = {
        term
        for rec in predict_batch(model, texts)
        for ev in rec["evidence"].values()
        for term in ev["terms"]
    }
    assert len(shown) > 50
    domain = {w for w, *_ in read_userdict(SEEDS / "userdict.txt")}  # domain terms always show
    general = shown - domain
    assert not [t for t in general if tags.get(t) in ("nr", "nrt", "nrfg", "ns", "nsf", "m", "t")]
    assert not [t for t in shown if any(c.isdigit() for c in t)]
    assert all(t in tags for t in general)  # every other shown term is a dictionary word


def test_the_mask_hides_names_the_unmasked_model_would_show(model_and_texts) -> None:
    model, _ = model_and_texts
    names = feature_terms(model)
    mask = model.named_steps["clf"].evidence_mask_
    hidden = {str(n) for n, m in zip(names, mask, strict=True) if n and not m}
    assert {"亦庄", "通州"} & set(map(str, names)) <= hidden  # places, if the model has them
    assert "第十五条" not in {str(n) for n, m in zip(names, mask, strict=True) if m}
    domain = [w for w, *_ in read_userdict(SEEDS / "userdict.txt")]
    again = evidence_mask(["安全生产", "张强", "部门 责令", "加强 部门", "五万元"], domain)
    assert again.tolist() == [True, False, False, False, False]


def test_theme_specific_keeps_terms_frequent_in_the_theme_only() -> None:
    X = np.array([[1, 1], [1, 1], [0, 1], [0, 1]])
    Y = np.array([[1], [1], [0], [0]])
    assert theme_specific(X, Y).tolist() == [[True, False]]
