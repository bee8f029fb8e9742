"""Decoding and normalising raw text: the one place that knows about encodings."""

from __future__ import annotations

import codecs
import re
import unicodedata

from pipeline.errors import DataError

_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200b\u202f\u205f\ufeff]+")
_CJK = r"\u3400-\u9fff\uf900-\ufaff"
# a space between two CJK characters (or CJK and CJK punctuation) is a typesetting artefact
_CJK_GAP = re.compile(rf"(?<=[{_CJK},.;:!?。、”“)》]) (?=[{_CJK},;:!?。、”“(《])")


def decode_bytes(data: bytes, source: str = "<bytes>") -> str:
    """Decode a document: UTF-8 (with or without BOM), UTF-16 (with BOM), else GB18030.

    GB18030 is a superset of GBK and GB2312, so it covers legacy mainland files.

    Raises
    ------
    DataError
        When no supported encoding decodes the bytes.
    """
    if data.startswith(codecs.BOM_UTF16_LE) or data.startswith(codecs.BOM_UTF16_BE):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise DataError(f"{source}: invalid UTF-16 text") from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    if _looks_like_bomless_utf16(data):
        try:
            return data.decode("utf-16-le")
        except UnicodeDecodeError:
            pass
    try:
        return data.decode("gb18030")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{source}: cannot decode as UTF-8, UTF-16 or GBK/GB18030 (bad byte at offset "
            f"{exc.start})",
            "convert the file to UTF-8",
        ) from exc


def sniff_encoding(head: bytes) -> str:
    """The encoding to stream a file with, judged from its first bytes (as :func:`decode_bytes`
    judges a whole file): ``utf-16`` (BOM), ``utf-8-sig`` (BOM), ``utf-8``, ``utf-16-le`` (no BOM)
    or ``gb18030``. A character cut at the end of ``head`` does not count against UTF-8."""
    if head.startswith(codecs.BOM_UTF16_LE) or head.startswith(codecs.BOM_UTF16_BE):
        return "utf-16"
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
        return "utf-8"
    except UnicodeDecodeError:
        pass
    return "utf-16-le" if _looks_like_bomless_utf16(head) else "gb18030"


def _looks_like_bomless_utf16(data: bytes) -> bool:
    sample = data[:2000]
    return len(sample) >= 4 and sample[1::2].count(0) > len(sample) // 4


def normalize_line(line: str, *, join_cjk: bool = True) -> str:
    """Normalise one line: NFKC (full-width ASCII and the ideographic space become half-width),
    collapse runs of spaces, strip the ends and (with ``join_cjk``) drop spaces between CJK
    characters."""
    line = unicodedata.normalize("NFKC", line)
    # After NFKC every character of _SPACES is a space except tab, U+200B and U+FEFF: a line
    # with none of those four (most Chinese text) needs no regular expression.
    if " " not in line and "\t" not in line and "\u200b" not in line and "\ufeff" not in line:
        return line.strip()
    line = _SPACES.sub(" ", line).strip()
    return _CJK_GAP.sub("", line) if join_cjk else line


def normalize_text(text: str) -> str:
    """Normalise a whole text for the model: every line normalised, lines joined by newlines."""
    if "\n" not in text and "\r" not in text:  # one line, such as a paragraph
        return normalize_line(text)
    lines = (normalize_line(x) for x in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"))
    return "\n".join(x for x in lines if x)
