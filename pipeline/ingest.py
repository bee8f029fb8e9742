"""Stage 1, ingest: a folder of raw documents to clean, de-duplicated paragraph units.

The cleaning of one document's text is :mod:`pipeline.paragraphs`; this module adds the corpus:
reading and decoding files, checking them against their recorded sha256 (raw data is immutable),
dropping exact duplicates across documents, and the units file.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from pipeline.errors import DataError
from pipeline.paragraphs import Dropped, IngestResult, Unit, ingest_text
from pipeline.textio import decode_bytes

__all__ = [
    "checksums_path",
    "doctypes",
    "ingest_corpus",
    "raw_files",
    "read_document",
    "read_units",
    "verify_checksums",
    "write_checksums",
    "write_units",
]


def read_document(path: Path) -> str:
    """Read one raw document file, decoding UTF-8 (with or without BOM), UTF-16 or GBK/GB18030."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})", "check the path") from exc
    return decode_bytes(data, str(path))


def doctypes(raw_dir: Path) -> dict[str, str]:
    """Each raw document's doctype from its first line: ``work_report`` for a 工作报告, else
    ``news`` (the seed documents are district news pages and one annual work report)."""
    out = {}
    for path in raw_files(raw_dir):
        first = next((ln for ln in read_document(path).splitlines() if ln.strip()), "")
        out[path.stem] = "work_report" if "工作报告" in first else "news"
    return out


def raw_files(raw_dir: Path) -> list[Path]:
    """The raw documents of a corpus folder, sorted by name (``.txt`` and ``.md``)."""
    if not raw_dir.is_dir():
        raise DataError(
            f"{raw_dir}: no such folder",
            "set data.raw in the experiment file to your folder of documents",
        )
    files = sorted(p for p in raw_dir.iterdir() if p.suffix in {".txt", ".md"} and p.is_file())
    if not files:
        raise DataError(f"{raw_dir}: no .txt or .md documents found", "add raw documents")
    return files


def checksums_path(raw_dir: Path) -> Path:
    """``seeds/raw.sha256`` for ``seeds/raw``: beside the folder, which stays byte-for-byte raw."""
    return raw_dir.parent / f"{raw_dir.name}.sha256"


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def verify_checksums(raw_dir: Path, files: Iterable[Path]) -> None:
    """Refuse to ingest a raw file that differs from its recorded sha256.

    Raw data is immutable: an edited file is a mistake until the user says otherwise.
    """
    sums_path = checksums_path(raw_dir)
    if not sums_path.exists():
        return
    recorded: dict[str, str] = {}
    for lineno, line in enumerate(sums_path.read_text("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2:
            raise DataError(f"{sums_path}:{lineno}: expected '<sha256>  <file name>'")
        recorded[parts[1].lstrip("*")] = parts[0]
    for path in files:
        want = recorded.get(path.name)
        if want is None:
            raise DataError(
                f"{path}: not listed in {sums_path}",
                "record it with `topics ingest --update-checksums` if it belongs to the corpus",
            )
        got = file_sha256(path)
        if got != want:
            raise DataError(
                f"{path}: content changed (sha256 {got[:12]}… ≠ recorded {want[:12]}…)",
                "raw data is immutable: restore it with `git checkout -- "
                f"{path}`, or run `topics ingest --update-checksums` to accept the change",
            )


def write_checksums(raw_dir: Path, files: Iterable[Path]) -> Path:
    """Record the sha256 of every raw file (``sha256sum`` format)."""
    sums_path = checksums_path(raw_dir)
    lines = [f"{file_sha256(p)}  {p.name}" for p in sorted(files)]
    sums_path.write_text("\n".join(lines) + "\n", "utf-8")
    return sums_path


def ingest_corpus(raw_dir: Path) -> IngestResult:
    """Ingest every document of a raw folder (checksums verified first).

    Exact duplicates across documents are dropped too (syndicated articles).
    """
    files = raw_files(raw_dir)
    verify_checksums(raw_dir, files)
    result = IngestResult()
    for path in files:
        ingest_text(path.stem, read_document(path), result)
    seen: set[str] = set()
    kept: list[Unit] = []
    for unit in result.units:
        if unit.sha1 in seen:
            result.dropped.append(Dropped(unit.doc, 0, "duplicate_across_documents", unit.text))
            continue
        seen.add(unit.sha1)
        kept.append(unit)
    result.units = kept
    return result


def write_units(units: Iterable[Unit], path: Path) -> None:
    """Write units as JSONL, atomically."""
    from pipeline.fsutil import atomic_write_text

    atomic_write_text(path, "".join(u.to_json() + "\n" for u in units))


def read_units(path: Path) -> Iterator[Unit]:
    """Read units written by :func:`write_units`."""
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            try:
                yield Unit(**json.loads(line))
            except (json.JSONDecodeError, TypeError) as exc:
                raise DataError(
                    f"{path}:{lineno}: not a unit record", "rerun `make ingest`"
                ) from exc
