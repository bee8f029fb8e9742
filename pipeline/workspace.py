"""Where each stage reads and writes: one experiment's files under ``build/<experiment>/``.

Every stage is a file target (the Makefile mirrors this layout): a stage reads the previous
stage's output and writes its own, and a missing input fails with the command that makes it.

``build/<name>/`` belongs to one experiment file: the first time a stage uses it, the file's path
is recorded in ``build/<name>/experiment.path``, and another experiment file that declares the
same ``name`` is refused instead of overwriting the first one's outputs. The same file, edited,
keeps its folder (make-style reruns); a recorded file that no longer exists (renamed, deleted)
hands its folder to the next file that declares the name.
"""

from __future__ import annotations

import functools
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import ExperimentConfig, load_config
from pipeline.errors import ConfigError, StageError
from pipeline.fsutil import atomic_write_text, file_mode
from pipeline.themes import Taxonomy, load_taxonomy

log = logging.getLogger(__name__)

OWNER_FILE = "experiment.path"  # in build/<name>/: the experiment file the folder belongs to
BUILT_IN = "<built-in defaults>"  # the config's source when no experiment file is given
DATA_FILES = ("themes", "userdict", "stopwords")  # data.* files every experiment reads


@dataclass(frozen=True)
class Workspace:
    """Paths of one experiment's stage outputs, relative to the project root."""

    root: Path
    cfg: ExperimentConfig
    config_path: Path | None = None
    build: Path = Path("build")

    @classmethod
    def open(
        cls,
        config_path: Path | None,
        root: Path = Path("."),
        build: Path | None = None,
        model: bool = True,
    ) -> Workspace:
        """The experiment's workspace, its config validated (``model``: see ``parse_config``)."""
        cfg = load_config(config_path, model) if config_path else ExperimentConfig()
        ws = cls(root=root, cfg=cfg, config_path=config_path, build=build or root / "build")
        ws.check_data_files()
        if config_path:
            ws._check_owner(ws.build / cfg.name)  # fail now, not after a long stage's work
        return ws

    @property
    def source(self) -> str:
        """The experiment file, as messages name it."""
        return str(self.config_path) if self.config_path else BUILT_IN

    def check_data_files(self) -> None:
        """Every ``data.*`` file each stage reads must exist (named by the config key)."""
        for key in DATA_FILES:
            rel = getattr(self.cfg.data, key)
            path = self.data_path(rel)
            if not path.is_file():
                raise ConfigError(
                    f"{self.source}: data.{key}: {path} does not exist",
                    "fix the path (relative to the project root) or create the file",
                )

    def data_path(self, rel: str) -> Path:
        p = Path(rel)
        return p if p.is_absolute() else self.root / p

    @property
    def units(self) -> Path:
        """The experiment's own paragraph units, from its own ``data.raw`` (never shared: an
        experiment on other documents cannot overwrite another's)."""
        return self.exp_dir / "units.jsonl"

    @property
    def ingest_report(self) -> Path:
        return self.exp_dir / "ingest_report.json"

    @property
    def inputs_dir(self) -> Path:
        """``build/<name>/inputs/``: one checksum file per stage's data inputs (make targets)."""
        return self.exp_dir / "inputs"

    def input_files(self) -> dict[str, list[Path]]:
        """The data files each stage reads, by stamp name: ``raw`` (ingest: the raw documents
        and their recorded checksums), ``labels`` (segment onwards: gold, written and real
        labelled units, the taxonomy, dictionary and stop words) and ``pool`` (the unlabelled
        pool the word vectors are trained on)."""
        from pipeline.ingest import checksums_path, raw_files
        from pipeline.labels import real_files, written_files

        d = self.cfg.data
        raw = self.data_path(d.raw)
        labels = [self.data_path(d.gold)]
        if d.use_written:
            labels += written_files(self.data_path(d.extra))
        if d.real:
            labels += real_files(self.data_path(d.real))
        labels += [self.data_path(getattr(d, key)) for key in DATA_FILES]
        return {
            "raw": [*raw_files(raw), checksums_path(raw)],
            "labels": labels,
            "pool": [self.data_path(d.pool)],
        }

    @functools.cached_property
    def exp_dir(self) -> Path:
        """``build/<name>/``, claimed for this experiment file (see the module's docstring)."""
        if not self.config_path:
            raise ConfigError(
                f"no experiment file: build/{self.cfg.name}/ holds one experiment file's outputs",
                "pass --exp experiments/<name>.yaml",
            )
        d = self.build / self.cfg.name
        self._check_owner(d)
        self._claim(d)
        return d

    def _owner_text(self) -> str:
        """The experiment file as recorded: relative to the project root when inside it."""
        path = Path(os.path.abspath(self.config_path or ""))
        try:
            return path.relative_to(os.path.abspath(self.root)).as_posix()
        except ValueError:
            return path.as_posix()

    def _recorded(self, d: Path) -> str | None:
        try:
            return (d / OWNER_FILE).read_text("utf-8").strip() or None
        except FileNotFoundError:
            return None
        except NotADirectoryError:
            raise ConfigError(
                f"{self.source}: name {self.cfg.name!r} is taken by the file {d}",
                "give the experiment another name",
            ) from None

    def _same_file(self, recorded: str) -> bool | None:
        """Whether ``recorded`` is this experiment file (``None``: it no longer exists)."""
        other = Path(recorded)
        other = other if other.is_absolute() else self.root / other
        if not other.is_file():
            return None
        assert self.config_path is not None
        return os.path.samefile(other, self.config_path)

    def _check_owner(self, d: Path) -> None:
        if d.exists() and not d.is_dir():
            raise ConfigError(
                f"{self.source}: name {self.cfg.name!r} is taken by the file {d}",
                "give the experiment another name",
            )
        recorded = self._recorded(d)
        if recorded is None or self._same_file(recorded) is not False:
            return
        raise ConfigError(
            f"{self._owner_text()} declares name {self.cfg.name!r}, already used by {recorded} "
            f"in {d}",
            f"give it its own name, or delete {d} if {recorded} should give it up",
        )

    def _claim(self, d: Path) -> None:
        """Record this experiment file as the owner of ``d`` (atomically: of two files claiming
        a new folder at once, one wins and the other is refused)."""
        me = self._owner_text()
        recorded = self._recorded(d)
        if recorded is not None:
            if self._same_file(recorded):
                return
            log.warning("%s: taking over %s from %s, which no longer exists", me, d, recorded)
            atomic_write_text(d / OWNER_FILE, me + "\n")
            return
        d.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{OWNER_FILE}.", dir=d)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(me + "\n")
            os.chmod(tmp, file_mode(d / OWNER_FILE))  # the usual mode, not mkstemp's 0600
            os.link(tmp, d / OWNER_FILE)  # fails if another process claimed it first
        except FileExistsError:  # claimed meanwhile: by this file is fine, by another is not
            self._check_owner(d)
        except OSError:  # a file system without hard links: claim without the race guard
            atomic_write_text(d / OWNER_FILE, me + "\n")
        finally:
            Path(tmp).unlink(missing_ok=True)

    @property
    def segmented(self) -> Path:
        return self.exp_dir / "segmented.jsonl"

    @property
    def segmented_meta(self) -> Path:
        return self.exp_dir / "segmented.meta.json"

    @property
    def vocabulary(self) -> Path:
        return self.exp_dir / "vocabulary.json"

    @property
    def classifier(self) -> Path:
        return self.exp_dir / "model.joblib"

    @property
    def evaluation(self) -> Path:
        return self.exp_dir / "evaluation.json"

    @property
    def report(self) -> Path:
        return self.exp_dir / "report.html"

    @property
    def plots(self) -> Path:
        return self.exp_dir / "plots"

    @property
    def registered(self) -> Path:
        return self.exp_dir / "registered.json"

    def taxonomy(self) -> Taxonomy:
        return load_taxonomy(self.data_path(self.cfg.data.themes))

    def user_words(self) -> tuple[tuple[str, int | None, str | None], ...]:
        from pipeline.segment import read_userdict  # not at import: it loads scikit-learn

        return read_userdict(self.data_path(self.cfg.data.userdict))

    def stopwords(self) -> tuple[str, ...]:
        from pipeline.segment import read_stopwords

        return read_stopwords(self.data_path(self.cfg.data.stopwords))

    def write_input_stamps(self) -> list[str]:
        """Write ``inputs/<stage>.sha256`` (``sha256sum`` lines of every data file a stage reads)
        and return the names of the stamps whose content changed. An unchanged stamp is not
        rewritten, so its modification time tells make that the stage's data did not change."""
        from pipeline.fsutil import sha256_file

        changed = []
        for stamp, files in self.input_files().items():
            lines = [f"{sha256_file(p) if p.is_file() else '-'}  {self._shown(p)}\n" for p in files]
            path = self.inputs_dir / f"{stamp}.sha256"
            text = "".join(lines)
            if path.is_file() and path.read_text("utf-8") == text:
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, text)
            changed.append(stamp)
        return changed

    def _shown(self, path: Path) -> str:
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return path.as_posix()

    def require(self, path: Path, make_target: str) -> Path:
        """Fail with a remedy when a stage's input does not exist yet."""
        if not path.exists():
            raise StageError(f"{path} does not exist", f"run `make {make_target}` first")
        return path
