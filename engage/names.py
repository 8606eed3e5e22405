"""How a company's or a list entry's name is read for matching, and that reading stored with the row.

The reading (`name_forms`; engage.lists.matching's docstring says what it does and why) is the
costly part of matching a map or a screening against thousands of entries: case, brackets,
a/k/a splitting, ICU transliteration of Chinese names, legal forms. Like a search index, it is
computed when a row is written and kept in a `name_forms` column (`listed_entities`,
`companies`, `company_aliases`): the models' flush hooks and every bulk INSERT fill it.

A stored reading is used only when it is fresh: it starts with a key hashing the names it was
read from with `forms_version()` (this module's source and the versions of the libraries that
read names), so a renamed row whose column a writer forgot, or an upgraded fingerprints, gets
its names read again, never a stale reading. `flask lists name-forms` reports stale rows and
rewrites them.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata
from pathlib import Path

import sqlalchemy as sa
from fingerprints import clean_brackets
from fingerprints.cleanup import clean_name_ascii
from fingerprints.types.data import TYPES
from rigour._core import name_split_phrases_list  # the phrase list behind rigour.names.contains_split_phrase

#: Suffixes index providers put after a company's name: share class, listing form.
SHARE_CLASS_WORDS = frozenset(
    "a b h n s class cl adr adrs gdr gdrs sponsored spon unsponsored reg shs shares pref pfd dr "
    "npv units".split()
)

#: Legal forms in fingerprints' list that are ordinary words in a name, kept in the core.
_NOT_LEGAL_FORMS = frozenset(
    "international internationale intl export import exp imp impand expcorp enterprise ent "
    "lojistik sanayi ticaret insaat tesisat hk uk eu is up ok im ii".split()
)

#: Legal forms written in front of the name.
_LEADING_FORMS = frozenset("pt ooo oao zao pao ao pjsc ojsc cjsc jsc tov too uab sia".split())

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_SUBSIDIARIES = re.compile(
    r"[\s,;(]*(?:\band\b|&|\bincluding\b|\bincl\b\.?|\btogether\s+with\b|\bwith\b|\bplus\b)\s+"
    r"(?:(?:its|their|all|of)\s+)*(?:(?:wholly[\s-]+owned|affiliated|controlled)\s+)?"
    r"(?:subsidiaries|subsidiary\s+companies|affiliates|branches|controlled\s+entities)\b.*$",
    re.IGNORECASE,
)
_BRACKETS = re.compile(r"[(\[]([^()\[\]]*)[)\]]")


@dataclass(frozen=True)
class NameForm:
    """One name as compared: `tokens` is the core (legal forms and share class cut), `full`
    keeps the legal forms (for truncation), `compact` is the core without spaces."""

    published: str  # the string as entered or published (after a/k/a splitting)
    label: str  # "name", "alias", "entry name", "entry alias"
    tokens: tuple[str, ...]
    full_tokens: tuple[str, ...]
    cjk: bool
    share_class: str | None = None
    subsidiaries: bool = False
    # joined once here, not at each of the many comparisons of the form
    text: str = field(init=False, repr=False, compare=False)
    compact: str = field(init=False, repr=False, compare=False)
    full: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "text", " ".join(self.tokens))
        object.__setattr__(self, "compact", "".join(self.tokens))
        object.__setattr__(self, "full", "".join(self.full_tokens))

    @property
    def token_set(self) -> frozenset[str]:
        """The core's words as a set (made at the form's first comparison, then kept)."""
        found = self.__dict__.get("_token_set")
        if found is None:
            found = frozenset(self.tokens)
            object.__setattr__(self, "_token_set", found)
        return found

    @property
    def numbers(self) -> frozenset[str]:
        found = self.__dict__.get("_numbers")
        if found is None:
            found = frozenset(t for t in self.tokens if t.isdigit())
            object.__setattr__(self, "_numbers", found)
        return found

    @classmethod
    def restored(cls, published: str, label: str, text: str, full_text: str, cjk: bool, share_class: str | None,
                 subsidiaries: bool) -> NameForm:
        """A form from its stored parts (`text` and `full_text` space-joined), without re-reading it."""
        form = cls.__new__(cls)
        form.__dict__.update(published=published, label=label, tokens=tuple(text.split(" ")),
                             full_tokens=tuple(full_text.split(" ")), cjk=cjk, share_class=share_class,
                             subsidiaries=subsidiaries, text=text, compact=text.replace(" ", ""),
                             full=full_text.replace(" ", ""))
        return form

    def describe(self) -> str:
        return f'{self.label} "{self.published}"'



# ---------------------------------------------------------------------------------------------
# Reading names


@cache
def _split_phrase_regex() -> re.Pattern[str]:
    phrases = sorted(set(name_split_phrases_list()) | {"also known as", "formerly known as"}, key=len, reverse=True)
    alternatives = "|".join(re.escape(p) for p in phrases)
    return re.compile(rf"(?<![\w/.])(?:{alternatives})(?![\w/])", re.IGNORECASE)


@cache
def _legal_forms() -> tuple[frozenset[tuple[str, ...]], int]:
    """Fingerprints' legal forms (all languages, Chinese included) as token tuples."""
    forms: set[tuple[str, ...]] = set()
    for kind in TYPES["types"]:
        for form in (kind["main"], *kind["forms"]):
            cleaned = clean_name_ascii(form)
            if cleaned:
                tokens = tuple(cleaned.split())
                if not (len(tokens) == 1 and tokens[0] in _NOT_LEGAL_FORMS):
                    forms.add(tokens)
    return frozenset(forms), max(len(f) for f in forms)


def split_names(published: str) -> list[str]:
    """One published string as the names it carries: "A a/k/a B", "A (formerly B)"."""
    names: list[str] = []
    splitter = _split_phrase_regex()

    def bracket(match: re.Match[str]) -> str:
        inner = match.group(1)
        found = splitter.search(inner)
        if found and not inner[: found.start()].strip(" ,;:-"):
            names.extend(split_names(inner[found.end():]))
            return " "
        return match.group(0)

    text = _BRACKETS.sub(bracket, published)
    parts = splitter.split(text)
    return [p.strip(" ,;:-") for p in parts if p.strip(" ,;:-")] + names


def covers_subsidiaries(published: str) -> bool:
    """True when a published name extends to the entity's subsidiaries ("... and its subsidiaries")."""
    return bool(_SUBSIDIARIES.search(published))


def _strip_legal_forms(tokens: list[str]) -> tuple[list[str], int]:
    """Cut legal forms from the end (repeatedly) and the few that stand in front of a name
    ("PT", "OOO", "JSC"); returns the core (empty when the name is only legal forms) and how
    many tokens were cut in front."""
    forms, longest = _legal_forms()
    changed = True
    while changed and tokens:
        changed = False
        for size in range(min(longest, len(tokens)), 0, -1):
            if tuple(tokens[-size:]) in forms:
                tokens = tokens[:-size]
                changed = True
                break
    start = 1 if len(tokens) > 1 and tokens[0] in _LEADING_FORMS else 0
    return tokens[start:], start


def _form(published: str, label: str) -> NameForm | None:
    subsidiaries = covers_subsidiaries(published)
    text = _SUBSIDIARIES.sub("", published) if subsidiaries else published
    text = clean_brackets(text) or ""
    cjk = bool(_CJK.search(text))
    cleaned = clean_name_ascii(text.replace("&", " and ")) or ""
    tokens = [t for t in cleaned.split() if t not in ("and", "the")]
    share: list[str] = []
    forms, _ = _legal_forms()
    while len(tokens) > 1 and tokens[-1] in SHARE_CLASS_WORDS and not cjk:
        share.insert(0, tokens.pop())
    if share and all(t in SHARE_CLASS_WORDS or (t,) in forms for t in tokens):
        tokens += share  # nothing but suffixes: keep them as the name
        share = []
    full = list(tokens)
    core, start = _strip_legal_forms(tokens)
    if not core:
        return None
    if cjk:  # pinyin syllables are not words: the name is one token
        core = ["".join(core)]
        full = ["".join(full[start:])]
    else:
        full = full[start:]
    return NameForm(published=published, label=label, tokens=tuple(core), full_tokens=tuple(full),
                    cjk=cjk, share_class=" ".join(share).upper() or None, subsidiaries=subsidiaries)


def name_forms(names: Sequence[str], entry: bool = False, first: bool = True) -> list[NameForm]:
    """Every name a record carries, read for comparison (first the main name, then aliases).

    `first=False`: every one of `names` is an alias (a company's alias stored on its own row)."""
    out: list[NameForm] = []
    prefix = "entry " if entry else ""
    for position, published in enumerate(names):
        if not published or not published.strip():
            continue
        for part_no, part in enumerate(split_names(published)):
            label = prefix + ("name" if first and position == 0 and part_no == 0 else "alias")
            form = _form(part, label)
            if form is not None:
                out.append(form)
    return out


# ---------------------------------------------------------------------------------------------
# The stored reading

#: Flags of a stored form.
_MAIN, _CJK_FORM, _SUBS = 1, 2, 4


@cache
def forms_version() -> str:
    """What a stored reading depends on besides the names: this module and the libraries it calls."""
    digest = hashlib.blake2b(Path(__file__).read_bytes(), digest_size=8)
    for dist in ("fingerprints", "rigour", "normality", "PyICU"):
        try:
            digest.update(f"{dist}={metadata.version(dist)};".encode())
        except metadata.PackageNotFoundError:
            digest.update(f"{dist}=none;".encode())
    digest.update(unicodedata.unidata_version.encode())
    return digest.hexdigest()


@cache
def _key_prefix(entry: bool, first: bool) -> bytes:
    return f"{forms_version()}\x1e{'e' if entry else 'c'}{'1' if first else '0'}\x1e".encode()


def _key(names: Sequence[str], entry: bool, first: bool) -> str:
    """What a reading is of: the names, how they were read (a list entry's, a company's name or alias), by what."""
    text = "".join(f"{len(n)}:{n}" for n in names)  # length-prefixed: no two lists of names give one text
    return hashlib.blake2b(_key_prefix(entry, first) + text.encode(), digest_size=8).hexdigest()


def _fresh(stored: str | None, names: Sequence[str], entry: bool, first: bool) -> bool:
    return bool(stored) and stored.startswith(f'["{_key(names, entry, first)}"')


def stored_forms(names: Sequence[str], entry: bool = False, first: bool = True) -> str:
    """The reading of `names` (as name_forms reads them) as the text kept in a `name_forms` column.

    A JSON array: the key, then per form [published, core, full, flags, share class], where
    published is the index of the name it is when it is one of `names` whole, and full is null
    when it is the core."""
    return encoded(name_forms(names, entry, first), names, entry, first)


def encoded(forms: Sequence[NameForm], names: Sequence[str], entry: bool = False, first: bool = True) -> str:
    """stored_forms for a caller that has read `names` already: `forms` is name_forms(names, entry, first)."""
    out: list = [_key(names, entry, first)]
    for form in forms:
        full = " ".join(form.full_tokens)
        published = names.index(form.published) if form.published in names else form.published
        flags = (_MAIN if form.label.endswith("name") else 0) | (_CJK_FORM if form.cjk else 0) \
            | (_SUBS if form.subsidiaries else 0)
        out.append([published, form.text, None if full == form.text else full, flags, form.share_class])
    return json.dumps(out, ensure_ascii=False, separators=(",", ":"))


def read_stored(stored: str | None, names: Sequence[str], entry: bool = False,
                first: bool = True) -> list[NameForm] | None:
    """The forms kept in `stored` if it is the fresh reading of exactly these names, else None."""
    if not _fresh(stored, names, entry, first):
        return None
    prefix = "entry " if entry else ""
    return [NameForm.restored(names[published] if isinstance(published, int) else published,
                              prefix + ("name" if flags & _MAIN else "alias"), text, full if full is not None else text,
                              bool(flags & _CJK_FORM), share_class, bool(flags & _SUBS))
            for published, text, full, flags, share_class in json.loads(stored)[1:]]


def forms_of(stored: str | None, names: Sequence[str], entry: bool = False, first: bool = True) -> list[NameForm]:
    """`names` read for matching: the stored reading when fresh, else read now."""
    found = read_stored(stored, names, entry, first)
    return found if found is not None else name_forms(names, entry, first)


def as_entry(forms: Sequence[NameForm]) -> list[NameForm]:
    """A company's forms of some names as a list entry's forms of the same names (labelled "entry ...")."""
    return [NameForm.restored(f.published, "entry " + f.label, f.text, " ".join(f.full_tokens), f.cjk, f.share_class,
                              f.subsidiaries) for f in forms]


def refreshed(stored: str | None, names: Sequence[str], entry: bool = False, first: bool = True) -> str:
    """`stored` if it is the fresh reading of `names`, else their reading now (the writers' hook)."""
    if _fresh(stored, names, entry, first):
        return stored
    return stored_forms(names, entry, first)


def entry_names(name: str | None, aliases: Sequence[str] | None) -> tuple[str, ...]:
    """A list entry's names as the matching takes them: its name, then its aliases, empty ones left out."""
    return tuple(n for n in [name, *(aliases or [])] if n)


# The tables whose rows keep a reading, as plain table clauses: the migration that made the
# columns and `flask lists name-forms` both call `refresh`, whatever the models become.
_TABLES = {
    "listed_entities": (sa.table("listed_entities", sa.column("id"), sa.column("name"), sa.column("aliases", sa.JSON),
                                 sa.column("name_forms")), True, True),
    "companies": (sa.table("companies", sa.column("id"), sa.column("name"), sa.column("name_forms")), False, True),
    "company_aliases": (sa.table("company_aliases", sa.column("id"), sa.column("alias"), sa.column("name_forms")),
                        False, False),
}


def refresh(connection, write: bool = True) -> dict[str, tuple[int, int]]:
    """Check every stored reading and (when `write`) rewrite the stale or missing ones.

    Returns, per table, (stale or missing, rows). One SELECT and one UPDATE executemany per table."""
    found: dict[str, tuple[int, int]] = {}
    for name, (table, entry, first) in _TABLES.items():
        stale, total = [], 0
        for row in connection.execute(sa.select(table).order_by(table.c.id)):
            total += 1
            texts = entry_names(row.name, row.aliases) if entry else [row[1] or ""]
            if not _fresh(row.name_forms, texts, entry, first):
                stale.append({"row_id": row.id, "forms": stored_forms(texts, entry, first)})
        if write and stale:
            connection.execute(sa.update(table).where(table.c.id == sa.bindparam("row_id"))
                               .values(name_forms=sa.bindparam("forms")), stale)
        found[name] = (len(stale), total)
    return found
