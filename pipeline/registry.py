"""Stage 6, register: the versioned model store under ``models/<name>/<version>/``.

A version folder holds the model artefact, ``manifest.json`` (what it is, what it was trained on,
how good it is, and the artefact's sha256) and the evaluation report. Versions are written to a
temporary folder and renamed into place under a lock, so two trainings get two distinct complete
versions and a killed training leaves none behind.

The store loads only what it wrote. Names are identifiers and versions numbers, so every path
stays inside the store; a manifest may name only the artefact file its format writes, inside its
own version folder; and every manifest is signed (HMAC-SHA256 with the store key, see
:func:`store_key`), so its format, artefact sha256, thresholds and metrics cannot be edited
without the key. Loading checks the signature, then the artefact's sha256, then unpickles, then
checks the model's thresholds against the manifest's.

Aliases (``production``, ``staging``) live in ``aliases.json``; every move is appended to
``audit.jsonl``. ``latest`` is always the highest version. A damaged ``aliases.json`` is rebuilt
from the audit log, a damaged audit line is reported and skipped: neither stops a command.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
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
from pipeline.fsutil import (
    atomic_write_text,
    pause_for_tests,
    pid_alive,
    project_root,
    sha256_file,
)
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
# a model name is one path component: letters, digits, "_" and "-", dots only between them
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]+)*$")
KEY_ENV = "GOV_TOPICS_STORE_KEY"
KEY_FILE_ENV = "GOV_TOPICS_KEY_FILE"


def check_name(name: str) -> str:
    """``name`` if it is a valid model name (one safe path component), else a ConfigError.

    >>> check_name("gov-topics")
    'gov-topics'
    >>> check_name("..")
    Traceback (most recent call last):
    ...
    pipeline.errors.ConfigError: model name '..' is not an identifier (letters, digits, '_', '-', and dots between them)
    """
    if len(name) > 100 or not _NAME.match(name):
        raise ConfigError(
            f"model name {name!r} is not an identifier "
            "(letters, digits, '_', '-', and dots between them)"
        )
    return name


def key_file() -> Path:
    """Where the store key lives: ``$GOV_TOPICS_KEY_FILE`` or ``~/.config/gov-topics/store.key``."""
    env = os.environ.get(KEY_FILE_ENV)
    if env:
        return Path(env).expanduser()
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "gov-topics" / "store.key"


def store_key(create: bool = False) -> bytes:
    """The secret that signs manifests: ``$GOV_TOPICS_STORE_KEY``, else the key file (created
    with 32 random bytes, mode 0600, when ``create`` and it does not exist).

    It lives outside every model store on purpose: whoever can write a store but not read the
    key cannot make it load a model. Machines that load another's models (a serving host, Spark
    executors) get the same key through the environment variable.
    """
    env = os.environ.get(KEY_ENV)
    if env:
        return env.encode("utf-8")
    path = key_file()
    try:
        data = path.read_bytes().strip()
        if data:
            return data
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise ModelError(
            f"{path}: cannot read the store key: {exc.strerror}", "fix its permissions"
        ) from exc
    if not create:
        raise ModelError(
            f"no store key ({path} does not exist and ${KEY_ENV} is not set): "
            "this machine did not write these models",
            f"set ${KEY_ENV} (or ${KEY_FILE_ENV}) to the key of the machine that registered them",
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    key = os.urandom(32).hex().encode("ascii")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it first
        return store_key()
    with os.fdopen(fd, "wb") as fh:
        fh.write(key + b"\n")
    log.info("created the model store key %s (keep it: loading these models needs it)", path)
    return key


def _canonical(man: dict[str, Any]) -> bytes:
    body = {k: v for k, v in man.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def sign_manifest(man: dict[str, Any], key: bytes) -> dict[str, Any]:
    """The manifest (normalised through JSON) with its ``signature``."""
    body = json.loads(json.dumps({k: v for k, v in man.items() if k != "signature"}))
    body["signature"] = "hmac-sha256:" + hmac.new(key, _canonical(body), hashlib.sha256).hexdigest()
    return dict(body)


def default_store() -> Path:
    """``$GOV_TOPICS_MODELS``, or ``models/`` of the project the current directory is in
    (found from any subfolder, see :func:`pipeline.fsutil.project_root`)."""
    env = os.environ.get("GOV_TOPICS_MODELS")
    return Path(env) if env else project_root() / "models"


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


@dataclass(frozen=True)
class ModelRef:
    name: str
    ref: str  # "latest", an alias, or a version number as text


def parse_ref(text: str | None) -> ModelRef:
    """Parse ``NAME``, ``NAME@ALIAS``, ``NAME:VERSION``, ``@ALIAS`` or ``:VERSION``.

    A name alone means its production version, never silently the latest (which may be the
    worst one a sweep registered): ``NAME@latest`` asks for that explicitly.

    >>> parse_ref(None), parse_ref("gov-topics:3"), parse_ref("@latest")
    (ModelRef(name='gov-topics', ref='production'), ModelRef(name='gov-topics', ref='3'), ModelRef(name='gov-topics', ref='latest'))
    """
    if not text:
        return ModelRef(DEFAULT_NAME, "production")
    m = _REF.match(text)
    if not m:
        raise ConfigError(f"model reference {text!r} is not NAME[@ALIAS|:VERSION]")
    name = check_name(m.group("name") or DEFAULT_NAME)
    ref = m.group("ref") or "production"
    if m.group("sep") == ":" and not ref.isdigit():
        raise ConfigError(f"model version {ref!r} must be a number", f"e.g. {name}:3")
    return ModelRef(name, ref)


class ModelStore:
    """A folder of named, versioned models."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_store()

    def model_dir(self, name: str) -> Path:
        return self.root / check_name(name)

    def version_dir(self, name: str, version: int) -> Path:
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ConfigError(f"model version {version!r} must be a positive number")
        return self.model_dir(name) / str(version)

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
        key = store_key(create=True)
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
            pause_for_tests("after_copy")
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
                _write_manifest(staging / MANIFEST, sign_manifest(full, key))
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
            if pid.isdigit() and not pid_alive(int(pid)):
                shutil.rmtree(p, ignore_errors=True)

    # -- reading ---------------------------------------------------------------------------------

    def aliases(self, name: str = DEFAULT_NAME) -> dict[str, int]:
        """Alias -> version. A damaged ``aliases.json`` is reported and rebuilt from the audit
        log (the last move of each alias), never a traceback."""
        p = self.model_dir(name) / "aliases.json"
        if not p.exists():
            return {}
        try:
            raw = json.loads(p.read_text("utf-8"))
            if not isinstance(raw, dict):
                raise ValueError("not a JSON object")
            return {str(k): int(v) for k, v in raw.items() if k in ALIASES}
        except (OSError, UnicodeDecodeError, ValueError, TypeError) as exc:
            rebuilt = {}
            for e in self.audit(name):
                if e.get("alias") in ALIASES and isinstance(e.get("to"), int):
                    rebuilt[e["alias"]] = e["to"]
            log.warning(
                "%s: unreadable (%s); using the aliases of the audit log %s "
                "(the next promotion rewrites it)",
                p,
                str(exc)[:80],
                rebuilt or "(none)",
            )
            return rebuilt

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
        if ref.ref == "production" and ref.ref not in aliases:
            raise ModelError(
                f"{ref.name} has no production model yet (versions {versions[0]}-{versions[-1]} "
                "are registered)",
                "promote one: `topics models promote N --to production`, or name one: "
                f"--model {ref.name}:{versions[-1]}",
            )
        if ref.ref not in aliases:
            raise ModelError(
                f"{ref.name} has no alias {ref.ref!r}",
                f"aliases: {sorted(aliases) or 'none'}; promote one with `topics models promote`",
            )
        return aliases[ref.ref]

    def manifest(self, name: str, version: int) -> dict[str, Any]:
        """A version's manifest, after checking its signature (ModelError if it fails)."""
        p = self.version_dir(name, version) / MANIFEST
        try:
            man = json.loads(p.read_text("utf-8"))
            if not isinstance(man, dict):
                raise ValueError("not a JSON object")
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise ModelError(
                f"{p}: unreadable manifest ({str(exc)[:80]})", "the version is damaged; train again"
            ) from exc
        sig = man.get("signature")
        if not isinstance(sig, str) or not hmac.compare_digest(
            sig, sign_manifest(man, store_key())["signature"]
        ):
            raise ModelError(
                f"{p}: signature {'missing' if sig is None else 'does not match'}; refusing a "
                "manifest this store's key did not sign (edited, or from another machine)",
                f"register the model again, or set ${KEY_ENV} to the key that signed it",
            )
        if man.get("name") != name or man.get("version") != version:
            raise ModelError(
                f"{p}: the manifest is for {man.get('name')}:{man.get('version')}, not "
                f"{name}:{version} (a version folder was copied or renamed)",
                "register the model again",
            )
        return dict(man)

    def artefact_path(self, name: str, version: int, man: dict[str, Any]) -> Path:
        """The artefact a manifest names: only the file its format writes, inside its own
        version folder (no other name, no absolute path, no symlink out)."""
        vdir = self.version_dir(name, version)
        fmt, art = man.get("format"), man.get("artefact")
        if fmt not in ARTEFACTS or art != ARTEFACTS[str(fmt)]:
            raise ModelError(
                f"{vdir / MANIFEST}: artefact {art!r} in format {fmt!r} is not one this store "
                f"writes ({', '.join(f'{v} ({k})' for k, v in ARTEFACTS.items())})",
                "register the model again",
            )
        path = vdir / str(art)
        if path.is_symlink() or path.resolve().parent != vdir.resolve():
            raise ModelError(
                f"{path}: the artefact is a link out of its version folder; refusing to load it",
                "register the model again",
            )
        return path

    def load(self, ref: ModelRef) -> tuple[Any, dict[str, Any]]:
        """Load a model: the manifest's signature, the artefact's sha256, then the artefact,
        whose thresholds must be the manifest's."""
        version = self.resolve(ref)
        man = self.manifest(ref.name, version)
        path = self.artefact_path(ref.name, version, man)
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
        model = _load_artefact(path, str(man["format"]))
        _check_thresholds(model, man, path)
        return model, man

    def update_manifest(self, name: str, version: int, **fields: Any) -> None:
        """Add fields to a version's manifest (e.g. the MLflow registry version, known later)."""
        with self._lock(name):
            man = self.manifest(name, version)
            man.update(fields)
            _write_manifest(
                self.version_dir(name, version) / MANIFEST, sign_manifest(man, store_key())
            )

    def remove_version(self, name: str, version: int) -> None:
        """Take back a version whose registration did not complete (MLflow failed or the
        register was stopped), so the store and the MLflow registry stay in step."""
        with self._lock(name):
            if version in self.aliases(name).values():
                raise ModelError(f"{name}:{version} has an alias; not removing it")
            shutil.rmtree(self.version_dir(name, version), ignore_errors=True)

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

    def production_history(self, name: str = DEFAULT_NAME) -> list[int]:
        """The versions production has stood at, oldest first, without rolled-back ones: each
        promotion pushes its version, each rollback pops the current one."""
        stack: list[int] = []
        for e in self.audit(name):
            if e.get("alias") != "production" or not isinstance(e.get("to"), int):
                continue
            if e.get("rollback"):
                if stack:
                    stack.pop()
                if not stack or stack[-1] != e["to"]:
                    stack.append(e["to"])
            else:
                if not stack and isinstance(e.get("from"), int):
                    stack.append(e["from"])
                stack.append(e["to"])
        return stack

    def previous_production(self, name: str = DEFAULT_NAME) -> int:
        """What ``rollback`` restores, walking the audit history backwards: the version
        production stood at before the current one arrived, skipping versions rolled back since
        and versions no longer in the store. Rolling back twice goes two steps back, never
        forward again to a version that was rolled back (a forced, worse model stays out)."""
        history = self.production_history(name)
        existing = set(self.versions(name))
        current = history[-1] if history else None
        for v in reversed(history[:-1]):
            if v in existing and v != current and self._intact(name, v):
                return v
        raise ModelError(
            f"{name} has no earlier production version to roll back to",
            "promote a version first: `topics models promote VERSION --to production`",
        )

    def _intact(self, name: str, version: int) -> bool:
        try:
            self.manifest(name, version)
        except ModelError as exc:
            log.warning("skipping %s:%d: %s", name, version, exc.message)
            return False
        return True

    def audit(self, name: str = DEFAULT_NAME) -> list[dict[str, Any]]:
        """The alias moves, oldest first; a damaged line is reported and skipped."""
        p = self.model_dir(name) / "audit.jsonl"
        if not p.exists():
            return []
        out = []
        with p.open("rb") as fh:
            for n, raw in enumerate(fh, 1):
                if not raw.strip():
                    continue
                try:
                    e = json.loads(raw.decode("utf-8"))
                    if not isinstance(e, dict):
                        raise ValueError("not a JSON object")
                except (UnicodeDecodeError, ValueError) as exc:
                    log.warning("%s:%d: damaged audit line skipped (%s)", p, n, str(exc)[:60])
                    continue
                out.append(e)
        return out


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


def _write_manifest(path: Path, man: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(man, ensure_ascii=False, indent=2) + "\n")


def _check_thresholds(model: Any, man: dict[str, Any], path: Path) -> None:
    """The thresholds the manifest shows must be the ones the model applies."""
    shown = man.get("thresholds")
    clf = getattr(model, "named_steps", {}).get("clf")
    applied = getattr(clf, "thresholds_", None)
    themes = getattr(clf, "themes", None)
    if not isinstance(shown, dict) or applied is None or themes is None:
        return
    for t, v in zip(themes, list(applied), strict=False):
        if t not in shown or abs(float(shown[t]) - float(v)) > 1e-9:
            raise ModelError(
                f"{path}: threshold of {t} is {float(v):.4f} in the model but {shown.get(t)} in "
                "its manifest",
                "the version is inconsistent; register it again",
            )


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
    mm1, mm2 = m1.get("metrics") or {}, m2.get("metrics") or {}
    metrics = sorted(set(mm1) | set(mm2))
    return {
        "from": v1,
        "to": v2,
        "metrics": {
            k: {
                "from": mm1.get(k),
                "to": mm2.get(k),
                "change": (mm2.get(k) or 0.0) - (mm1.get(k) or 0.0),
            }
            for k in metrics
        },
        "config": {
            k: {"from": a, "to": b}
            for k, (a, b) in config_diff(
                flatten(m1.get("config") or {}), flatten(m2.get("config") or {})
            ).items()
        },
        "training_data_changed": m1.get("training_data_sha256") != m2.get("training_data_sha256"),
    }
