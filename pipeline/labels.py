"""Gold labels: the seed units' labels (keyed by text sha1) and the written training corpus.

A cleaning change that alters a unit's text changes its sha1, so its label shows up as *stale*
instead of silently labelling different text.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.errors import DataError
from pipeline.paragraphs import Unit, sha1_text
from pipeline.themes import Taxonomy


@dataclass(frozen=True)
class GoldRecord:
    id: str
    sha1: str
    labels: tuple[str, ...]
    line: int = 0


@dataclass(frozen=True)
class Example:
    """One labelled training text."""

    id: str
    text: str
    labels: tuple[str, ...]
    source: str  # "seed" | "written" | a user's own tag
    group: str  # units of one group never straddle a train/test split


def _read_jsonl(path: Path) -> Iterable[tuple[int, dict[str, object]]]:
    try:
        fh = path.open(encoding="utf-8-sig")
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from exc
    with fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(
                    f"{path}:{lineno}: invalid JSON ({exc.msg})", "fix the line"
                ) from exc
            if not isinstance(obj, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object")
            yield lineno, obj


def _labels_of(obj: dict[str, object], where: str) -> tuple[str, ...]:
    labels = obj.get("labels")
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise DataError(
            f"{where}: 'labels' must be a list of theme ids", 'e.g. "labels": ["safety"]'
        )
    return tuple(labels)


def load_gold(path: Path) -> list[GoldRecord]:
    """Read ``gold.jsonl``: one ``{"id", "sha1", "labels"}`` object per line."""
    out: list[GoldRecord] = []
    for lineno, obj in _read_jsonl(path):
        where = f"{path}:{lineno}"
        for key in ("id", "sha1"):
            if not isinstance(obj.get(key), str):
                raise DataError(f"{where}: missing {key!r}")
        out.append(GoldRecord(str(obj["id"]), str(obj["sha1"]), _labels_of(obj, where), lineno))
    return out


def written_files(extra_dir: Path) -> list[Path]:
    return sorted(Path(extra_dir).glob("*.jsonl")) if Path(extra_dir).is_dir() else []


def load_written(extra_dir: Path) -> list[Example]:
    """Read the written corpus: ``{"id", "text", "labels", "source", ...}`` per line."""
    out: list[Example] = []
    for path in written_files(extra_dir):
        for lineno, obj in _read_jsonl(path):
            where = f"{path}:{lineno}"
            text, uid = obj.get("text"), obj.get("id")
            if not isinstance(text, str) or not text.strip():
                raise DataError(f"{where}: missing 'text'")
            if not isinstance(uid, str):
                raise DataError(f"{where}: missing 'id'")
            source = str(obj.get("source") or "written")
            out.append(Example(uid, text, _labels_of(obj, where), source, f"{source}:{uid}"))
    return out


@dataclass
class LabelReport:
    """What ``topics labels check`` found."""

    problems: list[str] = field(default_factory=list)
    seed_counts: Counter[str] = field(default_factory=Counter)
    written_counts: Counter[str] = field(default_factory=Counter)
    seed_units: int = 0
    written_units: int = 0
    seed_unlabelled: int = 0
    written_unlabelled: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def check_labels(
    units: Sequence[Unit], gold: Sequence[GoldRecord], written: Sequence[Example], tax: Taxonomy
) -> LabelReport:
    """Every unit labelled, no unknown theme ids, no stale sha1s, no duplicates."""
    rep = LabelReport(seed_units=len(units), written_units=len(written))
    known = set(tax.ids)
    by_sha: dict[str, GoldRecord] = {}
    for g in gold:
        if g.sha1 in by_sha:
            rep.problems.append(
                f"gold line {g.line}: sha1 {g.sha1[:10]} labelled twice (id {g.id})"
            )
        by_sha[g.sha1] = g
        for lab in g.labels:
            if lab not in known:
                rep.problems.append(f"gold line {g.line}: unknown theme id {lab!r} (unit {g.id})")
        if len(set(g.labels)) != len(g.labels):
            rep.problems.append(f"gold line {g.line}: repeated theme in {list(g.labels)}")
    unit_shas = {u.sha1 for u in units}
    for u in units:
        rec = by_sha.get(u.sha1)
        if rec is None:
            rep.problems.append(f"unit {u.id} has no label (sha1 {u.sha1[:10]}): label it")
            continue
        rep.seed_counts.update(rec.labels)
        if not rec.labels:
            rep.seed_unlabelled += 1
    for g in gold:
        if g.sha1 not in unit_shas:
            rep.problems.append(
                f"gold line {g.line}: stale label for {g.id} (sha1 {g.sha1[:10]} matches no unit; "
                "its text changed or it was dropped): relabel or remove it"
            )
    seen_ids: set[str] = set()
    seen_text: set[str] = set()
    for ex in written:
        if ex.id in seen_ids:
            rep.problems.append(f"written unit {ex.id}: duplicate id")
        seen_ids.add(ex.id)
        h = sha1_text(ex.text)
        if h in seen_text:
            rep.problems.append(f"written unit {ex.id}: duplicate text")
        seen_text.add(h)
        for lab in ex.labels:
            if lab not in known:
                rep.problems.append(f"written unit {ex.id}: unknown theme id {lab!r}")
        rep.written_counts.update(ex.labels)
        if not ex.labels:
            rep.written_unlabelled += 1
    return rep


def seed_examples(units: Sequence[Unit], gold: Sequence[GoldRecord]) -> list[Example]:
    """The labelled seed units; grouped by article so one article never straddles a split."""
    by_sha = {g.sha1: g for g in gold}
    missing = [u.id for u in units if u.sha1 not in by_sha]
    if missing:
        raise DataError(
            f"{len(missing)} seed unit(s) have no gold label, e.g. {missing[0]}",
            "run `topics labels check` and label them",
        )
    return [
        Example(u.id, u.text, by_sha[u.sha1].labels, "seed", f"{u.doc}:{u.article}") for u in units
    ]


def label_matrix(examples: Sequence[Example], themes: Sequence[str]) -> np.ndarray:
    """A 0/1 matrix, one row per example and one column per theme."""
    index = {t: j for j, t in enumerate(themes)}
    Y = np.zeros((len(examples), len(themes)), dtype=int)
    for i, ex in enumerate(examples):
        for lab in ex.labels:
            if lab not in index:
                raise DataError(
                    f"unit {ex.id}: unknown theme id {lab!r}", "check seeds/themes.yaml"
                )
            Y[i, index[lab]] = 1
    return Y
