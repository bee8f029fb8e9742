"""Reading documents to predict: ``.txt``/``.md``, JSONL, CSV, ``.docx`` and ``.html`` files and
folders of them.

Every document becomes a :class:`Document` or, when it cannot be read, decoded or parsed, a
:class:`DocumentError` that names the file (and line) — one bad document never stops a batch.
"""

from __future__ import annotations

import codecs
import io
import itertools
import json
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from pipeline.errors import DataError, UsageError
from pipeline.textio import decode_bytes, sniff_encoding

_HEAD = 1 << 16  # bytes sniffed to choose a streamed file's encoding

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
    # a JSONL record's other scalar fields (its origin: repo, commit, path, doctype, ...)
    meta: dict[str, Any] = field(default_factory=dict, compare=False)


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


def _peek(fh: BinaryIO) -> bytes:
    """The first bytes of a stream, without consuming them."""
    return fh.peek(_HEAD)[:_HEAD] if isinstance(fh, io.BufferedReader) else b""


def _decode_lines(lines: Iterable[bytes], source: str) -> Iterator[tuple[int, str | DocumentError]]:
    """Numbered lines decoded one at a time: UTF-8 (a BOM on the first line is dropped), else
    GB18030, else an error record for that line alone. UTF-8 is tried first on every line because
    it almost never decodes text in another encoding by accident."""
    for lineno, raw in enumerate(lines, 1):
        if lineno == 1 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8) :]
        try:
            yield lineno, raw.decode("utf-8")
        except UnicodeDecodeError:
            try:
                yield lineno, raw.decode("gb18030")
            except UnicodeDecodeError as exc:
                where = f"{source}:{lineno}"
                msg = f"cannot decode as UTF-8 or GB18030 (bad byte at column {exc.start + 1})"
                yield lineno, DocumentError(where, where, f"{msg}; convert the file to UTF-8")


def _utf16_lines(fh: BinaryIO, enc: str, source: str) -> Iterator[tuple[int, str | DocumentError]]:
    lineno = 0
    try:
        for lineno, line in enumerate(io.TextIOWrapper(fh, encoding=enc), 1):
            yield lineno, line
    except UnicodeDecodeError:
        where = f"{source}:{lineno + 1}"
        yield lineno + 1, DocumentError(where, where, f"invalid {enc.upper()} text from here on")


def _jsonl_items(
    numbered: Iterable[tuple[int, str | DocumentError]], source: str, text_field: str, id_field: str
) -> Iterator[Item]:
    for lineno, line in numbered:
        if isinstance(line, DocumentError):
            yield line
            continue
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
        meta = {
            k: v
            for k, v in obj.items()
            if k not in (text_field, id_field) and isinstance(v, (str, int, float, bool))
        }
        yield Document(doc_id, where, value, meta)


def read_jsonl(fh: BinaryIO, source: str, text_field: str, id_field: str) -> Iterator[Item]:
    """Documents of a JSONL stream, one per line, read and decoded a line at a time so that a file
    of any size streams (UTF-16, recognised from the first 64 KB, is decoded as a stream)."""
    enc = sniff_encoding(_peek(fh))
    numbered = (
        _utf16_lines(fh, enc, source) if enc.startswith("utf-16") else _decode_lines(fh, source)
    )
    yield from _jsonl_items(numbered, source, text_field, id_field)


def read_csv(fh: BinaryIO, source: str, text_field: str, id_field: str) -> Iterator[Item]:
    """Rows of a CSV stream (header row; quoted fields may span lines), read row by row.
    ``source`` gets the row."""
    import csv

    enc = sniff_encoding(_peek(fh))
    text = io.TextIOWrapper(fh, encoding=enc, newline="")
    row = 0
    try:
        reader = csv.DictReader(text)
        if reader.fieldnames is None or text_field not in reader.fieldnames:
            cols = ", ".join(reader.fieldnames or []) or "none"
            yield DocumentError(
                source, source, f"no column {text_field!r} (columns: {cols}); use --text-field"
            )
            return
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
    except UnicodeDecodeError:
        yield DocumentError(
            source,
            f"{source}:row {row + 1}",
            f"cannot decode as {enc.upper()} from here on; convert the file to UTF-8",
        )
    finally:
        text.detach()


def read_docx(data: bytes, source: str) -> Item:
    """The paragraphs and table cells of a Word document, in order."""
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
    """The documents of one file. JSONL and CSV files stream: memory does not grow with them."""
    source = str(path)
    suffix = path.suffix.lower()
    try:
        if path.name.lower().endswith(tuple(s + ".gz" for s in JSONL_SUFFIXES)):
            import gzip

            with gzip.open(path, "rb") as gz:
                yield from read_jsonl(gz, source, text_field, id_field)  # type: ignore[arg-type]
            return
        if suffix in JSONL_SUFFIXES or suffix in CSV_SUFFIXES:
            with path.open("rb", buffering=_HEAD) as fh:
                read = read_jsonl if suffix in JSONL_SUFFIXES else read_csv
                yield from read(fh, source, text_field, id_field)
            return
        data = path.read_bytes()
    except OSError as exc:
        yield DocumentError(source, source, f"cannot read: {exc.strerror}")
        return
    try:
        if suffix in DOCX_SUFFIXES:
            yield read_docx(data, source)
        elif suffix in HTML_SUFFIXES:
            yield read_html(data, source)
        else:
            yield Document(source, source, decode_bytes(data, source))
    except DataError as exc:
        yield DocumentError(source, source, exc.message)


def read_stdin(stream: BinaryIO, text_field: str, id_field: str) -> Iterator[Item]:
    """Standard input: JSONL (streamed) when its first non-blank line opens an object, else one
    text document."""
    src = "<stdin>"
    enc = sniff_encoding(_peek(stream))
    if enc.startswith("utf-16"):  # rare on a pipe: read it whole
        try:
            text = decode_bytes(stream.read(), src)
        except DataError as exc:
            yield DocumentError(src, src, exc.message)
            return
        if text.lstrip().startswith("{"):
            yield from _jsonl_items(enumerate(text.splitlines(), 1), src, text_field, id_field)
        else:
            yield Document(src, src, text)
        return
    lead: list[bytes] = []
    while True:  # the blank lines before the first line with text
        line = stream.readline()
        lead.append(line)
        if not line or line.strip():
            break
    if line.strip().lstrip(codecs.BOM_UTF8).startswith(b"{"):
        lines = itertools.chain(lead, stream)
        yield from _jsonl_items(_decode_lines(lines, src), src, text_field, id_field)
        return
    try:
        yield Document(src, src, decode_bytes(b"".join(lead) + stream.read(), src))
    except DataError as exc:
        yield DocumentError(src, src, exc.message)


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
            yield from read_stdin(sys.stdin.buffer, text_field, id_field)
            continue
        path = Path(raw)
        if path.is_dir():
            errors: list[DocumentError] = []
            for f in _walk(path, errors):
                yield from read_path(f, text_field, id_field)
            yield from errors
        else:
            yield from read_path(path, text_field, id_field)


def estimate_count(paths: Sequence[str]) -> int | None:
    """How many documents the inputs hold, roughly (for a progress bar's ETA); ``None`` for
    stdin. Counts lines of JSONL and rows of CSV files without parsing them."""
    total = 0
    for raw in paths:
        if raw == "-":
            return None
        p = Path(raw)
        files = (
            [f for f in sorted(p.rglob("*")) if f.suffix.lower() in SUFFIXES] if p.is_dir() else [p]
        )
        for f in files:
            suffix = f.suffix.lower()
            if suffix in JSONL_SUFFIXES or suffix in CSV_SUFFIXES:
                try:
                    with f.open("rb") as fh:
                        total += sum(1 for line in fh if line.strip()) - (suffix in CSV_SUFFIXES)
                except OSError:
                    total += 1
            else:
                total += 1
    return total
