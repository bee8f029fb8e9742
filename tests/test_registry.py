"""The model store and MLflow: real processes, real servers on localhost, no network."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.errors import ModelError
from pipeline.registry import ModelRef, ModelStore

from .conftest import run_in

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
SAFETY_TEXT = "全面开展安全生产大检查,深入排查整治重大事故隐患,严防各类事故发生。"
OTHER_TEXT = "推进乡村振兴，发展特色种植和乡村旅游，带动农民增收。"


def _topics(project: Path, *args: str, env: dict[str, str] | None = None, **kw) -> subprocess.Popen:
    full_env = {**os.environ, **(env or {})}
    return subprocess.Popen(
        [str(BIN / "topics"), *args],
        cwd=project,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(url: str, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {seconds}s")


def _post(url: str, body: dict) -> dict:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def test_concurrent_trainings_get_distinct_complete_versions(trained: Path, tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    args = ("register", "--exp", "experiments/small.yaml", "--no-track", "--models", str(store_dir))
    env = {"GOV_TOPICS_TEST_PAUSE": "after_copy:1.5"}  # both are inside add_version together
    procs = [_topics(trained, *args, env=env) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    store = ModelStore(store_dir)
    assert store.versions() == [1, 2]
    for v in (1, 2):
        _, man = store.load(ModelRef("gov-topics", str(v)))  # sha256 verified
        assert man["version"] == v
    assert not list((store_dir / "gov-topics").glob(".incoming-*"))


@contextlib.contextmanager
def _mlflow_server(tmp_path: Path) -> Iterator[str]:
    """A real MLflow tracking server (sqlite backend, local artefacts); yields its URL."""
    port = _free_port()
    server = subprocess.Popen(
        [
            str(BIN / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'srv.db'}",
            "--artifacts-destination",
            str(tmp_path / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_http(f"{url}/health")
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_register_to_a_real_mlflow_server_survives_being_killed(
    trained: Path, tmp_path: Path
) -> None:
    """Against a shared tracking server: two registers started at once on a new server (both
    create its experiment), one stopped by SIGTERM and one by SIGKILL, leave no store version
    and no RUNNING run, and the next register is run 1 of the registry, in step with the store,
    with its figures and tags on the server."""
    from mlflow.tracking import MlflowClient

    store_dir = tmp_path / "store"
    args = ("register", "--exp", "experiments/small.yaml", "--models", str(store_dir))
    with _mlflow_server(tmp_path) as url:
        env = {"MLFLOW_TRACKING_URI": url}

        client = MlflowClient(tracking_uri=url)

        def statuses() -> list[str]:
            exp = client.get_experiment_by_name("gov-topics")
            if exp is None:
                return []
            runs = client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])
            return [r.info.status for r in runs]

        def paused_register(name: str) -> tuple[subprocess.Popen, Path]:
            # it pauses once its run is RUNNING on the server, before the model is logged
            mark = tmp_path / f"paused-{name}"
            pause = {
                "GOV_TOPICS_TEST_PAUSE": "after_run_started:60",
                "GOV_TOPICS_TEST_PAUSED": str(mark),
            }
            return _topics(trained, *args, env={**env, **pause}), mark

        # two registers at once on a new server (both create the experiment), both paused
        (term, term_mark), (kill, kill_mark) = paused_register("term"), paused_register("kill")
        deadline = time.monotonic() + 120
        while not (term_mark.exists() and kill_mark.exists()):
            for p in (term, kill):
                if p.poll() is not None:
                    term.kill(), kill.kill()
                    raise AssertionError(f"a register ended before its pause: {p.communicate()[1]}")
            if time.monotonic() > deadline:
                term.kill(), kill.kill()
                raise AssertionError("the registers never reached their pause")
            time.sleep(0.2)
        assert statuses() == ["RUNNING", "RUNNING"]
        store = ModelStore(store_dir)
        # SIGTERM unwinds: exit 143, no version, its run marked FAILED at once
        term.send_signal(signal.SIGTERM)
        term.communicate(timeout=30)  # waits, and closes its pipes (no ResourceWarning)
        assert term.returncode == 143
        assert store.versions() == [] and sorted(statuses()) == ["FAILED", "RUNNING"]
        # SIGKILL cannot be caught: its run stays RUNNING until the next register marks it FAILED
        kill.send_signal(signal.SIGKILL)
        kill.communicate(timeout=30)
        assert store.versions() == [] and sorted(statuses()) == ["FAILED", "RUNNING"]
        with pytest.raises(ModelError, match="no model 'gov-topics'"):
            store.load(ModelRef("gov-topics", "latest"))
        q = _topics(trained, *args, env=env)
        _, err = q.communicate(timeout=180)
        assert q.returncode == 0, err
        assert store.versions() == [1]
        assert sorted(statuses()) == ["FAILED", "FAILED", "FINISHED"]
        # store and registry in step: store version 1 is registry version 1
        man = store.manifest("gov-topics", 1)
        assert man["mlflow_model_version"] == 1
        with urllib.request.urlopen(
            f"{url}/api/2.0/mlflow/runs/get?run_id={man['mlflow_run_id']}"
        ) as r:
            run = json.loads(r.read())["run"]
        metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
        assert metrics["macro_f1"] == round(man["metrics"]["macro_f1"], 4)  # 4 decimals
        tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
        assert tags["data_sha256"] == man["training_data_sha256"]


def test_metric_gate_refuses_worse_model_and_rollback_restores(
    worse_trained: Path, tmp_path: Path
) -> None:
    trained = worse_trained
    store_dir = tmp_path / "store"
    m = ["--models", str(store_dir)]
    assert run_in(trained, "register", "--exp", "experiments/small.yaml", "--no-track", *m) == 0
    assert run_in(trained, "register", "--exp", "experiments/worse.yaml", "--no-track", *m) == 0
    assert run_in(trained, "register", "--exp", "experiments/small.yaml", "--no-track", *m) == 0
    store = ModelStore(store_dir)
    good, worse = store.manifest("gov-topics", 1), store.manifest("gov-topics", 2)
    assert worse["metrics"]["macro_f1"] < good["metrics"]["macro_f1"]

    promote = ["models", "promote", "--gate-exp", "experiments/small.yaml", "--no-track", *m]
    assert run_in(trained, *promote, "1", "--to", "production", "--reason", "first") == 0
    assert run_in(trained, *promote, "2", "--to", "production") == 1  # refused by the gate
    assert store.aliases()["production"] == 1
    assert run_in(trained, *promote, "3", "--to", "production", "--reason", "retrained") == 0
    assert store.aliases()["production"] == 3
    assert run_in(trained, "models", "rollback", "--no-track", *m) == 0
    assert store.aliases()["production"] == 1
    assert (
        run_in(trained, *promote, "2", "--to", "production", "--force", "--reason", "audit test")
        == 0
    )
    audit = store.audit()
    assert [(e["from"], e["to"]) for e in audit] == [(None, 1), (1, 3), (3, 1), (1, 2)]
    assert audit[2]["rollback"] is True
    assert audit[3]["forced"] is True and audit[3]["why"] == "audit test"
    assert audit[3]["gate"]["candidate"] < audit[3]["gate"]["production"]


def test_diff_shows_metric_and_config_changes(worse_trained: Path, tmp_path: Path, capsys) -> None:
    trained = worse_trained
    store_dir = tmp_path / "store"
    m = ["--models", str(store_dir)]
    for exp in ("small", "worse"):
        assert (
            run_in(trained, "register", "--exp", f"experiments/{exp}.yaml", "--no-track", *m) == 0
        )
    capsys.readouterr()
    assert run_in(trained, "models", "diff", "1", "2", *m) == 0
    out = capsys.readouterr().out
    assert "features.lexicon.enabled: True -> False" in out
    assert "macro_f1" in out and "safety.f1" in out


def test_skops_refuses_types_outside_the_allow_list(tmp_path: Path) -> None:
    import skops.io as sio

    from pipeline.registry import _load_artefact

    path = tmp_path / "evil.skops"
    sio.dump({"x": _Foreign()}, path)
    with pytest.raises(ModelError, match="refusing to load types outside the allow-list"):
        _load_artefact(path, "skops")


class _Foreign:
    pass


def test_same_data_config_and_seed_give_byte_identical_predictions(trained: Path) -> None:
    import joblib

    from pipeline.predict import predict_batch

    # the session's training (build/) against a second one from scratch in another folder
    for stage in ("ingest", "segment", "features", "train"):
        assert run_in(trained, stage, "--exp", "experiments/small.yaml", "--build", "build_b") == 0
    texts = [p.read_text("utf-8") for p in sorted((trained / "seeds" / "raw").glob("*.txt"))]
    outs = []
    for build in ("build", "build_b"):
        model = joblib.load(trained / build / "small" / "model.joblib")
        outs.append(json.dumps(predict_batch(model, texts, paragraphs=True), ensure_ascii=False))
    assert outs[0] == outs[1]


def test_served_model_answers_with_themes(trained: Path) -> None:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    assert (
        run_in(
            trained,
            "models",
            "promote",
            "1",
            "--to",
            "production",
            "--models",
            str(trained / "models"),
            "--reason",
            "serve test",
        )
        == 0
    )
    port = _free_port()
    server = subprocess.Popen(
        [
            str(BIN / "mlflow"),
            "models",
            "serve",
            "-m",
            "models:/gov-topics@production",
            "--env-manager",
            "local",
            "--host",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=trained,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _wait_http(f"http://127.0.0.1:{port}/ping")
        res = _post(
            f"http://127.0.0.1:{port}/invocations",
            {"dataframe_split": {"columns": ["id", "text"], "data": [["a", SAFETY_TEXT]]}},
        )
        row = res["predictions"][0]
        assert row["id"] == "a"
        assert row["themes"][0] == "safety"
        assert 0.5 < row["safety"] <= 1.0
        # the other documented form, with evidence asked for (it used to return no themes)
        res = _post(
            f"http://127.0.0.1:{port}/invocations",
            {"inputs": {"text": [SAFETY_TEXT, OTHER_TEXT]}, "params": {"evidence": True}},
        )
        first, second = res["predictions"]  # one record per text (they used to be merged)
        assert first["themes"][0] == "safety"
        assert "safety" in json.loads(first["evidence"])
        assert second["safety"] < first["safety"]
        # no text: a 400 that says what to send, not a stack trace
        with pytest.raises(urllib.error.HTTPError) as bad:
            _post(
                f"http://127.0.0.1:{port}/invocations",
                {"dataframe_split": {"columns": ["body"], "data": [["x"]]}},
            )
        body = bad.value.read().decode("utf-8")
        assert bad.value.code == 400 and "text" in body and "Traceback" not in body
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    # the registered model carries its signature and an input example
    from mlflow.models import get_model_info

    info = get_model_info("models:/gov-topics@production")
    assert info.signature.inputs.input_names() == ["text", "id"]
    assert "safety" in info.signature.outputs.input_names()
    assert info.saved_input_example_info is not None


def test_loading_warns_when_library_versions_differ(trained: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "models"
    shutil.copytree(trained / "models", copy)
    store = ModelStore(copy)
    libs = store.manifest("gov-topics", 1)["libraries"]
    store.update_manifest("gov-topics", 1, libraries={**libs, "scikit-learn": "0.0.1"})
    with pytest.warns(UserWarning, match=r"trained with scikit-learn 0\.0\.1, installed is"):
        store.load(ModelRef("gov-topics", "1"))


def test_training_run_logs_report_plots_and_manifest(trained: Path) -> None:
    from mlflow.tracking import MlflowClient

    man = ModelStore(trained / "models").manifest("gov-topics", 1)
    client = MlflowClient(tracking_uri=f"sqlite:///{trained / 'experiments' / 'mlflow.db'}")
    top = {a.path for a in client.list_artifacts(man["mlflow_run_id"])}
    assert {"evaluation.json", "manifest.json", "report", "plots", "features"} <= top
    plots = {a.path for a in client.list_artifacts(man["mlflow_run_id"], "plots")}
    assert {"plots/f1.png", "plots/pr.png", "plots/errors.png", "plots/learning.png"} <= plots
    run = client.get_run(man["mlflow_run_id"])
    assert run.data.params["features.lexicon.enabled"] == "True"
    assert "safety.f1" in run.data.metrics
    # the dashboard: the training view, figures a reader compares, the data it was trained on
    exp = client.get_experiment(run.info.experiment_id)
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    assert all(round(v, 4) == v for v in run.data.metrics.values())
    contexts = {
        next(t.value for t in d.tags if t.key == "mlflow.data.context"): d.dataset
        for d in run.inputs.dataset_inputs
    }
    assert set(contexts) == {"training", "evaluation"}
    assert contexts["training"].digest == man["training_data_sha256"][:36]


def test_skops_allow_list_accepts_our_and_scikit_learn_callables() -> None:
    from pipeline.registry import skops_allowed

    types = [
        "pipeline.segment.Segmenter",
        "sklearn.feature_selection._univariate_selection.chi2",
        "builtins.frozenset",
    ]
    assert skops_allowed(types, "m") == types
    with pytest.raises(ModelError, match=r"\['os.system'\]"):
        skops_allowed([*types, "os.system"], "m")
