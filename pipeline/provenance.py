"""Provenance: what a model version was made from, for its manifest and its MLflow run.

The git commit of the code, the versions of the libraries that shape a model's numbers, the hash
of the training data and the manifest fields themselves. Pure reads: no model, no MLflow.
"""

from __future__ import annotations

import hashlib
import platform
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from pipeline.fsutil import sha256_file

# the libraries whose versions change a model's numbers or whether it loads
TRACKED_LIBS = ("scikit-learn", "jieba", "numpy", "scipy", "joblib", "rjieba")


def library_versions() -> dict[str, str]:
    """Python's version and each installed tracked library's."""
    out = {"python": platform.python_version()}
    for lib in TRACKED_LIBS:
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            continue
    return out


def _git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=root, capture_output=True, text=True, timeout=5, check=False
    ).stdout.strip()


def git_commit(root: Path = Path(".")) -> str:
    """The checked-out commit, ``-dirty`` when tracked files are modified, else ``unknown``."""
    try:
        sha = _git(root, "rev-parse", "HEAD")
        dirty = _git(root, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (sha + ("-dirty" if dirty else "")) if sha else "unknown"


def files_sha256(paths: Iterable[Path]) -> str:
    """One hash over files' names and contents, in the order given."""
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode())
        h.update(sha256_file(p).encode())
    return h.hexdigest()


def manifest_fields(
    *,
    experiment: str,
    config: Mapping[str, Any],
    config_sha256: str,
    training_data_sha256: str,
    training_units: Mapping[str, int],
    themes: Sequence[str],
    themes_sha256: str,
    thresholds: Sequence[float],
    segmenter: Mapping[str, Any],
    metrics: Mapping[str, float],
    commit: str,
    mlflow_run_id: str | None,
) -> dict[str, Any]:
    """The manifest of a model version, less what the store adds (name, version, created,
    parent version, artefact, format and sha256)."""
    return {
        "experiment": experiment,
        "config": dict(config),
        "config_sha256": config_sha256,
        "training_data_sha256": training_data_sha256,
        "training_units": dict(training_units),
        "themes": list(themes),
        "themes_sha256": themes_sha256,
        "thresholds": {t: float(v) for t, v in zip(themes, thresholds, strict=True)},
        "segmenter": dict(segmenter),
        "metrics": dict(metrics),
        "libraries": library_versions(),
        "git_commit": commit,
        "mlflow_run_id": mlflow_run_id,
    }
