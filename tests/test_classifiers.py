"""The classifier table: every kind builds, trains into the end-to-end model, explains its
predictions and round-trips through the store's skops allow-list — on a tiny real fixture."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.classifiers import KINDS, build_estimator, coef_of, kind, safe_types
from pipeline.config import parse_config
from pipeline.errors import ConfigError
from pipeline.labels import label_matrix, load_written
from pipeline.predict import predict_batch
from pipeline.registry import SKOPS_PIPELINE_TYPES
from pipeline.segment import Segmenter, read_stopwords, read_userdict
from pipeline.themes import load_taxonomy
from pipeline.train import fit_model

SEEDS = Path(__file__).resolve().parent.parent / "seeds"


@pytest.fixture(scope="module")
def tiny() -> dict:
    """15 labelled paragraphs per theme from one writer's slice, segmented once."""
    tax = load_taxonomy(SEEDS / "themes.yaml")
    examples, counts = [], dict.fromkeys(tax.ids, 0)
    for e in load_written(SEEDS / "extra"):
        if e.id.startswith("wa-") and e.labels and all(counts[t] < 15 for t in e.labels):
            examples.append(e)
            counts.update({t: counts[t] + 1 for t in e.labels})
    assert min(counts.values()) >= 10
    seg = Segmenter(
        backend="rjieba",
        user_words=read_userdict(SEEDS / "userdict.txt"),
        stopwords=read_stopwords(SEEDS / "stopwords.txt"),
    )
    return {
        "tax": tax,
        "seg": seg,
        "docs": seg.transform([e.text for e in examples]),
        "Y": label_matrix(examples, tax.ids),
        "groups": [e.group for e in examples],
    }


def _fit(tiny: dict, kind_name: str, params: dict) -> object:
    cfg = parse_config(
        {
            "name": kind_name,
            "segmenter": {"backend": "rjieba"},
            "features": {"word": {"enabled": True, "ngram_range": [1, 2]}},
            "classifier": {"kind": kind_name, "params": params},
            # fastText fits in a process each: its thresholds untuned keep this test short
            "thresholds": {"inner_folds": 2, "tune": kind_name != "fasttext"},
        }
    )
    tax = tiny["tax"]
    real = np.ones(len(tiny["docs"]), dtype=bool)
    return fit_model(
        cfg, tax.ids, tax.lexicons(), tiny["seg"], tiny["docs"], tiny["Y"], tiny["groups"], real
    )


PARAMS = {
    "logreg": {"C": 4.0, "class_weight": "balanced"},
    "linear_svc": {"C": 0.5, "class_weight": "balanced"},
    "ridge": {"alpha": 1.0, "class_weight": "balanced"},
    "complement_nb": {"alpha": 0.3},
    "sgd": {"class_weight": "balanced"},
    "fasttext": {"epoch": 25, "dim": 20},
}


def test_every_kind_has_test_parameters() -> None:
    assert set(PARAMS) == set(KINDS)


@pytest.mark.parametrize("kind_name", sorted(KINDS))
def test_kind_trains_predicts_and_loads_through_the_exact_allow_list(
    tiny: dict, kind_name: str
) -> None:
    import skops.io as sio

    model = _fit(tiny, kind_name, PARAMS[kind_name])
    text = "全面开展安全生产隐患排查整治，压实企业安全生产主体责任，严防重特大事故发生。"
    rec = predict_batch(model, [text])[0]
    assert set(rec["scores"]) == set(tiny["tax"].ids)
    ranked = sorted(rec["scores"], key=rec["scores"].__getitem__, reverse=True)
    assert "safety" in ranked[:2]  # a clear safety paragraph, whatever the kind
    # every type the fitted model holds is one the store trusts, by exact name
    untrusted = set(sio.get_untrusted_types(data=sio.dumps(model)))
    assert untrusted <= SKOPS_PIPELINE_TYPES | safe_types(), untrusted - safe_types()
    coefs = [coef_of(e) for e in model.named_steps["clf"].ovr_.estimators_]
    if kind_name in ("complement_nb", "fasttext"):
        assert all(c is None for c in coefs)  # not linear in the features: no evidence terms
    else:  # linear kinds explain their predictions
        assert all(c is not None and c.shape == coefs[0].shape for c in coefs)
        assert rec["evidence"]["safety"]["terms"]


def test_unknown_kind_names_the_choices() -> None:
    with pytest.raises(ConfigError, match="choose one of"):
        kind("forest")
    with pytest.raises(ConfigError, match=r"classifier.kind 'forest' is not known"):
        parse_config({"classifier": {"kind": "forest"}}, "x.yaml")


def test_bad_parameter_is_a_config_error_naming_the_kind() -> None:
    with pytest.raises(ConfigError, match="do not fit ridge"):
        build_estimator("ridge", {"gamma": 1}, seed=0)


def test_experiment_files_name_known_kinds() -> None:
    root = SEEDS.parent / "experiments"
    from pipeline.config import load_config

    kinds = {load_config(p).classifier.kind for p in root.glob("*.yaml")}
    assert kinds <= set(KINDS) and "ridge" in kinds
    assert json.dumps(sorted(kinds))
