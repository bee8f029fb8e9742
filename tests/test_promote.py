"""The promotion policy on a tiny store: the gate, force with a reason, rollback, the audit log.

The gate's figures come from a scorer function, so the policy is tested without training; the
scorer that re-evaluates real models is exercised end to end in test_registry.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipeline.errors import ConfigError, ModelError, UsageError
from pipeline.promote import promote, rollback, same_evaluation_basis, workspace_gate
from pipeline.registry import ModelStore

NAME = "gov-topics"


def _store(tmp_path: Path, f1s: list[float]) -> ModelStore:
    store = ModelStore(tmp_path / "models")
    art = tmp_path / "model.joblib"
    art.write_bytes(b"x")
    for f1 in f1s:
        manifest = {
            "config": {"evaluation": {"folds": 5, "repeats": 3}, "seed": 42},
            "training_data_sha256": "d",
            "metrics": {"macro_f1": f1},
        }
        store.add_version(NAME, art, manifest, {"stand-in model": f1})
    return store


def by_stored_figures(candidate: dict[str, Any], production: dict[str, Any]) -> dict[str, Any]:
    return {
        "basis": "test",
        "candidate": candidate["metrics"]["macro_f1"],
        "production": production["metrics"]["macro_f1"],
    }


def _promote(store: ModelStore, version: str, **kw: Any) -> Any:
    return promote(
        store, NAME, version, "production", gate_scorer=by_stored_figures, track=False, **kw
    )


def test_first_promotion_needs_no_gate(tmp_path: Path) -> None:
    store = _store(tmp_path, [0.7])
    p = _promote(store, "1")
    assert p.done and p.gate is None and store.aliases(NAME) == {"production": 1}


def test_gate_refuses_a_worse_version_and_moves_nothing(tmp_path: Path) -> None:
    store = _store(tmp_path, [0.7, 0.6])
    _promote(store, "1")
    p = _promote(store, "2")
    assert p.refused and p.gate == {"basis": "test", "candidate": 0.6, "production": 0.7}
    assert store.aliases(NAME)["production"] == 1
    assert len(store.audit(NAME)) == 1


def test_gate_passes_an_equal_or_better_version(tmp_path: Path) -> None:
    store = _store(tmp_path, [0.7, 0.7, 0.8])
    _promote(store, "1")
    assert _promote(store, "2").done
    assert _promote(store, "3").done
    assert store.aliases(NAME)["production"] == 3


def test_force_needs_a_reason_and_is_logged_with_the_figures(tmp_path: Path) -> None:
    store = _store(tmp_path, [0.7, 0.6])
    _promote(store, "1")
    with pytest.raises(UsageError, match="--force needs --reason"):
        _promote(store, "2", force=True)
    p = _promote(store, "2", force=True, reason="hotfix")
    assert p.done and p.forced
    last = store.audit(NAME)[-1]
    assert last["forced"] is True and last["why"] == "hotfix"
    assert last["gate"]["candidate"] == 0.6 and last["from"] == 1 and last["to"] == 2


def test_rollback_restores_the_previous_production(tmp_path: Path) -> None:
    store = _store(tmp_path, [0.7, 0.8])
    _promote(store, "1")
    _promote(store, "2")
    p = rollback(store, NAME, track=False)
    assert (p.previous, p.version) == (2, 1)
    assert store.aliases(NAME)["production"] == 1
    assert store.audit(NAME)[-1]["rollback"] is True


def test_rollback_walks_the_history_back_and_never_reinstates_a_rolled_back_model(
    tmp_path: Path,
) -> None:
    # 1 and 2 promoted through the gate, 3 forced over it though worse; rolling back twice must
    # give 2 then 1 (it used to toggle 2, 3, 2, ...: the forced, worse model came back)
    store = _store(tmp_path, [0.7, 0.8, 0.5])
    _promote(store, "1")
    _promote(store, "2")
    assert _promote(store, "3", force=True, reason="hotfix").forced
    assert rollback(store, NAME, track=False).version == 2
    assert rollback(store, NAME, track=False).version == 1
    with pytest.raises(ModelError, match="no earlier production version"):
        rollback(store, NAME, track=False)
    assert store.aliases(NAME)["production"] == 1
    assert store.production_history(NAME) == [1]
    # a new promotion starts a new step: rollback returns to 1, not to 3
    _promote(store, "2")
    assert rollback(store, NAME, track=False).version == 1


def test_rollback_without_history_is_a_model_error(tmp_path: Path) -> None:
    store = _store(tmp_path, [0.7])
    with pytest.raises(ModelError, match="no earlier production version"):
        rollback(store, NAME, track=False)


def test_stored_figures_are_comparable_only_on_the_same_data_and_folds() -> None:
    a = {
        "training_data_sha256": "d",
        "config": {"evaluation": {"folds": 5, "repeats": 3}, "seed": 1},
    }
    b = {**a, "config": {**a["config"], "seed": 2}}
    c = {**a, "training_data_sha256": "e"}
    d = {**a, "themes_sha256": "another taxonomy"}
    assert same_evaluation_basis(a, dict(a))
    assert not same_evaluation_basis(a, b)
    assert not same_evaluation_basis(a, c)
    assert not same_evaluation_basis(a, d)


def test_the_gate_refuses_to_compare_on_another_taxonomy(tmp_path: Path) -> None:
    """An own-data model line gated on an experiment with other themes: one line naming both
    theme sets and what to do; production does not move."""
    from pipeline.themes import load_taxonomy
    from pipeline.workspace import Workspace

    seeds = Path(__file__).resolve().parent.parent / "seeds"
    default = load_taxonomy(seeds / "themes.yaml").ids
    mine = [t for t in default if t != "party"] + ["water"]
    store = ModelStore(tmp_path / "models")
    art = tmp_path / "model.joblib"
    art.write_bytes(b"x")
    for f1, data in ((0.7, "d1"), (0.8, "d2")):  # other data: the gate must re-evaluate
        manifest = {
            "config": {"evaluation": {"folds": 5, "repeats": 3}, "seed": 42},
            "training_data_sha256": data,
            "themes": mine,
            "metrics": {"macro_f1": f1},
        }
        store.add_version(NAME, art, manifest, {"stand-in model": f1})
    gate = workspace_gate(lambda: Workspace.open(None, root=seeds.parent, build=tmp_path / "build"))
    assert _promote(store, "1").done
    with pytest.raises(ConfigError) as err:
        promote(store, NAME, "2", "production", gate_scorer=gate, track=False)
    msg = str(err.value)
    assert "the gate experiment's themes (" in msg and "water" in msg and "--gate-exp" in msg
    assert "\n" not in msg
    assert store.aliases(NAME)["production"] == 1
