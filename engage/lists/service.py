"""List imports: read a file (engage.lists.parsers), show its diff against the loaded version, save it.

One path for the command line, the seeding and the web page: `preview()` reads and compares
without writing; `save()` writes one `ListVersion` per list the file holds (a CSL file may hold
several), with its entries and its diff, in the caller's transaction — all or nothing, audited.
The web page keeps an upload between its preview and its confirmation with the holdings import's
stash (engage.holdings.service), and confirms only what its preview showed (`digest`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import re
import secrets
from collections import defaultdict
from dataclasses import dataclass, field
from types import SimpleNamespace

import sqlalchemy as sa

from engage import audit, clock
from engage.extensions import db
from engage.formatting import format_date
from engage.holdings import service as holdings_service
from engage.lists import parsers
from engage.lists.parsers import FORMATS, Entry, ListError, Parsed, parse_mapping
from engage.models import ListedEntity, ListVersion, RiskSource, normalize_name
from engage.models.lists import latest_versions
from engage.names import entry_names, stored_forms

__all__ = ["FORMATS", "ListError", "PreviewChanged", "ListDiff", "Preview", "preview", "save", "parse_mapping",
           "latest_versions", "versions", "parse_sources"]

#: The PostgreSQL advisory lock key of list imports (any fixed 64-bit number): "engageLI".
LISTS_LOCK_KEY = 0x656E6761_67654C49

#: What the web page uses of the upload stash (kept by the holdings import).
stash_upload = holdings_service.stash_upload
load_upload = holdings_service.load_upload
claim_upload = holdings_service.claim_upload
release_upload = holdings_service.release_upload
finish_upload = holdings_service.finish_upload
upload_state = holdings_service.upload_state
discard_upload = holdings_service.discard_upload
save_upload_meta = holdings_service.save_upload_meta
StashUnsafe = holdings_service.StashUnsafe
TOKEN = holdings_service.TOKEN
#: The list import keeps its uploads in the holdings import's stash, under its own kind.
STASH = "lists"


class PreviewChanged(ListError):
    """What a confirmation would save is not what its preview showed (another version was loaded)."""


def parse_sources(text: str | list | None) -> list[str]:
    """ "Entity List,MEU" -> ["Entity List", "MEU"]. """
    if isinstance(text, list):
        return [s.strip() for s in text if s and s.strip()]
    return [s.strip() for s in (text or "").split(",") if s.strip()]


def label(name: str) -> str:
    """A list's name for people: the published list's label, or the team's name for its own."""
    return RiskSource(name).label if name in RiskSource.values() else name


_label = label


#: The command line's options as the upload form names them: a refusal read on the web page points
#: at the form's fields, not at options the page does not have.
FORM_WORDING = (
    ("give --format", "choose a Format"),
    ("(--format csv)", "(Format csv)"),
    ("and --mapping", "and a Column mapping"),
    ("give e.g. --mapping ", "give a Column mapping such as "),
    ("(--list)", "(List name)"),
    ("(--older)", "(tick “make it the latest anyway” below)"),
    ("--sources", "CSL sources"),
)


def for_the_form(error: ListError) -> ListError:
    """`error` worded for the upload form (the same refusal, its options named as the form's fields)."""
    for option, field_name in FORM_WORDING:
        error.message = error.message.replace(option, field_name)
    return error


def parse_day(text: str | None) -> dt.date | None:
    return dt.date.fromisoformat(text) if text else None


def _jsonable(value):
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


@dataclass
class ListDiff:
    """One list of the file against its latest loaded version."""

    name: str
    previous: ListVersion | None
    entries: list[Entry]
    added: list[dict] = field(default_factory=list)
    removed: list[dict] = field(default_factory=list)
    changed: list[dict] = field(default_factory=list)
    #: The loaded version is of a later retrieved date than this file's.
    older: bool = False
    #: How many entries the file gives the list, kept when `entries` is not (a preview kept by the job).
    count: int | None = None

    @property
    def label(self) -> str:
        return _label(self.name)

    @property
    def entry_count(self) -> int:
        return self.count if self.count is not None else len(self.entries)

    def detail(self) -> dict:
        return {"added": self.added, "removed": self.removed, "changed": self.changed}

    def summary(self) -> str:
        against = (f"against version {self.previous.id} of {format_date(self.previous.retrieved_on)}"
                   if self.previous else "first version")
        return (f"{self.label}: {self.entry_count} entries, {len(self.added)} added, {len(self.removed)} removed, "
                f"{len(self.changed)} changed ({against})")

    def lines(self) -> list[str]:
        """The diff in words, one line per entry."""
        out = [f"  + {item['name']}" for item in self.added]
        out += [f"  - {item['name']}" for item in self.removed]
        for item in self.changed:
            out.append(f"  ~ {item['name']}: {describe_change(item['fields'])}")
        return out


def describe_change(fields: dict) -> str:
    parts = []
    for name, change in fields.items():
        if isinstance(change, dict):  # a list field: what was added and removed
            words = []
            if change.get("added"):
                words.append("new " + ", ".join(change["added"]))
            if change.get("removed"):
                words.append("dropped " + ", ".join(change["removed"]))
            parts.append(f"{name.replace('_', ' ')}: {'; '.join(words)}")
        else:
            before, after = change
            parts.append(f"{name.replace('_', ' ')} {before if before not in (None, '') else '(none)'} → "
                         f"{after if after not in (None, '') else '(none)'}")
    return "; ".join(parts)


#: A day written YYYY-MM-DD inside a citation (as versions loaded before dates read one way wrote them).
_ISO_DAY = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")


def _citation_as_now(text: str | None) -> str | None:
    """A stored citation with its ISO days written as the parsers write them now ('24 Jun 2021')."""
    def day(match: re.Match) -> str:
        try:
            return format_date(dt.date(*map(int, match.groups())))
        except ValueError:
            return match.group(0)

    return _ISO_DAY.sub(day, text) if text else text


def _compare(old: dict, new: Entry) -> dict:
    """The fields of an entry that changed; a citation that only writes its day another way has not."""
    changes = {}
    for name in Entry.FIELDS:
        before, after = old.get(name), getattr(new, name)
        if name == "citation":
            before = after if _citation_as_now(before) == after else before
        if name == "aliases":
            added = [a for a in after if a not in (before or [])]
            dropped = [a for a in (before or []) if a not in after]
            if added or dropped:
                changes[name] = {"added": added, "removed": dropped}
        elif name == "identifiers":
            if (before or {}) != (after or {}):
                changes[name] = [json.dumps(before or {}, sort_keys=True), json.dumps(after or {}, sort_keys=True)]
        elif (before if before not in ("",) else None) != (after if after not in ("",) else None):
            changes[name] = [_jsonable(before), _jsonable(after)]
    return changes


def versions(list_name: str | None = None) -> list[ListVersion]:
    query = sa.select(ListVersion).order_by(ListVersion.name, ListVersion.id.desc())
    if list_name:
        query = query.where(ListVersion.name == list_name)
    return list(db.session.scalars(query))


def _keep_keys_across_layouts(entries: list[Entry], before: dict[str, dict]) -> None:
    """An entry the previous version knew under another key takes that key when its name says it is the same.

    The same list loaded from another publisher's layout (the DHS page, then the OpenSanctions
    export) keys its entries differently; flags and match decisions hang on the key, so without
    this every entry would read as removed and added again, ending flags and asking settled
    questions anew. Paired only when the normalised name is unique on both sides.
    """
    known = {entry.key for entry in entries}
    unpaired_old: dict[str, list[str]] = defaultdict(list)
    for key, old in before.items():
        if key not in known:
            unpaired_old[normalize_name(old["name"])].append(key)
    unpaired_new: dict[str, list[Entry]] = defaultdict(list)
    for entry in entries:
        if entry.key not in before:
            unpaired_new[normalize_name(entry.name)].append(entry)
    for name, news in unpaired_new.items():
        olds = unpaired_old.get(name, [])
        if name and len(news) == 1 and len(olds) == 1:
            news[0].key = olds[0]


def _diff(name: str, entries: list[Entry], previous: ListVersion | None, retrieved_on: dt.date) -> ListDiff:
    diff = ListDiff(name, previous, entries, older=bool(previous and retrieved_on < previous.retrieved_on))
    before: dict[str, dict] = {}
    if previous is not None:
        columns = [getattr(ListedEntity, f) for f in ("key", *Entry.FIELDS)]
        for row in db.session.execute(sa.select(*columns).where(ListedEntity.version_id == previous.id)):
            before[row.key] = dict(row._mapping)
    _keep_keys_across_layouts(entries, before)
    keys = set()
    for entry in entries:
        keys.add(entry.key)
        old = before.get(entry.key)
        if old is None:
            diff.added.append({"key": entry.key, "name": entry.name})
        else:
            changes = _compare(old, entry)
            if changes:
                diff.changed.append({"key": entry.key, "name": entry.name, "fields": changes})
    diff.removed = [{"key": key, "name": old["name"]} for key, old in sorted(before.items(), key=lambda i: i[1]["name"])
                    if key not in keys]
    return diff


@dataclass
class Preview:
    """A file read, and what saving it would do (nothing is written)."""

    parsed: Parsed
    file_name: str
    sha256: str
    retrieved_on: dt.date
    diffs: list[ListDiff]

    @property
    def older(self) -> list[ListDiff]:
        return [d for d in self.diffs if d.older]

    @property
    def digest(self) -> str:
        """Names what the preview showed: the file, how it was read, the versions it is compared with."""
        summary = [self.sha256, self.parsed.format, sorted(self.parsed.lists), self.parsed.sources,
                   self.parsed.mapping, self.retrieved_on.isoformat(),
                   [(d.name, d.previous.id if d.previous else None) for d in self.diffs]]
        return hashlib.sha256(json.dumps(summary, default=str).encode()).hexdigest()

    def lines(self) -> list[str]:
        return [d.summary() for d in self.diffs]

    @property
    def entry_count(self) -> int:
        return sum(d.entry_count for d in self.diffs)


def preview(data: bytes, file_name: str, format: str | None = None, list_name: str | None = None,
            sources: list[str] | None = None, mapping: dict[str, str] | str | None = None,
            retrieved_on: dt.date | None = None) -> Preview:
    """Read the file and compare each of its lists with its latest version; ListError when refused.

    Refused: an unreadable or empty file, missing columns, a file identical to a list's latest
    version and read the same way (a team's CSV read with another mapping gives other entries).
    A retrieved date older than the loaded version's is not refused here (the preview shows it);
    `save` refuses it unless confirmed.
    """
    if isinstance(mapping, str):
        mapping = parse_mapping(mapping)
    if list_name is not None and not list_name.strip():
        list_name = None
    today = clock.today()
    retrieved_on = retrieved_on or today
    if retrieved_on > today:
        raise ListError(f"the retrieved date {format_date(retrieved_on)} is in the future", field="retrieved_on")
    parsed = parsers.parse(data, format, list_name=list_name, sources=parse_sources(sources), mapping=mapping)
    sha256 = hashlib.sha256(data).hexdigest()
    latest = latest_versions(list(parsed.lists))
    # the same bytes read the same way; read with another column mapping they are other entries
    same = [v for v in latest.values()
            if v.sha256 == sha256 and v.format == parsed.format and (v.mapping or {}) == parsed.mapping]
    if same:
        v = same[0]
        others = [parsers.CSL_LABELS.get(n, n) for n in parsed.lists if n not in {s.name for s in same}]
        hint = f"; to load its other lists, choose them: --sources {','.join(others)}" if others else ""
        raise ListError(f"this file is identical to version {v.id} of {_label(v.name)} ({v.file_name}, retrieved "
                        f"{format_date(v.retrieved_on)}, SHA-256 {sha256[:12]}); nothing to load{hint}")
    diffs = [_diff(name, entries, latest.get(name), retrieved_on) for name, entries in parsed.lists.items()]
    return Preview(parsed, (file_name or "upload")[:255], sha256, retrieved_on, diffs)


def read(data: bytes, meta: dict) -> Preview:
    """`preview` of a stashed upload, read with the options its meta keeps (the web page and its job)."""
    return preview(data, meta["file_name"], meta["format"], meta["list_name"], meta["sources"], meta["mapping"],
                   parse_day(meta["retrieved_on"]))


# --- a big file's preview, made by the preview job and kept beside its upload ----------------------
#
# <token>.preview holds what the preview page shows (the diffs, without the entries), or the
# refusal, signed and tied to the file, the options it was read with and the latest list version
# loaded when it was read (the holdings stash's keep_signed): a version loaded since makes it stale,
# and the page has the file read again rather than show a diff a confirmation would refuse.

#: What of an upload's meta says how the file is read.
READ_OPTIONS = ("file_name", "format", "list_name", "sources", "mapping", "retrieved_on")


def preview_fingerprint(data: bytes, meta: dict) -> list:
    """What a kept preview is of: the file, how it is read, the latest list version loaded (taken
    before reading, so a version loaded while the job reads leaves the kept preview stale)."""
    latest = db.session.scalar(sa.select(sa.func.max(ListVersion.id)))
    return [hashlib.sha256(data).hexdigest(), {key: meta.get(key) for key in READ_OPTIONS}, latest]


def keep_preview(token: str, fingerprint: list, shown: Preview | ListError) -> None:
    """Keep the preview the job made (without the entries, which the page does not show), or its refusal."""
    if isinstance(shown, ListError):
        kept = {"refused": {"message": shown.message, "errors": shown.errors, "field": shown.field}}
    else:
        diffs = [dataclasses.replace(
            d, entries=[], count=len(d.entries),
            previous=SimpleNamespace(id=d.previous.id, retrieved_on=d.previous.retrieved_on) if d.previous else None)
            for d in shown.diffs]
        parsed = dataclasses.replace(shown.parsed, lists={name: [] for name in shown.parsed.lists})
        kept = {"preview": dataclasses.replace(shown, parsed=parsed, diffs=diffs)}
    holdings_service.keep_signed(token, "preview", fingerprint, kept)


def kept_preview(token: str, fingerprint: list) -> Preview | ListError | None:
    """The preview (or the refusal) the job kept for this fingerprint; None when there is none or
    it is stale. StashUnsafe when it is not signed by this server."""
    kept = holdings_service.load_signed(token, "preview", fingerprint)
    if kept is None:
        return None
    if "refused" in kept:
        return ListError(kept["refused"]["message"], kept["refused"]["errors"], kept["refused"]["field"])
    return kept["preview"]


def _lock() -> None:
    """One list import at a time, so each version's `previous` is the one before it."""
    connection = db.session.connection()
    if connection.dialect.name == "postgresql":
        connection.execute(sa.select(sa.func.pg_advisory_xact_lock(LISTS_LOCK_KEY)))
    elif connection.dialect.name == "sqlite":
        connection.execute(sa.update(ListVersion).where(sa.false()).values(id=ListVersion.id))


def save(data: bytes, file_name: str, format: str | None = None, list_name: str | None = None,
         sources: list[str] | None = None, mapping: dict[str, str] | str | None = None,
         retrieved_on: dt.date | None = None, *, older: bool = False, expected_digest: str | None = None,
         imported_by_id: int | None = None) -> tuple[Preview, list[ListVersion]]:
    """Save the file's lists as new versions in the caller's transaction (the caller commits).

    Refuses (ListError, nothing written) what `preview` refuses, and a file retrieved before a
    loaded version unless `older`; with `expected_digest` (the web confirmation), PreviewChanged
    when what would be saved is not what the preview showed.
    """
    _lock()
    shown = preview(data, file_name, format, list_name, sources, mapping, retrieved_on)
    if expected_digest is not None and not secrets.compare_digest(shown.digest, expected_digest):
        raise PreviewChanged("another version of this list was loaded since the preview; check the diff again")
    if shown.older and not older:
        names = "; ".join(f"{d.label} version {d.previous.id} was retrieved {format_date(d.previous.retrieved_on)}"
                          for d in shown.older)
        raise ListError(f"this file was retrieved {format_date(shown.retrieved_on)}, before the loaded version ({names}); "
                        f"confirm that an older file should become the latest (--older)", field="older")
    now = clock.utcnow()
    actor = audit.current_actor()
    saved = []
    for diff in shown.diffs:
        values = dict(
            name=diff.name, source=diff.name if diff.name in RiskSource.values() else RiskSource.TEAM_LIST.value,
            format=shown.parsed.format, file_name=shown.file_name, retrieved_on=shown.retrieved_on,
            sha256=shown.sha256, entry_count=len(diff.entries),
            sources=[s for s in shown.parsed.sources if parsers.csl_list(s) == diff.name],
            mapping=shown.parsed.mapping, previous_id=diff.previous.id if diff.previous else None,
            added_count=len(diff.added), removed_count=len(diff.removed), changed_count=len(diff.changed),
            diff=diff.detail(), imported_by_id=imported_by_id if imported_by_id is not None else actor.user_id,
            created_at=now, updated_at=now)
        # A core insert: the audit event below says what was loaded without copying the whole diff again.
        version_id = db.session.execute(sa.insert(ListVersion).returning(ListVersion.id), [values]).scalar_one()
        version = db.session.get(ListVersion, version_id)
        rows = [{"version_id": version.id, "key": e.key, "source": e.source, "normalized_name": normalize_name(e.name)[:300],
                 "created_at": now, "updated_at": now, **e.values()} for e in diff.entries]
        for row in rows:  # the matching's reading, kept with the entry (engage.names)
            row["name_forms"] = stored_forms(entry_names(row["name"], row.get("aliases")), entry=True)
        if rows:
            db.session.execute(sa.insert(ListedEntity), rows)
        audit.record("list_import", f"{diff.summary()} from {shown.file_name}", obj=version,
                     changes={"list": diff.name, "file_name": shown.file_name, "sha256": shown.sha256,
                              "retrieved_on": shown.retrieved_on.isoformat(), "format": shown.parsed.format,
                              "entries": len(diff.entries), "added": len(diff.added), "removed": len(diff.removed),
                              "changed": len(diff.changed), "older_confirmed": diff.older})
        saved.append(version)
    db.session.flush()
    return shown, saved
