from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.config import load_config, parse_config
from pipeline.errors import ConfigError
from pipeline.themes import load_taxonomy, parse_taxonomy

from .conftest import ROOT, SEEDS


def test_default_experiment_loads() -> None:
    cfg = load_config(ROOT / "experiments" / "default.yaml")
    assert cfg.name == "default"
    assert cfg.features.word.ngram_range == (1, 2)


def test_config_rejects_unknown_key_with_its_path() -> None:
    with pytest.raises(ConfigError, match=r"x.yaml.features.word: unknown key\(s\) \['ngrams'\]"):
        parse_config({"features": {"word": {"ngrams": [1, 2]}}}, "x.yaml")


def test_config_rejects_unknown_classifier() -> None:
    with pytest.raises(ConfigError, match=r"classifier\.kind 'forest' is not known"):
        parse_config({"classifier": {"kind": "forest"}})


def test_config_rejects_wrong_type() -> None:
    with pytest.raises(ConfigError, match=r"evaluation\.folds: expected a whole number"):
        parse_config({"evaluation": {"folds": "five"}})


def test_taxonomy_has_eight_themes_with_rich_lexicons() -> None:
    tax = load_taxonomy(SEEDS / "themes.yaml")
    assert tax.ids == [
        "safety",
        "industry",
        "livelihood",
        "environment",
        "party",
        "urban",
        "culture",
        "rural",
    ]
    assert all(len(t.lexicon) >= 60 for t in tax.themes)
    assert "隐患排查" in tax.get("safety").lexicon


def _themes() -> dict:
    return yaml.safe_load((SEEDS / "themes.yaml").read_text("utf-8"))


def test_taxonomy_rejects_duplicate_ids() -> None:
    data = _themes()
    data["themes"][1]["id"] = "safety"
    with pytest.raises(ConfigError, match="duplicate theme id 'safety'"):
        parse_taxonomy(data)


def test_taxonomy_rejects_empty_lexicon() -> None:
    data = _themes()
    data["themes"][0]["lexicon"] = []
    with pytest.raises(ConfigError, match="theme 'safety' has an empty lexicon"):
        parse_taxonomy(data)


def test_taxonomy_rejects_unknown_keys() -> None:
    data = _themes()
    data["themes"][0]["colour"] = "red"
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['colour'\]"):
        parse_taxonomy(data)


def test_taxonomy_reports_yaml_syntax_error_with_line(tmp_path: Path) -> None:
    bad = tmp_path / "themes.yaml"
    bad.write_text("themes:\n  - id: safety\n    zh: [\n", "utf-8")
    with pytest.raises(ConfigError, match=r"themes.yaml:\d+: not valid UTF-8 YAML"):
        load_taxonomy(bad)
