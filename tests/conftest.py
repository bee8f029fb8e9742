"""Shared fixtures: the real seed corpus, and one small model trained end to end once per run."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "seeds"

# the store key comes from the key file of `store_key_file` below, never the environment
os.environ.pop("GOV_TOPICS_STORE_KEY", None)

WRITTEN_STRIDE = 4  # the test project keeps every 4th paragraph of the written corpus

SMALL_EXP = """\
name: small
seed: 7
data: {real: ""}
features:
  word: {enabled: true, ngram_range: [1, 2], min_df: 1}
  char: {enabled: false}
  lexicon: {enabled: true}
classifier: {kind: logreg, params: {C: 4.0, class_weight: balanced}}
evaluation: {folds: 3, repeats: 1, learning_curve: [0.5, 1.0]}
"""


# deliberately weak: no lexicon, unigrams seen at least 5 times, heavy regularisation;
# same data, folds, repeats and seed as SMALL_EXP, so their stored CV figures are comparable
WORSE_EXP = (
    SMALL_EXP.replace("name: small", "name: worse")
    .replace(
        "word: {enabled: true, ngram_range: [1, 2], min_df: 1}",
        "word: {enabled: true, ngram_range: [1, 1], min_df: 5}",
    )
    .replace("lexicon: {enabled: true}", "lexicon: {enabled: false}")
    .replace("C: 4.0", "C: 0.01")
)


# the nested search on the seed units alone (no written corpus, no out-of-source folds): what it
# tests is where the search chooses, not how well, so it uses the smallest data that shows it
SEARCHED_EXP = (
    SMALL_EXP.replace("name: small", "name: searched")
    .replace('data: {real: ""}', 'data: {real: "", use_written: false}')
    .replace("learning_curve: [0.5, 1.0]}", "learning_curve: [], out_of_source: false}")
    + "search:\n  classifier.params.C: [0.5, 8.0]\n"
)


def run_in(root: Path, *argv: str) -> int:
    """Run ``topics ARGV`` in process with ``root`` as the working folder."""
    import os

    from pipeline.cli import main

    old = Path.cwd()
    os.chdir(root)
    try:
        return main(list(argv))
    finally:
        os.chdir(old)


def raw_text(prefix: str) -> str:
    path = next((SEEDS / "raw").glob(f"{prefix}_*.txt"))
    return path.read_text("utf-8")


def _make_project(root: Path) -> Path:
    """The project's data in ``root``, with the tests' small experiment configs."""
    shutil.copytree(SEEDS, root / "seeds")
    # every WRITTEN_STRIDE-th written paragraph: every theme still there (the files are sorted by
    # theme), a quarter of the training time for every test that trains
    for path in sorted((root / "seeds" / "extra").glob("*.jsonl")):
        lines = path.read_text("utf-8").splitlines(keepends=True)
        path.write_text("".join(lines[::WRITTEN_STRIDE]), "utf-8")
    (root / "experiments").mkdir()
    (root / "experiments" / "small.yaml").write_text(SMALL_EXP, "utf-8")
    (root / "experiments" / "worse.yaml").write_text(WORSE_EXP, "utf-8")
    (root / "experiments" / "searched.yaml").write_text(SEARCHED_EXP, "utf-8")
    return root


def _train_all(root: Path) -> None:
    """Every stage through the CLI, registered and promoted as `make all` does (version 1 is
    production)."""
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'experiments' / 'mlflow.db'}"
    for stage in ("ingest", "segment", "features", "train", "evaluate"):
        assert run_in(root, stage, "--exp", "experiments/small.yaml") == 0, stage
    assert run_in(root, "register", "--exp", "experiments/small.yaml", "--promote") == 0


def _relocate(src: Path, dst: Path) -> None:
    """Copy what ``_train_all`` made in ``src`` into ``dst`` (mtimes kept, so stages stay
    skipped) and point the absolute paths MLflow and ``registered.json`` keep at ``dst``."""
    import sqlite3

    for part in ("build", "models", "experiments"):
        shutil.copytree(src / part, dst / part, dirs_exist_ok=True)
    old, new = str(src), str(dst)
    for path in [
        *(dst / "build").rglob("registered.json"),
        *(dst / "experiments").rglob("MLmodel"),
    ]:
        stat = path.stat()
        path.write_text(path.read_text("utf-8").replace(old, new), "utf-8")
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with sqlite3.connect(dst / "experiments" / "mlflow.db") as db:
        tables = [t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            for col in [r[1] for r in db.execute(f'PRAGMA table_info("{table}")')]:
                db.execute(
                    f'UPDATE "{table}" SET "{col}" = replace("{col}", ?, ?) '
                    f'WHERE typeof("{col}") = \'text\' AND instr("{col}", ?) > 0',
                    (old, new, old),
                )
    db.close()


def _shared_temp(factory: pytest.TempPathFactory) -> Path:
    """The run's temporary folder: one for all pytest-xdist workers (pytest keeps the last 3)."""
    base = factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session", autouse=True)
def store_key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The model store's signing key: one per test run, never the user's own (~/.config),
    shared by pytest-xdist's workers (they share the trained project, whose manifests it signs)."""
    path = _shared_temp(tmp_path_factory) / "store.key"
    os.environ["GOV_TOPICS_KEY_FILE"] = str(path)
    return path


@pytest.fixture(scope="session")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the project's data in a temporary folder, with a small experiment config."""
    return _make_project(tmp_path_factory.mktemp("project"))


@pytest.fixture(scope="session")
def trained(project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every stage run through the CLI, in the temporary project; returns its root.

    Trained once per test run: the first pytest-xdist worker to need it trains in a folder the
    workers share (under a file lock), and each worker copies the result into its own project,
    which its tests may change.
    """
    from filelock import FileLock

    shared = _shared_temp(tmp_path_factory)
    built = shared / "trained-once"
    with FileLock(str(shared / "trained-once.lock")):
        if not (built / "done").exists():
            shutil.rmtree(built, ignore_errors=True)
            built.mkdir()
            _train_all(_make_project(built))
            (built / "done").touch()
    _relocate(built, project)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{project / 'experiments' / 'mlflow.db'}"
    return project


@pytest.fixture(scope="session")
def worse_trained(trained: Path) -> Path:
    """The trained project with the deliberately weak ``worse`` experiment trained too."""
    for stage in ("ingest", "segment", "features", "train", "evaluate"):
        assert run_in(trained, stage, "--exp", "experiments/worse.yaml") == 0, stage
    return trained


def fit_small_model(examples: list, config: dict | None = None) -> object:
    """An end-to-end model fitted in seconds on a few labelled examples (rjieba, the project's
    dictionary and themes; logistic regression unless ``config`` says otherwise)."""
    import numpy as np

    from pipeline.config import parse_config
    from pipeline.labels import label_matrix
    from pipeline.segment import Segmenter, read_stopwords, read_userdict
    from pipeline.themes import load_taxonomy
    from pipeline.train import fit_model

    tax = load_taxonomy(SEEDS / "themes.yaml")
    seg = Segmenter(
        backend="rjieba",
        user_words=read_userdict(SEEDS / "userdict.txt"),
        stopwords=read_stopwords(SEEDS / "stopwords.txt"),
    )
    cfg = parse_config(
        config or {"classifier": {"kind": "logreg"}, "thresholds": {"inner_folds": 2}}
    )
    return fit_model(
        cfg,
        tax.ids,
        tax.lexicons(),
        seg,
        seg.transform([e.text for e in examples]),
        label_matrix(examples, tax.ids),
        [e.group for e in examples],
        np.ones(len(examples), dtype=bool),
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests on the trained project first, the rest after (order kept within each).

    pytest-xdist's worksteal hands each worker a contiguous half of this order and steals from
    the end of a queue: one worker trains the shared project while the other runs tests that do
    not need it, instead of both waiting on the same training.
    """
    items.sort(key=lambda item: "trained" not in getattr(item, "fixturenames", ()))
