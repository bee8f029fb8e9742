"""Experiment tracking in MLflow: imported lazily, in this one module.

``predict`` never imports this, so it starts fast and never needs a tracking server. The default
store is an embedded sqlite database under ``experiments/``; ``MLFLOW_TRACKING_URI`` points the
same commands at a shared MLflow server.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline.errors import GovTopicsError, ModelError
from pipeline.fsutil import pid_alive, project_root

log = logging.getLogger(__name__)

EXPERIMENT = "gov-topics"
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"  # the training view, not GenAI traces


def tracking_uri(root: Path = Path(".")) -> str:
    """``$MLFLOW_TRACKING_URI`` or the embedded sqlite store ``experiments/mlflow.db`` of the
    project ``root`` is in (found from any subfolder)."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    db = (project_root(root) / "experiments" / "mlflow.db").resolve()
    return f"sqlite:///{db}"


@contextlib.contextmanager
def _mlflow_internal_warnings_filtered() -> Iterator[None]:
    """Silence two warnings raised inside MLflow itself, harmless here, and nothing else (the
    same two are filtered for pytest in pyproject.toml):

    - SQLAlchemy's "``noload`` loader strategy is deprecated": MLflow's own table models (an MCP
      endpoint relationship) use it; raised once, when MLflow's SQL store module is imported.
    - pandas 3's "Operation with range is deprecated" (a Pandas4Warning): MLflow compares the
      input example's column index with ``range``; ours has named columns, so the outcome is
      the same under pandas 4.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore",
            message=r"The ``noload`` loader strategy is deprecated",
            category=DeprecationWarning,
            module=r"mlflow\.",
        )
        warnings.filterwarnings(
            "ignore",
            message="Operation with range is deprecated",
            category=DeprecationWarning,
            module=r"mlflow\.models\.utils",
        )
        yield


def _client(uri: str) -> Any:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # no network at run time
    logging.getLogger("alembic").setLevel(logging.WARNING)
    with _mlflow_internal_warnings_filtered():
        from mlflow.tracking import MlflowClient

        if uri.split(":", 1)[0].split("+", 1)[0] in ("sqlite", "postgresql", "mysql", "mssql"):
            # imported here, not at the first query, so its import-time warning is filtered
            import mlflow.store.tracking.sqlalchemy_store  # noqa: F401

    return MlflowClient(tracking_uri=uri)


def _experiment_id(client: Any, root: Path, uri: str) -> str:
    exp = client.get_experiment_by_name(EXPERIMENT)
    if exp is not None:
        exp_id = str(exp.experiment_id)
    else:
        artifact_location = None
        if uri.startswith("sqlite:"):
            artifact_location = (root / "experiments" / "mlartifacts").resolve().as_uri()
        from mlflow.exceptions import MlflowException

        try:
            exp_id = str(client.create_experiment(EXPERIMENT, artifact_location=artifact_location))
        except MlflowException as exc:  # another register made it first (a shared server)
            exp = client.get_experiment_by_name(EXPERIMENT)
            if exc.error_code != "RESOURCE_ALREADY_EXISTS" or exp is None:
                raise
            exp_id = str(exp.experiment_id)
    if exp is None or exp.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:
        # MLflow 3's UI opens an experiment of unknown kind on its GenAI (traces) page
        client.set_experiment_tag(exp_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    return exp_id


def _clean_metric_key(key: str) -> str:
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in key)


def log_training(
    *,
    run_name: str,
    params: Mapping[str, Any],
    metrics: Mapping[str, float],
    tags: Mapping[str, str],
    artifacts: Sequence[tuple[str, Path]],
    datasets: Sequence[Mapping[str, Any]] = (),
    root: Path = Path("."),
) -> str:
    """Start one training's MLflow run, log its figures and files, and return its id.

    The run stays RUNNING until :func:`end_run` (FINISHED once the model is logged and
    registered, FAILED if anything stops the registration). Runs left RUNNING by a register
    that was killed outright (SIGKILL) on this host are marked FAILED here first.

    Raises
    ------
    GovTopicsError
        When the tracking store cannot be reached (with the URI and what to do).
    """
    uri = tracking_uri(root)
    try:
        client = _client(uri)
        exp_id = _experiment_id(client, root, uri)
        _fail_orphaned_runs(client, exp_id)
        owner = {"gov_topics.host": socket.gethostname(), "gov_topics.pid": str(os.getpid())}
        run = client.create_run(exp_id, run_name=run_name, tags={**tags, **owner})
        run_id = str(run.info.run_id)
        import time

        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
        client.log_batch(
            run_id,
            # 4 decimals: what a reader compares (the UI showed 16)
            metrics=[
                Metric(_clean_metric_key(k), round(float(v), 4), now, 0) for k, v in metrics.items()
            ],
            params=[Param(k, str(v)[:6000]) for k, v in params.items()],
            tags=[RunTag("mlflow.note.content", tags.get("description", ""))]
            if tags.get("description")
            else [],
        )
        if datasets:
            _log_inputs(client, run_id, [_dataset_input(d) for d in datasets])
        for dest, path in artifacts:
            if Path(path).exists():
                client.log_artifact(run_id, str(path), artifact_path=dest or None)
    except GovTopicsError:
        raise
    except Exception as exc:  # the tracking store's errors are many and version-specific
        raise GovTopicsError(
            f"MLflow tracking at {uri} failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}",
            "check MLFLOW_TRACKING_URI (unset it to use the local sqlite store)",
        ) from exc
    log.info("logged MLflow run %s to %s", run_id, uri)
    return run_id


def _log_inputs(client: Any, run_id: str, inputs: list[Any]) -> None:
    """Link the run's datasets, once more if another run created one of them at the same moment:
    MLflow's store inserts a new dataset row without a lock, so of two runs logging the same
    dataset at once (two registers on a shared server) one gets a unique-key error, by which time
    the row exists."""
    from mlflow.exceptions import MlflowException

    try:
        client.log_inputs(run_id, datasets=inputs)
    except MlflowException as exc:
        if "unique" not in str(exc).lower():
            raise
        client.log_inputs(run_id, datasets=inputs)


def _dataset_input(d: Mapping[str, Any]) -> Any:
    """An MLflow dataset input: ``name``, ``digest``, ``source`` (paths), ``context``
    (training/evaluation) and a ``profile`` (counts) shown on the run page."""
    import json

    from mlflow.entities import Dataset, DatasetInput, InputTag

    ds = Dataset(
        name=str(d["name"]),
        digest=str(d["digest"])[:36],
        source_type="local",
        source=json.dumps({"uri": str(d["source"])}),
        profile=json.dumps(d.get("profile", {})),
    )
    return DatasetInput(ds, tags=[InputTag("mlflow.data.context", str(d["context"]))])


def _fail_orphaned_runs(client: Any, exp_id: str) -> None:
    """Mark FAILED the RUNNING runs whose register process (on this host) no longer exists."""
    host = socket.gethostname()
    for run in client.search_runs([exp_id], filter_string="attributes.status = 'RUNNING'"):
        t = run.data.tags
        pid = t.get("gov_topics.pid", "")
        if t.get("gov_topics.host") == host and pid.isdigit() and not pid_alive(int(pid)):
            client.set_terminated(run.info.run_id, "FAILED")
            log.warning(
                "MLflow run %s was left RUNNING by a killed register: marked FAILED",
                run.info.run_id,
            )


def end_run(run_id: str, status: str, root: Path = Path(".")) -> None:
    """Close a run as FINISHED or FAILED (best effort when failing: the original error wins)."""
    uri = tracking_uri(root)
    try:
        _client(uri).set_terminated(run_id, status)
    except Exception as exc:
        if status == "FINISHED":
            raise GovTopicsError(
                f"MLflow tracking at {uri}: could not close run {run_id}: {type(exc).__name__}",
                "check MLFLOW_TRACKING_URI",
            ) from exc
        log.warning("could not mark MLflow run %s %s: %s", run_id, status, type(exc).__name__)


def metrics_of(evaluation: Mapping[str, Any]) -> dict[str, float]:
    """Flatten an evaluation report into MLflow metrics (overall, per theme, per source and
    doctype). ``macro_f1``, the figure the promotion gate compares, is the out-of-source
    macro-F1 when the evaluation has one, else the seed-unit cross-validation's."""
    m = evaluation["model"]
    out = {
        "seed_cv_macro_f1": m["macro_f1"]["mean"],
        "seed_cv_macro_f1_std": m["macro_f1"]["std"],
        "seed_cv_micro_f1": m["micro_f1"]["mean"],
        "seed_cv_document_macro_f1": m["document_macro_f1"]["mean"],
        "seed_cv_macro_f1_seed_only": evaluation["model_seed_only"]["macro_f1"]["mean"],
        "seed_cv_baseline_macro_f1": evaluation["baseline"]["macro_f1"]["mean"],
    }
    oos = evaluation.get("out_of_source")
    if oos:
        out["macro_f1"] = oos["model"]["macro_f1"]
        out["micro_f1"] = oos["model"]["micro_f1"]
        out["baseline_macro_f1"] = oos["baseline"]["macro_f1"]
        out["gain_over_baseline"] = oos["gain_over_baseline"]
        per_theme = oos["model"]["per_theme"]
        for kind in ("source", "doctype"):
            for name, s in oos[f"per_{kind}"].items():
                out[f"{kind}.{name.removeprefix('pool:')}.macro_f1"] = s["macro_f1"]
    else:
        out["macro_f1"] = m["macro_f1"]["mean"]
        out["micro_f1"] = m["micro_f1"]["mean"]
        out["baseline_macro_f1"] = evaluation["baseline"]["macro_f1"]["mean"]
        out["gain_over_baseline"] = evaluation["gain_over_baseline"]
        per_theme = m["per_theme"]
    for theme, s in per_theme.items():
        for k in ("precision", "recall", "f1"):
            out[f"{theme}.{k}"] = s[k]
    return out


def log_artifact(run_id: str, path: Path, root: Path = Path(".")) -> None:
    """Add one file to an existing run's artefacts."""
    uri = tracking_uri(root)
    try:
        _client(uri).log_artifact(run_id, str(path))
    except Exception as exc:
        raise GovTopicsError(
            f"MLflow tracking at {uri} failed to store {path.name}: {type(exc).__name__}",
            "check MLFLOW_TRACKING_URI",
        ) from exc


def log_model(run_id: str, model_path: Path, themes: Sequence[str], root: Path = Path(".")) -> str:
    """Log the model to a run as an MLflow pyfunc (:class:`pipeline.serving.ThemeScorer`, whose
    ``predict`` returns themes and theme scores), with the store's joblib file as its artefact and
    the package as its code. Returns the model's URI, for :func:`register_model`.

    The scorer is logged as code (MLflow's "models from code": a short file that builds it from
    the package, :data:`pipeline.serving.MODEL_CODE`), not as a CloudPickle of the object, which
    MLflow warns about and is moving away from loading.

    Only the pyfunc is logged: a second copy in MLflow's scikit-learn flavour (skops format) took
    minutes to serialise for the character n-gram model and added nothing the pyfunc lacks."""
    uri = tracking_uri(root)
    try:
        client = _client(uri)
        import tempfile

        import mlflow
        import mlflow.pyfunc

        import pipeline as pkg
        from pipeline.classifiers import requirements
        from pipeline.provenance import library_versions
        from pipeline.serving import MODEL_CODE, input_example, signature

        libs = library_versions()
        reqs = [
            f"{lib}=={libs[lib]}"
            for lib in ("scikit-learn", "jieba", "rjieba", "numpy", "scipy", "joblib", "skops")
            if lib in libs
        ]
        reqs += ["pyyaml", "pandas", *requirements()]
        mlflow.set_tracking_uri(uri)
        with (
            tempfile.TemporaryDirectory(prefix="gov-topics-model-") as tmp,
            mlflow.start_run(run_id=run_id),
            _mlflow_internal_warnings_filtered(),
        ):
            code = Path(tmp) / "gov_topics_model.py"
            code.write_text(MODEL_CODE, "utf-8")
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(code),
                artifacts={"model": str(model_path)},
                code_paths=[str(Path(pkg.__file__).parent)],
                pip_requirements=reqs,
                signature=signature(themes),
                input_example=input_example(),
            )
        # leaving start_run's block marked the run FINISHED; it is not until it is registered
        client.update_run(run_id, status="RUNNING")
        return str(info.model_uri)
    except GovTopicsError:
        raise
    except Exception as exc:
        raise GovTopicsError(
            f"MLflow model logging at {uri} failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}",
            "check MLFLOW_TRACKING_URI, or register with --no-track",
        ) from exc


def register_model(model_uri: str, name: str, store_version: int, root: Path = Path(".")) -> int:
    """Register a logged pyfunc model in the MLflow registry; returns the registry version
    (normally equal to the store's version; the tag ``store_version`` always links them)."""
    uri = tracking_uri(root)
    try:
        client = _client(uri)
        import mlflow

        mlflow.set_tracking_uri(uri)
        mv = mlflow.register_model(model_uri, name)
        version = int(mv.version)
        client.set_model_version_tag(name, str(version), "store_version", str(store_version))
    except Exception as exc:
        raise GovTopicsError(
            f"MLflow registry at {uri}: registering {name} failed: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200]}",
            "nothing was registered (the store version was taken back); register again once "
            "the tracking store is reachable, or with --no-track",
        ) from exc
    if version != store_version:
        log.warning(
            "MLflow registry version %s differs from store version %s (the store was written "
            "without tracking at some point); the tag store_version links them",
            version,
            store_version,
        )
    return version


def set_registry_alias(
    name: str, alias: str, registry_version: int, root: Path = Path(".")
) -> None:
    """Point an MLflow registry alias at a version (kept in step with the store's aliases)."""
    uri = tracking_uri(root)
    try:
        _client(uri).set_registered_model_alias(name, alias, str(registry_version))
    except Exception as exc:
        raise GovTopicsError(
            f"MLflow registry at {uri}: could not set alias {alias!r}: {type(exc).__name__}",
            "the store's alias moved; set the MLflow alias again once the tracking store is reachable",
        ) from exc


def store_version_of(uri: str) -> tuple[str, int]:
    """The model name and store version an MLflow registry URI (``models:/name@alias`` or
    ``models:/name/version``) stands for: the registry version's ``store_version`` tag.

    Raises :class:`~pipeline.errors.ModelError` when the registry has no such version.
    """
    body = uri.removeprefix("models:/")
    name, alias, ref = body.partition("@")
    if not alias:
        name, _, ref = body.rpartition("/")
    where = tracking_uri()
    try:
        client = _client(where)
        mv = (
            client.get_model_version_by_alias(name, ref)
            if alias
            else client.get_model_version(name, ref)
        )
        return name, int(mv.tags.get("store_version") or mv.version)
    except Exception as exc:
        raise ModelError(
            f"{uri}: not found in the MLflow registry at {where} ({type(exc).__name__})",
            "check the name and alias or version, and MLFLOW_TRACKING_URI",
        ) from None
