"""Where each stage reads and writes: one experiment's files under ``build/<experiment>/``.

Every stage is a file target (the Makefile mirrors this layout): a stage reads the previous
stage's output and writes its own, and a missing input fails with the command that makes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.config import ExperimentConfig, load_config
from pipeline.errors import StageError
from pipeline.segment import read_stopwords, read_userdict
from pipeline.themes import Taxonomy, load_taxonomy


@dataclass(frozen=True)
class Workspace:
    """Paths of one experiment's stage outputs, relative to the project root."""

    root: Path
    cfg: ExperimentConfig
    config_path: Path | None = None
    build: Path = Path("build")

    @classmethod
    def open(
        cls, config_path: Path | None, root: Path = Path("."), build: Path | None = None
    ) -> Workspace:
        cfg = load_config(config_path) if config_path else ExperimentConfig()
        return cls(root=root, cfg=cfg, config_path=config_path, build=build or root / "build")

    def data_path(self, rel: str) -> Path:
        p = Path(rel)
        return p if p.is_absolute() else self.root / p

    @property
    def units(self) -> Path:
        return self.build / "units.jsonl"

    @property
    def ingest_report(self) -> Path:
        return self.build / "ingest_report.json"

    @property
    def exp_dir(self) -> Path:
        return self.build / self.cfg.name

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
        return read_userdict(self.data_path(self.cfg.data.userdict))

    def stopwords(self) -> tuple[str, ...]:
        return read_stopwords(self.data_path(self.cfg.data.stopwords))

    def require(self, path: Path, make_target: str) -> Path:
        """Fail with a remedy when a stage's input does not exist yet."""
        if not path.exists():
            raise StageError(f"{path} does not exist", f"run `make {make_target}` first")
        return path
