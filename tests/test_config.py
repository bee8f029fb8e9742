from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline.config import load_config, parse_config
from pipeline.errors import ConfigError
from pipeline.fsutil import atomic_write_bytes
from pipeline.themes import load_taxonomy, parse_taxonomy

from .conftest import ROOT, SEEDS


def test_default_experiment_loads() -> None:
    cfg = load_config(ROOT / "experiments" / "default.yaml")
    assert cfg.name == "default"
    assert cfg.features.word.ngram_range == (1, 2)


def test_config_rejects_unknown_key_with_its_path() -> None:
    with pytest.raises(
        ConfigError, match=r"x\.yaml: features\.word: unknown key\(s\) \['ngrams'\]"
    ):
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


# --- issue #13: names, empty files, value ranges, build folders owned by one experiment file ---


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, "utf-8")
    return path


@pytest.mark.parametrize(
    "name",
    ["../../x", "a/b", "a\\b", "/abs", ".", "..", ".hidden", "-x", "", "x" * 65, "a b", "名字"],
)
def test_name_must_be_an_identifier_without_path_parts(tmp_path: Path, name: str) -> None:
    exp = _write(tmp_path / "x.yaml", yaml.safe_dump({"name": name}))
    with pytest.raises(ConfigError, match=r"x\.yaml: name must be an identifier") as err:
        load_config(exp)
    assert "name: <identifier>" in err.value.remedy


@pytest.mark.parametrize("name", ["default", "word_char-2", "v1.2", "a..b", "x" * 64])
def test_identifier_names_are_accepted(name: str) -> None:
    assert parse_config({"name": name}, "x.yaml").name == name


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n"])
def test_empty_experiment_file_is_an_error(tmp_path: Path, text: str) -> None:
    exp = _write(tmp_path / "empty.yaml", text)
    with pytest.raises(ConfigError, match=r"empty\.yaml: the experiment file is empty") as err:
        load_config(exp)
    assert "name: <identifier>" in err.value.remedy


@pytest.mark.parametrize("text", ["- name: x\n", "just some text\n", "42\n"])
def test_non_mapping_experiment_file_is_an_error(tmp_path: Path, text: str) -> None:
    exp = _write(tmp_path / "list.yaml", text)
    with pytest.raises(ConfigError, match=r"list\.yaml: expected a mapping of settings"):
        load_config(exp)


def test_experiment_file_must_name_itself(tmp_path: Path) -> None:
    exp = _write(tmp_path / "anon.yaml", "seed: 3\n")
    with pytest.raises(ConfigError, match=r"anon\.yaml: name is missing") as err:
        load_config(exp)
    assert "add `name: <identifier>`" in err.value.remedy


def test_every_shipped_experiment_still_loads() -> None:
    files = sorted((ROOT / "experiments").glob("*.yaml"))
    assert files
    names = [load_config(f).name for f in files]
    assert len(set(names)) == len(names), "two shipped experiments share a name"


def test_unknown_top_level_key_in_a_file_names_the_file(tmp_path: Path) -> None:
    # already an error before issue #13: kept
    exp = _write(tmp_path / "typo.yaml", "name: typo\nsed: 3\n")
    with pytest.raises(ConfigError, match=r"typo\.yaml: unknown key\(s\) \['sed'\]"):
        load_config(exp)


BAD_VALUES = [
    # (settings, the message expected after "x.yaml: ")
    ({"classifier": {"params": {"C": -1}}}, r"classifier\.params\.C must be .*, got -1"),
    ({"classifier": {"params": {"C": 0}}}, r"classifier\.params\.C must be .*, got 0"),
    (
        {"classifier": {"kind": "linear_svc", "params": {"C": 0.0}}},
        r"classifier\.params\.C must be .*, got 0\.0",
    ),
    (
        {"classifier": {"kind": "ridge", "params": {"alpha": -2.0}}},
        r"classifier\.params\.alpha must be .*, got -2\.0",
    ),
    (
        {"classifier": {"kind": "complement_nb", "params": {"alpha": -1}}},
        r"classifier\.params\.alpha must be .*, got -1",
    ),
    (
        {"classifier": {"kind": "sgd", "params": {"loss": "hinge", "alpha": -0.1}}},
        r"classifier\.params\.alpha must be",
    ),
    (
        {"classifier": {"params": {"class_weight": "balancd"}}},
        r"classifier\.params\.class_weight must be",
    ),
    (
        {"classifier": {"kind": "linear_svc", "params": {"calibration": "platt"}}},
        r"classifier\.params\.calibration must be sigmoid or isotonic, got 'platt'",
    ),
    (
        {"classifier": {"kind": "fasttext", "params": {"lr": 0}}},
        r"classifier\.params\.lr must be > 0, got 0",
    ),
    (
        {"classifier": {"kind": "fasttext", "params": {"epoch": 0}}},
        r"classifier\.params\.epoch must be a whole number >= 1, got 0",
    ),
    (
        {"classifier": {"kind": "fasttext", "params": {"dim": 2.5}}},
        r"classifier\.params\.dim must be a whole number >= 1, got 2\.5",
    ),
    (
        {"classifier": {"params": {"Cee": 1.0}}},
        r"classifier\.params .* do not fit logreg",
    ),
    (
        {"features": {"word": {"ngram_range": [2, 1]}}},
        r"features\.word\.ngram_range .*got \[2, 1\]",
    ),
    (
        {"features": {"word": {"ngram_range": [0, 1]}}},
        r"features\.word\.ngram_range .*got \[0, 1\]",
    ),
    ({"features": {"char": {"ngram_range": [-1, 3]}}}, r"features\.char\.ngram_range"),
    ({"features": {"word": {"min_df": 0}}}, r"features\.word\.min_df must be >= 1, got 0"),
    ({"features": {"char": {"min_df": -3}}}, r"features\.char\.min_df must be >= 1, got -3"),
    ({"features": {"word": {"max_df": 0}}}, r"features\.word\.max_df must be in \(0, 1\], got 0"),
    ({"features": {"word": {"max_df": 1.5}}}, r"features\.word\.max_df must be in \(0, 1\]"),
    ({"features": {"word": {"max_df": ".nan"}}}, r"features\.word\.max_df: expected a finite"),
    ({"features": {"char": {"max_features": 0}}}, r"features\.char\.max_features must be"),
    ({"features": {"chi2_k": 0}}, r"features\.chi2_k must be >= 1 \(or left out\), got 0"),
    ({"features": {"lexicon": {"weight": -1}}}, r"features\.lexicon\.weight must be > 0, got -1"),
    ({"features": {"lexicon": {"weight": 0}}}, r"features\.lexicon\.weight must be > 0, got 0"),
    ({"features": {"vectors": {"weight": -0.5}}}, r"features\.vectors\.weight must be > 0"),
    ({"features": {"vectors": {"weight": ".inf"}}}, r"features\.vectors\.weight: expected a fin"),
    ({"thresholds": {"inner_folds": 1}}, r"thresholds\.inner_folds must be .*2.*, got 1"),
    ({"thresholds": {"inner_folds": 500}}, r"thresholds\.inner_folds must be .*, got 500"),
    ({"thresholds": {"default": 1.5}}, r"thresholds\.default must be between 0 and 1"),
    ({"thresholds": {"default": 0}}, r"thresholds\.default must be between 0 and 1"),
    ({"evaluation": {"folds": 100}}, r"evaluation\.folds must be .*20, got 100"),
    ({"evaluation": {"repeats": 0}}, r"evaluation\.repeats must be >= 1, got 0"),
    ({"evaluation": {"learning_curve": [0, 0.5]}}, r"evaluation\.learning_curve .*\(0, 1\]"),
    ({"evaluation": {"learning_curve": [0.5, 1.5]}}, r"evaluation\.learning_curve .*got 1\.5"),
    ({"evaluation": {"learning_curve_real": [-0.25]}}, r"evaluation\.learning_curve_real"),
    ({"evaluation": {"queue_curve": [0.4, 0.4]}}, r"evaluation\.queue_curve .*0\.4 twice"),
    ({"seed": -1}, r"seed must be .*, got -1"),
    (
        {"search": {"classifier.params.C": [1.0, -1.0]}},
        r"\(search\.classifier\.params\.C: -1\.0\): classifier\.params\.C must be",
    ),
    (
        {"search": {"features.word.min_df": [1, 0]}},
        r"\(search\.features\.word\.min_df: 0\): features\.word\.min_df must be >= 1",
    ),
]


@pytest.mark.parametrize(("settings", "message"), BAD_VALUES)
def test_values_out_of_range_name_the_file_and_key(settings: dict, message: str) -> None:
    text = yaml.safe_dump({"name": "x", **settings}).replace("'.nan'", ".nan")
    data = yaml.safe_load(text.replace("'.inf'", ".inf"))
    with pytest.raises(ConfigError, match=r"^x\.yaml:? " + message):
        parse_config(data, "x.yaml")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        # already errors before issue #13: kept
        ({"features": {"word": {"ngram_range": [1.5, 2]}}}, r"expected a whole number"),
        ({"evaluation": {"folds": 1}}, r"evaluation\.folds must be"),
        ({"classifier": {"kind": "forest"}}, r"classifier\.kind 'forest' is not known"),
    ],
)
def test_values_that_were_already_rejected_still_are(settings: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=r"^x\.yaml.*" + message):
        parse_config({"name": "x", **settings}, "x.yaml")


def _exp(path: Path, name: str, extra: str = "", **data: str) -> Path:
    paths = {
        "themes": str(SEEDS / "themes.yaml"),
        "userdict": str(SEEDS / "userdict.txt"),
        "stopwords": str(SEEDS / "stopwords.txt"),
        **data,
    }
    return _write(path, yaml.safe_dump({"name": name, "data": paths}) + extra)


@pytest.mark.parametrize("key", ["userdict", "stopwords", "themes"])
def test_missing_data_file_names_the_experiment_file_and_key(tmp_path: Path, key: str) -> None:
    from pipeline.workspace import Workspace

    exp = _exp(tmp_path / "experiments" / "x.yaml", "x", **{key: "seeds/nope.txt"})
    with pytest.raises(
        ConfigError, match=rf"x\.yaml: data\.{key}: .*seeds/nope\.txt does not exist"
    ):
        Workspace.open(exp, root=tmp_path)


def test_two_experiment_files_cannot_share_a_build_folder(tmp_path: Path) -> None:
    from pipeline.workspace import Workspace

    a = _exp(tmp_path / "experiments" / "a.yaml", "x")
    b = _exp(tmp_path / "experiments" / "b.yaml", "x")
    ws_b = Workspace.open(b, root=tmp_path)  # opened before a.yaml's stage ran
    ws_a = Workspace.open(a, root=tmp_path)
    atomic_write_bytes(ws_a.classifier, b"a's model")  # a stage of a.yaml wrote build/x/
    message = (
        r"experiments/b\.yaml declares name 'x', already used by experiments/a\.yaml "
        r"in .*build/x"
    )
    with pytest.raises(ConfigError, match=message) as err:
        _ = ws_b.classifier  # a stage of b.yaml is about to write build/x/
    assert "give it its own name" in err.value.remedy
    with pytest.raises(ConfigError, match=message):
        Workspace.open(b, root=tmp_path)  # and opening b.yaml now fails at once
    assert (tmp_path / "build" / "x" / "model.joblib").read_bytes() == b"a's model"
    assert (tmp_path / "build" / "x" / "experiment.path").read_text("utf-8").strip() == (
        "experiments/a.yaml"
    )


def test_cli_refuses_a_second_file_with_the_same_name_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipeline.cli import main
    from pipeline.workspace import Workspace

    build = tmp_path / "build"
    a = _exp(tmp_path / "a.yaml", "x")
    b = _exp(tmp_path / "b.yaml", "x")
    atomic_write_bytes(Workspace.open(a, build=build).classifier, b"a's model")
    assert main(["train", "--exp", str(b), "--build", str(build)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"{b} declares name 'x', already used by {a}" in err


def test_the_same_experiment_file_reruns_after_an_edit(tmp_path: Path) -> None:
    from pipeline.workspace import Workspace

    a = _exp(tmp_path / "experiments" / "a.yaml", "x")
    atomic_write_bytes(Workspace.open(a, root=tmp_path).classifier, b"first")
    _exp(a, "x", extra="seed: 7\n")  # edited: same file, same name
    ws = Workspace.open(a, root=tmp_path)
    assert ws.cfg.seed == 7
    assert ws.classifier == tmp_path / "build" / "x" / "model.joblib"
    # the same file named another way is the same owner
    same = tmp_path / "experiments" / ".." / "experiments" / "a.yaml"
    assert Workspace.open(same, root=tmp_path).classifier == ws.classifier


def test_a_renamed_experiment_file_takes_over_its_build_folder(tmp_path: Path) -> None:
    from pipeline.workspace import Workspace

    a = _exp(tmp_path / "experiments" / "a.yaml", "x")
    atomic_write_bytes(Workspace.open(a, root=tmp_path).classifier, b"old")
    b = a.rename(tmp_path / "experiments" / "b.yaml")  # a.yaml is gone: nothing to overwrite
    assert Workspace.open(b, root=tmp_path).classifier.read_bytes() == b"old"
    c = _exp(tmp_path / "experiments" / "c.yaml", "x")
    with pytest.raises(ConfigError, match=r"already used by experiments/b\.yaml"):
        Workspace.open(c, root=tmp_path)


def test_built_in_defaults_never_write_an_experiment_folder(tmp_path: Path) -> None:
    from pipeline.workspace import Workspace

    (tmp_path / "seeds").symlink_to(SEEDS)
    ws = Workspace.open(None, root=tmp_path)
    for stage_file in ("units", "classifier"):  # ingest too: its units are the experiment's
        with pytest.raises(ConfigError, match=r"no experiment file") as err:
            _ = getattr(ws, stage_file)
        assert "--exp" in err.value.remedy
    assert not (tmp_path / "build" / "default").exists()


def test_cli_reports_a_bad_experiment_in_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pipeline.cli import main

    exp = _write(tmp_path / "empty.yaml", "")
    assert main(["train", "--exp", str(exp), "--build", str(tmp_path / "build")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "empty.yaml: the experiment file is empty" in err
    assert not (tmp_path / "build" / "default").exists()
