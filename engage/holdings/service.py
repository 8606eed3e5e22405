"""Uploads waiting for confirmation, and merging a company created by an import."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import secrets
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa
from flask import current_app

from engage import audit
from engage.errors import FieldError
from engage.extensions import db
from engage.models import AuditEvent, Company, CompanyAlias, Engagement, Fund, Holding, RiskFlag
from engage.validators import whole_number

TOKEN = re.compile(r"^[0-9a-f]{32}$")


class MergeError(FieldError):
    """A refused merge."""


# --- uploads waiting for confirmation ------------------------------------------------------
#
# A stash is <token>.bin (the file) and <token>.json (fund, date, options). Confirming renames
# the .bin to .claimed first: a rename succeeds once, so a double click imports once. After the
# import commits, <token>.done keeps the result for a second click to report; housekeeping
# deletes all of these after UPLOAD_MAX_AGE_HOURS.

def upload_dir() -> Path:
    folder = Path(current_app.instance_path) / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def stash_upload(data: bytes, meta: dict) -> str:
    """Keep an uploaded file between the preview and the confirmation."""
    token = secrets.token_hex(16)
    (upload_dir() / f"{token}.bin").write_bytes(data)
    save_upload_meta(token, meta)
    return token


def save_upload_meta(token: str, meta: dict) -> None:
    if TOKEN.match(token or ""):
        path = upload_dir() / f"{token}.json"
        temporary = path.with_suffix(".json.tmp")
        temporary.write_text(json.dumps(meta), encoding="utf-8")
        os.replace(temporary, path)


def load_upload(token: str) -> tuple[bytes, dict] | None:
    """The stashed file and its meta, without claiming it (for a preview read again)."""
    if not TOKEN.match(token or ""):
        return None
    data_path, meta_path = upload_dir() / f"{token}.bin", upload_dir() / f"{token}.json"
    try:
        return data_path.read_bytes(), json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def claim_upload(token: str) -> tuple[bytes, dict] | None:
    """Take the stash for importing; only one caller ever gets it (None for the others)."""
    if not TOKEN.match(token or ""):
        return None
    folder = upload_dir()
    claimed = folder / f"{token}.claimed"
    try:
        os.rename(folder / f"{token}.bin", claimed)
    except OSError:
        return None
    try:
        return claimed.read_bytes(), json.loads((folder / f"{token}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        release_upload(token)
        return None


def release_upload(token: str) -> None:
    """Put a claimed stash back (the import failed), so it can be confirmed again."""
    if TOKEN.match(token or ""):
        folder = upload_dir()
        try:
            os.rename(folder / f"{token}.claimed", folder / f"{token}.bin")
        except OSError:
            pass


def finish_upload(token: str, summary: list[str]) -> None:
    """The import committed: drop the file, keep its result for a second click to report."""
    if TOKEN.match(token or ""):
        folder = upload_dir()
        (folder / f"{token}.done").write_text(json.dumps(summary), encoding="utf-8")
        for suffix in (".claimed", ".bin", ".json"):
            (folder / f"{token}{suffix}").unlink(missing_ok=True)


def upload_state(token: str) -> tuple[str, list[str]]:
    """("done", result lines), ("importing", []) or ("gone", []) for a stash that cannot be claimed."""
    if not TOKEN.match(token or ""):
        return "gone", []
    folder = upload_dir()
    try:
        return "done", json.loads((folder / f"{token}.done").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    if (folder / f"{token}.claimed").exists():
        return "importing", []
    return "gone", []


def discard_upload(token: str) -> None:
    if TOKEN.match(token or ""):
        for suffix in (".bin", ".json", ".claimed", ".done"):
            (upload_dir() / f"{token}{suffix}").unlink(missing_ok=True)


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

    @property
    def digest(self) -> str:
        """Changes when what the merge would do changes (between the page and the confirmation)."""
        summary = [self.source.id, self.target.id, [(f, d.isoformat(), a) for f, d, a in self.holdings],
                   self.aliases, sorted(f.id for f in self.flags_moved), sorted(f.id for f in self.flags_known),
                   sorted(e.id for e in self.engagements), sorted(self.fields.items())]
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
    return plan


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
                                          created_by_id=flag.created_by_id))
    for engagement in plan.engagements:
        engagement.company_id = target.id
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

