"""Which feature terms may be shown as evidence: words a reader accepts as reasons.

A prediction's evidence lists the terms that pushed a paragraph towards a theme. A linear model's
strongest terms include words no analyst would accept as a reason: people's names from the
training documents (张强), places (亦庄, 通州), dates, figures and article numbers (2021年, 万元,
第十五条), fragments the segmenter made up at word boundaries (事中心, 电竞赛), word pairs glued
into pseudo-words (部门责令 from 部门 + 责令) and words every theme uses (发展, 国家, 管理).

At training time each term is checked twice:

- against the dictionaries (:func:`displayable`): each of its words must be a domain term of the
  user dictionary, or a word of jieba's dictionary whose part of speech is not a person or place
  name, numeral, quantity, time word or non-word, and not a Chinese numeral or article number
  (the domain terms are the themes' lexicons and the user dictionary's words less those it tags
  as names or abbreviations, such as 通州 and 亦庄); a word pair is shown only when the pair is
  itself a dictionary word;
- against the labelled data, per theme (:func:`theme_specific`): the term must occur at least
  twice as often (smoothed) in that theme's units as in the others'.

The model still uses every term; only what it shows is filtered.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

# jieba's part-of-speech tags that make a word no reason to show
HIDDEN_TAGS = frozenset({"nr", "nrt", "nrfg", "ns", "nsf", "m", "mq", "q", "t", "x", "eng"})
# user-dictionary words with these tags are names or abbreviations of places, not domain terms
NAME_TAGS = frozenset({"nr", "nrt", "nrfg", "ns", "nsf", "j"})
# Chinese numerals with an optional unit (五万元, 十万元), 万/亿 units (万元, 亿公斤), article numbers
_NUMERAL = re.compile(
    r"^(?:第.+[条款项章节]|[零一二三四五六七八九十百千万亿两几多余]+[\u4e00-\u9fff]{0,2}"
    r"|[万亿][\u4e00-\u9fff]{1,2}|百分点|之日起.*)$"
)
LIFT = 2.0  # a theme's term must be this many times as frequent in its units as in the others


@functools.lru_cache(maxsize=1)
def jieba_tags() -> dict[str, str]:
    """jieba's main dictionary: word -> part-of-speech tag (read once, about 0.3 s)."""
    import jieba

    path = os.path.join(os.path.dirname(jieba.__file__), "dict.txt")
    tags: dict[str, str] = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) >= 3:
                tags[parts[0]] = parts[2]
    return tags


def displayable(term: str, domain_words: frozenset[str] | set[str], tags: dict[str, str]) -> bool:
    """True when every word of ``term`` (words of an n-gram are space-separated) is a reason a
    reader accepts.

    Examples
    --------
    >>> tags = {"隐患": "n", "排查": "vn", "隐患排查": "vn", "亦庄": "nr", "北京": "ns"}
    >>> displayable("隐患 排查", {"安全生产"}, tags), displayable("安全生产", {"安全生产"}, tags)
    (True, True)
    >>> displayable("亦庄", set(), tags), displayable("事中心", set(), tags)
    (False, False)
    >>> displayable("部门 责令", {"部门", "责令"}, tags), displayable("五万元", set(), tags)
    (False, False)
    """
    words = term.split(" ")
    if len(words) == 1 and len(term) < 2:
        return False
    if len(words) > 1:  # shown glued together, a pair must read as one word
        joined = "".join(words)
        return joined in domain_words or (
            joined in tags and tags[joined] not in HIDDEN_TAGS and not _NUMERAL.match(joined)
        )
    for w in words:
        if _NUMERAL.match(w):
            return False
        if w in domain_words:
            continue
        tag = tags.get(w)
        if tag is None or tag in HIDDEN_TAGS or any(c.isdigit() for c in w):
            return False
    return True


def evidence_mask(names: Sequence[str] | np.ndarray, domain_words: Iterable[str]) -> np.ndarray:
    """One boolean per feature column: may its term be shown ("" columns never are)."""
    domain = frozenset(domain_words)
    tags = jieba_tags()
    return np.array([bool(n) and displayable(str(n), domain, tags) for n in names], dtype=bool)


def theme_specific(X: Any, Y: np.ndarray, lift: float = LIFT) -> np.ndarray:
    """Per theme and feature column, whether the term occurs at least ``lift`` times as often
    (add-one smoothed document frequency) in the theme's units as in the other units: a
    ``(themes, features)`` boolean array."""
    import scipy.sparse as sp

    present = sp.csr_matrix(X, copy=True)
    present.data = np.ones_like(present.data)
    present = present.tocsc()
    Y = np.asarray(Y)
    out = np.zeros((Y.shape[1], present.shape[1]), dtype=bool)
    total = np.asarray(present.sum(axis=0)).ravel()
    for j in range(Y.shape[1]):
        pos = Y[:, j] == 1
        n_pos, n_neg = int(pos.sum()), int((~pos).sum())
        df_pos = np.asarray(present[np.flatnonzero(pos)].sum(axis=0)).ravel()
        df_neg = total - df_pos
        rate_pos = (df_pos + 1) / (n_pos + 2)
        rate_neg = (df_neg + 1) / (n_neg + 2)
        out[j] = rate_pos >= lift * rate_neg
    return out


def domain_terms(
    lexicons: Mapping[str, Sequence[str]], user_words: Iterable[tuple[str, Any, Any]]
) -> set[str]:
    """The words always shown: every lexicon term, and the user dictionary's words except those
    it tags as person or place names or abbreviations."""
    out = {t for terms in lexicons.values() for t in terms}
    out.update(w for w, _freq, tag in user_words if tag not in NAME_TAGS)
    return out
