"""Decoding and normalising raw text: the one place that knows about encodings."""

from __future__ import annotations

import codecs
import functools
import re
import unicodedata

from pipeline.errors import DataError

_SPACES = re.compile(r"[ \t\u00a0\u2000-\u200b\u202f\u205f\ufeff]+")
_CJK = r"\u3400-\u9fff\uf900-\ufaff"
# a space between two CJK characters (or CJK and CJK punctuation) is a typesetting artefact
_CJK_GAP = re.compile(rf"(?<=[{_CJK},.;:!?。、”“)》]) (?=[{_CJK},;:!?。、”“(《])")


# Legacy (not UTF-8) Chinese encodings, in order of preference when both read a text equally
# well: GB18030 (a superset of GBK and GB2312, mainland files), then Big5 (Taiwan, Hong Kong).
LEGACY_ENCODINGS = ("gb18030", "big5")
# Below this share of common Chinese characters among a decoded text's letters, the decoding is
# mojibake (real text in either encoding scores above 0.99; Big5 read as GB18030 about 0.2-0.3).
MIN_COMMON_SHARE = 0.85
_SHARE_SAMPLE = 20_000  # characters of a text whose share is measured ...
_PREFER_SAMPLE = 1_000  # ... or of a line in an encoding already found for its file


def decode_bytes(data: bytes, source: str = "<bytes>") -> str:
    """Decode a document: UTF-8 (with or without BOM), UTF-16 (with BOM), else GB18030 (GBK,
    GB2312) or Big5, told apart by charset-normalizer (see :func:`decode_legacy`).

    Raises
    ------
    DataError
        When no supported encoding decodes the bytes, or the only decoding is mojibake.
    """
    if data.startswith(codecs.BOM_UTF16_LE) or data.startswith(codecs.BOM_UTF16_BE):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise DataError(f"{source}: invalid UTF-16 text", "convert the file to UTF-8") from exc
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
        return decode_legacy(data)[0]
    except DataError as exc:
        raise DataError(f"{source}: {exc.message}", exc.remedy) from None


def decode_legacy(data: bytes, prefer: str | None = None) -> tuple[str, str]:
    """Decode Chinese text that is not UTF-8: GB18030 or Big5, and which of them.

    ``prefer`` (the encoding of the file's earlier lines) is tried first, so that a file in one
    legacy encoding is detected once, not line by line. Otherwise charset-normalizer chooses
    among :data:`LEGACY_ENCODINGS` (GB18030 first when both read equally well); when it finds
    neither (it can on a short text full of quotes), each is tried in turn. A decoding is kept
    only when it reads as Chinese (:func:`common_share` at least :data:`MIN_COMMON_SHARE`): text
    that is neither is refused, never scored as mojibake. A text of a few characters valid in
    both can be either; it is read as GB18030.

    Raises
    ------
    DataError
        Naming no source: the caller adds the file (and line).
    """
    if prefer is not None:
        try:
            text = data.decode(prefer)
        except UnicodeDecodeError:
            pass
        else:
            if common_share(text, _PREFER_SAMPLE) >= MIN_COMMON_SHARE:
                return text, prefer
    from charset_normalizer import from_bytes

    order = {enc: i for i, enc in enumerate(LEGACY_ENCODINGS)}
    matches = sorted(
        from_bytes(data, cp_isolation=list(LEGACY_ENCODINGS)),
        key=lambda m: (round(m.chaos, 2), order.get(m.encoding, len(order))),
    )
    candidates = [m.encoding for m in matches] + [e for e in LEGACY_ENCODINGS]
    shares: list[float] = []
    bad = 0
    for enc in dict.fromkeys(candidates):
        try:
            text = data.decode(enc)
        except UnicodeDecodeError as exc:
            bad = max(bad, exc.start)
            continue
        shares.append(common_share(text))
        if shares[-1] >= MIN_COMMON_SHARE:
            return text, enc
    if shares:
        raise DataError(
            f"not UTF-8, and read as GB18030 or Big5 it is mojibake (at most {max(shares):.0%} "
            "common Chinese characters)",
            "convert the file to UTF-8",
        )
    raise DataError(
        f"cannot decode as UTF-8, UTF-16, GBK/GB18030 or Big5 (bad byte at offset {bad})",
        "convert the file to UTF-8",
    )


def common_share(text: str, sample: int = _SHARE_SAMPLE) -> float:
    """The share of common Chinese characters (GB2312's 6,763 and Big5's 5,401 most frequent)
    among the letters of ``text`` that are not ASCII (letters, private-use and unassigned code
    points, which mojibake is made of); 1.0 when it has none. Measured on the first ``sample``
    characters."""
    common = _common_chars()
    letters = hits = 0
    for ch in text[:sample]:
        if ch < "\x80":
            continue
        if ch in common:
            hits += 1
        elif unicodedata.category(ch)[0] not in "LC":
            continue
        letters += 1
    return hits / letters if letters else 1.0


@functools.cache
def _common_chars() -> frozenset[str]:
    chars: set[str] = set()
    for lead in range(0xB0, 0xF8):  # GB2312 levels 1 and 2
        chars.update(bytes([lead, trail]).decode("gb2312", "ignore") for trail in range(0xA1, 0xFF))
    for lead in range(0xA4, 0xC7):  # Big5 level 1, the frequent characters (A440-C67E)
        trails = [*range(0x40, 0x7F), *range(0xA1, 0xFF)] if lead < 0xC6 else range(0x40, 0x7F)
        chars.update(bytes([lead, trail]).decode("big5", "ignore") for trail in trails)
    chars.discard("")
    return frozenset(chars)


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
