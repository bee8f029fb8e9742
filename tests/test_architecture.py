"""ARCHITECTURE.md's import rules, checked on every module's source (imports inside functions
count too) and on a real interpreter."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "pipeline"
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")

SCORING_PATH = ("predict", "batch", "documents", "paragraphs", "registry", "queue")
NEVER_ON_SCORING_PATH = {
    "ingest",
    "labels",
    "stages",
    "evaluate",
    "report",
    "workspace",
    "tracking",
    "serving",
    "promote",
    "cli",
}


def imports_of(module: str) -> set[str]:
    """Every module ``module`` imports, anywhere in its source (``pipeline.x`` as ``x``)."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text("utf-8"))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "pipeline":
                out.update(a.name for a in node.names)
            else:
                out.add(node.module)
    return {m.removeprefix("pipeline.") for m in out}


def internal(module: str) -> set[str]:
    return {m for m in imports_of(module) if m in MODULES}


def reachable(start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        m = todo.pop()
        for dep in internal(m) - seen:
            seen.add(dep)
            todo.append(dep)
    return seen


def test_the_rules_see_real_imports() -> None:
    # the checker itself must find what is there, or every rule below passes vacuously
    assert "paragraphs" in internal("predict")
    assert "mlflow" in {m.split(".")[0] for m in imports_of("tracking")}
    assert "registry" in reachable("batch")


@pytest.mark.parametrize("module", MODULES)
def test_only_tracking_and_serving_import_mlflow(module: str) -> None:
    roots = {m.split(".")[0] for m in imports_of(module)}
    assert ("mlflow" in roots) == (module in ("tracking", "serving")), module


@pytest.mark.parametrize("module", SCORING_PATH)
def test_scoring_path_never_reaches_training_or_tracking_code(module: str) -> None:
    bad = reachable(module) & NEVER_ON_SCORING_PATH
    assert not bad, f"{module} reaches {sorted(bad)}"


def test_paragraphs_is_pure_text_code() -> None:
    allowed = {"__future__", "hashlib", "json", "re", "collections", "dataclasses", "textio"}
    assert imports_of("paragraphs") <= allowed
    assert reachable("paragraphs") <= {"textio", "errors"}


@pytest.mark.parametrize("module", [m for m in MODULES if m != "cli"])
def test_nothing_imports_the_cli(module: str) -> None:
    assert "cli" not in internal(module)


def private_uses(source: str) -> set[str]:
    """Another pipeline module's private names a module's ``source`` uses:
    ``from pipeline.x import _y``, or ``x._y`` on a pipeline module it imported."""
    tree = ast.parse(source)
    aliases: set[str] = set()
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pipeline"):
            for a in node.names:
                if node.module == "pipeline":
                    aliases.add(a.asname or a.name)
                elif a.name.startswith("_"):
                    out.add(f"{node.module}.{a.name}")
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and node.attr.startswith("_")
        ):
            out.add(f"{node.value.id}.{node.attr}")
    return out


def test_the_private_name_rule_sees_real_uses() -> None:
    bad = "from pipeline.documents import _x\nfrom pipeline import tracking\ntracking._client(1)\n"
    assert private_uses(bad) == {"pipeline.documents._x", "tracking._client"}
    assert private_uses("from pipeline import tracking\ntracking.log_training()\n") == set()


@pytest.mark.parametrize("module", MODULES)
def test_no_module_uses_another_s_private_names(module: str) -> None:
    """A name another module needs is public (documented, kept stable), never reached into."""
    assert not private_uses((PACKAGE / f"{module}.py").read_text("utf-8")), module


def test_classifier_table_imports_only_errors() -> None:
    assert internal("classifiers") <= {"errors"}


def test_scoring_a_document_loads_neither_mlflow_nor_training_code() -> None:
    code = (
        "import sys\n"
        "from pipeline.predict import predict_batch\n"
        "from pipeline.batch import run_batch\n"
        "from pipeline.registry import ModelStore\n"
        "bad = [m for m in sys.modules if m.split('.')[0] == 'mlflow' or m in "
        "('pipeline.ingest', 'pipeline.stages', 'pipeline.evaluate', 'pipeline.labels')]\n"
        "print(bad)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_make_s_every_run_checksum_step_imports_no_model_code(tmp_path: Path) -> None:
    """`topics inputs` runs on every `make` call: it reads the data section and stays light
    (no scikit-learn, MLflow or jieba), while its stamps name every data file of the experiment."""
    code = (
        "import sys\n"
        "from pipeline.cli import main\n"
        f"rc = main(['inputs', '--exp', 'experiments/default.yaml', '--build', {str(tmp_path)!r}])\n"
        "print(rc, sorted({m.split('.')[0] for m in sys.modules} & "
        "{'sklearn', 'mlflow', 'jieba', 'rjieba', 'scipy'}))\n"
    )
    root = Path(__file__).resolve().parent.parent
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    )
    assert run.stdout.strip() == "0 []", run.stderr
    stamps = {p.name: p.read_text("utf-8") for p in (tmp_path / "default" / "inputs").iterdir()}
    assert set(stamps) == {"raw.sha256", "labels.sha256", "pool.sha256"}
    assert stamps["raw.sha256"].count("seeds/raw/") == 5
