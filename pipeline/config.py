"""Experiment configuration: one YAML file per experiment, validated by a strict schema.

Unknown keys are rejected with the file, the key path and the keys that are allowed, so a typo
never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import ConfigError


@dataclass(frozen=True)
class SegmenterConfig:
    backend: str = "jieba"
    hmm: bool = True


@dataclass(frozen=True)
class WordFeatures:
    enabled: bool = True
    ngram_range: tuple[int, int] = (1, 2)
    min_df: int = 2
    max_df: float = 0.9
    sublinear_tf: bool = True
    max_features: int | None = None


@dataclass(frozen=True)
class CharFeatures:
    enabled: bool = False
    ngram_range: tuple[int, int] = (1, 3)
    min_df: int = 2
    max_df: float = 0.9
    sublinear_tf: bool = True
    max_features: int | None = 200000


@dataclass(frozen=True)
class LexiconFeatures:
    enabled: bool = False
    scale: str = "log"  # log | binary | linear
    weight: float = 1.0


@dataclass(frozen=True)
class VectorFeatures:
    """Domain word vectors trained on the unlabelled pool (`topics vectors`): a unit's mean
    vector as dense features."""

    enabled: bool = False
    path: str = "build/vectors/pool.npz"
    weight: float = 1.0


@dataclass(frozen=True)
class FeaturesConfig:
    word: WordFeatures = field(default_factory=WordFeatures)
    char: CharFeatures = field(default_factory=CharFeatures)
    lexicon: LexiconFeatures = field(default_factory=LexiconFeatures)
    vectors: VectorFeatures = field(default_factory=VectorFeatures)
    chi2_k: int | None = None


@dataclass(frozen=True)
class ClassifierConfig:
    kind: str = "logreg"
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ThresholdsConfig:
    tune: bool = True
    tune_on: str = "real"  # real: seed/user units in the inner folds (written ones if too few); all
    inner_folds: int = 3
    # the groups of the inner folds: "group" (articles, documents, written paragraphs) or
    # "source" (a real unit's whole source is held out: thresholds tuned out of source)
    inner_groups: str = "group"
    default: float = 0.5


@dataclass(frozen=True)
class EvaluationConfig:
    folds: int = 5
    repeats: int = 3
    learning_curve: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
    # leave-one-source-out over the real units (every real source scored by a model that saw
    # nothing from it): the headline figure when on
    out_of_source: bool = True
    # fractions of the real training units (whole documents) for the out-of-source learning curve
    learning_curve_real: tuple[float, ...] = ()
    # fractions at which queue-chosen real units are compared with as many random ones
    queue_curve: tuple[float, ...] = ()


@dataclass(frozen=True)
class DataConfig:
    raw: str = "seeds/raw"
    themes: str = "seeds/themes.yaml"
    gold: str = "seeds/gold.jsonl"
    extra: str = "seeds/extra"
    userdict: str = "seeds/userdict.txt"
    stopwords: str = "seeds/stopwords.txt"
    use_written: bool = True
    # real labelled paragraphs with their origin (seeds/real/*.jsonl), scored out of source by
    # every experiment ("" for none); use_real: also train on them
    real: str = "seeds/real"
    pool: str = "seeds/pool/pool.jsonl.gz"  # unlabelled real text (word vectors, label queue)
    passes: str = "seeds/passes"  # every labelling pass, agreement and adjudication
    use_real: bool = True


@dataclass(frozen=True)
class ExperimentConfig:
    name: str = "default"
    description: str = ""
    seed: int = 42
    data: DataConfig = field(default_factory=DataConfig)
    segmenter: SegmenterConfig = field(default_factory=SegmenterConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    thresholds: ThresholdsConfig = field(default_factory=ThresholdsConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    search: dict[str, list[Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))

    def flat(self) -> dict[str, Any]:
        """The config flattened to ``a.b.c`` keys (MLflow params)."""
        out: dict[str, Any] = {}

        def walk(prefix: str, value: Any) -> None:
            if isinstance(value, dict) and value:
                for k, v in value.items():
                    walk(f"{prefix}.{k}" if prefix else str(k), v)
            else:
                out[prefix] = value

        walk("", self.to_dict())
        return out

    def sha256(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _build(cls: Any, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {sorted(unknown)}", f"allowed keys: {sorted(names)}"
        )
    kwargs = {k: _coerce(hints[k], v, f"{where}.{k}") for k, v in data.items()}
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, where: str) -> Any:
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, where)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, where) for v in value)
        if len(value) != len(args):
            raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(_coerce(a, v, where) for a, v in zip(args, value, strict=True))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected a whole number, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected text, got {value!r}")
        return value
    return value


def parse_config(data: Any, source: str = "<config>") -> ExperimentConfig:
    """Validate a parsed YAML mapping into an :class:`ExperimentConfig`."""
    cfg: ExperimentConfig = _build(ExperimentConfig, data or {}, source)
    from pipeline.classifiers import KINDS

    if cfg.classifier.kind not in KINDS:
        raise ConfigError(
            f"{source}: classifier.kind {cfg.classifier.kind!r} is not known",
            f"choose one of {sorted(KINDS)}",
        )
    if cfg.segmenter.backend not in ("jieba", "rjieba"):
        raise ConfigError(
            f"{source}: segmenter.backend {cfg.segmenter.backend!r} is not known",
            "choose jieba or rjieba",
        )
    if cfg.thresholds.tune_on not in ("real", "all"):
        raise ConfigError(f"{source}: thresholds.tune_on must be real or all")
    if cfg.thresholds.inner_groups not in ("group", "source"):
        raise ConfigError(f"{source}: thresholds.inner_groups must be group or source")
    if cfg.features.lexicon.scale not in ("log", "binary", "linear"):
        raise ConfigError(f"{source}: features.lexicon.scale must be log, binary or linear")
    f = cfg.features
    from pipeline.classifiers import KINDS as _kinds

    reads_tokens = _kinds[cfg.classifier.kind].input == "tokens"
    if not (
        reads_tokens or f.word.enabled or f.char.enabled or f.lexicon.enabled or f.vectors.enabled
    ):
        raise ConfigError(f"{source}: every feature family is disabled", "enable at least one")
    if cfg.evaluation.folds < 2:
        raise ConfigError(f"{source}: evaluation.folds must be at least 2")
    for key, values in cfg.search.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{source}: search.{key} must be a non-empty list of values")
        _check_search_key(key, source)
    return cfg


def _check_search_key(key: str, source: str) -> None:
    head, _, rest = key.partition(".")
    if head == "classifier" and rest.startswith("params."):
        return
    node: Any = ExperimentConfig
    for part in key.split("."):
        if not dataclasses.is_dataclass(node):
            raise ConfigError(f"{source}: search key {key!r} does not name a config setting")
        hints = typing.get_type_hints(node)
        if part not in hints:
            raise ConfigError(f"{source}: search key {key!r} does not name a config setting")
        node = hints[part]


def load_config(path: Path) -> ExperimentConfig:
    """Read and validate an experiment YAML file."""
    path = Path(path)
    try:
        text = path.read_text("utf-8-sig")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read experiment config ({exc.strerror})") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        loc = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ConfigError(f"{loc}: not valid YAML", "fix the syntax") from exc
    return parse_config(data, str(path))


def with_override(cfg: ExperimentConfig, key: str, value: Any) -> ExperimentConfig:
    """Return a copy of ``cfg`` with one dotted setting replaced (used by the search)."""
    data = cfg.to_dict()
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return parse_config(data, f"{cfg.name}[{key}={value!r}]")
