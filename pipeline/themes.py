"""The theme taxonomy: read and validate ``themes.yaml``.

The pipeline reads its themes from this file only, so a user adds, renames or drops a theme by
editing it (and relabelling the gold data).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import ConfigError

_THEME_KEYS = {"id", "zh", "en", "covers", "excludes", "lexicon"}
_REQUIRED = {"id", "zh", "en", "lexicon"}
_TOP_KEYS = {"version", "themes"}


@dataclass(frozen=True)
class Theme:
    """One theme: its id, names, scope and lexicon."""

    id: str
    zh: str
    en: str
    covers: str = ""
    excludes: str = ""
    lexicon: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Taxonomy:
    """The ordered list of themes, as read from ``themes.yaml``."""

    themes: tuple[Theme, ...]
    sha256: str = ""

    @property
    def ids(self) -> list[str]:
        return [t.id for t in self.themes]

    def lexicons(self) -> dict[str, tuple[str, ...]]:
        return {t.id: t.lexicon for t in self.themes}

    def get(self, theme_id: str) -> Theme:
        for t in self.themes:
            if t.id == theme_id:
                return t
        raise KeyError(theme_id)


def parse_taxonomy(data: Any, source: str = "themes.yaml") -> Taxonomy:
    """Validate parsed YAML and build a :class:`Taxonomy`.

    Raises
    ------
    ConfigError
        On unknown keys, missing fields, duplicate ids, empty or duplicated lexicon terms.
    """
    if not isinstance(data, dict) or "themes" not in data:
        raise ConfigError(
            f"{source}: expected a mapping with a 'themes' list", "see seeds/themes.yaml"
        )
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise ConfigError(
            f"{source}: unknown top-level key(s) {sorted(unknown)}", f"allowed: {sorted(_TOP_KEYS)}"
        )
    raw = data["themes"]
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{source}: 'themes' must be a non-empty list")
    themes: list[Theme] = []
    seen_ids: set[str] = set()
    term_owner: dict[str, str] = {}
    for i, item in enumerate(raw, 1):
        if not isinstance(item, dict):
            raise ConfigError(f"{source}: theme #{i} is not a mapping")
        tid = item.get("id", f"#{i}")
        bad = set(item) - _THEME_KEYS
        if bad:
            raise ConfigError(
                f"{source}: theme {tid!r} has unknown key(s) {sorted(bad)}",
                f"allowed: {sorted(_THEME_KEYS)}",
            )
        missing = _REQUIRED - set(item)
        if missing:
            raise ConfigError(f"{source}: theme {tid!r} is missing {sorted(missing)}")
        if not isinstance(tid, str) or not tid.isidentifier():
            raise ConfigError(
                f"{source}: theme id {tid!r} must be a short identifier like 'safety'"
            )
        if tid in seen_ids:
            raise ConfigError(f"{source}: duplicate theme id {tid!r}", "each id must appear once")
        seen_ids.add(tid)
        lex = item["lexicon"]
        if not isinstance(lex, list) or not lex:
            raise ConfigError(
                f"{source}: theme {tid!r} has an empty lexicon", "list the terms that signal it"
            )
        terms: list[str] = []
        for term in lex:
            if not isinstance(term, str) or not term.strip():
                raise ConfigError(f"{source}: theme {tid!r} has an empty or non-text lexicon term")
            term = term.strip()
            if term in term_owner:
                raise ConfigError(
                    f"{source}: lexicon term {term!r} is in both {term_owner[term]!r} and {tid!r}",
                    "a term may signal one theme only",
                )
            term_owner[term] = tid
            terms.append(term)
        themes.append(
            Theme(
                id=tid,
                zh=str(item["zh"]),
                en=str(item["en"]),
                covers=str(item.get("covers") or ""),
                excludes=str(item.get("excludes") or ""),
                lexicon=tuple(terms),
            )
        )
    return Taxonomy(themes=tuple(themes))


def load_taxonomy(path: Path) -> Taxonomy:
    """Read and validate a themes file.

    Examples
    --------
    >>> tax = load_taxonomy(Path("seeds/themes.yaml"))  # doctest: +SKIP
    >>> tax.ids[:2]  # doctest: +SKIP
    ['safety', 'industry']
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read themes file ({exc.strerror})") from exc
    try:
        data = yaml.safe_load(raw.decode("utf-8-sig"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        loc = f"{path}:{line + 1}" if line is not None else str(path)
        raise ConfigError(f"{loc}: not valid UTF-8 YAML", "fix the syntax") from exc
    tax = parse_taxonomy(data, str(path))
    return Taxonomy(themes=tax.themes, sha256=hashlib.sha256(raw).hexdigest())
