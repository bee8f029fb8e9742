"""Reading documents to predict: ``.txt``/``.md``, JSONL, CSV, ``.docx``, ``.html`` and ``.pdf``
files and folders of them.

Every document becomes a :class:`Document` or, when it cannot be read, decoded or parsed, a
:class:`DocumentError` that names the file (and line or row) — one bad document never stops a
batch: not a line of broken JSON, an undecodable CSV row, a special file in a folder (a FIFO, a
link to a device), a zip bomb, a scanned or encrypted PDF or a file over
:data:`MAX_DOCUMENT_BYTES`. A file of a type that cannot be read (``.doc``, ``.xls``, an image)
in a folder is an error record too, saying what to save it as; hidden files and folders are left
out of that.
"""

from __future__ import annotations

import codecs
import io
import itertools
import json
import logging
import os
import re
import stat
import sys
import unicodedata
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from pipeline.errors import DataError, UsageError
from pipeline.textio import decode_bytes, decode_legacy, normalize_line, sniff_encoding

# The one size cap: a document (a file, a JSONL line, a CSV row) larger than this is refused
# with an error record, so that no input can take the memory of a run. CSV fields may be this
# long; a .docx file may unpack to twice this.
MAX_DOCUMENT_BYTES = 20 * 1024 * 1024
MAX_PDF_PAGES = 2000  # a longer PDF is refused, as a file over the size cap is

_HEAD = 1 << 16  # bytes sniffed to choose a streamed file's encoding

TEXT_SUFFIXES = {".txt", ".md"}
JSONL_SUFFIXES = {".jsonl", ".ndjson"}
CSV_SUFFIXES = {".csv"}
DOCX_SUFFIXES = {".docx"}
HTML_SUFFIXES = {".html", ".htm"}
PDF_SUFFIXES = {".pdf"}
SUFFIXES = (
    TEXT_SUFFIXES | JSONL_SUFFIXES | CSV_SUFFIXES | DOCX_SUFFIXES | HTML_SUFFIXES | PDF_SUFFIXES
)
GZIP_SUFFIXES = tuple(s + ".gz" for s in JSONL_SUFFIXES)  # JSONL, gzipped: read as it streams

# What to do with a file in a folder that cannot be read (by its suffix); anything else is told
# to be saved as one of the SUFFIXES. Files the system puts in folders are not reported.
_SAVE_AS = {
    **dict.fromkeys((".doc", ".wps", ".rtf", ".odt"), "save it as .docx or .txt"),
    **dict.fromkeys((".xls", ".xlsx", ".et", ".ods"), "save it as .csv (UTF-8)"),
    **dict.fromkeys((".ppt", ".pptx", ".dps", ".odp"), "save it as .pdf"),
    ".ofd": "export it as .pdf or .txt",
    ".json": "write one JSON object per line to a .jsonl file",
    **dict.fromkeys(
        (".png", ".jpg", ".jpeg", ".gif", ".bmp", ".tif", ".tiff", ".webp"),
        "an image: run OCR on it first and save the text as .txt",
    ),
    **dict.fromkeys(
        (".zip", ".rar", ".7z", ".gz", ".tar", ".tgz", ".bz2", ".xz"),
        "unpack it first (a .jsonl.gz file is read as it is)",
    ),
}
# files an operating system leaves in folders: skipped in a folder without a word
SYSTEM_FILES = {"thumbs.db", "desktop.ini"}

_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # \ud800-\udfff in a JSON string
_LONE_CR = re.compile(rb"(?<=\r)(?!\n)")  # a line end in CSV, as in universal newlines


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


def too_big(what: str) -> str:
    """The error for a document (``what``: file, line, row ...) over the size limit."""
    return (
        f"{what} larger than the {MAX_DOCUMENT_BYTES >> 20} MB limit per document; split it "
        "into smaller documents"
    )


def printable(name: str) -> str:
    """A file name as it can be written to UTF-8 output: bytes that are not UTF-8 (kept by
    Python as lone surrogates) become ``\\xff`` escapes."""
    try:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return name.encode("utf-8", "backslashreplace").decode("utf-8")


def _text_problem(text: str) -> str | None:
    """Why a decoded document is not one to score, or None."""
    if not text or text.isspace():
        return "empty document (no text)"
    if "\x00" in text:
        return "binary/NUL content: not a text document"
    return None


def field_problem(text: str, name: str) -> str | None:
    """Why a record's text field ``name`` is not a document (empty, binary), or None."""
    if not text or text.isspace():
        return f"empty {name!r} field"
    if "\x00" in text:
        return f"NUL characters in the {name!r} field: binary content, not text"
    return None


def _special_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a file"


def unsupported(name: str) -> str | None:
    """Why a file in a folder is not read (a type no reader knows, and what to do), or None."""
    lower = name.lower()
    suffix = Path(lower).suffix
    if suffix in SUFFIXES or lower.endswith(GZIP_SUFFIXES):
        return None
    if not suffix:
        return "no file name extension: not read; name it .txt if it is text"
    return (
        f"unsupported file type {suffix}: {_SAVE_AS.get(suffix, 'save it as .txt, .docx or .pdf')}"
    )


def _walk(path: Path, skip: tuple[int, int] | None = None) -> Iterator[Path | DocumentError]:
    """Files under a folder, sorted, following no symlink loops. Unreadable entries, special
    files (FIFOs, devices, sockets, or links to them: reading one could hang or never end) and
    files of a type that cannot be read are error records, in their place; a file that cannot be
    read is not reported when it or a folder above it (under ``path``) is hidden (its name
    starts with a dot: ``.git``, ``.DS_Store``) or it is a file Windows makes (``Thumbs.db``).
    The file ``skip`` (device, inode) is left out."""
    seen: set[tuple[int, int]] = set()
    errors: list[DocumentError] = []

    def error(where: str, message: str) -> DocumentError:
        return DocumentError(printable(where), printable(where), message)

    def onerror(exc: OSError) -> None:
        errors.append(error(str(exc.filename), f"cannot read: {exc.strerror}"))

    for dirpath, dirnames, filenames in os.walk(path, followlinks=True, onerror=onerror):
        yield from errors
        errors.clear()
        st = os.stat(dirpath)
        key = (st.st_dev, st.st_ino)
        if key in seen:
            yield error(dirpath, "symlink loop: folder already visited")
            dirnames[:] = []
            continue
        seen.add(key)
        dirnames.sort()
        hidden = any(part.startswith(".") for part in Path(dirpath).relative_to(path).parts)
        for name in sorted(filenames):
            p = Path(dirpath) / name
            problem = unsupported(name)
            if problem and (hidden or name.startswith(".") or name.lower() in SYSTEM_FILES):
                continue
            try:
                st = os.stat(p)
            except OSError as exc:
                yield error(str(p), problem or f"cannot read: {exc.strerror}")
                continue
            mode = st.st_mode
            if (st.st_dev, st.st_ino) == skip:
                continue
            if problem:
                yield error(str(p), problem)
            elif stat.S_ISREG(mode):
                yield p
            else:
                yield error(
                    str(p),
                    f"not a regular file ({_special_kind(mode)}): skipped; name it on the "
                    "command line to read it",
                )
    yield from errors


def _peek(fh: BinaryIO) -> bytes:
    """The first bytes of a stream, without consuming them."""
    return fh.peek(_HEAD)[:_HEAD] if isinstance(fh, io.BufferedReader) else b""


# -- lines: bounded, decoded one at a time -----------------------------------------------------


@dataclass(frozen=True)
class Overlong:
    """A line longer than the cap, skipped without being held in memory."""

    quotes: int  # the '"' in it: a CSV reader needs them to find where its record ends


@dataclass(frozen=True)
class _Undecodable:
    """A line no encoding decodes: ``text`` is it decoded leniently (a CSV reader still needs
    its quotes and commas to find where its record ends), ``problem`` says what is wrong."""

    text: str
    problem: str


Line = str | Overlong | _Undecodable | DocumentError


def _bounded_lines(fh: Any, limit: int, ends: Any) -> Iterator[Any]:
    """The lines of a binary or text stream, none longer than ``limit``: a longer line is read
    to its end in pieces, dropped and stands as an :class:`Overlong`."""
    while True:
        line = fh.readline(limit + 1)
        if not line:
            return
        if len(line) <= limit or line.endswith(ends):
            yield line
        else:
            yield _skip_line(fh, line, ends)


def _skip_line(fh: Any, line: Any, ends: Any) -> Overlong:
    """Read the rest of an over-long line (of which ``line`` is the start) and drop it."""
    quote = b'"' if isinstance(line, bytes) else '"'
    quotes = line.count(quote)
    while not line.endswith(ends):
        line = fh.readline(1 << 20)
        if not line:
            break
        quotes += line.count(quote)
    return Overlong(quotes)


def _split_lone_cr(lines: Iterable[Any]) -> Iterator[Any]:
    """Lines also split after a CR not followed by LF, as a CSV reader reads them."""
    for line in lines:
        if isinstance(line, bytes) and b"\r" in line[:-2]:
            yield from (part for part in _LONE_CR.split(line) if part)
        else:
            yield line


def _decode_lines(lines: Iterable[bytes | Overlong]) -> Iterator[tuple[int, Line]]:
    """Numbered lines decoded one at a time: UTF-8 (a BOM on the first line is dropped), else
    GB18030 or Big5 (:func:`pipeline.textio.decode_legacy`; the encoding found for one line is
    tried first on the next), else :class:`_Undecodable` for that line alone. UTF-8 is tried
    first on every line because it almost never decodes text in another encoding by accident."""
    legacy: str | None = None
    for lineno, raw in enumerate(lines, 1):
        if isinstance(raw, Overlong):
            yield lineno, raw
            continue
        if lineno == 1 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8) :]
        line: Line
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as utf8_error:
            try:
                line, legacy = decode_legacy(raw, legacy)
            except DataError as exc:
                problem = (
                    "cannot decode as UTF-8 or GB18030 or Big5 (bad byte at column "
                    f"{utf8_error.start + 1})"
                    if exc.message.startswith("cannot decode")
                    else exc.message
                )
                line = _Undecodable(
                    raw.decode("utf-8", "replace"), f"{problem}; convert the file to UTF-8"
                )
        yield lineno, line


def _text_lines(
    fh: BinaryIO, enc: str, source: str, newline: str | None
) -> Iterator[tuple[int, Line]]:
    """Numbered lines of a stream in a text encoding (UTF-16), up to the first undecodable
    character, which is an error record for the rest of the file."""
    text = io.TextIOWrapper(fh, encoding=enc, newline=newline)
    lineno = 0
    try:
        for lineno, line in enumerate(_bounded_lines(text, MAX_DOCUMENT_BYTES, ("\n", "\r")), 1):
            yield lineno, line
    except UnicodeDecodeError:
        where = f"{source}:{lineno + 1}"
        yield (
            lineno + 1,
            DocumentError(
                where, where, f"invalid {enc.upper()} text from here on; convert the file to UTF-8"
            ),
        )
    finally:
        text.detach()


# -- JSONL ---------------------------------------------------------------------------------------


def _lone_surrogate(obj: Any) -> bool:
    """True when a parsed JSON value holds a lone surrogate (``"\\ud800"``): not a character,
    it can be neither scored nor written."""
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except (UnicodeEncodeError, ValueError, RecursionError):
        return True
    return False


def jsonl_items(
    numbered: Iterable[tuple[int, Line]], source: str, text_field: str, id_field: str
) -> Iterator[Item]:
    """The documents of numbered JSONL lines (a :class:`DocumentError` for each bad line, named
    ``source:line``): what every JSONL reader of the local and the Spark engine shares."""
    for lineno, line in numbered:
        if isinstance(line, DocumentError):
            yield line
            continue
        where = f"{source}:{lineno}"
        if isinstance(line, Overlong):
            yield DocumentError(where, where, too_big("line"))
            continue
        if isinstance(line, _Undecodable):
            yield DocumentError(where, where, line.problem)
            continue
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except RecursionError:
            yield DocumentError(where, where, "invalid JSON (nested too deeply)")
            continue
        except ValueError as exc:  # JSONDecodeError, or an integer of over 4,300 digits
            msg = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc).split(":")[0]
            yield DocumentError(where, where, f"invalid JSON ({msg})")
            continue
        if not isinstance(obj, dict):
            yield DocumentError(where, where, "expected a JSON object")
            continue
        if _SURROGATE_ESCAPE.search(line) and _lone_surrogate(obj):
            yield DocumentError(
                where,
                where,
                "invalid JSON string: a lone surrogate escape (such as \\ud800) is not a "
                "character; fix the escapes (a pair such as \\ud83d\\ude00 is fine)",
            )
            continue
        doc_id = str(obj.get(id_field, where))
        value = obj.get(text_field)
        if not isinstance(value, str):
            yield DocumentError(doc_id, where, f"no text in field {text_field!r}")
            continue
        problem = field_problem(value, text_field)
        if problem:
            yield DocumentError(doc_id, where, problem)
            continue
        meta = {
            k: v
            for k, v in obj.items()
            if k not in (text_field, id_field) and isinstance(v, (str, int, float, bool))
        }
        yield Document(doc_id, where, value, meta)


def _lines(fh: BinaryIO, source: str, newline: str | None) -> Iterator[tuple[int, Line]]:
    """A stream's numbered, decoded, bounded lines: UTF-16 (recognised from its first 64 KB)
    decoded as a stream, anything else a line at a time."""
    enc = sniff_encoding(_peek(fh))
    if enc.startswith("utf-16"):
        return _text_lines(fh, enc, source, newline)
    lines = _bounded_lines(fh, MAX_DOCUMENT_BYTES, b"\n")
    return _decode_lines(_split_lone_cr(lines) if newline == "" else lines)


def read_jsonl(fh: BinaryIO, source: str, text_field: str, id_field: str) -> Iterator[Item]:
    """Documents of a JSONL stream, one per line, read and decoded a line at a time so that a file
    of any size streams. A line that cannot be decoded or parsed, or is over the size cap, is one
    error record naming the line."""
    yield from jsonl_items(_lines(fh, source, None), source, text_field, id_field)


# -- CSV -----------------------------------------------------------------------------------------


class _LineTooLong(Exception):
    pass


class _Unreadable(Exception):
    def __init__(self, error: DocumentError) -> None:
        super().__init__(error.error)
        self.error = error


class _CsvFeed:
    """The lines a CSV reader reads, one record at a time, noting for each record its first
    line, its quotes (to find its end after an error) and any line that did not decode."""

    def __init__(self, numbered: Iterator[tuple[int, Line]]) -> None:
        self.numbered = numbered
        self.start()

    def start(self) -> None:
        self.first = 0
        self.quotes = 0
        self.problem: str | None = None

    def __iter__(self) -> _CsvFeed:
        return self

    def __next__(self) -> str:
        lineno, line = next(self.numbered)
        self.first = self.first or lineno
        if isinstance(line, DocumentError):
            raise _Unreadable(line)
        if isinstance(line, Overlong):
            self.quotes += line.quotes
            raise _LineTooLong
        if isinstance(line, _Undecodable):
            self.problem = self.problem or line.problem
            line = line.text
        self.quotes += line.count('"')
        return line

    def skip_record(self) -> None:
        """Read on to the end of a record a CSV reader gave up on: its quotes balance."""
        while self.quotes % 2:
            try:
                next(self)
            except (_LineTooLong, _Unreadable):
                continue
            except StopIteration:
                return


def read_csv(fh: BinaryIO, source: str, text_field: str, id_field: str) -> Iterator[Item]:
    """Rows of a CSV stream (header row; quoted fields may span lines), read row by row. Each row
    is decoded on its own (as JSONL lines are), so a row that cannot be decoded or parsed, or is
    over the size cap, is one error record naming its row (and line), and the rows after it are
    read. ``source`` gets the row."""
    import csv

    if csv.field_size_limit() < MAX_DOCUMENT_BYTES:
        csv.field_size_limit(MAX_DOCUMENT_BYTES)
    feed = _CsvFeed(_lines(fh, source, ""))
    reader = csv.reader(feed)
    try:
        header = next(reader, [])
    except _Unreadable as exc:
        yield exc.error
        return
    except (csv.Error, _LineTooLong) as exc:
        yield DocumentError(source, source, f"unreadable header row ({exc or 'too long'})")
        return
    if feed.problem:
        yield DocumentError(source, source, f"header row: {feed.problem}")
        return
    if text_field not in header:
        cols = ", ".join(header) or "none"
        yield DocumentError(
            source, source, f"no column {text_field!r} (columns: {cols}); use --text-field"
        )
        return
    col = header.index(text_field)
    id_col = header.index(id_field) if id_field in header else None
    row = 0
    while True:
        feed.start()
        try:
            rec = next(reader)
        except StopIteration:
            return
        except _Unreadable as exc:
            yield exc.error
            return
        except (csv.Error, _LineTooLong) as exc:
            row += 1
            where = f"{source}:row {row}"
            if isinstance(exc, _LineTooLong) or "field limit" in str(exc):
                msg = too_big(f"row (from line {feed.first})")
            else:
                msg = f"CSV error at line {feed.first}: {exc}"
            yield DocumentError(where, where, msg)
            feed.skip_record()
            reader = csv.reader(feed)  # a fresh reader: the old one stopped inside the record
            continue
        if not rec and feed.problem is None:
            continue  # a blank line
        row += 1
        where = f"{source}:row {row}"
        if feed.problem:
            yield DocumentError(where, where, f"line {feed.first}: {feed.problem}")
            continue
        value = rec[col] if col < len(rec) else ""
        doc_id = (rec[id_col] if id_col is not None and id_col < len(rec) else "") or where
        problem = field_problem(value, text_field)
        if problem:
            yield DocumentError(doc_id, where, problem)
            continue
        yield Document(doc_id, where, value)


# -- whole files ---------------------------------------------------------------------------------


def _docx_problem(data: bytes) -> str | None:
    """Why a .docx file must not be opened, or None: it unpacks to more than twice the size
    cap (a zip bomb: python-docx would hold it all in memory), judged from the sizes the zip
    declares and then from the bytes it actually inflates to, read in bounded pieces."""
    import zipfile

    limit = 2 * MAX_DOCUMENT_BYTES

    def refuse(size: str) -> str:
        return (
            f"the .docx file unpacks to {size}, over the {limit >> 20} MB limit (a zip bomb?); "
            "save it as .txt or split it"
        )

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = zf.infolist()
            declared = sum(i.file_size for i in infos)
            if declared > limit:
                return refuse(f"{declared / (1 << 20):.0f} MB")
            total = 0
            for info in infos:
                with zf.open(info) as member:
                    while chunk := member.read(1 << 20):
                        total += len(chunk)
                        if total > limit:
                            return refuse(f"more than {limit >> 20} MB")
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, zlib.error) as exc:
        return f"not a readable .docx file ({type(exc).__name__})"
    except (NotImplementedError, RuntimeError) as exc:  # unsupported compression, encrypted
        return f"not a readable .docx file ({exc})"
    return None


def read_docx(data: bytes, source: str) -> Item:
    """The paragraphs and table cells of a Word document, in order."""
    try:
        import docx
    except ImportError:
        return DocumentError(
            source, source, "reading .docx needs python-docx: pip install 'gov-topics[formats]'"
        )
    problem = _docx_problem(data)
    if problem:
        return DocumentError(source, source, problem)
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
    text = "\n".join(parts)
    if not parts or "\x00" in text:
        return DocumentError(source, source, "the .docx file has no text")
    return Document(source, source, text)


# The fields of the metadata table (信息公开 catalogue entry) above the text of a policy page on
# www.gov.cn and provincial and county government sites, as label cells or "label：value" lines.
_META_LABEL = (
    "(?:索引号|信息索引号|索取号|主题分类|主题词|所属主题|体裁分类|组配分类|服务对象分类|信息分类|分类"
    "|发文机关|发文单位|发文机构|发布机构|发布机关|发布单位|所属机构|成文日期|成文时间|发文日期"
    "|印发日期|发布日期|发布时间|公开日期|生效日期|实施日期|施行日期|失效日期|废止日期"
    "|标题|名称|信息名称|文件名称|文号|发文字号|文件编号|统一编号|登记号"
    "|有效性|效力状态|时效性|公开方式|公开范围|公开形式|公开时限|公开属性|关键词)"
)
_META_FIELD = re.compile(_META_LABEL + "[:：]")  # on a cell or line with its spaces removed
_META_BARE = re.compile(_META_LABEL)
_NO_SPACE = re.compile(r"\s+")
_CELL_BAR = re.compile(r"(?<!\\)\|")  # a cell boundary: trafilatura writes "|" in a cell as "\|"
_RULE_CELL = re.compile(r":?-{3,}:?")  # the line under a table's head row


def _is_metadata(cells: list[str]) -> bool:
    """Whether a table row (or a line, as one cell) is metadata: a cell that is a "label：" or
    "label：value" of the metadata table, or two cells that are bare labels ("索引号", "文号")."""
    compact = [_NO_SPACE.sub("", c) for c in cells]
    if any(_META_FIELD.match(c) for c in compact):
        return True
    return sum(bool(_META_BARE.fullmatch(c)) for c in compact) >= 2


def _html_text(text: str) -> str:
    """trafilatura's text with table rows (``| cell | cell |``) as lines of their cells joined by
    spaces (as a .docx table's are) and the page's metadata rows and lines left out: the
    catalogue entry of a government page (索引号, 主题分类, 发文机关, 成文日期, 发文字号 ...).
    A line that is metadata has no sentence end (。！？；)."""
    out = []
    for line in text.split("\n"):
        line = line.strip()
        if line.startswith("|"):
            row = line[1:-1] if line.endswith("|") and not line.endswith("\\|") else line[1:]
            cells = [c.strip().replace("\\|", "|") for c in _CELL_BAR.split(row)]
            cells = [c for c in cells if c and not _RULE_CELL.fullmatch(c)]
            if _is_metadata(cells):
                continue
            line = " ".join(dict.fromkeys(cells))
        elif _is_metadata([line]) and not any(c in line for c in "。！？；!?;"):
            continue
        if line:
            out.append(line)
    return "\n".join(out)


def read_html(data: bytes, source: str) -> Item:
    """The main text of a web page, without menus, footers and link lists (trafilatura), nor
    the metadata table of a government page; a table's rows are lines of text.

    Tables are kept (``include_tables=True``): leaving them out loses the text of tables in the
    body, and all of the text of a page laid out in tables (older government sites), which would
    be "no main text found". The metadata rows are dropped from the text instead."""
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
    text = _html_text(text) if text else ""
    if not text:
        return DocumentError(source, source, "no main text found in the page")
    problem = _text_problem(text)
    if problem:
        return DocumentError(source, source, problem)
    return Document(source, source, text)


_PDF_JUNK = re.compile(r"[\x00-\x08\x0e-\x1b\x1f\x7f\ud800-\udfff]")  # controls, lone surrogates
# a line that is a page number: "3", "- 3 -", "—3—", "第3页", "第 3 页 共 10 页", "3/10"
_PAGE_NUMBER = re.compile(
    r"[-—–―~\s]*(?:第\s*)?\d{1,4}(?:\s*页)?(?:\s*(?:/|共)\s*\d{1,4}\s*页?)?[-—–―~\s]*"
)
_TERMINAL = tuple("。！？；…!?;:：")  # after which a line ends its paragraph
_CLOSERS = "”’\"')）》」』"
_NUMBERED = re.compile(  # a line that starts a numbered paragraph or heading
    r"(?:[一二三四五六七八九十]+[、.]|[(（][一二三四五六七八九十\d]+[)）]"
    r"|第[一二三四五六七八九十百零\d]+[章节条款]|\d+[.、．](?!\d))"
)


def _width(line: str) -> int:
    """A line's printed width: a Chinese character is two Latin ones wide."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in line)


def _pdf_paragraphs(lines: list[str]) -> str:
    """A PDF's lines (all pages, in order) as paragraphs, one per line: page numbers are
    dropped, a line is normalised (:func:`pipeline.textio.normalize_line`: the spaces some PDFs
    put between Chinese characters go) and joined to the line before it when that one runs to
    the full width of the text (80% of the width of the widest lines) without ending a
    sentence, and it does not start a numbered paragraph (一、, （二）, 第三条). Lines join
    without a space, except between two Latin letters or digits. A paragraph broken by a page
    break is joined too."""
    kept = [x for x in map(normalize_line, lines) if x and not _PAGE_NUMBER.fullmatch(x)]
    if not kept:
        return ""
    widths = sorted(map(_width, kept))
    full = 0.8 * widths[int(0.9 * (len(widths) - 1))]
    out = [kept[0]]
    prev = kept[0]
    for line in kept[1:]:
        if (
            _width(prev) >= full
            and not prev.rstrip(_CLOSERS).endswith(_TERMINAL)
            and not _NUMBERED.match(line)
        ):
            words = prev[-1] + line[0]  # two Latin words or numbers keep a space between them
            out[-1] += (" " if words.isascii() and words.isalnum() else "") + line
        else:
            out.append(line)
        prev = line
    return "\n".join(out)


def read_pdf(data: bytes, source: str) -> Item:
    """The text of a PDF (pypdf), page by page, its lines joined into paragraphs
    (:func:`_pdf_paragraphs`). A PDF with no text (a scan), that needs a password, is damaged or
    is not a PDF, or has more than :data:`MAX_PDF_PAGES` pages or more text than
    :data:`MAX_DOCUMENT_BYTES`, is an error record. A PDF that is encrypted only against
    editing (an empty password opens it) is read."""
    try:
        import pypdf
    except ImportError:
        return DocumentError(source, source, "reading .pdf needs pypdf: pip install pypdf")

    def fail(message: str) -> DocumentError:
        return DocumentError(source, source, message)

    if b"%PDF-" not in data[:1024]:
        return fail("not a PDF file (no %PDF header); if it is another type, give it its suffix")
    # pypdf logs each oddity it repairs in a damaged file: noise in a run's log
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    encrypted = "encrypted PDF that needs a password: save a copy without one"
    damaged = "damaged PDF file ({}); open and save it again, or save its text as .txt"
    lines: list[str] = []
    size = 0
    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            return fail(encrypted)
        pages = len(reader.pages)
        if pages > MAX_PDF_PAGES:
            return fail(f"PDF of {pages} pages, over the {MAX_PDF_PAGES}-page limit; split it")
        for number, page in enumerate(reader.pages, 1):
            try:
                text = _PDF_JUNK.sub("", page.extract_text())
            except Exception as exc:
                return fail(damaged.format(f"page {number}: {type(exc).__name__}"))
            size += len(text.encode("utf-8"))
            if size > MAX_DOCUMENT_BYTES:
                return fail(too_big("PDF text"))
            lines.extend(text.splitlines())
    except pypdf.errors.FileNotDecryptedError:
        return fail(encrypted)
    except pypdf.errors.DependencyError as exc:  # AES without the cryptography package
        return fail(f"encrypted PDF that cannot be decrypted here ({exc})")
    except Exception as exc:  # pypdf raises its own, and key, type, value and zlib errors alike
        return fail(damaged.format(type(exc).__name__))
    text = _pdf_paragraphs(lines)
    if not text:
        return fail("no text layer: a scanned PDF? run OCR on it first (such as ocrmypdf)")
    return Document(source, source, text)


def _read_capped(path: Path) -> bytes | None:
    """A whole file's bytes, or None when it is over the size cap (a regular file is judged by
    its size first; anything else, a link to /dev/zero, is read no further than the cap)."""
    cap = MAX_DOCUMENT_BYTES
    with path.open("rb") as fh:
        st = os.fstat(fh.fileno())
        regular = stat.S_ISREG(st.st_mode)
        if regular and st.st_size > cap:
            return None
        # read by the size a regular file has (one read, as read_bytes does: no buffer of the
        # cap's size for every small file), in 1 MB pieces anything else, up to the cap
        size = st.st_size + 1 if regular else 1 << 20
        chunks: list[bytes] = []
        total = 0
        while total <= cap:
            chunk = fh.read(min(size, cap + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            size = 1 << 20
    return b"".join(chunks) if total <= cap else None


def _text_document(data: bytes, source: str) -> Item:
    try:
        text = decode_bytes(data, source)
    except DataError as exc:
        return DocumentError(source, source, str(exc))
    problem = _text_problem(text)
    return DocumentError(source, source, problem) if problem else Document(source, source, text)


def read_path(path: Path, text_field: str = "text", id_field: str = "id") -> Iterator[Item]:
    """The documents of one file. JSONL and CSV files stream: memory does not grow with them;
    any other file is one document, refused over :data:`MAX_DOCUMENT_BYTES`."""
    source = printable(str(path))
    suffix = path.suffix.lower()
    try:
        if is_streamed(path.name):
            with path.open("rb", buffering=_HEAD) as fh:
                yield from read_stream(fh, source, path.name, text_field, id_field)
            return
        data = _read_capped(path)
    except OSError as exc:
        yield DocumentError(source, source, f"cannot read: {exc.strerror or exc}")
        return
    except (EOFError, zlib.error) as exc:  # a truncated or corrupt .gz file
        yield DocumentError(source, source, f"cannot read: {exc}")
        return
    if data is None:
        yield DocumentError(source, source, too_big("file"))
    else:
        yield read_whole(data, source, suffix)


def is_streamed(name: str) -> bool:
    """Whether a file of this name is read as a stream of documents (JSONL, CSV, gzipped
    JSONL) rather than as one document."""
    name = name.lower()
    suffix = os.path.splitext(name)[1]
    return name.endswith(GZIP_SUFFIXES) or suffix in JSONL_SUFFIXES or suffix in CSV_SUFFIXES


def read_stream(
    fh: BinaryIO, source: str, name: str, text_field: str, id_field: str
) -> Iterator[Item]:
    """The documents of an open JSONL, CSV or gzipped JSONL file (``name`` says which), one at a
    time: what :func:`read_path` does with such a file, and what the Spark engine does with the
    bytes of its ``binaryFile`` source."""
    name = name.lower()
    if name.endswith(GZIP_SUFFIXES):
        import gzip

        with gzip.GzipFile(fileobj=fh, mode="rb") as gz:
            yield from read_jsonl(gz, source, text_field, id_field)  # type: ignore[arg-type]
        return
    read = read_jsonl if os.path.splitext(name)[1] in JSONL_SUFFIXES else read_csv
    yield from read(fh, source, text_field, id_field)


def read_whole(data: bytes, source: str, suffix: str) -> Item:
    """One document from a whole file's bytes, by its (lower-case) suffix: Word, HTML, PDF or
    text. What :func:`read_path` does with a file that is not JSONL or CSV, and what the Spark
    engine does with the bytes of its ``binaryFile`` source."""
    if suffix in DOCX_SUFFIXES:
        return read_docx(data, source)
    if suffix in HTML_SUFFIXES:
        return read_html(data, source)
    if suffix in PDF_SUFFIXES:
        return read_pdf(data, source)
    return _text_document(data, source)


def read_stdin(stream: BinaryIO, text_field: str, id_field: str) -> Iterator[Item]:
    """Standard input: JSONL (streamed) when its first non-blank line opens an object, else one
    text document (refused over :data:`MAX_DOCUMENT_BYTES`)."""
    src = "<stdin>"
    cap = MAX_DOCUMENT_BYTES
    enc = sniff_encoding(_peek(stream))
    if enc.startswith("utf-16"):  # rare on a pipe: read it whole
        data = stream.read(cap + 1)
        if len(data) > cap:
            yield DocumentError(src, src, too_big("standard input"))
            return
        try:
            text = decode_bytes(data, src)
        except DataError as exc:
            yield DocumentError(src, src, str(exc))
            return
        if text.lstrip().startswith("{"):
            yield from jsonl_items(enumerate(text.splitlines(), 1), src, text_field, id_field)
        else:
            problem = _text_problem(text)
            yield DocumentError(src, src, problem) if problem else Document(src, src, text)
        return
    lead: list[bytes] = []
    size = 0
    while size <= cap:  # the blank lines before the first line with text
        line = stream.readline(cap + 1)
        lead.append(line)
        size += len(line)
        if not line or line.strip():
            break
    if line.strip().lstrip(codecs.BOM_UTF8).startswith(b"{"):
        first: list[bytes | Overlong] = list(lead)
        if len(line) > cap and not line.endswith(b"\n"):  # a first line over the cap
            first[-1] = _skip_line(stream, line, b"\n")
        lines = itertools.chain(first, _bounded_lines(stream, cap, b"\n"))
        yield from jsonl_items(_decode_lines(lines), src, text_field, id_field)
        return
    data = b"".join(lead)
    data += stream.read(cap + 1 - len(data)) if len(data) <= cap else b""
    if len(data) > cap:
        yield DocumentError(src, src, too_big("standard input"))
        return
    yield _text_document(data, src)


def iter_documents(
    paths: Sequence[str], text_field: str = "text", id_field: str = "id", skip: str | None = None
) -> Iterator[Item]:
    """Documents from files, folders (recursive) and ``-`` (stdin: JSONL if it parses, else text).

    A file named on the command line is read whatever it is (a FIFO, ``/dev/stdin``); in a
    folder only regular files are read, anything else is an error record. ``skip`` is a file
    that a folder may hold and that is not read: the output being written, which a later run
    must not take for an input.

    Raises
    ------
    UsageError
        For a path that does not exist (nothing is predicted).
    """
    for raw in paths:
        if raw != "-" and not Path(raw).exists():
            raise UsageError(f"{printable(raw)}: no such file or folder", "check the path")
    try:
        st = os.stat(skip) if skip else None
    except OSError:
        st = None
    skip_key = (st.st_dev, st.st_ino) if st is not None else None
    for raw in paths:
        if raw == "-":
            yield from read_stdin(sys.stdin.buffer, text_field, id_field)
            continue
        path = Path(raw)
        if path.is_dir():
            for f in _walk(path, skip_key):
                if isinstance(f, DocumentError):
                    yield f
                else:
                    yield from read_path(f, text_field, id_field)
        else:
            yield from read_path(path, text_field, id_field)


def estimate_count(paths: Sequence[str]) -> int | None:
    """How many documents the inputs hold, roughly (for a progress bar's ETA); ``None`` for
    stdin. Counts lines of JSONL and rows of CSV files without parsing them, and a record for
    each file of a folder that is reported (as :func:`iter_documents` finds them); opens only
    regular files (reading a FIFO would consume it)."""
    total = 0
    for raw in paths:
        if raw == "-":
            return None
        p = Path(raw)
        for f in _walk(p) if p.is_dir() else [p]:
            if isinstance(f, DocumentError):
                total += 1
                continue
            suffix = f.suffix.lower()
            if (suffix in JSONL_SUFFIXES or suffix in CSV_SUFFIXES) and f.is_file():
                try:
                    with f.open("rb") as fh:
                        total += sum(1 for line in fh if line.strip()) - (suffix in CSV_SUFFIXES)
                except OSError:
                    total += 1
            else:
                total += 1
    return total
