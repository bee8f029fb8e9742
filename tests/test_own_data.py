"""The README's "Train on your own data" recipe, followed as written in a fresh copy of the
project (its tracked files only: no build/, models/ or MLflow store), through make.

Own data here: three of the seed documents as the raw folder with their gold lines, a sixth of the
written corpus as labelled paragraphs, and copies of the taxonomy, dictionary and stop words, all
under my/. The experiment file is a copy of experiments/default.yaml with a new name and its
``data:`` section pointed at my/; for the test's time, its costlier features (character n-grams,
word vectors) and learning curves are switched off. The default experiment must not be touched.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT, SEEDS

VENV = ROOT / ".venv"
MY_DOCS = ("001", "002", "003")


def _fresh_copy(dest: Path) -> Path:
    """The project's tracked files, as a fresh clone has them (from the working tree)."""
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in filter(None, files):
        src = ROOT / name.decode()
        if src.is_file():
            (dest / name.decode()).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name.decode())
    return dest


def _own_data(p: Path) -> None:
    my = p / "my"
    (my / "raw").mkdir(parents=True)
    (my / "extra").mkdir()
    for doc in MY_DOCS:
        src = next((SEEDS / "raw").glob(f"{doc}_*.txt"))
        shutil.copy(src, my / "raw" / src.name)
    gold = [ln for ln in (SEEDS / "gold.jsonl").open(encoding="utf-8") if ln[8:11] in MY_DOCS]
    (my / "gold.jsonl").write_text("".join(gold), "utf-8")
    for path in sorted((SEEDS / "extra").glob("*.jsonl")):
        lines = path.read_text("utf-8").splitlines(keepends=True)
        (my / "extra" / path.name).write_text("".join(lines[::6]), "utf-8")
    for name in ("themes.yaml", "userdict.txt", "stopwords.txt"):
        shutil.copy(SEEDS / name, my / name)


def _mine(default: str) -> str:
    """Step 3 of the recipe: default.yaml, a new name, ``data:`` pointed at my/."""
    text = default.replace("name: default", "name: mine")
    for key, path in (
        ("raw", "my/raw"),
        ("gold", "my/gold.jsonl"),
        ("extra", "my/extra"),
        ("real", '""'),
        ("themes", "my/themes.yaml"),
        ("userdict", "my/userdict.txt"),
        ("stopwords", "my/stopwords.txt"),
    ):
        old = next(ln for ln in text.splitlines() if ln.startswith(f"  {key}: "))
        text = text.replace(old, f"  {key}: {path}")
    # the test's time: the costlier parts off (the data section is what is tested)
    for old, new in (
        ("char: {enabled: true", "char: {enabled: false"),
        ("vectors: {enabled: true", "vectors: {enabled: false"),
        ("learning_curve_real: [0.25, 0.5, 1.0]", "learning_curve_real: []"),
        ("queue_curve: [0.4, 0.8]", "queue_curve: []"),
        ("folds: 5", "folds: 3"),
    ):
        assert old in text, old
        text = text.replace(old, new)
    return text


@pytest.fixture(scope="module")
def copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (VENV / ".installed").exists():
        pytest.skip("needs the project's .venv (make install)")
    p = _fresh_copy(tmp_path_factory.mktemp("clone"))
    _own_data(p)
    return p


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "GOV_TOPICS_M"))}
    env["PATH"] = f"{VENV / 'bin'}{os.pathsep}{env['PATH']}"
    return env


def _run(p: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=p, env=_env(), capture_output=True, text=True, timeout=600)


def _make(p: Path, *targets: str, exp: str = "mine") -> subprocess.CompletedProcess[str]:
    return _run(
        p,
        "make",
        "--no-print-directory",
        *targets,
        f"EXP=experiments/{exp}.yaml",
        f"MODEL={exp}",
        f"VENV={VENV}",
        "-o",
        f"{VENV}/.installed",  # the project's venv, as installed: never reinstalled from here
    )


def test_the_own_data_recipe_works_as_written_and_leaves_the_default_alone(copy: Path) -> None:
    p = copy
    seeds_before = {f: f.read_bytes() for f in (p / "seeds").rglob("*") if f.is_file()}
    (p / "experiments" / "mine.yaml").write_text(
        _mine((p / "experiments" / "default.yaml").read_text("utf-8")), "utf-8"
    )
    # 2. checksums of the raw documents, and the experiment's own units
    r = _run(p, "topics", "ingest", "--exp", "experiments/mine.yaml", "--update-checksums")
    assert r.returncode == 0, r.stderr
    assert (p / "my" / "raw.sha256").read_text("utf-8").count("\n") == len(MY_DOCS)
    units = (p / "build" / "mine" / "units.jsonl").read_text("utf-8").splitlines()
    assert {json.loads(u)["doc"][:3] for u in units} == set(MY_DOCS)
    # 3. the labels checked against those units
    r = _run(p, "topics", "labels", "check", "--exp", "experiments/mine.yaml")
    assert r.returncode == 0, r.stderr
    # 4. every stage, registered as its own model (the first version is production), a sample
    r = _make(p, "all")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "production: (none) -> mine:1" in r.stderr
    # the units ingested in step 2 are not made again (ingest recorded the inputs it read)
    assert "skipped  build/mine/units.jsonl" in r.stdout and "topics ingest" not in r.stdout
    assert '"themes"' in r.stdout  # the sample's prediction
    manifest = json.loads((p / "models" / "mine" / "1" / "manifest.json").read_text("utf-8"))
    assert manifest["experiment"] == "mine"
    assert manifest["training_units"]["seed"] == len(units)
    # the default experiment untouched: no outputs of its own, its data byte for byte
    assert sorted(d.name for d in (p / "build").iterdir()) == ["mine"]
    assert not (p / "models" / "gov-topics").exists()
    assert {f: f.read_bytes() for f in (p / "seeds").rglob("*") if f.is_file()} == seeds_before
    # nothing changed: every stage skipped, none run again
    r = _make(p, "register")
    assert r.returncode == 0, r.stderr
    assert " ran " not in r.stdout and r.stdout.count("skipped") == 6, r.stdout
    # a document added to the raw folder: refused until its checksum is recorded
    src = next((SEEDS / "raw").glob("004_*.txt"))
    shutil.copy(src, p / "my" / "raw" / src.name)
    r = _make(p, "ingest")
    assert r.returncode != 0
    assert f"my/raw/{src.name}: not listed in" in r.stderr and "Traceback" not in r.stderr


def test_a_toy_dataset_is_refused_before_anything_is_registered(copy: Path) -> None:
    """The toy scenario end to end: a theme without enough labelled units stops `make all` at
    train with one line naming it; nothing is registered, production stays."""
    p = copy
    toy = p / "toy"
    (toy / "raw").mkdir(parents=True)
    (toy / "extra").mkdir()
    src = next((SEEDS / "raw").glob("002_*.txt"))  # 9 units
    shutil.copy(src, toy / "raw" / src.name)
    gold = [ln for ln in (SEEDS / "gold.jsonl").open(encoding="utf-8") if ln[8:11] == "002"]
    (toy / "gold.jsonl").write_text("".join(gold), "utf-8")
    lines = (SEEDS / "extra" / "written_wa.jsonl").read_text("utf-8").splitlines(keepends=True)
    (toy / "extra" / "toy.jsonl").write_text("".join(lines[:35]), "utf-8")  # 44 units in all
    text = _mine((p / "experiments" / "default.yaml").read_text("utf-8")).replace(
        "name: mine", "name: toy"
    )
    text = (
        text.replace("my/raw", "toy/raw")
        .replace("my/gold", "toy/gold")
        .replace("my/extra", "toy/extra")
    )
    (p / "experiments" / "toy.yaml").write_text(text, "utf-8")
    r = _make(p, "all", exp="toy")
    assert r.returncode != 0
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("topics ")]
    assert len(err) == 1 and "a model cannot learn it" in err[0], r.stderr
    assert "Traceback" not in r.stderr
    assert not (p / "models" / "toy").exists()
