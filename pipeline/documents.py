"""Reading documents to predict: ``.txt``/``.md``, JSONL, CSV, ``.docx`` and ``.html`` files and
folders of them.

Every document becomes a :class:`Document` or, when it cannot be read, decoded or parsed, a
:class:`DocumentError` that names the file (and line) — one bad document never stops a batch.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import DataError, UsageError
from pipeline.textio import decode_bytes

TEXT_SUFFIXES = {".txt", ".md"}
JSONL_SUFFIXES = {".jsonl", ".ndjson"}
CSV_SUFFIXES = {".csv"}
DOCX_SUFFIXES = {".docx"}
HTML_SUFFIXES = {".html", ".htm"}
SUFFIXES = TEXT_SUFFIXES | JSONL_SUFFIXES | CSV_SUFFIXES | DOCX_SUFFIXES | HTML_SUFFIXES


@dataclass(frozen=True)
class Document:
    id: str
    source: str
    text: str


@dataclass(frozen=True)
class DocumentError:
    id: str
    source: str
    error: str


Item = Document | DocumentError


def _walk(path: Path, errors: list[DocumentError]) -> Iterator[Path]:
    """Files under a folder, sorted, following no symlink loops; unreadable entries reported."""
    seen: set[tuple[int, int]] = set()

    def onerror(exc: OSError) -> None:
        errors.append(
            DocumentError(str(exc.filename), str(exc.filename), f"cannot read: {exc.strerror}")
        )

    for dirpath, dirnames, filenames in os.walk(path, followlinks=True, onerror=onerror):
        st = os.stat(dirpath)
        key = (st.st_dev, st.st_ino)
        if key in seen:
            errors.append(DocumentError(dirpath, dirpath, "symlink loop: folder already visited"))
            dirnames[:] = []
            continue
        seen.add(key)
        dirnames.sort()
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if p.suffix.lower() in SUFFIXES:
                yield p


def read_jsonl(data: bytes, source: str, text_field: str, id_field: str) -> Iterator[Item]:
    text = decode_bytes(data, source)
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{source}:{lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            yield DocumentError(where, where, f"invalid JSON ({exc.msg})")
            continue
        if not isinstance(obj, dict):
            yield DocumentError(where, where, "expected a JSON object")
            continue
        doc_id = str(obj.get(id_field, where))
        value = obj.get(text_field)
        if not isinstance(value, str):
            yield DocumentError(doc_id, where, f"no text in field {text_field!r}")
            continue
        yield Document(doc_id, where, value)


def read_csv(data: bytes, source: str, text_field: str, id_field: str) -> Iterator[Item]:
    """Rows of a CSV file (header row; quoted fields may span lines). ``source`` gets the row."""
    import csv
    import io

    text = decode_bytes(data, source)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if reader.fieldnames is None or text_field not in reader.fieldnames:
        cols = ", ".join(reader.fieldnames or []) or "none"
        yield DocumentError(
            source, source, f"no column {text_field!r} (columns: {cols}); use --text-field"
        )
        return
    row = 0
    try:
        for row, rec in enumerate(reader, 1):
            where = f"{source}:row {row}"
            value = rec.get(text_field)
            doc_id = rec.get(id_field) or where
            if not value or not value.strip():
                yield DocumentError(doc_id, where, f"empty {text_field!r} field")
                continue
            yield Document(doc_id, where, value)
    except csv.Error as exc:
        yield DocumentError(source, f"{source}:row {row + 1}", f"CSV error: {exc}")


def read_docx(data: bytes, source: str) -> Item:
    """The paragraphs and table cells of a Word document, in order."""
    import io

    try:
        import docx
    except ImportError:
        return DocumentError(
            source, source, "reading .docx needs python-docx: pip install 'gov-topics[formats]'"
        )
    try:
        d = docx.Document(io.BytesIO(data))
    except Exception as exc:  # python-docx raises zip, XML and key errors alike
        return DocumentError(source, source, f"not a readable .docx file ({type(exc).__name__})")
    parts = [p.text for p in d.paragraphs if p.text.strip()]
    for table in d.tables:
        for r in table.rows:
            cells = [c.text.strip() for c in r.cells if c.text.strip()]
            if cells:
                parts.append(" ".join(dict.fromkeys(cells)))
    if not parts:
        return DocumentError(source, source, "the .docx file has no text")
    return Document(source, source, "\n".join(parts))


def read_html(data: bytes, source: str) -> Item:
    """The main text of a web page, without menus, footers and link lists (trafilatura)."""
    try:
        import trafilatura
    except ImportError:
        return DocumentError(
            source, source, "reading .html needs trafilatura: pip install 'gov-topics[formats]'"
        )
    try:
        page = decode_bytes(data, source)
    except DataError as exc:
        return DocumentError(source, source, exc.message)
    text = trafilatura.extract(
        page, include_comments=False, include_tables=True, favor_precision=True
    )
    if not text or not text.strip():
        return DocumentError(source, source, "no main text found in the page")
    return Document(source, source, text)


def read_path(path: Path, text_field: str = "text", id_field: str = "id") -> Iterator[Item]:
    """The documents of one file."""
    source = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        yield DocumentError(source, source, f"cannot read: {exc.strerror}")
        return
    try:
        suffix = path.suffix.lower()
        if suffix in JSONL_SUFFIXES:
            yield from read_jsonl(data, source, text_field, id_field)
        elif suffix in CSV_SUFFIXES:
            yield from read_csv(data, source, text_field, id_field)
        elif suffix in DOCX_SUFFIXES:
            yield read_docx(data, source)
        elif suffix in HTML_SUFFIXES:
            yield read_html(data, source)
        else:
            yield Document(source, source, decode_bytes(data, source))
    except DataError as exc:
        yield DocumentError(source, source, exc.message)


def iter_documents(
    paths: Sequence[str], text_field: str = "text", id_field: str = "id"
) -> Iterator[Item]:
    """Documents from files, folders (recursive) and ``-`` (stdin: JSONL if it parses, else text).

    Raises
    ------
    UsageError
        For a path that does not exist (nothing is predicted).
    """
    for raw in paths:
        if raw != "-" and not Path(raw).exists():
            raise UsageError(f"{raw}: no such file or folder", "check the path")
    for raw in paths:
        if raw == "-":
            data = sys.stdin.buffer.read()
            first = data.lstrip()[:1]
            if first == b"{":
                yield from read_jsonl(data, "<stdin>", text_field, id_field)
            else:
                yield Document("<stdin>", "<stdin>", decode_bytes(data, "<stdin>"))
            continue
        path = Path(raw)
        if path.is_dir():
            errors: list[DocumentError] = []
            for f in _walk(path, errors):
                yield from read_path(f, text_field, id_field)
            yield from errors
        else:
            yield from read_path(path, text_field, id_field)
