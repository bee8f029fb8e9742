"""Stage 6, register: the versioned model store under ``models/<name>/<version>/``.

A version folder holds the model artefact, ``manifest.json`` (what it is, what it was trained on,
how good it is, and the artefact's sha256) and the evaluation report. Versions are written to a
temporary folder and renamed into place under a lock, so two trainings get two distinct complete
versions and a killed training leaves none behind. Loading verifies the sha256 first.

Aliases (``production``, ``staging``) live in ``aliases.json``; every move is appended to
``audit.jsonl``. ``latest`` is always the highest version.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError, ModelError
from pipeline.fsutil import atomic_write_text, sha256_file
from pipeline.provenance import library_versions

log = logging.getLogger(__name__)

DEFAULT_NAME = "gov-topics"
ARTEFACT = "model.joblib"
SKOPS_ARTEFACT = "model.skops"
# pickle loads in a tenth of joblib's time (joblib unpickles in pure Python), which is most of
# what separates `topics predict` from a fast start; skops loads only allow-listed types
ARTEFACTS = {"pickle": "model.pkl", "joblib": ARTEFACT, "skops": SKOPS_ARTEFACT}
FORMATS = tuple(ARTEFACTS)
# skops loads only the types it is told to trust: exactly the types this project builds (the
# classifier kinds add theirs, pipeline.classifiers), by full name, never by prefix
SKOPS_PIPELINE_TYPES = frozenset(
    {
        "builtins.frozenset",
        "pipeline.features.FastTfidfVectorizer",
        "pipeline.features.LexiconCounter",
        "pipeline.features.TokenNgrams",
        "pipeline.features.TokenText",
        "pipeline.vectors.MeanVectors",
        "pipeline.features.doc_text",
        "pipeline.segment.Segmenter",
        "pipeline.train.ThemeClassifier",
        "pipeline.train._MultiLabelChi2",
        "sklearn.feature_selection._univariate_selection.chi2",
        "sklearn.multiclass.OneVsRestClassifier",
        "sklearn.multiclass._ConstantPredictor",
        "sklearn.pipeline.FeatureUnion",
        "sklearn.pipeline.Pipeline",
        "sklearn.preprocessing._label.LabelBinarizer",
    }
)
MANIFEST = "manifest.json"
ALIASES = ("production", "staging")
_REF = re.compile(r"^(?P<name>[A-Za-z0-9_.-]+?)?(?:(?P<sep>[@:])(?P<ref>[A-Za-z0-9_.-]+))?$")


def default_store() -> Path:
    """``$GOV_TOPICS_MODELS`` or ``models/``."""
    return Path(os.environ.get("GOV_TOPICS_MODELS", "models"))


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


@dataclass(frozen=True)
class ModelRef:
    name: str
    ref: str  # "latest", an alias, or a version number as text


def parse_ref(text: str | None) -> ModelRef:
    """Parse ``NAME``, ``NAME@ALIAS``, ``NAME:VERSION``, ``@ALIAS`` or ``:VERSION``."""
    if not text:
        return ModelRef(DEFAULT_NAME, "latest")
    m = _REF.match(text)
    if not m:
        raise ConfigError(f"model reference {text!r} is not NAME[@ALIAS|:VERSION]")
    name = m.group("name") or DEFAULT_NAME
    ref = m.group("ref") or "latest"
    if m.group("sep") == ":" and not ref.isdigit():
        raise ConfigError(f"model version {ref!r} must be a number", f"e.g. {name}:3")
    return ModelRef(name, ref)


class ModelStore:
    """A folder of named, versioned models."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_store()

    def model_dir(self, name: str) -> Path:
        return self.root / name

    def versions(self, name: str = DEFAULT_NAME) -> list[int]:
        d = self.model_dir(name)
        if not d.is_dir():
            return []
        return sorted(
            int(p.name) for p in d.iterdir() if p.name.isdigit() and (p / MANIFEST).exists()
        )

    def _lock(self, name: str) -> Any:
        from filelock import FileLock

        d = self.model_dir(name)
        d.mkdir(parents=True, exist_ok=True)
        return FileLock(str(d / ".lock"), timeout=120)

    # -- writing ---------------------------------------------------------------------------------

    def add_version(
        self,
        name: str,
        artefact: Path,
        manifest: dict[str, Any],
        model: Any = None,
        extra_files: dict[str, Path] | None = None,
        fmt: str = "pickle",
    ) -> int:
        """Write a new complete version atomically and return its number.

        ``artefact`` is the joblib file of the train stage and ``model`` the fitted model loaded
        from it (loaded here when not given). ``fmt="pickle"`` (the default)
        stores it as a pickle, which loads fastest; ``"joblib"`` copies it as it is; ``"skops"``
        stores the skops format, which loads without running arbitrary code (only allow-listed
        types). Pickle and joblib run code when loaded: load only models you trust (the
        manifest's sha256 is checked before every load).
        """
        if fmt not in FORMATS:
            raise ConfigError(f"model format {fmt!r} is not one of {list(FORMATS)}")
        d = self.model_dir(name)
        d.mkdir(parents=True, exist_ok=True)
        staging = d / f".incoming-{os.getpid()}-{os.urandom(4).hex()}"
        staging.mkdir()
        art_name = ARTEFACTS[fmt]
        if model is None and fmt != "joblib":
            import joblib

            model = joblib.load(artefact)
        try:
            if fmt == "joblib":
                shutil.copyfile(artefact, staging / art_name)
            elif fmt == "pickle":
                import pickle

                with (staging / art_name).open("wb") as fh:
                    pickle.dump(model, fh, protocol=5)
            else:
                import skops.io as sio

                sio.dump(model, staging / art_name)
            for fname, src in (extra_files or {}).items():
                shutil.copyfile(src, staging / fname)
            _test_pause("after_copy")
            with self._lock(name):
                self._sweep_incoming(name, keep=staging)
                existing = self.versions(name)
                version = (existing[-1] if existing else 0) + 1
                full = {
                    "name": name,
                    "version": version,
                    "created": _now(),
                    "parent_version": existing[-1] if existing else None,
                    **manifest,
                    "artefact": art_name,
                    "format": fmt,
                    "artefact_sha256": sha256_file(staging / art_name),
                }
                atomic_write_text(
                    staging / MANIFEST, json.dumps(full, ensure_ascii=False, indent=2) + "\n"
                )
                os.rename(staging, d / str(version))
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return version

    def _sweep_incoming(self, name: str, keep: Path) -> None:
        """Remove incoming folders of dead writers (a killed training leaves no version)."""
        for p in self.model_dir(name).glob(".incoming-*"):
            if p == keep:
                continue
            pid = p.name.split("-")[1]
            if pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(p, ignore_errors=True)

    # -- reading ---------------------------------------------------------------------------------

    def aliases(self, name: str = DEFAULT_NAME) -> dict[str, int]:
        p = self.model_dir(name) / "aliases.json"
        if not p.exists():
            return {}
        return {k: int(v) for k, v in json.loads(p.read_text("utf-8")).items()}

    def resolve(self, ref: ModelRef) -> int:
        versions = self.versions(ref.name)
        if not versions:
            raise ModelError(
                f"no model {ref.name!r} in {self.root}",
                "train one with `make all` (or pass --models DIR)",
            )
        if ref.ref == "latest":
            return versions[-1]
        if ref.ref.isdigit():
            v = int(ref.ref)
            if v not in versions:
                raise ModelError(f"{ref.name} has no version {v}", f"versions: {versions}")
            return v
        aliases = self.aliases(ref.name)
        if ref.ref not in aliases:
            raise ModelError(
                f"{ref.name} has no alias {ref.ref!r}",
                f"aliases: {sorted(aliases) or 'none'}; promote one with `topics models promote`",
            )
        return aliases[ref.ref]

    def manifest(self, name: str, version: int) -> dict[str, Any]:
        p = self.model_dir(name) / str(version) / MANIFEST
        try:
            return dict(json.loads(p.read_text("utf-8")))
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelError(
                f"{p}: unreadable manifest", "the version is damaged; train again"
            ) from exc

    def load(self, ref: ModelRef) -> tuple[Any, dict[str, Any]]:
        """Load a model after verifying its artefact against the manifest's sha256."""
        version = self.resolve(ref)
        vdir = self.model_dir(ref.name) / str(version)
        man = self.manifest(ref.name, version)
        path = vdir / man.get("artefact", ARTEFACT)
        if not path.exists():
            raise ModelError(f"{path}: artefact missing", "the version is damaged; train again")
        got = sha256_file(path)
        if got != man.get("artefact_sha256"):
            raise ModelError(
                f"{path}: sha256 {got[:12]}… does not match the manifest "
                f"({str(man.get('artefact_sha256'))[:12]}…); refusing to load a tampered or truncated model",
                "restore the file or train a new version",
            )
        installed = library_versions()
        for lib, want in (man.get("libraries") or {}).items():
            have = installed.get(lib)
            if lib != "python" and have and have != want:
                warnings.warn(
                    f"{ref.name}:{version} was trained with {lib} {want}, installed is {have}",
                    stacklevel=2,
                )
        return _load_artefact(path, man.get("format", "joblib")), man

    def update_manifest(self, name: str, version: int, **fields: Any) -> None:
        """Add fields to a version's manifest (e.g. the MLflow registry version, known later)."""
        with self._lock(name):
            man = self.manifest(name, version)
            man.update(fields)
            atomic_write_text(
                self.model_dir(name) / str(version) / MANIFEST,
                json.dumps(man, ensure_ascii=False, indent=2) + "\n",
            )

    # -- aliases ---------------------------------------------------------------------------------

    def set_alias(
        self,
        name: str,
        alias: str,
        version: int,
        reason: str = "",
        user: str = "",
        extra: dict[str, Any] | None = None,
    ) -> None:
        if alias not in ALIASES:
            raise ConfigError(f"alias {alias!r} is not one of {list(ALIASES)}")
        with self._lock(name):
            if version not in self.versions(name):
                raise ModelError(f"{name} has no version {version}")
            aliases = self.aliases(name)
            previous = aliases.get(alias)
            aliases[alias] = version
            atomic_write_text(
                self.model_dir(name) / "aliases.json", json.dumps(aliases, indent=2) + "\n"
            )
            entry = {
                "when": _now(),
                "alias": alias,
                "from": previous,
                "to": version,
                "why": reason,
                "user": user or os.environ.get("USER", ""),
                **(extra or {}),
            }
            with (self.model_dir(name) / "audit.jsonl").open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(entry, ensure_ascii=False) + "\n")

    def previous_production(self, name: str = DEFAULT_NAME) -> int:
        """The version production pointed to before its last move (what ``rollback`` restores)."""
        moves = [e for e in self.audit(name) if e["alias"] == "production"]
        if not moves or moves[-1]["from"] is None:
            raise ModelError(
                f"{name} has no previous production version to roll back to",
                "promote a version first: `topics models promote VERSION --to production`",
            )
        return int(moves[-1]["from"])

    def audit(self, name: str = DEFAULT_NAME) -> list[dict[str, Any]]:
        p = self.model_dir(name) / "audit.jsonl"
        if not p.exists():
            return []
        return [json.loads(x) for x in p.read_text("utf-8").splitlines() if x.strip()]


def skops_allowed(untrusted: list[str], source: str) -> list[str]:
    """The types skops may load, after checking each against the allow-list."""
    from pipeline.classifiers import safe_types

    allowed = SKOPS_PIPELINE_TYPES | safe_types()
    refused = [t for t in untrusted if t not in allowed]
    if refused:
        raise ModelError(
            f"{source}: refusing to load types outside the allow-list: {refused}",
            "this file was not written by gov-topics; do not load it",
        )
    return list(untrusted)


def _load_artefact(path: Path, fmt: str) -> Any:
    if fmt == "pickle":
        import pickle

        with path.open("rb") as fh:
            return pickle.load(fh)
    if fmt == "skops":
        import skops.io as sio

        trusted = skops_allowed(sio.get_untrusted_types(file=path), str(path))
        return sio.load(path, trusted=trusted)
    import joblib

    return joblib.load(path)


def _test_pause(point: str) -> None:
    """Tests set GOV_TOPICS_TEST_PAUSE=<point>:<seconds> to kill a writer at a known moment."""
    spec = os.environ.get("GOV_TOPICS_TEST_PAUSE", "")
    if spec.startswith(point + ":"):
        import time

        time.sleep(float(spec.split(":", 1)[1]))


def config_diff(a: dict[str, Any], b: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Settings that differ between two flattened configs: key -> (a, b)."""
    keys = sorted(set(a) | set(b))
    return {k: (a.get(k), b.get(k)) for k in keys if a.get(k) != b.get(k)}


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict) and v:
            out.update(flatten(v, key))
        else:
            out[key] = v
    return out


def diff_versions(store: ModelStore, name: str, v1: int, v2: int) -> dict[str, Any]:
    """Per-theme metric changes and config changes from ``v1`` to ``v2``."""
    m1, m2 = store.manifest(name, v1), store.manifest(name, v2)
    metrics = sorted(set(m1.get("metrics", {})) | set(m2.get("metrics", {})))
    return {
        "from": v1,
        "to": v2,
        "metrics": {
            k: {
                "from": m1["metrics"].get(k),
                "to": m2["metrics"].get(k),
                "change": (m2["metrics"].get(k) or 0.0) - (m1["metrics"].get(k) or 0.0),
            }
            for k in metrics
        },
        "config": {
            k: {"from": a, "to": b}
            for k, (a, b) in config_diff(flatten(m1["config"]), flatten(m2["config"])).items()
        },
        "training_data_changed": m1.get("training_data_sha256") != m2.get("training_data_sha256"),
    }


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
