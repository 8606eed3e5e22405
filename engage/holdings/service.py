"""Holdings import (read, check, preview, import: one path for the CLI and the web), uploads waiting for
confirmation, and merging a company created by an import."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import gc
import hashlib
import hmac
import json
import os
import pickle
import re
import secrets
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import sqlalchemy as sa
from flask import current_app

from engage import audit
from engage.errors import FieldError
from engage.extensions import db
from engage.formatting import format_date
from engage.holdings import importer, parsing
from engage.models import (
    AuditEvent,
    Company,
    CompanyAlias,
    Engagement,
    Fund,
    Holding,
    Relationship,
    RiskFlag,
    ValueChainMap,
)
from engage.validators import date_problem, whole_number

TOKEN = re.compile(r"^[0-9a-f]{32}$")


class MergeError(FieldError):
    """A refused merge."""


# --- reading and importing a holdings file: one path for the CLI and the web ---------------

@dataclass
class ReadOptions:
    """How to read a holdings file: what the file cannot say for itself (kept with a stashed upload)."""

    mapping: dict[str, str] = field(default_factory=dict)
    decimal: str | None = None
    partial: bool = False
    as_of: dt.date | None = None
    encoding: str | None = None
    sheet: str | None = None

    def to_meta(self) -> dict:
        return {"mapping": self.mapping, "decimal": self.decimal, "partial": self.partial,
                "as_of": self.as_of.isoformat() if self.as_of else None, "encoding": self.encoding,
                "sheet": self.sheet}

    @classmethod
    def from_meta(cls, meta: dict) -> ReadOptions:
        return cls(mapping=meta.get("mapping") or {}, decimal=meta.get("decimal") or None,
                   partial=bool(meta.get("partial")),
                   as_of=dt.date.fromisoformat(meta["as_of"]) if meta.get("as_of") else None,
                   encoding=meta.get("encoding") or None, sheet=meta.get("sheet") or None)


#: What the routes use of the reader and the importer, so that they import services and forms only.
FileRefused = parsing.FileRefused
ImportBusy = importer.ImportBusy
parse_mapping = parsing.parse_mapping
parse_date = parsing.parse_date


class ImportRefused(Exception):
    """The file is not imported: `message` says why, `errors` lists the rows (nothing was written)."""

    def __init__(self, message: str, errors: list | None = None):
        super().__init__(message)
        self.message = message
        self.errors = errors or []


class PreviewChanged(ImportRefused):
    """What a confirmation would import is not what its preview showed."""


@dataclass
class Checked:
    """A file read with its options, and what importing it would do (nothing is written)."""

    parsed: parsing.ParsedFile | None
    options: ReadOptions
    #: Why the file cannot be imported as it is (besides the row errors of `parsed`).
    problem: str | None = None
    as_of: dt.date | None = None
    #: Where the problem lies, for a form to show it on its field ("as_of", "encoding").
    field: str | None = None
    preview: importer.Preview | None = None
    digest: str | None = None
    #: The rows of the file, when `parsed` keeps only the first (a preview kept by the preview job).
    counted: int | None = None

    @property
    def row_count(self) -> int:
        if self.counted is not None:
            return self.counted
        return len(self.parsed.rows) if self.parsed is not None else 0

    @property
    def ok(self) -> bool:
        return self.problem is None and self.parsed is not None and self.parsed.ok


def check_file(data: bytes, filename: str, options: ReadOptions, fund: Fund | None = None, *,
               given: str = "the form", with_preview: bool = True) -> Checked:
    """Read the file once with `options` and check it; with a preview of what the import would do.

    `given` names where the date came from in messages ("--as-of" on the CLI).
    """
    try:
        parsed = parsing.parse(filename or "upload", data, options.mapping, decimal=options.decimal,
                               partial=options.partial, encoding=options.encoding, sheet=options.sheet,
                               limits=parsing.Limits.from_config(current_app.config))
    except parsing.FileRefused as exc:
        text = str(exc)
        field_name = "encoding" if "encoding" in text else "sheet" if "no sheet called" in text else None
        return Checked(None, options, problem=text, field=field_name)
    checked = Checked(parsed, options, as_of=parsed.as_of or options.as_of)
    if parsed.as_of and options.as_of and parsed.as_of != options.as_of:
        checked.problem = (f"the file says its holdings are as of {format_date(parsed.as_of)} but {given} gives "
                           f"{format_date(options.as_of)}; give the file's date, or none, or correct the file")
        checked.field = "as_of"
    elif parsed.ok and checked.as_of is None:
        checked.problem = f"the file does not say its date; give {given} YYYY-MM-DD" if given.startswith("--") \
            else "the file does not say its date; give the as-of date"
        checked.field = "as_of"
    elif checked.as_of is not None and date_problem(checked.as_of):
        checked.problem = f"the holdings date {date_problem(checked.as_of)}"
        checked.field = "as_of"
    if checked.ok and with_preview:
        checked.preview = importer.preview(parsed, fund, checked.as_of)
        checked.digest = preview_digest(data, checked, checked.preview.replaced)
    return checked


def preview_digest(data: bytes, checked: Checked, replaced: importer.Replaced) -> str:
    """Names what a preview showed: the file, the options it was read with, what it reads as, what it replaces."""
    parsed = checked.parsed
    summary = [hashlib.sha256(data).hexdigest(), checked.options.to_meta(), checked.as_of.isoformat(),
               parsed.layout, parsed.encoding, parsed.sheet, parsed.delimiter, sorted(parsed.decimals.items()),
               [(r.row, r.name, r.isin, r.ticker, str(r.market_value), str(r.weight), str(r.shares))
                for r in parsed.rows],
               replaced.positions, replaced.earlier.id if replaced.earlier is not None else None]
    return hashlib.sha256(json.dumps(summary, default=str).encode()).hexdigest()


def import_file(data: bytes, filename: str, options: ReadOptions, *, fund_id: int | None = None,
                fund_name: str | None = None, create_fund: bool = False, expected_digest: str | None = None,
                given: str = "the form", progress=None, reading: Checked | None = None) -> importer.ImportResult:
    """Read, check and import a holdings file in the caller's transaction (the caller commits).

    The fund is found by id or name (created by name with `create_fund`) after the import lock
    is taken. With `expected_digest` (the web confirmation), the import goes ahead only if the
    file, its options and what it replaces are still what the preview showed; PreviewChanged
    otherwise. Raises ImportRefused for a refused file, importer.ImportBusy when another import
    keeps the turn. `reading`: this file's reading with these options, kept by the preview job
    (`kept_reading`), instead of reading it again.
    """
    checked = reading if reading is not None else check_file(data, filename, options, given=given,
                                                             with_preview=False)
    if checked.parsed is None or checked.problem:
        raise ImportRefused(checked.problem or "the file cannot be read")
    if not checked.parsed.ok:
        raise ImportRefused(f"{len(checked.parsed.errors)} problem(s)", checked.parsed.errors)
    importer.lock_imports()  # before reading the fund: a concurrent import may have created it
    if fund_id is not None:
        fund = db.session.get(Fund, fund_id)
    else:
        fund = db.session.scalar(sa.select(Fund).where(Fund.name == fund_name))
    if fund is None:
        if not create_fund or not fund_name:
            raise ImportRefused(f"no fund called {fund_name!r}; add --create-fund to create it" if fund_name
                                else "that fund no longer exists; choose another")
        fund = Fund(name=fund_name)
        db.session.add(fund)
        db.session.flush()
    if expected_digest is not None:
        current = preview_digest(data, checked, importer.replaced_snapshot(fund, checked.as_of))
        if not secrets.compare_digest(current, expected_digest):
            raise PreviewChanged("what this import would do has changed since its preview (other options, or "
                                 "another import of this fund and date meanwhile); check the preview again")
    total = len(checked.parsed.rows)
    return importer.import_parsed(checked.parsed, fund, checked.as_of, filename=filename, data=data,
                                  progress=(lambda count: progress(count, total)) if progress else None)


# --- uploads waiting for confirmation ------------------------------------------------------
#
# A stash is <token>.bin (the file) and <token>.json (fund, date, options). Confirming renames
# the .bin to .claimed first: a rename succeeds once, so a double click imports once. A claim
# older than HOLDINGS_CONFIRM_LEASE_SECONDS was left by a confirmation that died; it can be
# claimed again. After the import commits, <token>.done keeps the result for a second click to
# report; housekeeping deletes all of these after UPLOAD_MAX_AGE_HOURS.
#
# Every file is reached through a descriptor of the uploads folder opened without following a
# symbolic link, and opened with O_NOFOLLOW: a link (to the folder or to a stash file) put there
# by a faulty or hostile environment is never read or written through.

class StashUnsafe(RuntimeError):
    """The uploads folder is not a plain folder (a symbolic link, or not a folder at all)."""


_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


class _Folder:
    """The uploads folder, opened once without following links; file operations relative to it."""

    def __init__(self):
        path = Path(current_app.instance_path) / "uploads"
        if not path.is_symlink():
            path.mkdir(parents=True, exist_ok=True)
        try:
            self.fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NOFOLLOW)
        except OSError as exc:
            raise StashUnsafe(f"the upload folder {path} is a symbolic link or not a folder; refusing to use it "
                              f"(ask the administrator to make it a plain folder)") from exc
        if path.is_symlink():  # O_NOFOLLOW is missing on this system
            os.close(self.fd)
            raise StashUnsafe(f"the upload folder {path} is a symbolic link; refusing to use it")

    def __enter__(self) -> _Folder:
        return self

    def __exit__(self, *exc) -> None:
        os.close(self.fd)

    def read(self, name: str) -> bytes:
        fd = os.open(name, os.O_RDONLY | _NOFOLLOW, dir_fd=self.fd)
        with os.fdopen(fd, "rb") as stream:
            return stream.read()

    def write(self, name: str, data: bytes) -> None:
        """Write a new file, or replace one through a temporary file and a rename (never through a link)."""
        temporary = f"{name}.{secrets.token_hex(4)}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o600, dir_fd=self.fd)
        with os.fdopen(fd, "wb") as stream:
            stream.write(data)
        os.replace(temporary, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)

    def rename(self, source: str, target: str) -> None:
        os.rename(source, target, src_dir_fd=self.fd, dst_dir_fd=self.fd)

    def unlink(self, name: str) -> None:
        try:
            os.unlink(name, dir_fd=self.fd)
        except FileNotFoundError:
            pass

    def age(self, name: str) -> float | None:
        """Seconds since the file (not a link's target) was changed; None when it is missing."""
        try:
            return time.time() - os.stat(name, dir_fd=self.fd, follow_symlinks=False).st_mtime
        except FileNotFoundError:
            return None

    def touch(self, name: str) -> None:
        os.utime(name, dir_fd=self.fd, follow_symlinks=False)


def stash_upload(data: bytes, meta: dict, kind: str = "holdings") -> str:
    """Keep an uploaded file between the preview and the confirmation.

    `kind` names the feature whose upload it is (the list import shares this stash): loading and
    claiming take the kind too, and another feature's token reads as gone.
    """
    token = secrets.token_hex(16)
    with _Folder() as folder:
        folder.write(f"{token}.bin", data)
        folder.write(f"{token}.json", json.dumps({**meta, "kind": kind}).encode())
    return token


def _of_kind(meta: dict, kind: str) -> dict | None:
    """The caller's meta (without the stash's own `kind`) when the stash is of `kind`, else None."""
    if meta.pop("kind", "holdings") != kind:
        return None
    return meta


def save_upload_meta(token: str, meta: dict, kind: str = "holdings") -> None:
    if TOKEN.match(token or ""):
        with _Folder() as folder:
            folder.write(f"{token}.json", json.dumps({**meta, "kind": kind}).encode())


def load_upload(token: str, kind: str = "holdings") -> tuple[bytes, dict] | None:
    """The stashed file and its meta, without claiming it (for a preview read again)."""
    if not TOKEN.match(token or ""):
        return None
    with _Folder() as folder:
        try:
            data, meta = folder.read(f"{token}.bin"), json.loads(folder.read(f"{token}.json"))
        except (OSError, ValueError):
            return None
    meta = _of_kind(meta, kind)
    return None if meta is None else (data, meta)


def claim_upload(token: str, kind: str = "holdings") -> tuple[bytes, dict] | None:
    """Take the stash for importing; only one caller ever gets it (None for the others, and for
    another feature's stash, which is put back).

    A claim older than HOLDINGS_CONFIRM_LEASE_SECONDS (its confirmation died) is taken over,
    by a rename too, so again only one caller gets it.
    """
    if not TOKEN.match(token or ""):
        return None
    with _Folder() as folder:
        claimed = f"{token}.claimed"
        try:
            folder.rename(f"{token}.bin", claimed)
        except OSError:
            age = folder.age(claimed)
            if age is None or age < current_app.config["HOLDINGS_CONFIRM_LEASE_SECONDS"]:
                return None
            taking = f"{token}.{secrets.token_hex(4)}.taking"
            try:
                folder.rename(claimed, taking)  # one caller wins the stale claim
            except OSError:
                return None
            folder.touch(taking)
            folder.rename(taking, claimed)
        else:
            folder.touch(claimed)  # the lease runs from the claim, not from the upload
        try:
            data, meta = folder.read(claimed), json.loads(folder.read(f"{token}.json"))
        except (OSError, ValueError):
            data, meta = None, {}
    meta = _of_kind(meta, kind)
    if data is not None and meta is not None:
        return data, meta
    release_upload(token)
    return None


def release_upload(token: str) -> None:
    """Put a claimed stash back (the import failed), so it can be confirmed again."""
    if TOKEN.match(token or ""):
        with _Folder() as folder:
            try:
                folder.rename(f"{token}.claimed", f"{token}.bin")
            except OSError:
                pass


def finish_upload(token: str, summary: list[str]) -> None:
    """The import committed: drop the file, keep its result for a second click to report."""
    if TOKEN.match(token or ""):
        with _Folder() as folder:
            folder.write(f"{token}.done", json.dumps(summary).encode())
            for suffix in (".claimed", ".bin", ".json", ".preview", ".reading"):
                folder.unlink(f"{token}{suffix}")


def upload_state(token: str) -> tuple[str, list[str]]:
    """("done", result lines), ("importing", []) or ("gone", []) for a stash that cannot be claimed."""
    if not TOKEN.match(token or ""):
        return "gone", []
    with _Folder() as folder:
        try:
            return "done", json.loads(folder.read(f"{token}.done"))
        except (OSError, ValueError):
            pass
        if folder.age(f"{token}.claimed") is not None:
            return "importing", []
    return "gone", []


STASH_SUFFIXES = (".bin", ".json", ".claimed", ".done", ".preview", ".reading")


def discard_upload(token: str) -> int:
    """Delete every file of the stash `token`; how many there were."""
    removed = 0
    if TOKEN.match(token or ""):
        with _Folder() as folder:
            for suffix in STASH_SUFFIXES:
                if folder.age(f"{token}{suffix}") is not None:
                    removed += 1
                folder.unlink(f"{token}{suffix}")
    return removed


# --- a big file's preview, made by the preview job and kept beside its upload ----------------
#
# <token>.preview holds what the preview page shows of the file (the Checked of its reading, with
# its first rows, its errors and its digest), for the file's bytes and the options it was read with:
# the page shows it without reading 200,000 rows again. It is a pickle, written by this app only
# and signed with SECRET_KEY (HMAC-SHA256): a file put there by anything else is not loaded.

#: Rows a kept preview holds (the page shows the first 15 in its table).
KEPT_ROWS = 15


def _signature(blob: bytes) -> bytes:
    return hmac.new(str(current_app.config["SECRET_KEY"]).encode(), blob, hashlib.sha256).digest()


def _fingerprint(data: bytes, options: ReadOptions) -> list:
    return [hashlib.sha256(data).hexdigest(), options.to_meta()]


def keep_preview(token: str, data: bytes, checked: Checked) -> None:
    """Keep a big file's preview (read by the preview job) for the preview page and, when the file
    can be imported, its whole reading for the import job (which then need not read it again)."""
    if not TOKEN.match(token or ""):
        return
    kept = copy.copy(checked)
    if checked.parsed is not None:
        kept.counted = len(checked.parsed.rows)
        kept.parsed = dataclasses.replace(checked.parsed, rows=checked.parsed.rows[:KEPT_ROWS])
    if checked.preview is not None:
        replaced = checked.preview.replaced
        earlier = replaced.earlier
        if earlier is not None:  # the page's sentence only: a plain record, not a database row
            earlier = SimpleNamespace(id=earlier.id, as_of=earlier.as_of, filename=earlier.filename,
                                      actor_label=earlier.actor_label, created_at=earlier.created_at)
        kept.preview = dataclasses.replace(checked.preview, replaced=importer.Replaced(replaced.positions, earlier))
    fingerprint = _fingerprint(data, checked.options)
    with _Folder() as folder:
        folder.unlink(f"{token}.reading")
        _write_signed(folder, f"{token}.preview", {"for": fingerprint, "checked": kept})
        if checked.ok:
            _write_signed(folder, f"{token}.reading", {"for": fingerprint, "checked": Checked(
                checked.parsed, checked.options, as_of=checked.as_of)})


def kept_preview(token: str, data: bytes, meta: dict) -> Checked | None:
    """The preview the preview job kept for this file read with the stash's current options; None
    when there is none or it is of other options (read again since). StashUnsafe when its signature
    is not this app's (a worker with another SECRET_KEY, or a file put there by something else)."""
    return _kept(token, "preview", data, meta)


def kept_reading(token: str, data: bytes, meta: dict) -> Checked | None:
    """The whole reading of the file the preview job kept (for the stash's current options), for the
    import job: parsing 200,000 rows again is most of an import's time. None when there is none."""
    return _kept(token, "reading", data, meta)


def _write_signed(folder: _Folder, name: str, value) -> None:
    blob = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    folder.write(name, _signature(blob) + blob)


def keep_signed(token: str, suffix: str, fingerprint, value) -> None:
    """Keep `value` beside the upload `token` (`<token>.<suffix>`), signed and tied to `fingerprint`
    (what it was made of: the file's bytes, the options it was read with). Also used by the list import."""
    if TOKEN.match(token or ""):
        with _Folder() as folder:
            _write_signed(folder, f"{token}.{suffix}", {"for": fingerprint, "checked": value})


def load_signed(token: str, suffix: str, fingerprint):
    """What `keep_signed` kept for this `fingerprint`; None when nothing is kept or it is of another
    fingerprint. StashUnsafe when its signature is not this server's."""
    if not TOKEN.match(token or ""):
        return None
    with _Folder() as folder:
        try:
            stored = folder.read(f"{token}.{suffix}")
        except OSError:
            return None
    mac, blob = stored[:32], stored[32:]
    if not hmac.compare_digest(mac, _signature(blob)):  # another SECRET_KEY, or not written by this app
        raise StashUnsafe("the preview the job worker kept of this file is not signed with this server's "
                          "SECRET_KEY (the web and the job workers must share it); it was not loaded")
    kept = unpickled(blob)
    if kept["for"] != fingerprint:
        return None
    return kept["checked"]


def unpickled(blob: bytes):
    """pickle.loads with the cyclic garbage collector paused: a reading of 200,000 rows is some
    millions of new objects, each few thousand of which started a collection that went over the
    ones before (2.3 s of CPU instead of 1.4 s). Nothing of it is garbage yet."""
    paused = gc.isenabled()
    gc.disable()
    try:
        return pickle.loads(blob)
    finally:
        if paused:
            gc.enable()


def _kept(token: str, suffix: str, data: bytes, meta: dict) -> Checked | None:
    return load_signed(token, suffix, _fingerprint(data, ReadOptions.from_meta(meta)))


# --- merging a company created by an import --------------------------------------------------

def find_company(text: str) -> Company:
    """The one company with this id, ISIN, ticker or exact name; MergeError otherwise."""
    text = (text or "").strip()
    if not text:
        raise MergeError("target", "Say which company to merge into (name, ISIN or ticker).")
    text = text.removeprefix("#")
    conditions = [Company.isin == text.upper(), sa.func.upper(Company.ticker) == text.upper(),
                  sa.func.lower(Company.name) == text.lower()]
    if whole_number(text) is not None:
        conditions.append(Company.id == whole_number(text))
    found = db.session.scalars(sa.select(Company).where(sa.or_(*conditions)).limit(6)).all()
    if not found:
        raise MergeError("target", f"No company is called or identified by {text!r}.")
    if len(found) > 1:
        names = "; ".join(f"{c.name} (#{c.id})" for c in found)
        raise MergeError("target", f"{text!r} fits several companies: {names}. Use the number.")
    return found[0]


def check_mergeable(source: Company) -> None:
    """Only a company an import created, not yet reviewed, is merged from the review page."""
    if source.origin is None:
        raise MergeError("target", f"{source.name} was not created by a holdings import, or has been reviewed "
                                   f"already; it cannot be merged from the review page.")


@dataclass
class MergePlan:
    """What merging `source` into `target` moves, for the confirmation page and its check."""

    source: Company
    target: Company
    #: (fund name, as-of date, whether it adds to a position the target already has)
    holdings: list[tuple[str, dt.date, bool]] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)
    flags_moved: list[RiskFlag] = field(default_factory=list)
    flags_known: list[RiskFlag] = field(default_factory=list)
    engagements: list[Engagement] = field(default_factory=list)
    #: identifier fields the target lacks and receives: field → value
    fields: dict[str, str] = field(default_factory=dict)
    #: value-chain relationships with the source as counterparty, and the source's own maps (they move too)
    relationships: int = 0
    maps: int = 0

    @property
    def digest(self) -> str:
        """Changes when what the merge would do changes (between the page and the confirmation)."""
        summary = [self.source.id, self.target.id, [(f, d.isoformat(), a) for f, d, a in self.holdings],
                   self.aliases, sorted(f.id for f in self.flags_moved), sorted(f.id for f in self.flags_known),
                   sorted(e.id for e in self.engagements), sorted(self.fields.items()), self.relationships,
                   self.maps]
        return hashlib.sha256(json.dumps(summary).encode()).hexdigest()[:32]


def merge_plan(source: Company, target: Company) -> MergePlan:
    """Read-only: what a merge would move; MergeError if it is not allowed."""
    check_mergeable(source)
    if source.id == target.id:
        raise MergeError("target", "A company cannot be merged into itself.")
    clash = db.session.scalar(
        sa.select(Engagement.id).where(Engagement.company_id == source.id, Engagement.is_open,
                                       Engagement.campaign_id.in_(sa.select(Engagement.campaign_id).where(
                                           Engagement.company_id == target.id,
                                           Engagement.is_open))))
    if clash:
        raise MergeError("target", "Both companies have an open engagement in the same campaign; close one first.")
    plan = MergePlan(source=source, target=target)
    target_positions = set(db.session.execute(
        sa.select(Holding.fund_id, Holding.as_of).where(Holding.company_id == target.id)).all())
    for fund_id, fund_name, as_of in db.session.execute(
        sa.select(Holding.fund_id, Fund.name, Holding.as_of).join(Fund, Fund.id == Holding.fund_id)
        .where(Holding.company_id == source.id).order_by(Fund.name, Holding.as_of)
    ):
        plan.holdings.append((fund_name, as_of, (fund_id, as_of) in target_positions))
    known = {(f.source, f.citation) for f in target.risk_flags}
    for flag in source.risk_flags:
        (plan.flags_known if (flag.source, flag.citation) in known else plan.flags_moved).append(flag)
    plan.engagements = list(db.session.scalars(
        sa.select(Engagement).where(Engagement.company_id == source.id).order_by(Engagement.opened_on)))
    names = {target.name.lower(), *(a.lower() for a in target.alias_names)}
    for alias in [source.name, *source.alias_names]:
        if alias.lower() not in names:
            plan.aliases.append(alias[:200])
            names.add(alias.lower())
    for field_name in ("isin", "ticker", "exchange", "country", "sector"):
        value = getattr(source, field_name)
        if value and not getattr(target, field_name):
            plan.fields[field_name] = value
    plan.relationships, plan.maps = _value_chain_plan(source, target)
    return plan


def _value_chain_plan(source: Company, target: Company) -> tuple[int, int]:
    """(relationships with the source as counterparty, maps of the source): they move to the target.

    Refused (MergeError) when the move would list the target twice with one kind in one map, make a
    company its own counterparty, or give the target two maps with one number. Without the move the
    source's deletion took its relationships, status history and exit evidence with it (ON DELETE CASCADE).
    """
    as_counterparty = db.session.execute(
        sa.select(Relationship.map_id, Relationship.kind, Relationship.company_id)
        .where(Relationship.counterparty_id == source.id)).all()
    if as_counterparty:
        twice = db.session.execute(
            sa.select(ValueChainMap.number, Company.name, Relationship.kind)
            .join(ValueChainMap, ValueChainMap.id == Relationship.map_id)
            .join(Company, Company.id == Relationship.company_id)
            .where(Relationship.counterparty_id == target.id,
                   sa.tuple_(Relationship.map_id, Relationship.kind).in_([(m, k) for m, k, _ in as_counterparty]))
            .order_by(ValueChainMap.number).limit(1)).first()
        if twice is not None:
            number, company_name, kind = twice
            raise MergeError("target", f"{source.name} and {target.name} are both in value-chain map {number} of "
                                       f"{company_name} as {kind.replace('_', '-')}; a map lists each counterparty "
                                       f"once per kind. Import a map of {company_name} listing it once, then merge.")
    own = db.session.scalar(sa.select(sa.func.count()).select_from(Relationship).where(sa.or_(
        sa.and_(Relationship.company_id == source.id, Relationship.counterparty_id == target.id),
        sa.and_(Relationship.company_id == target.id, Relationship.counterparty_id == source.id))))
    if own:
        raise MergeError("target", f"{target.name} has {source.name} in its value chain (or the other way round): "
                                   f"merged, a company would be its own counterparty.")
    maps = db.session.scalar(sa.select(sa.func.count()).select_from(ValueChainMap)
                             .where(ValueChainMap.company_id == source.id))
    if maps and db.session.scalar(sa.select(ValueChainMap.id).where(ValueChainMap.company_id == target.id).limit(1)):
        raise MergeError("target", f"both {source.name} and {target.name} have value-chain maps; their versions "
                                   f"cannot be put in one order. Keep {source.name} as a company of its own.")
    return len(as_counterparty), maps


def _state(obj) -> dict:
    """Every column of a row, as JSON values (the audit event keeps what the merge deletes)."""
    values = {}
    for attr in sa.inspect(obj).mapper.column_attrs:
        value = getattr(obj, attr.key)
        if isinstance(value, (dt.date, dt.datetime)):
            value = value.isoformat()
        elif isinstance(value, Decimal):
            value = str(value)
        values[attr.key] = value
    return values


def last_merge_of(company_id: int) -> AuditEvent | None:
    """The audit event of the merge that removed this company, if it was merged."""
    return db.session.scalar(
        sa.select(AuditEvent).where(AuditEvent.action == "company_merge", AuditEvent.object_type == "Company",
                                    AuditEvent.object_id == company_id)
        .order_by(AuditEvent.id.desc()).limit(1))


def merge(source: Company, target: Company, expected_digest: str | None = None) -> MergePlan:
    """Fold `source` (created by an import) into `target`: holdings, flags, engagements, names.

    Runs once: both rows are locked first (in id order, where the database can) and the source is
    claimed with a conditional update, so a second request finds it gone and gets a MergeError.
    """
    source_id, target_id = source.id, target.id
    db.session.execute(sa.select(Company.id).where(Company.id.in_([source_id, target_id]))
                       .order_by(Company.id).with_for_update())
    claimed = db.session.execute(
        sa.update(Company).where(Company.id == source_id, Company.origin.is_not(None))
        .values(origin=Company.origin).execution_options(synchronize_session=False)).rowcount
    if claimed != 1:
        raise MergeError("target", "This company has been merged or reviewed meanwhile; nothing was changed.")
    if db.session.scalar(sa.select(Company.id).where(Company.id == target_id)) is None:
        raise MergeError("target", "The company to merge into no longer exists; nothing was changed.")
    db.session.refresh(source)
    db.session.refresh(target)
    plan = merge_plan(source, target)
    if expected_digest is not None and plan.digest != expected_digest:
        raise MergeError("target", "What this merge would move has changed since the page was shown; check it "
                                   "again.")
    audit.record("company_merge", f"{source.name} (#{source.id}) merged into {target.name} (#{target.id})",
                 obj=source, changes={
                     "company": _state(source),
                     "aliases": [_state(a) for a in source.aliases],
                     "risk_flags": [_state(f) for f in source.risk_flags],
                     "holdings": [_state(h) for h in db.session.scalars(
                         sa.select(Holding).where(Holding.company_id == source.id).order_by(Holding.id))],
                     "engagements": [e.id for e in plan.engagements],
                     "value_chain": {"relationships": plan.relationships, "maps": plan.maps},
                     "into": {"id": target.id, "name": target.name},
                     "fields_copied": plan.fields,
                     "aliases_added": plan.aliases,
                 })
    target_positions = {(h.fund_id, h.as_of): h for h in db.session.scalars(
        sa.select(Holding).where(Holding.company_id == target.id))}
    for holding in db.session.scalars(sa.select(Holding).where(Holding.company_id == source.id)).all():
        existing = target_positions.get((holding.fund_id, holding.as_of))
        if existing is None:
            holding.company_id = target.id
            continue
        for name in ("shares", "market_value", "weight"):
            a, b = getattr(existing, name), getattr(holding, name)
            if b is not None:
                total = (a or Decimal(0)) + b
                setattr(existing, name, min(total, Decimal(100)) if name == "weight" else total)
        db.session.delete(holding)
    for flag in plan.flags_moved:
        source.risk_flags.remove(flag)
        target.risk_flags.append(RiskFlag(source=flag.source, section=flag.section,
                                          effective_date=flag.effective_date, citation=flag.citation,
                                          citation_url=flag.citation_url, note=flag.note,
                                          created_by_id=flag.created_by_id, entity_id=flag.entity_id,
                                          version_id=flag.version_id, link=flag.link,
                                          linked_via_id=flag.linked_via_id, match_score=flag.match_score,
                                          match_reason=flag.match_reason, ended_on=flag.ended_on,
                                          ended_version_id=flag.ended_version_id))
    for engagement in plan.engagements:
        engagement.company_id = target.id
    for model, column in ((Relationship, Relationship.counterparty_id), (Relationship, Relationship.company_id),
                          (ValueChainMap, ValueChainMap.company_id)):
        db.session.execute(sa.update(model).where(column == source.id).values({column: target.id})
                           .execution_options(synchronize_session=False))
    for alias in plan.aliases:
        target.aliases.append(CompanyAlias(alias=alias))
    db.session.delete(source)
    db.session.flush()
    for field_name, value in plan.fields.items():
        setattr(target, field_name, value)
    db.session.flush()
    return plan


def keep(company: Company) -> None:
    """Mark a company created by an import as reviewed (a company of its own); once."""
    check_mergeable(company)
    done = db.session.execute(
        sa.update(Company).where(Company.id == company.id, Company.origin.is_not(None))
        .values(origin=None).execution_options(synchronize_session=False)).rowcount
    if done != 1:
        raise MergeError("target", f"{company.name} has been reviewed meanwhile.")
    audit.record("update", f"update Company {company.name}", obj=company,
                 changes={"origin": [company.origin, None]})
    db.session.expire(company, ["origin"])

