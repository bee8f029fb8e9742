"""Promotion: which model version may serve as ``production``, and keeping MLflow in step.

The policy: a version becomes production only if its cross-validated macro-F1 is at least the
current production version's under the same folds on the same gold set (the metric gate). A
forced promotion over a failed gate needs a reason; both the figures and the reason go to the
store's audit log. The store's aliases are the truth; the MLflow registry's are kept in step with
them (a failure there is a warning, never a lost promotion).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.errors import ConfigError, GovTopicsError, UsageError
from pipeline.registry import ModelRef, ModelStore

log = logging.getLogger(__name__)

# (candidate manifest, production manifest) -> {"basis", "candidate", "production"}
GateScorer = Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]


@dataclass
class Promotion:
    """What a promotion did (or refused to do)."""

    name: str
    alias: str
    version: int
    previous: int | None
    done: bool
    gate: dict[str, Any] | None = None
    forced: bool = False
    mlflow_warning: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def refused(self) -> bool:
        return not self.done


def promote(
    store: ModelStore,
    name: str,
    version_ref: str,
    alias: str,
    *,
    gate_scorer: GateScorer,
    force: bool = False,
    reason: str = "",
    track: bool = True,
) -> Promotion:
    """Point ``alias`` at a version, through the metric gate when the alias is production.

    Raises :class:`~pipeline.errors.UsageError` for ``force`` without a ``reason``.
    """
    if force and not reason:
        raise UsageError("--force needs --reason", "say why, e.g. --reason 'hotfix for X'")
    version = store.resolve(ModelRef(name, version_ref))
    current = store.aliases(name).get(alias)
    result = Promotion(name, alias, version, current, done=False)
    if alias == "production" and current is not None and current != version:
        gate = gate_scorer(store.manifest(name, version), store.manifest(name, current))
        result.gate = gate
        if gate["candidate"] < gate["production"]:
            if not force:
                return result
            result.forced = True
    extra: dict[str, Any] = {}
    if result.gate is not None:
        extra["gate"] = result.gate
    if result.forced:
        extra["forced"] = True
    store.set_alias(name, alias, version, reason=reason, extra=extra)
    result.done = True
    if track:
        result.mlflow_warning = sync_mlflow_alias(store, name, alias, version)
    return result


def rollback(store: ModelStore, name: str, *, reason: str = "", track: bool = True) -> Promotion:
    """Point production back at the version it pointed to before its last move."""
    current = store.aliases(name).get("production")
    previous = store.previous_production(name)
    store.set_alias(
        name, "production", previous, reason=reason or "rollback", extra={"rollback": True}
    )
    result = Promotion(name, "production", previous, current, done=True)
    if track:
        result.mlflow_warning = sync_mlflow_alias(store, name, "production", previous)
    return result


def sync_mlflow_alias(store: ModelStore, name: str, alias: str, version: int) -> str:
    """Move the MLflow registry alias to the version's registry version; a warning or ""."""
    man = store.manifest(name, version)
    if man.get("mlflow_model_version") is None:
        return ""
    from pipeline import tracking

    try:
        tracking.set_registry_alias(name, alias, int(man["mlflow_model_version"]))
    except GovTopicsError as exc:
        return str(exc)
    return ""


def same_evaluation_basis(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """True when two versions' CV metrics are comparable as stored: same training data (so the
    same gold set), the same taxonomy and the same folds (folds, repeats, seed)."""

    def basis(m: dict[str, Any]) -> tuple[Any, ...]:
        ev = m["config"].get("evaluation", {})
        return (
            m.get("training_data_sha256"),
            m.get("themes_sha256"),
            ev.get("folds"),
            ev.get("repeats"),
            m["config"].get("seed"),
        )

    return basis(a) == basis(b)


def workspace_gate(open_workspace: Callable[[], Any]) -> GateScorer:
    """The gate's scorer for a workspace: cross-validated macro-F1 of two versions on the
    workspace's current gold set under the same folds.

    When both versions were evaluated on the same training data with the same folds, their stored
    figures already are that comparison; otherwise both configs are re-evaluated here with the
    workspace's folds and seed on the current data. ``open_workspace`` is called only then, so
    a promotion that needs no gate needs no experiment file.
    """

    def score(candidate: dict[str, Any], production: dict[str, Any]) -> dict[str, Any]:
        if same_evaluation_basis(candidate, production):
            return {
                "basis": "stored (same training data, folds, repeats and seed)",
                "candidate": candidate["metrics"]["macro_f1"],
                "production": production["metrics"]["macro_f1"],
            }
        from pipeline.config import parse_config

        ws = open_workspace()
        _check_same_themes(ws, candidate, production)
        scores = {}
        for role, man in (("candidate", candidate), ("production", production)):
            cfg = parse_config(man["config"], f"{man['name']}:{man['version']}")
            scores[role] = reevaluate(ws, cfg)
        oos = ws.cfg.evaluation.out_of_source
        ev = ws.cfg.evaluation
        protocol = (
            "leave-one-source-out on the real units"
            if oos
            else f"{ev.repeats}x{ev.folds} folds on the seed units"
        )
        return {
            "basis": f"re-evaluated on the workspace's labelled units ({protocol}, seed {ws.cfg.seed})",
            **scores,
        }

    return score


def _check_same_themes(ws: Any, *manifests: dict[str, Any]) -> None:
    """The gate re-trains both versions' configs on the gate experiment's taxonomy: it compares
    nothing unless that is the versions' own."""
    ids = set(ws.taxonomy().ids)
    for man in manifests:
        themes = man.get("themes")
        if themes is not None and set(themes) != ids:
            raise ConfigError(
                f"{ws.source}: the gate experiment's themes ({', '.join(sorted(ids))}) are not "
                f"those of {man['name']}:{man['version']} ({', '.join(sorted(themes))})",
                "name an experiment on the model line's taxonomy with --gate-exp (make: GATE=); "
                "versions on different taxonomies cannot be compared: --force --reason",
            )


def reevaluate(ws: Any, cfg: Any) -> float:
    """Macro-F1 of an experiment config on the workspace's labelled units under the
    workspace's protocol and folds (the same units and folds for every config compared)."""
    import dataclasses

    from pipeline.evaluate import cross_validate, fitter_for, scores_of
    from pipeline.segment import segment_texts
    from pipeline.sources import leave_one_source_out
    from pipeline.stages import segmenter_of, source_data, split_eval_data, training_examples

    tax = ws.taxonomy()
    # the workspace's files, with the config's choice of what to learn from
    data = dataclasses.replace(
        ws.cfg.data, use_written=cfg.data.use_written, use_real=cfg.data.use_real
    )
    ts = training_examples(ws, dataclasses.replace(cfg, data=data))
    examples = ts.all
    docs = segment_texts([e.text for e in examples], segmenter_of(ws, cfg))
    if ws.cfg.evaluation.out_of_source:
        data = source_data(cfg, examples, docs, tax.ids, ts.train_mask)
        P, _, _ = leave_one_source_out(data, fitter_for(cfg, tax.ids, tax.lexicons()))
        real = np.flatnonzero(data.real)
        return float(scores_of(data.Y[real], P[real], tax.ids)["macro_f1"])
    ev = ws.cfg.evaluation
    res = cross_validate(
        split_eval_data(examples, docs, tax.ids, ts.train_mask),
        fitter_for(cfg, tax.ids, tax.lexicons()),
        tax.ids,
        folds=ev.folds,
        repeats=ev.repeats,
        seed=ws.cfg.seed,
        use_written=True,
    )
    return float(res["macro_f1"]["mean"])
