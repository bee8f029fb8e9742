"""Experiment configuration: one YAML file per experiment, validated by a strict schema.

Unknown keys are rejected with the file, the key path and the keys that are allowed, so a typo
never silently falls back to a default. Every number and list is checked against its range (the
classifier's parameters against scikit-learn's own constraints), so a bad value fails here, naming
the file and the key, and never as a library traceback half-way through training. An experiment
file must declare its ``name``: an identifier that becomes its folder ``build/<name>/``.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import math
import re
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


def _at(source: str, key: str) -> str:
    """Where a message points: ``file: a.b.c`` (or just the file for the whole config)."""
    return f"{source}: {key}" if key else source


def _build(cls: Any, data: Any, source: str, key: str = "") -> Any:
    where = _at(source, key)
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {sorted(unknown, key=str)}",
            f"allowed keys: {sorted(names)}",
        )
    kwargs = {k: _coerce(hints[k], v, source, f"{key}.{k}" if key else k) for k, v in data.items()}
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, source: str, key: str) -> Any:
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, source, key)
    where = _at(source, key)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, source, key)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, source, key) for v in value)
        if len(value) != len(args):
            raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(_coerce(a, v, source, key) for a, v in zip(args, value, strict=True))
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
        if not math.isfinite(value):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected text, got {value!r}")
        return value
    return value


NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
NAME_REMEDY = (
    "use `name: <identifier>`: 1-64 letters, digits, '_', '.' or '-', starting with a letter or "
    "digit (it names the folder build/<name>/)"
)
MAX_FOLDS = 20  # evaluation.folds and thresholds.inner_folds: 2..MAX_FOLDS
MAX_SEED = 2**31 - 1  # a random_state numpy, scikit-learn and fastText (a C int) all take


def parse_config(data: Any, source: str = "<config>", model: bool = True) -> ExperimentConfig:
    """Validate a parsed YAML mapping into an :class:`ExperimentConfig`.

    ``name`` may be left out here (programmatic configs default to ``default``);
    :func:`load_config` requires it in an experiment file. ``model=False`` leaves out the checks
    that build the classifier (they import scikit-learn: a second of start-up), for commands that
    only read the experiment's data section; every stage that trains checks it in full.
    """
    return _parse(data, source, check_search_values=True, model=model)


def _parse(
    data: Any, source: str, check_search_values: bool, model: bool = True
) -> ExperimentConfig:
    if data is None:
        raise ConfigError(f"{source}: the config is empty", f"start with {NAME_REMEDY}")
    cfg: ExperimentConfig = _build(ExperimentConfig, data, source)
    if not isinstance(cfg.name, str) or not NAME_PATTERN.fullmatch(cfg.name):
        raise ConfigError(f"{source}: name must be an identifier, got {cfg.name!r}", NAME_REMEDY)
    if model:
        _check_classifier_kind(cfg, source)
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
    _check_ranges(cfg, source)
    if model:
        _check_classifier_params(cfg, source)
    for key, values in cfg.search.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{source}: search.{key} must be a non-empty list of values")
        _check_search_key(key, source)
        if check_search_values:
            base = {k: v for k, v in cfg.to_dict().items() if k != "search"}
            for value in values:
                where = f"{source} (search.{key}: {value!r})"
                _parse(_set(base, key, value), where, False, model)
    return cfg


def _check_classifier_kind(cfg: ExperimentConfig, source: str) -> None:
    """A known classifier kind, and at least one feature family for a kind that reads them."""
    from pipeline.classifiers import KINDS

    if cfg.classifier.kind not in KINDS:
        raise ConfigError(
            f"{source}: classifier.kind {cfg.classifier.kind!r} is not known",
            f"choose one of {sorted(KINDS)}",
        )
    f = cfg.features
    reads_tokens = KINDS[cfg.classifier.kind].input == "tokens"
    if not (
        reads_tokens or f.word.enabled or f.char.enabled or f.lexicon.enabled or f.vectors.enabled
    ):
        raise ConfigError(f"{source}: every feature family is disabled", "enable at least one")


def _fail(source: str, key: str, rule: str, value: Any, remedy: str = "") -> ConfigError:
    return ConfigError(f"{source}: {key} must be {rule}, got {_show(value)}", remedy)


def _show(value: Any) -> str:
    return repr(list(value)) if isinstance(value, tuple) else repr(value)


def _check_ranges(cfg: ExperimentConfig, source: str) -> None:
    """Every number and list of the schema against its sensible range.

    ``evaluation.folds`` is bounded here to 2..MAX_FOLDS; how many groups the data has is only
    known when the evaluation runs (``evaluate.grouped_folds`` uses at most one fold per group).
    """
    if not 0 <= cfg.seed <= MAX_SEED:
        raise _fail(source, "seed", f"between 0 and {MAX_SEED}", cfg.seed)
    f = cfg.features
    for fam, tf in (("word", f.word), ("char", f.char)):
        key = f"features.{fam}"
        lo, hi = tf.ngram_range
        if not 1 <= lo <= hi:
            raise _fail(
                source,
                f"{key}.ngram_range",
                "[min, max] with 1 <= min <= max",
                tf.ngram_range,
                "for example [1, 2]: unigrams and bigrams",
            )
        if tf.min_df < 1:
            raise _fail(source, f"{key}.min_df", ">= 1", tf.min_df, "a count of units")
        if not 0 < tf.max_df <= 1:
            raise _fail(source, f"{key}.max_df", "in (0, 1]", tf.max_df, "a fraction of the units")
        if tf.max_features is not None and tf.max_features < 1:
            raise _fail(source, f"{key}.max_features", ">= 1 (or null for all)", tf.max_features)
    if f.chi2_k is not None and f.chi2_k < 1:
        raise _fail(source, "features.chi2_k", ">= 1 (or left out)", f.chi2_k)
    for fam, weight in (("lexicon", f.lexicon.weight), ("vectors", f.vectors.weight)):
        if not weight > 0:
            raise _fail(
                source,
                f"features.{fam}.weight",
                "> 0",
                _num(weight),
                f"to leave the {fam} features out, set features.{fam}.enabled: false",
            )
    t = cfg.thresholds
    if not 2 <= t.inner_folds <= MAX_FOLDS:
        raise _fail(source, "thresholds.inner_folds", f"between 2 and {MAX_FOLDS}", t.inner_folds)
    if not 0 < t.default < 1:
        raise _fail(source, "thresholds.default", "between 0 and 1 (exclusive)", _num(t.default))
    ev = cfg.evaluation
    if not 2 <= ev.folds <= MAX_FOLDS:
        raise _fail(
            source,
            "evaluation.folds",
            f"between 2 and {MAX_FOLDS}",
            ev.folds,
            "5 is usual; the evaluation uses at most one fold per group of the data",
        )
    if ev.repeats < 1:
        raise _fail(source, "evaluation.repeats", ">= 1", ev.repeats)
    for key in ("learning_curve", "learning_curve_real", "queue_curve"):
        fractions: tuple[float, ...] = getattr(ev, key)
        for frac in fractions:
            if not 0 < frac <= 1:
                raise _fail(
                    source,
                    f"evaluation.{key}",
                    "fractions in (0, 1]",
                    _num(frac),
                    "for example [0.25, 0.5, 1.0]",
                )
        twice = sorted({x for x in fractions if fractions.count(x) > 1})
        if twice:
            raise ConfigError(
                f"{source}: evaluation.{key} lists {_num(twice[0])} twice",
                "list each fraction once",
            )


def _num(x: float) -> float | int:
    """A float as the user probably wrote it (``-1`` rather than ``-1.0``)."""
    return int(x) if float(x).is_integer() else x


_SKLEARN_PARAM = re.compile(
    r"The '(?P<param>\w+)' parameter of (?P<cls>\w+) must be (?P<rule>.+?)\. "
    r"Got (?P<got>.+) instead\.?$",
    re.S,
)

# fastText's own parameters (FastTextBinary): name -> (integer?, lowest allowed, inclusive?)
_FASTTEXT = {
    "epoch": (True, 1, True),
    "lr": (False, 0, False),
    "dim": (True, 1, True),
    "word_ngrams": (True, 1, True),
    "min_count": (True, 1, True),
    "bucket": (True, 0, True),
}


def _check_classifier_params(cfg: ExperimentConfig, source: str) -> None:
    """Build the classifier from ``classifier.params`` and check every value against the
    estimator's constraints now, so a bad value names the file and the key."""
    from pipeline.classifiers import CalibratedLinear, FastTextBinary, build_estimator

    kind, params = cfg.classifier.kind, cfg.classifier.params
    for name, value in params.items():
        if not isinstance(name, str):
            raise ConfigError(f"{source}: classifier.params: {name!r} is not a parameter name")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{source}: classifier.params.{name}: expected a finite number")
    try:
        est: Any = build_estimator(kind, params, cfg.seed)
        if isinstance(est, CalibratedLinear):
            if est.method not in ("sigmoid", "isotonic"):
                raise _fail(
                    source, "classifier.params.calibration", "sigmoid or isotonic", est.method
                )
            est = est._base()
    except ConfigError as exc:
        if exc.message.startswith(source):
            raise
        raise ConfigError(f"{source}: {exc.message}", exc.remedy) from None
    except TypeError as exc:  # e.g. random_state given twice
        raise ConfigError(
            f"{source}: classifier.params do not fit {kind}: {exc}",
            "check the parameter names in scikit-learn's documentation",
        ) from None
    if isinstance(est, FastTextBinary):
        for name, (integer, low, inclusive) in _FASTTEXT.items():
            value = getattr(est, name)
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if integer and (not number or not float(value).is_integer()):
                raise _fail(source, f"classifier.params.{name}", f"a whole number >= {low}", value)
            ok = number and (value >= low if inclusive else value > low)
            if not ok:
                rule = f"a whole number >= {low}" if integer else f"> {low}"
                raise _fail(source, f"classifier.params.{name}", rule, value)
        return
    validate = getattr(est, "_validate_params", None)
    if validate is None or not hasattr(est, "_parameter_constraints"):
        return
    try:
        validate()
    except (ValueError, TypeError) as exc:  # scikit-learn's InvalidParameterError is both
        m = _SKLEARN_PARAM.match(str(exc))
        if m is None:
            raise ConfigError(f"{source}: classifier.params: {exc}") from None
        raise ConfigError(
            f"{source}: classifier.params.{m['param']} must be {m['rule']}, got {m['got']}",
            f"see {m['cls']} in scikit-learn's documentation",
        ) from None


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


def load_config(path: Path, model: bool = True) -> ExperimentConfig:
    """Read and validate an experiment YAML file; it must be a mapping that declares ``name``
    (``model``: as in :func:`parse_config`)."""
    path = Path(path)
    try:
        text = path.read_text("utf-8-sig")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read experiment config ({exc.strerror})") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not valid UTF-8", "save the file as UTF-8") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        loc = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ConfigError(f"{loc}: not valid YAML", "fix the syntax") from exc
    if data is None:
        raise ConfigError(
            f"{path}: the experiment file is empty",
            "add at least `name: <identifier>`; every other setting has a default",
        )
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: expected a mapping of settings (key: value) at the top level, "
            f"got {type(data).__name__}",
            "start the file with `name: <identifier>`",
        )
    if "name" not in data:
        raise ConfigError(
            f"{path}: name is missing",
            "add `name: <identifier>` (1-64 letters, digits, '_', '.' or '-'); it names the "
            "folder build/<name>/, so no two experiment files may share one",
        )
    return parse_config(data, str(path), model)


def _set(data: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """A deep copy of ``data`` with one dotted setting replaced."""
    out = copy.deepcopy(data)
    node = out
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def with_override(cfg: ExperimentConfig, key: str, value: Any) -> ExperimentConfig:
    """Return a copy of ``cfg`` with one dotted setting replaced (used by the search).

    The search's values were checked when ``cfg`` was parsed; only the override is checked here.
    """
    data = _set(cfg.to_dict(), key, value)
    return _parse(data, f"{cfg.name}[{key}={value!r}]", check_search_values=False)
