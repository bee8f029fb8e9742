"""The model store loads only what it wrote, tried as a hostile or careless user would: path
tricks, edited manifests, crafted pickles and skops files, damaged metadata.

Every hostile fixture is made here; a payload that runs would write a marker file, and each test
asserts the marker is absent as well as the one-line refusal.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import joblib
import pytest

from pipeline.cli import main
from pipeline.errors import ConfigError, ModelError
from pipeline.fsutil import sha256_file
from pipeline.registry import ModelRef, ModelStore, parse_ref, sign_manifest, store_key
from tests.conftest import SEEDS, fit_small_model

NAME = "gov-topics"


class _Payload:
    """Unpickling this writes ``marker``: what a hostile pickle would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


@pytest.fixture(scope="module")
def small_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real end-to-end model (fitted in seconds on written units), saved as joblib."""
    from pipeline.labels import load_written

    examples = [e for e in load_written(SEEDS / "extra") if e.id.startswith("wa-")][:120]
    path = tmp_path_factory.mktemp("model") / "model.joblib"
    joblib.dump(fit_small_model(examples), path)
    return path


def _add(store: ModelStore, art: Path, f1: float = 0.7, fmt: str = "pickle") -> int:
    model = joblib.load(art)
    themes = list(model.named_steps["clf"].themes)
    manifest = {
        "config": {"evaluation": {"folds": 5, "repeats": 1}, "seed": 42},
        "training_data_sha256": "d",
        "metrics": {"macro_f1": f1},
        "thresholds": dict(
            zip(themes, map(float, model.named_steps["clf"].thresholds_), strict=True)
        ),
    }
    return store.add_version(NAME, art, manifest, model, fmt=fmt)


def _edit(store: ModelStore, version: int, resign: bool = False, **fields: object) -> None:
    """Edit a manifest by hand (``resign``: as an insider holding the key would)."""
    path = store.model_dir(NAME) / str(version) / "manifest.json"
    man = json.loads(path.read_text("utf-8"))
    man.update(fields)
    if resign:
        man = sign_manifest(man, store_key())
    path.write_text(json.dumps(man), "utf-8")


def _predict(capsys: pytest.CaptureFixture[str], store: Path, *args: str) -> tuple[int, str]:
    doc = next((SEEDS / "raw").glob("000_*.txt"))
    code = main(["predict", str(doc), "--models", str(store), *args])
    return code, capsys.readouterr().err


def test_a_model_name_with_path_parts_is_refused(
    small_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a pickle one level above the store, with its sha256 written beside it: `--model '..:1'`
    # used to load it
    store = tmp_path / "models"
    store.mkdir()
    marker = tmp_path / "pwned"
    evil = tmp_path / "1"
    evil.mkdir()
    (evil / "model.pkl").write_bytes(pickle.dumps(_Payload(marker)))
    man = {"name": "..", "version": 1, "artefact": "model.pkl", "format": "pickle"}
    man["artefact_sha256"] = sha256_file(evil / "model.pkl")
    (evil / "manifest.json").write_text(json.dumps(man), "utf-8")
    code, err = _predict(capsys, store, "--model", "..:1")
    assert code == 2 and not marker.exists()
    assert "model name '..' is not an identifier" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(ConfigError):
        ModelStore(store).model_dir("../x")
    with pytest.raises(ConfigError):
        parse_ref("a/b:1")


def test_an_artefact_outside_its_version_folder_is_refused_even_when_signed(
    small_model: Path, tmp_path: Path
) -> None:
    store = ModelStore(tmp_path / "models")
    v = _add(store, small_model)
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps(_Payload(marker)))
    sha = sha256_file(evil)
    _edit(store, v, artefact=str(evil), artefact_sha256=sha)  # no key: the signature fails
    with pytest.raises(ModelError, match="signature does not match"):
        store.load(ModelRef(NAME, str(v)))
    _edit(store, v, resign=True, artefact=str(evil), artefact_sha256=sha)  # even with the key
    with pytest.raises(ModelError, match="is not one this store writes"):
        store.load(ModelRef(NAME, str(v)))
    # a symlink in place of the artefact, pointing out of the folder
    w = _add(store, small_model)
    art = store.model_dir(NAME) / str(w) / "model.pkl"
    art.unlink()
    art.symlink_to(evil)
    _edit(store, w, resign=True, artefact_sha256=sha)
    with pytest.raises(ModelError, match="link out of its version folder"):
        store.load(ModelRef(NAME, str(w)))
    assert not marker.exists()


def test_a_manifest_edited_without_the_key_is_refused(small_model: Path, tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    v = _add(store, small_model)
    assert store.load(ModelRef(NAME, str(v)))[1]["metrics"]["macro_f1"] == 0.7
    for field, value in (
        ("metrics", {"macro_f1": 0.99}),  # would pass the promotion gate
        ("thresholds", {"safety": 0.0}),  # would tag everything
        ("format", "joblib"),  # would pick another loader
    ):
        w = _add(store, small_model)
        _edit(store, w, **{field: value})
        with pytest.raises(ModelError, match="signature does not match"):
            store.load(ModelRef(NAME, str(w)))
    unsigned = _add(store, small_model)
    path = store.model_dir(NAME) / str(unsigned) / "manifest.json"
    man = json.loads(path.read_text("utf-8"))
    del man["signature"]
    path.write_text(json.dumps(man), "utf-8")
    with pytest.raises(ModelError, match="signature missing"):
        store.manifest(NAME, unsigned)


def test_a_manifest_signed_with_another_key_is_refused(
    small_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ModelStore(tmp_path / "models")
    v = _add(store, small_model)
    monkeypatch.setenv("GOV_TOPICS_STORE_KEY", "another machine's key")
    with pytest.raises(ModelError, match=r"signature does not match.*GOV_TOPICS_STORE_KEY"):
        store.load(ModelRef(NAME, str(v)))


def test_the_gate_cannot_be_passed_by_editing_metrics(
    small_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = ModelStore(tmp_path / "models")
    _add(store, small_model, f1=0.8)
    worse = _add(store, small_model, f1=0.5)
    m = ["--models", str(store.root), "--no-track"]
    assert main(["models", "promote", "1", "--to", "production", *m]) == 0
    _edit(store, worse, metrics={"macro_f1": 0.99})
    code = main(["models", "promote", str(worse), "--to", "production", *m])
    err = capsys.readouterr().err
    assert code == 2 and "signature does not match" in err
    assert store.aliases(NAME) == {"production": 1}


def test_thresholds_must_be_the_models_own(small_model: Path, tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "models")
    v = _add(store, small_model)
    shown = store.manifest(NAME, v)["thresholds"]
    _edit(store, v, resign=True, thresholds={**shown, "safety": 0.01})
    with pytest.raises(ModelError, match=r"threshold of safety is .* in the model but 0\.01"):
        store.load(ModelRef(NAME, str(v)))


def test_a_crafted_skops_file_with_a_file_writing_step_is_refused(
    small_model: Path, tmp_path: Path
) -> None:
    from sklearn.datasets import dump_svmlight_file
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    store = ModelStore(tmp_path / "models")
    marker = tmp_path / "written.svmlight"
    model = joblib.load(small_model)
    hostile = Pipeline(
        [
            ("write", FunctionTransformer(dump_svmlight_file, kw_args={"f": str(marker)})),
            *model.steps,
        ]
    )
    hostile_path = tmp_path / "hostile.joblib"
    joblib.dump(hostile, hostile_path)
    v = store.add_version(NAME, hostile_path, {"metrics": {"macro_f1": 0.7}}, fmt="skops")
    with pytest.raises(ModelError, match=r"outside the allow-list.*dump_svmlight_file"):
        store.load(ModelRef(NAME, str(v)))
    assert not marker.exists()


def test_a_crafted_pickle_in_the_store_is_refused_by_its_sha256(
    small_model: Path, tmp_path: Path
) -> None:
    store = ModelStore(tmp_path / "models")
    v = _add(store, small_model)
    marker = tmp_path / "pwned"
    art = store.model_dir(NAME) / str(v) / "model.pkl"
    art.write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(ModelError, match="does not match the manifest"):
        store.load(ModelRef(NAME, str(v)))
    assert not marker.exists()


def test_predict_without_a_production_model_refuses_rather_than_take_the_latest(
    small_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = ModelStore(tmp_path / "models")
    _add(store, small_model, f1=0.8)
    _add(store, small_model, f1=0.3)  # the worst, and the latest
    code, err = _predict(capsys, store.root)
    assert code == 2
    assert "gov-topics has no production model yet" in err and "models promote" in err
    code, _ = _predict(capsys, store.root, "--model", "gov-topics@latest")
    assert code == 0


def test_damaged_metadata_is_reported_and_skipped(
    small_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = ModelStore(tmp_path / "models")
    for f1 in (0.7, 0.8, 0.75):
        _add(store, small_model, f1=f1)
    m = ["--models", str(store.root), "--no-track"]
    assert main(["models", "promote", "1", "--to", "production", *m]) == 0
    assert main(["models", "promote", "2", "--to", "production", *m]) == 0
    capsys.readouterr()
    d = store.model_dir(NAME)
    (d / "aliases.json").write_text("{not json", "utf-8")
    with (d / "audit.jsonl").open("a", encoding="utf-8") as fh:
        fh.write("\x00garbage\n")
    assert store.aliases(NAME) == {"production": 2}  # rebuilt from the audit log
    code, err = _predict(capsys, store.root)
    assert code == 0 and "Traceback" not in err
    # a manifest without metrics, and one that is unreadable: `models list` shows the rest
    _edit(store, 3, resign=True, metrics=None)
    (d / "1" / "manifest.json").write_text("{", "utf-8")
    code = main(["models", "list", "--models", str(store.root)])
    out = capsys.readouterr().out
    assert code == 1 and "Traceback" not in out
    assert "damaged" in out.splitlines()[1] and "0.800" in out.splitlines()[2]
    assert out.splitlines()[3].split()[2] == "-"
    assert main(["models", "rollback", *m]) == 2  # production's predecessor, 1, is damaged
    assert "Traceback" not in capsys.readouterr().err


def test_the_skops_format_loads_the_same_model_without_pickle(
    small_model: Path, tmp_path: Path
) -> None:
    store = ModelStore(tmp_path / "models")
    v = _add(store, small_model, fmt="skops")
    model, man = store.load(ModelRef(NAME, str(v)))
    assert man["format"] == "skops" and man["artefact"] == "model.skops"
    text = next((SEEDS / "raw").glob("000_*.txt")).read_text("utf-8")
    assert (model.predict_proba([text]) == joblib.load(small_model).predict_proba([text])).all()
