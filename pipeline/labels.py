"""Gold labels: the seed units' labels (keyed by text sha1) and the written training corpus.

A cleaning change that alters a unit's text changes its sha1, so its label shows up as *stale*
instead of silently labelling different text.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    source: str  # "seed" | "written" | "pool:<repository>" | a user's own tag
    group: str  # units of one group never straddle a train/test split
    doctype: str = ""  # news | work_report | notice | policy, where known
    selected_by: str = ""  # how a real unit was chosen for labelling: random | uncertainty | ...

    @property
    def real(self) -> bool:
        """Real text (seed units, labelled pool paragraphs), as opposed to the written corpus."""
        return self.source != "written"


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


def real_files(real_dir: Path) -> list[Path]:
    return sorted(real_dir.glob("*.jsonl")) if real_dir.is_dir() else []


def load_real(real_dir: Path) -> list[Example]:
    """Read the real labelled corpus: ``{"id", "text", "labels", "repo", "path", "doctype", ...}``
    per line (``seeds/real/``). Each paragraph's source is its repository, its group the document
    (repository and path), so evaluation can hold out whole sources and whole documents."""
    out: list[Example] = []
    for path in real_files(real_dir):
        for lineno, obj in _read_jsonl(path):
            where = f"{path}:{lineno}"
            text, uid, repo = obj.get("text"), obj.get("id"), obj.get("repo")
            if not isinstance(text, str) or not text.strip():
                raise DataError(f"{where}: missing 'text'")
            if not isinstance(uid, str):
                raise DataError(f"{where}: missing 'id'")
            if not isinstance(repo, str) or not repo:
                raise DataError(f"{where}: missing 'repo' (the paragraph's origin)", "keep origin")
            doc = str(obj.get("path") or uid)
            out.append(
                Example(
                    uid,
                    text,
                    _labels_of(obj, where),
                    f"pool:{repo}",
                    f"pool:{repo}:{doc}",
                    str(obj.get("doctype") or ""),
                    str(obj.get("selected_by") or ""),
                )
            )
    return out


@dataclass
class LabelReport:
    """What ``topics labels check`` found."""

    problems: list[str] = field(default_factory=list)
    seed_counts: Counter[str] = field(default_factory=Counter)
    written_counts: Counter[str] = field(default_factory=Counter)
    real_counts: Counter[str] = field(default_factory=Counter)
    seed_units: int = 0
    written_units: int = 0
    real_units: int = 0
    seed_unlabelled: int = 0
    written_unlabelled: int = 0
    real_unlabelled: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def check_labels(
    units: Sequence[Unit],
    gold: Sequence[GoldRecord],
    written: Sequence[Example],
    tax: Taxonomy,
    real: Sequence[Example] = (),
) -> LabelReport:
    """Every unit labelled, no unknown theme ids, no stale sha1s, no duplicates; a real pool
    paragraph's id (``pool-`` + sha1 prefix of its text) still matches its text."""
    rep = LabelReport(seed_units=len(units), written_units=len(written), real_units=len(real))
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
    seen_text: set[str] = {u.sha1 for u in units}
    for kind, examples, counts in (
        ("written", written, rep.written_counts),
        ("real", real, rep.real_counts),
    ):
        for ex in examples:
            if ex.id in seen_ids:
                rep.problems.append(f"{kind} unit {ex.id}: duplicate id")
            seen_ids.add(ex.id)
            h = sha1_text(ex.text)
            if h in seen_text:
                rep.problems.append(f"{kind} unit {ex.id}: duplicate text")
            seen_text.add(h)
            if _is_pool_id(ex.id) and ex.id != f"pool-{h[:12]}":
                rep.problems.append(
                    f"{kind} unit {ex.id}: text does not match its id (edited?): restore the "
                    "pool's text or relabel it as a new paragraph"
                )
            for lab in ex.labels:
                if lab not in known:
                    rep.problems.append(f"{kind} unit {ex.id}: unknown theme id {lab!r}")
            if len(set(ex.labels)) != len(ex.labels):
                rep.problems.append(f"{kind} unit {ex.id}: repeated theme in {list(ex.labels)}")
            counts.update(ex.labels)
            if not ex.labels:
                if kind == "written":
                    rep.written_unlabelled += 1
                else:
                    rep.real_unlabelled += 1
    return rep


def _is_pool_id(uid: str) -> bool:
    """A whole pool paragraph's id (``pool-`` and 12 hex digits of its text's sha1); a unit cut
    from a longer pool text has ``#k`` after it and its own text."""
    return (
        len(uid) == 17 and uid.startswith("pool-") and all(c in "0123456789abcdef" for c in uid[5:])
    )


def seed_examples(
    units: Sequence[Unit], gold: Sequence[GoldRecord], doctypes: Mapping[str, str] | None = None
) -> list[Example]:
    """The labelled seed units; grouped by article so one article never straddles a split.
    ``doctypes`` maps a document id to its doctype."""
    by_sha = {g.sha1: g for g in gold}
    missing = [u.id for u in units if u.sha1 not in by_sha]
    if missing:
        raise DataError(
            f"{len(missing)} seed unit(s) have no gold label, e.g. {missing[0]}",
            "run `topics labels check` and label them",
        )
    return [
        Example(
            u.id,
            u.text,
            by_sha[u.sha1].labels,
            "seed",
            f"{u.doc}:{u.article}",
            (doctypes or {}).get(u.doc, ""),
        )
        for u in units
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


# -- labelled batches from the label queue: import, agreement, adjudication ----------------------

ORIGIN_FIELDS = ("repo", "commit", "path", "region", "year", "doctype", "file", "selected_by")


def read_labelled_batch(path: Path, tax: Taxonomy) -> list[dict[str, Any]]:
    """Validate a labelled batch (the queue's output with ``labels`` filled in) as a whole.

    Every problem is collected first and reported together, naming the file and line, so that a
    batch is imported entirely or not at all: unknown theme ids, a missing or unfilled
    ``labels``, missing text, a pool paragraph whose text was edited, duplicate ids or texts.
    """
    known = set(tax.ids)
    problems: list[str] = []
    out: list[dict[str, Any]] = []
    seen_ids: dict[str, int] = {}
    seen_text: dict[str, int] = {}
    for lineno, obj in _read_jsonl(path):
        where = f"{path}:{lineno}"
        uid, text, labels = obj.get("id"), obj.get("text"), obj.get("labels")
        if not isinstance(uid, str) or not uid:
            problems.append(f"{where}: missing 'id'")
            continue
        if not isinstance(text, str) or not text.strip():
            problems.append(f"{where}: {uid}: missing 'text'")
            continue
        if labels is None:
            problems.append(f"{where}: {uid}: 'labels' not filled in (use [] for no theme)")
            continue
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            problems.append(f"{where}: {uid}: 'labels' must be a list of theme ids")
            continue
        bad = [x for x in labels if x not in known]
        if bad:
            problems.append(f"{where}: {uid}: unknown theme id(s) {bad}; known: {tax.ids}")
        if len(set(labels)) != len(labels):
            problems.append(f"{where}: {uid}: a theme repeated in {labels}")
        h = sha1_text(text)
        if _is_pool_id(uid) and uid != f"pool-{h[:12]}":
            problems.append(f"{where}: {uid}: text differs from the pool's (edited?): restore it")
        if uid in seen_ids:
            problems.append(f"{where}: {uid}: duplicate id (first at line {seen_ids[uid]})")
        if h in seen_text:
            problems.append(f"{where}: {uid}: duplicate text (first at line {seen_text[h]})")
        seen_ids.setdefault(uid, lineno)
        seen_text.setdefault(h, lineno)
        rec: dict[str, Any] = {"id": uid, "text": text, "labels": list(labels)}
        rec.update({k: obj[k] for k in ORIGIN_FIELDS if obj.get(k) is not None})
        if isinstance(obj.get("note"), str) and obj["note"]:
            rec["note"] = obj["note"]
        out.append(rec)
    if problems:
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        raise DataError(problems[0] + more, "fix the batch file; nothing was imported")
    if not out:
        raise DataError(f"{path}: no labelled units", "label the queue's batch first")
    return out


def cohen_kappa(a: Sequence[bool], b: Sequence[bool]) -> float:
    """Cohen's kappa of two binary label vectors (1.0 when both are constant and equal)."""
    n = len(a)
    if n == 0:
        return 1.0
    po = sum(x == y for x, y in zip(a, b, strict=True)) / n
    pa, pb = sum(a) / n, sum(b) / n
    pe = pa * pb + (1 - pa) * (1 - pb)
    return 1.0 if pe >= 1.0 else (po - pe) / (1 - pe)


def agreement(
    a: Mapping[str, Sequence[str]], b: Mapping[str, Sequence[str]], themes: Sequence[str]
) -> dict[str, Any]:
    """Per-theme Cohen's kappa and exact agreement of two passes over the same units."""
    ids = sorted(set(a) & set(b))
    return {
        "units": len(ids),
        "exact": sum(set(a[i]) == set(b[i]) for i in ids),
        "kappa": {
            t: round(cohen_kappa([t in a[i] for i in ids], [t in b[i] for i in ids]), 3)
            for t in themes
        },
    }


def write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> None:
    from pipeline.fsutil import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


@dataclass
class ImportResult:
    batch: str
    pass_id: str
    units: int
    path: Path


def import_pass(
    path: Path, tax: Taxonomy, passes_dir: Path, batch: str, pass_id: str
) -> ImportResult:
    """Store one labelling pass of a batch (``<batch>_pass_<X>.jsonl``) after validating all of
    it; the batch's texts and origins go to ``<batch>_batch.jsonl`` (the same for every pass)."""
    if not batch.replace("_", "").replace("-", "").isalnum():
        raise DataError(f"batch name {batch!r} must be letters, digits, - and _", "rename it")
    records = read_labelled_batch(path, tax)
    batch_file = passes_dir / f"{batch}_batch.jsonl"
    texts = [{k: v for k, v in r.items() if k not in ("labels", "note")} for r in records]
    if batch_file.exists():
        before = {o["id"]: o.get("text") for _, o in _read_jsonl(batch_file)}
        now = {r["id"]: r["text"] for r in records}
        if before != now:
            raise DataError(
                f"{path}: its units differ from the batch {batch!r} imported before ({batch_file})",
                "import each pass of the same batch file, or use a new --batch name",
            )
    else:
        write_jsonl(batch_file, texts)
    out = passes_dir / f"{batch}_pass_{pass_id}.jsonl"
    write_jsonl(
        out,
        (
            {"id": r["id"], "labels": r["labels"], **({"note": r["note"]} if "note" in r else {})}
            for r in records
        ),
    )
    return ImportResult(batch, pass_id, len(records), out)


def _pass_labels(path: Path) -> dict[str, list[str]]:
    if not path.exists():
        raise DataError(f"{path}: no such pass", "import it with `topics labels import`")
    return {str(o["id"]): [str(x) for x in o.get("labels") or []] for _, o in _read_jsonl(path)}  # type: ignore[attr-defined]


@dataclass
class Adjudication:
    agreement: dict[str, Any]
    disagreements: int
    pending: Path | None  # the disagreements file to decide, when decisions are missing
    written: Path | None  # the real labelled corpus file, when complete


def adjudicate(
    tax: Taxonomy,
    passes_dir: Path,
    real_dir: Path,
    batch: str,
    decisions: Path | None = None,
) -> Adjudication:
    """Agreement between passes A and B of a batch; the disagreements to decide; and, once they
    are decided (``decisions``: the disagreements file with ``labels`` and ``reason`` filled),
    the adjudicated labels written into the real labelled corpus (``real/<batch>.jsonl``)."""
    a = _pass_labels(passes_dir / f"{batch}_pass_A.jsonl")
    b = _pass_labels(passes_dir / f"{batch}_pass_B.jsonl")
    if set(a) != set(b):
        raise DataError(f"passes A and B of {batch!r} label different units", "re-import them")
    texts = {str(o["id"]): o for _, o in _read_jsonl(passes_dir / f"{batch}_batch.jsonl")}
    agree = agreement(a, b, tax.ids)
    write_jsonl(passes_dir / f"{batch}_agreement.jsonl", [agree])
    differ = [i for i in texts if set(a[i]) != set(b[i])]
    decided: dict[str, dict[str, Any]] = {}
    if decisions is not None:
        for rec in read_labelled_batch(decisions, tax):
            decided[rec["id"]] = rec
        for lineno, obj in _read_jsonl(decisions):
            if not str(obj.get("reason") or "").strip():
                raise DataError(f"{decisions}:{lineno}: a decision needs a 'reason'", "add one")
    missing = [i for i in differ if i not in decided]
    if missing:
        pending = passes_dir / f"{batch}_disagreements.jsonl"
        write_jsonl(
            pending,
            (
                {
                    "id": i,
                    "text": texts[i]["text"],
                    "pass_A": a[i],
                    "pass_B": b[i],
                    "labels": None,
                    "reason": "",
                }
                for i in differ
            ),
        )
        return Adjudication(agree, len(differ), pending, None)
    write_jsonl(
        passes_dir / f"{batch}_adjudicated.jsonl",
        (
            {
                "id": i,
                "pass_A": a[i],
                "pass_B": b[i],
                "labels": decided[i]["labels"],
                "reason": decided[i].get("reason", ""),
            }
            for i in differ
        ),
    )
    reasons = {}
    if decisions is not None:
        reasons = {str(o["id"]): o.get("reason", "") for _, o in _read_jsonl(decisions)}
    order = {t: j for j, t in enumerate(tax.ids)}
    out = real_dir / f"{batch}.jsonl"
    write_jsonl(
        out,
        (
            {
                "id": i,
                **{k: v for k, v in texts[i].items() if k != "id"},
                "labels": sorted(
                    decided[i]["labels"] if i in differ else a[i], key=order.__getitem__
                ),
                **({"reason": reasons[i]} if i in reasons else {}),
            }
            for i in texts
        ),
    )
    return Adjudication(agree, len(differ), None, out)
