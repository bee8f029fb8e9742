"""Paragraphs: the pure cleaning and splitting of one document's text into units.

Real scraped government pages are messy: several articles on one page, paragraphs repeated,
sentences broken across lines and page breaks, editor credits, link lists and captions.
:func:`ingest_text` turns one decoded document into :class:`Unit` records (one paragraph, or one
chunk of a long paragraph, each) and records every line it drops, and why, so the cleaning can be
audited. :func:`split_paragraphs` is the same cleaning for prediction.

Everything here is a pure function of the text: no files, no models. Training (``ingest``) and
scoring (``predict``, a Spark executor) both import it; it imports only the standard library and
:mod:`pipeline.textio`.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import asdict, dataclass, field

from pipeline.textio import normalize_line, normalize_text

MAX_CHARS = 500  # paragraphs longer than this are split at sentence ends
# Scoring only: a line longer than this is cut at sentence ends before cleaning (so that a
# document with no line breaks is not cleaned, or dropped, as one line), and no paragraph scored
# is longer (a run of text with no sentence end is cut at a comma).
LONG_LINE = 2 * MAX_CHARS
MIN_CHARS = 15  # shorter leftovers carry no theme ("一年来,主要推进了以下工作:")
NEAR_DUP_SHINGLE = 5
NEAR_DUP_THRESHOLD = 0.8  # containment of a paragraph's shingles in an earlier one

_TERMINAL = "。!?;…"  # after NFKC, full-width !?; are ASCII
_CLOSERS = '”’")》」』'
_SENTENCE_END = re.compile(r"(?<=[。!?;…])(?![”’\")》」』])|(?<=[。!?;…][”’\")》」』])")

_MD_HEADING = re.compile(r"^#{1,6}\s*(.*)$")
_NUMBERED_HEADING = re.compile(
    r"^(?:[一二三四五六七八九十百]+、|\([一二三四五六七八九十]+\)|第[一二三四五六七八九十]+[章节部分])"
)
_CREDIT = re.compile(
    r"^(?:END|完|责任编辑|责编|编辑|校对|审核|审校|终审|监制|制作|统筹|出品|来源|稿件来源|"
    r"摄影|摄像|图片|通讯员|撰稿|作者|记者|融媒体中心|新媒体中心|实习生|美编|视频)"
    r"\s*(?:[::/|]|\s|$)"
)
_NAMES_ONLY = re.compile(
    r"^(?:记者|通讯员|摄影|编辑)\s*[\u4e00-\u9fff]{2,4}(?:[ 、,][\u4e00-\u9fff]{2,4})*$"
)
_TRAILING_CREDIT = re.compile(
    r"\s*(?:\(|（)?(?:记者|通讯员|作者)\s*[\u4e00-\u9fff ]{2,12}(?:/文|/摄|/图)?\)?$"
)
# a whole line "<publisher>发布(第N期)", perhaps followed by (names): not a body line that cites it
_PUBLISHER_LINE = re.compile(r"^[^。!?;]{0,40}发布\s*\(第\s*\d+\s*期\)(?:\s*\([^()]{0,20}\))*\s*$")
_DATELINE = re.compile(r"^本报(?:讯)?\s*\((?:记者|通讯员)[^)]{0,30}\)")
_LINK_LIST = re.compile(
    r"^(?:热点回顾|相关阅读|相关新闻|推荐阅读|延伸阅读|往期回顾|往期推荐|最新评论|更多阅读)\s*$"
)
_SHARE = re.compile(
    r"点亮在看|点个在看|点击关注|长按(?:二维码|识别)|分享到|扫码关注|转发给|欢迎转发|关注我们"
)
_META = re.compile(r"\d{4}-\d{1,2}-\d{1,2}(?:\s+\d{1,2}:\d{2})?\s*$")
_SENT_PUNCT = re.compile(r"[。!?;,:、]")
_SOFT_BREAKS = ",、: "  # where a run with no sentence end is cut (after NFKC)


@dataclass(frozen=True)
class Unit:
    """One paragraph (or chunk of a long paragraph) ready for labelling and training."""

    id: str
    doc: str
    article: int
    paragraph: int
    chunk: int
    text: str
    sha1: str
    title: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)


@dataclass(frozen=True)
class Dropped:
    """A line or paragraph the cleaning removed, with the reason."""

    doc: str
    line: int
    reason: str
    text: str


@dataclass
class IngestResult:
    """Units kept and lines dropped for one or more documents."""

    units: list[Unit] = field(default_factory=list)
    dropped: list[Dropped] = field(default_factory=list)
    actions: Counter[str] = field(default_factory=Counter)

    def summary(self) -> dict[str, object]:
        reasons = Counter(d.reason for d in self.dropped)
        return {
            "documents": len({u.doc for u in self.units} | {d.doc for d in self.dropped}),
            "articles": len({(u.doc, u.article) for u in self.units}),
            "units": len(self.units),
            "dropped": dict(sorted(reasons.items())),
            "actions": dict(sorted(self.actions.items())),
        }


def sha1_text(text: str) -> str:
    """The sha1 of a unit's text, the key its gold label is stored under."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


@dataclass
class _Block:
    line: int
    text: str
    kind: str  # "para" | "heading"


def _classify(text: str) -> str | None:
    """Return a drop reason for a boilerplate line, or None to keep it."""
    if _CREDIT.match(text) or _PUBLISHER_LINE.match(text) or _NAMES_ONLY.match(text):
        return "credit"
    if _SHARE.search(text) and len(text) < 40:
        return "share_prompt"
    if _META.search(text) and len(text) < 40:
        return "source_date_line"
    return None


def _is_caption(text: str) -> bool:
    """A short line with no sentence punctuation: a photo caption, kicker or sub-headline."""
    return len(text) <= 40 and not _SENT_PUNCT.search(text)


def _is_numbered_heading(text: str) -> bool:
    return bool(_NUMBERED_HEADING.match(text)) and "。" not in text and len(text) <= 60


def _ends_open(text: str) -> bool:
    """True when a paragraph stops mid-sentence (no terminal punctuation at its end)."""
    tail = text.rstrip(_CLOSERS)
    return bool(tail) and tail[-1] not in _TERMINAL and tail[-1] not in ":"


def _blocks(doc: str, text: str, result: IngestResult) -> list[_Block]:
    """Split a document into blocks, dropping boilerplate and rejoining broken sentences."""
    blocks: list[_Block] = []
    in_link_list = False
    first_content = True
    for lineno, raw in enumerate(text.split("\n"), 1):
        spaced = normalize_line(raw, join_cjk=False)
        if not spaced:
            continue
        line = normalize_line(spaced)
        md = _MD_HEADING.match(line)
        if md:
            in_link_list = False
            blocks.append(_Block(lineno, md.group(1).strip(), "heading"))
            first_content = False
            continue
        if in_link_list:
            result.dropped.append(Dropped(doc, lineno, "link_list", line))
            continue
        if _LINK_LIST.match(line):
            in_link_list = True
            result.dropped.append(Dropped(doc, lineno, "link_list", line))
            continue
        reason = _classify(spaced)
        if reason:
            result.dropped.append(Dropped(doc, lineno, reason, line))
            continue
        if _is_numbered_heading(line) or (first_content and _is_title(line)):
            blocks.append(_Block(lineno, line, "heading"))
            first_content = False
            continue
        first_content = False
        prev = blocks[-1] if blocks else None
        if (
            prev is not None
            and prev.kind == "para"
            and _ends_open(prev.text)
            and not _is_caption(prev.text)
            and not _is_caption(line)
            and line[:20] not in prev.text  # a repeat of a truncated paragraph is no continuation
        ):
            prev.text += line
            result.actions["joined_broken_line"] += 1
            continue
        blocks.append(_Block(lineno, line, "para"))
    return blocks


def _is_title(line: str) -> bool:
    """The first line of a document is its title when it has no sentence end and is short."""
    return len(line) <= 60 and "。" not in line


def _strip_credits(text: str, result: IngestResult) -> str:
    new = _DATELINE.sub("", text).lstrip()
    if new != text:
        result.actions["dateline_stripped"] += 1
    stripped = (
        _TRAILING_CREDIT.sub("", new) if new.rstrip().endswith(("/文", "/摄", "/图")) else new
    )
    if stripped != new:
        result.actions["trailing_credit_stripped"] += 1
    return stripped.strip()


def _shingles(text: str, k: int = NEAR_DUP_SHINGLE) -> set[str]:
    return {text[i : i + k] for i in range(max(1, len(text) - k + 1))}


def split_sentences(text: str) -> list[str]:
    """Split text after sentence-final punctuation, keeping closing quotes with their sentence."""
    parts = [p for p in _SENTENCE_END.split(text) if p]
    return parts or [text]


def split_long(text: str, max_chars: int = MAX_CHARS) -> list[str]:
    """Split a paragraph longer than ``max_chars`` at sentence ends into balanced chunks.

    A single sentence longer than ``max_chars`` stays whole: cutting mid-sentence would break it.
    """
    if len(text) <= max_chars:
        return [text]
    sentences = split_sentences(text)
    n_chunks = -(-len(text) // max_chars)
    target = len(text) / n_chunks
    chunks: list[str] = []
    current = ""
    for sent in sentences:
        if current and len(current) + len(sent) > max_chars:
            chunks.append(current)
            current = ""
        current += sent
        if len(current) >= target and len(chunks) < n_chunks - 1:
            chunks.append(current)
            current = ""
    if current:
        chunks.append(current)
    return chunks


def ingest_text(
    doc: str, text: str, result: IngestResult | None = None, *, near_duplicates: bool = True
) -> IngestResult:
    """Clean one decoded document into units.

    Parameters
    ----------
    doc : str
        The document id (the file name without extension for files).
    text : str
        The document's decoded text.
    result : IngestResult, optional
        Accumulate into this result (used to process a corpus).
    near_duplicates : bool
        Drop paragraphs whose 5-character shingles are mostly in an earlier paragraph (exact
        repeats are always dropped). Prediction turns this off: a near-repeat cannot change a
        document's themes, which come from its best-scoring paragraph, and the check costs a
        sixth of prediction time.

    Examples
    --------
    >>> r = ingest_text("d", "标题\\n各单位要结合实际,充分发\\n挥协调联动机制的作用。\\n编辑:王某")
    >>> [u.text for u in r.units]
    ['各单位要结合实际,充分发挥协调联动机制的作用。']
    >>> sorted(d.reason for d in r.dropped)
    ['credit', 'heading']
    """
    result = result if result is not None else IngestResult()
    blocks = _blocks(
        doc, text.replace("\r\n", "\n").replace("\r", "\n").replace("\f", "\n"), result
    )
    article = 1
    paragraph = 0
    title = ""
    seen_exact: set[str] = set()
    seen_shingles: list[set[str]] = []
    started = False
    last_was_heading = False
    for block in blocks:
        if block.kind == "heading":
            if started and not last_was_heading:
                article += 1
                paragraph = 0
            title = block.text if not last_was_heading or not title else f"{title} {block.text}"
            last_was_heading = True
            result.dropped.append(Dropped(doc, block.line, "heading", block.text))
            continue
        text_ = _strip_credits(block.text, result)
        if not text_:
            result.dropped.append(Dropped(doc, block.line, "credit", block.text))
            continue
        if _is_caption(text_):
            result.dropped.append(Dropped(doc, block.line, "caption", text_))
            continue
        if len(text_) < MIN_CHARS:
            result.dropped.append(Dropped(doc, block.line, "too_short", text_))
            continue
        if text_ in seen_exact:
            result.dropped.append(Dropped(doc, block.line, "duplicate", text_))
            continue
        if near_duplicates:
            shingles = _shingles(text_)
            if any(len(shingles & s) / len(shingles) >= NEAR_DUP_THRESHOLD for s in seen_shingles):
                result.dropped.append(Dropped(doc, block.line, "near_duplicate", text_))
                continue
            seen_shingles.append(shingles)
        seen_exact.add(text_)
        started = True
        last_was_heading = False
        paragraph += 1
        chunks = split_long(text_)
        if len(chunks) > 1:
            result.actions["split_long_paragraph"] += 1
        for c, chunk in enumerate(chunks, 1):
            uid = f"{doc}:{article}:{paragraph}" + (f".{c}" if len(chunks) > 1 else "")
            result.units.append(
                Unit(
                    uid,
                    doc,
                    article,
                    paragraph,
                    c if len(chunks) > 1 else 0,
                    chunk,
                    sha1_text(chunk),
                    title,
                )
            )
    return result


def split_paragraphs(text: str) -> list[str]:
    """The paragraphs of a document to score, after the same cleaning ingest applies.

    A text that cleaning would drop entirely (a bare headline, a caption) is scored as it is.
    Exact repeats are dropped; near-repeats are kept (they cannot change the document's themes).
    A line longer than :data:`LONG_LINE` (a document with no line breaks) is first cut into
    paragraphs at sentence ends, as :func:`split_long` cuts a long paragraph, so that it is
    cleaned and scored paragraph by paragraph; no paragraph returned is longer than
    :data:`LONG_LINE`.

    Examples
    --------
    >>> split_paragraphs("区应急管理局开展安全生产大检查。\\n\\n区应急管理局开展安全生产大检查。")
    ['区应急管理局开展安全生产大检查。']
    >>> split_paragraphs("察看氢能设备")
    ['察看氢能设备']
    """
    units = ingest_text("doc", _cut_long_lines(text), near_duplicates=False).units
    if units:
        paras = [u.text for u in units]
    else:
        norm = normalize_text(text).replace("\n", " ")
        paras = [norm] if norm else []
    if any(len(p) > LONG_LINE for p in paras):
        paras = [piece for p in paras for piece in _cut_run(p)]
    return paras


def _cut_long_lines(text: str) -> str:
    """``text`` with every line longer than :data:`LONG_LINE` cut at sentence ends into lines of
    at most :data:`MAX_CHARS` (unchanged, and not copied, when it has no such line)."""
    if len(text) <= LONG_LINE or max(map(len, text.split("\n"))) <= LONG_LINE:
        return text  # the usual case, found in about 1% of the time cleaning takes
    lines = text.replace("\r\n", "\n").replace("\r", "\n").replace("\f", "\n").split("\n")
    out: list[str] = []
    for line in lines:
        out.extend(
            split_long(normalize_line(line, join_cjk=False)) if len(line) > LONG_LINE else [line]
        )
    return "\n".join(out)


def _cut_run(text: str) -> list[str]:
    """A paragraph longer than :data:`LONG_LINE` (a sentence with no end) cut into pieces of at
    most :data:`MAX_CHARS`, after a comma or a space where there is one in the second half."""
    if len(text) <= LONG_LINE:
        return [text]
    out = []
    pos = 0
    while len(text) - pos > LONG_LINE:
        window = text[pos : pos + MAX_CHARS]
        cut = max(window.rfind(c) for c in _SOFT_BREAKS) + 1
        if cut <= MAX_CHARS // 2:
            cut = MAX_CHARS
        out.append(text[pos : pos + cut].strip())
        pos += cut
    out.append(text[pos:].strip())
    return [p for p in out if p]
