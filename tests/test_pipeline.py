"""End to end: every stage through the CLI in a temporary project, then the model store."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.errors import ModelError
from pipeline.registry import ModelRef, ModelStore

from .conftest import raw_text, run_in

pytestmark = pytest.mark.slow


def test_every_stage_writes_its_output(trained: Path) -> None:
    b = trained / "build" / "small"
    for name in (
        "segmented.jsonl",
        "vocabulary.json",
        "model.joblib",
        "evaluation.json",
    ):
        assert (b / name).stat().st_size > 0, name
    report = json.loads((b / "evaluation.json").read_text("utf-8"))
    assert report["protocol"]["scored_on"] == "real seed units only"
    assert 0.3 < report["model"]["macro_f1"]["mean"] <= 1.0
    assert set(report["baseline"]["per_theme"]) == set(report["themes"])


def test_register_writes_version_with_auditable_manifest(trained: Path) -> None:
    store = ModelStore(trained / "models")
    assert store.versions() == [1]
    man = store.manifest("gov-topics", 1)
    for key in (
        "created",
        "training_data_sha256",
        "config",
        "metrics",
        "libraries",
        "git_commit",
        "artefact_sha256",
        "thresholds",
        "segmenter",
        "mlflow_run_id",
    ):
        assert key in man, key
    assert man["libraries"]["scikit-learn"]
    assert (trained / "models" / "gov-topics" / "1" / "evaluation.json").exists()


def test_predict_names_safety_for_the_safety_inspection_document(trained: Path, capsys) -> None:
    src = next((trained / "seeds" / "raw").glob("000_*.txt"))
    assert main(["predict", str(src), "--models", str(trained / "models")]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert "safety" in rec["themes"]
    assert rec["themes"] == sorted(rec["themes"], key=lambda t: -rec["scores"][t])
    assert rec["evidence"]["safety"]["sentence"] in rec_text(src)


def rec_text(path: Path) -> str:
    from pipeline.textio import normalize_text

    return normalize_text(path.read_text("utf-8")).replace("\n", "")


def test_predict_jsonl_keeps_order_and_reports_bad_lines(
    trained: Path, tmp_path: Path, capsys
) -> None:
    src = tmp_path / "docs.jsonl"
    lines = [
        json.dumps(
            {
                "id": "a",
                "text": "全面开展安全生产大检查,深入排查整治重大事故隐患,严防各类事故发生。",
            },
            ensure_ascii=False,
        ),
        "{not json",
        json.dumps({"id": "c", "text": raw_text("002")[:300]}, ensure_ascii=False),
    ]
    src.write_text("\n".join(lines) + "\n", "utf-8")
    out = tmp_path / "out.jsonl"
    code = main(["predict", str(src), "-o", str(out), "--models", str(trained / "models")])
    assert code == 1
    recs = [json.loads(x) for x in out.read_text("utf-8").splitlines()]
    assert [r["id"] for r in recs] == ["a", f"{src}:2", "c"]
    assert "error" in recs[1] and "invalid JSON" in recs[1]["error"]
    assert recs[0]["themes"][0] == "safety"
    assert f"{src}:2" in capsys.readouterr().err


def test_second_registration_gets_the_next_version(trained: Path) -> None:
    assert run_in(trained, "register", "--exp", "experiments/small.yaml", "--no-track") == 0
    store = ModelStore(trained / "models")
    assert store.versions() == [1, 2]
    assert store.manifest("gov-topics", 2)["parent_version"] == 1


def test_loading_refuses_a_tampered_artefact(trained: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "models"
    shutil.copytree(trained / "models", copy)
    art = copy / "gov-topics" / "1" / "model.pkl"
    art.write_bytes(art.read_bytes()[:-100])
    with pytest.raises(ModelError, match="does not match the manifest"):
        ModelStore(copy).load(ModelRef("gov-topics", "1"))


def test_cli_errors_are_one_line_without_traceback(trained: Path, tmp_path: Path) -> None:
    topics = Path(sys.executable).parent / "topics"
    res = subprocess.run(
        [
            str(topics),
            "predict",
            str(tmp_path / "missing.txt"),
            "--models",
            str(trained / "models"),
        ],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines() == [
        f"topics predict: error: {tmp_path / 'missing.txt'}: no such file or folder (check the path)"
    ]
    res = subprocess.run(
        [str(topics), "predict", "x.txt", "--models", str(tmp_path / "none")],
        capture_output=True,
        text=True,
    )
    assert (
        res.returncode == 2
        and "no model 'gov-topics'" in res.stderr
        and "Traceback" not in res.stderr
    )


def test_report_html_shows_every_chart_and_the_worst_errors(trained: Path) -> None:
    html = (trained / "build" / "small" / "report.html").read_text("utf-8")
    for chart in ("f1", "errors", "pr", "learning"):
        assert f"<img alt='{chart}' src='data:image/png;base64," in html, chart
    assert "worst errors" in html and "keyword baseline" in html
    report = json.loads((trained / "build" / "small" / "evaluation.json").read_text("utf-8"))
    assert len(report["learning_curve"]) == 2 and len(report["learning_curve_seed"]) == 2
    assert (trained / "models" / "gov-topics" / "1" / "report.html").exists()


def _evaluated_searched(trained: Path) -> dict:
    """The ``searched`` experiment (nested search on the seed units) evaluated, once."""
    path = trained / "build" / "searched" / "evaluation.json"
    if not path.exists():
        for stage in ("ingest", "segment", "evaluate"):
            assert run_in(trained, stage, "--exp", "experiments/searched.yaml") == 0
    return json.loads(path.read_text("utf-8"))


def test_same_config_and_seed_give_identical_metrics_on_rerun(trained: Path) -> None:
    # on the nested search: the most randomness (outer folds, inner folds, the search's choices)
    before = _evaluated_searched(trained)
    assert run_in(trained, "evaluate", "--exp", "experiments/searched.yaml") == 0
    after = json.loads((trained / "build" / "searched" / "evaluation.json").read_text("utf-8"))
    for key in ("model", "model_seed_only", "baseline", "search"):
        assert after[key] == before[key], key


def test_nested_search_chooses_on_the_training_side_of_every_fold(trained: Path) -> None:
    report = _evaluated_searched(trained)
    assert len(report["search"]) == 3  # one choice per outer fold (3 folds x 1 repeat)
    assert all(c["classifier.params.C"] in (0.5, 8.0) for c in report["search"])
