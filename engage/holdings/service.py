"""Funds, uploads waiting for confirmation, and merging a company created by an import."""

from __future__ import annotations

import json
import re
import secrets
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa
from flask import current_app

from engage.errors import FieldError
from engage.extensions import db
from engage.models import Company, CompanyAlias, Engagement, Fund, Holding, RiskFlag, Stage
from engage.validators import whole_number

TOKEN = re.compile(r"^[0-9a-f]{32}$")


class MergeError(FieldError):
    """A refused merge."""


def upload_dir() -> Path:
    folder = Path(current_app.instance_path) / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def stash_upload(data: bytes, meta: dict) -> str:
    """Keep an uploaded file between the preview and the confirmation."""
    token = secrets.token_hex(16)
    (upload_dir() / f"{token}.bin").write_bytes(data)
    (upload_dir() / f"{token}.json").write_text(json.dumps(meta), encoding="utf-8")
    return token


def load_upload(token: str) -> tuple[bytes, dict] | None:
    if not TOKEN.match(token or ""):
        return None
    data_path, meta_path = upload_dir() / f"{token}.bin", upload_dir() / f"{token}.json"
    if not data_path.is_file() or not meta_path.is_file():
        return None
    return data_path.read_bytes(), json.loads(meta_path.read_text(encoding="utf-8"))


def discard_upload(token: str) -> None:
    if TOKEN.match(token or ""):
        for suffix in (".bin", ".json"):
            (upload_dir() / f"{token}{suffix}").unlink(missing_ok=True)


def find_company(text: str) -> Company:
    """The one company with this id, ISIN, ticker or exact name; MergeError otherwise."""
    text = (text or "").strip()
    if not text:
        raise MergeError("target", "Say which company to merge into (name, ISIN or ticker).")
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


def merge(source: Company, target: Company) -> None:
    """Fold `source` (created by an import) into `target`: holdings, flags, engagements, names."""
    if source.id == target.id:
        raise MergeError("target", "A company cannot be merged into itself.")
    clash = db.session.scalar(
        sa.select(Engagement.id).where(Engagement.company_id == source.id, Engagement.stage != Stage.CLOSED.value,
                                       Engagement.campaign_id.in_(sa.select(Engagement.campaign_id).where(
                                           Engagement.company_id == target.id,
                                           Engagement.stage != Stage.CLOSED.value))))
    if clash:
        raise MergeError("target", "Both companies have an open engagement in the same campaign; close one first.")
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
                setattr(existing, name, (a or Decimal(0)) + b)
        db.session.delete(holding)
    known_flags = {(f.source, f.citation) for f in target.risk_flags}
    for flag in list(source.risk_flags):
        if (flag.source, flag.citation) in known_flags:
            continue
        source.risk_flags.remove(flag)
        target.risk_flags.append(RiskFlag(source=flag.source, section=flag.section,
                                          effective_date=flag.effective_date, citation=flag.citation,
                                          citation_url=flag.citation_url, note=flag.note))
    for engagement in db.session.scalars(sa.select(Engagement).where(Engagement.company_id == source.id)):
        engagement.company_id = target.id
    names = {target.name.lower(), *(a.lower() for a in target.alias_names)}
    for alias in [source.name, *source.alias_names]:
        if alias.lower() not in names:
            target.aliases.append(CompanyAlias(alias=alias[:200]))
            names.add(alias.lower())
    isin = source.isin
    db.session.delete(source)
    db.session.flush()
    for field_name, value in (("isin", isin), ("ticker", source.ticker), ("exchange", source.exchange),
                              ("country", source.country), ("sector", source.sector)):
        if value and not getattr(target, field_name):
            setattr(target, field_name, value)


def funds_overview():
    """Each fund with its latest snapshot date, positions and total market value (one query)."""
    latest = sa.select(Holding.fund_id, sa.func.max(Holding.as_of).label("as_of")).group_by(Holding.fund_id).subquery()
    return db.session.execute(
        sa.select(Fund, latest.c.as_of, sa.func.count(Holding.id), sa.func.sum(Holding.market_value))
        .outerjoin(latest, latest.c.fund_id == Fund.id)
        .outerjoin(Holding, sa.and_(Holding.fund_id == Fund.id, Holding.as_of == latest.c.as_of))
        .group_by(Fund.id, latest.c.as_of)
        .order_by(Fund.name)
    ).all()
