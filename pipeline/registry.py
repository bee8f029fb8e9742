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
import platform
import re
import shutil
import subprocess
import warnings
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError, ModelError
from pipeline.fsutil import atomic_write_text, sha256_file

log = logging.getLogger(__name__)

DEFAULT_NAME = "gov-topics"
ARTEFACT = "model.joblib"
MANIFEST = "manifest.json"
ALIASES = ("production", "staging")
TRACKED_LIBS = ("scikit-learn", "jieba", "numpy", "scipy", "joblib", "rjieba")
_REF = re.compile(r"^(?P<name>[A-Za-z0-9_.-]+?)?(?:(?P<sep>[@:])(?P<ref>[A-Za-z0-9_.-]+))?$")


def default_store() -> Path:
    """``$GOV_TOPICS_MODELS`` or ``models/``."""
    return Path(os.environ.get("GOV_TOPICS_MODELS", "models"))


def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for lib in TRACKED_LIBS:
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            continue
    return out


def git_commit(root: Path = Path(".")) -> str:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (sha + ("-dirty" if dirty else "")) if sha else "unknown"


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
        extra_files: dict[str, Path] | None = None,
    ) -> int:
        """Write a new complete version atomically and return its number."""
        d = self.model_dir(name)
        d.mkdir(parents=True, exist_ok=True)
        staging = d / f".incoming-{os.getpid()}-{os.urandom(4).hex()}"
        staging.mkdir()
        try:
            shutil.copyfile(artefact, staging / ARTEFACT)
            for fname, src in (extra_files or {}).items():
                shutil.copyfile(src, staging / fname)
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
                    "artefact": ARTEFACT,
                    "artefact_sha256": sha256_file(staging / ARTEFACT),
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
        import joblib

        model = joblib.load(path)
        return model, man

    # -- aliases ---------------------------------------------------------------------------------

    def set_alias(
        self, name: str, alias: str, version: int, reason: str = "", user: str = ""
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
            }
            with (self.model_dir(name) / "audit.jsonl").open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(entry, ensure_ascii=False) + "\n")

    def audit(self, name: str = DEFAULT_NAME) -> list[dict[str, Any]]:
        p = self.model_dir(name) / "audit.jsonl"
        if not p.exists():
            return []
        return [json.loads(x) for x in p.read_text("utf-8").splitlines() if x.strip()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
