"""Public lists and screening: load list entries, match them to companies, flag, show exposure."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

import sqlalchemy as sa

from engage.errors import FieldError
from engage.extensions import db
from engage.holdings.parsing import RowError, parse_date
from engage.models import (
    Company,
    CompanyAlias,
    Engagement,
    Fund,
    Holding,
    ListedEntity,
    RiskFlag,
    RiskSource,
    Stage,
    normalize_name,
)

#: What a Consolidated Screening List `source` says for each of our lists.
CSL_SOURCES = {
    "us_entity_list": "entity list",
    "uflpa_entity_list": "uflpa",
}
LIST_COLUMNS = ("name", "alt_names", "source", "start_date", "federal_register_notice")


class ListError(FieldError):
    """A list file refused whole; `errors` holds the row-level report."""

    def __init__(self, message: str, errors: list[RowError] | None = None):
        super().__init__("file", message)
        self.errors = errors or []


@dataclass
class ListImport:
    added: int = 0
    updated: int = 0
    skipped_other_lists: int = 0


def import_list(data: bytes, list_name: str) -> ListImport:
    """Load entries of `list_name` from a CSV (CSL export or Engage's seed format), all or nothing."""
    if list_name not in RiskSource.values():
        raise ListError(f"unknown list {list_name!r}; lists are {', '.join(RiskSource.values())}")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ListError("the list file is not UTF-8 text") from exc
    reader = csv.DictReader(io.StringIO(text))
    headers = {h.strip().lower(): h for h in reader.fieldnames or []}
    if "name" not in headers:
        raise ListError("the list file has no 'name' column (expected the Consolidated Screening List columns "
                        f"{', '.join(LIST_COLUMNS)})")

    def get(row, column):
        return (row.get(headers[column]) or "").strip() if column in headers else ""

    wanted = CSL_SOURCES.get(list_name)
    errors, entries, seen = [], [], {}
    result = ListImport()
    for number, row in enumerate(reader, start=2):
        source_text = get(row, "source")
        if wanted and source_text and wanted not in source_text.lower():
            result.skipped_other_lists += 1
            continue
        name = get(row, "name")
        if not name:
            errors.append(RowError(number, "name", "", "a listed entity needs a name"))
            continue
        date_text = get(row, "start_date")
        effective = parse_date(date_text) if date_text else None
        if date_text and effective is None:
            errors.append(RowError(number, "start_date", date_text, "not a date"))
            continue
        key = (normalize_name(name), effective)
        if key in seen:
            errors.append(RowError(number, "name", name, f"duplicate of row {seen[key]}"))
            continue
        seen[key] = number
        citation = get(row, "federal_register_notice") or get(row, "citation") or source_text or list_name
        url = get(row, "citation_url") or get(row, "source_information_url") or None
        aliases = [a.strip() for a in get(row, "alt_names").split(";") if a.strip()]
        entries.append({"name": name[:300], "aliases": aliases, "effective_date": effective,
                        "citation": citation[:500], "citation_url": (url or "")[:500] or None,
                        "section": get(row, "section")[:40] or None, "country": get(row, "country")[:2].upper() or None,
                        "note": get(row, "note")})
    if errors:
        raise ListError(f"{len(errors)} row(s) refused; nothing was loaded", errors)
    existing = {(e.normalized_name, e.effective_date): e for e in db.session.scalars(
        sa.select(ListedEntity).where(ListedEntity.source == list_name))}
    for entry in entries:
        key = (normalize_name(entry["name"]), entry["effective_date"])
        item = existing.get(key)
        if item is None:
            db.session.add(ListedEntity(source=list_name, normalized_name=key[0], **entry))
            result.added += 1
        elif any(getattr(item, k) != v for k, v in entry.items()):
            for k, v in entry.items():
                setattr(item, k, v)
            result.updated += 1
    return result


@dataclass
class ScreenResult:
    companies_checked: int = 0
    flags_created: list[tuple[Company, ListedEntity]] = field(default_factory=list)


def screen(fund: Fund | None = None) -> ScreenResult:
    """Match list entries to companies (all, or those a fund holds) and add missing risk flags."""
    entries_by_name: dict[str, list[ListedEntity]] = defaultdict(list)
    for entry in db.session.scalars(sa.select(ListedEntity)):
        for name in entry.names():
            entries_by_name[name].append(entry)
    query = sa.select(Company.id, Company.normalized_name)
    if fund is not None:
        query = query.where(Company.id.in_(sa.select(Holding.company_id).where(Holding.fund_id == fund.id)))
    companies = dict(db.session.execute(query).all())
    names: dict[int, set[str]] = {cid: {n} for cid, n in companies.items()}
    for company_id, alias in db.session.execute(
        sa.select(CompanyAlias.company_id, CompanyAlias.normalized_alias)
        .where(CompanyAlias.company_id.in_(list(companies) or [-1]))
    ):
        names[company_id].add(alias)
    existing = set(db.session.execute(
        sa.select(RiskFlag.company_id, RiskFlag.source, RiskFlag.citation)
        .where(RiskFlag.company_id.in_(list(companies) or [-1]))
    ).all())
    result = ScreenResult(companies_checked=len(companies))
    loaded = {c.id: c for c in db.session.scalars(sa.select(Company).where(Company.id.in_(
        [cid for cid, ns in names.items() if any(n in entries_by_name for n in ns)] or [-1])))}
    for company_id, company_names in names.items():
        for name in company_names:
            for entry in entries_by_name.get(name, []):
                key = (company_id, entry.source, entry.citation)
                if key in existing:
                    continue
                existing.add(key)
                company = loaded[company_id]
                company.risk_flags.append(RiskFlag(
                    source=entry.source, section=entry.section, effective_date=entry.effective_date,
                    citation=entry.citation, citation_url=entry.citation_url,
                    note=f"Matched the {RiskSource(entry.source).label} entry “{entry.name}”."))
                result.flags_created.append((company, entry))
    return result


@dataclass
class FundExposure:
    fund: Fund
    as_of: dt.date | None
    total: Decimal
    flagged_value: Decimal
    rows: list[dict]

    @property
    def share(self) -> Decimal | None:
        return (self.flagged_value * 100 / self.total).quantize(Decimal("0.1")) if self.total else None


def latest_as_of(fund_id: int) -> dt.date | None:
    return db.session.scalar(sa.select(sa.func.max(Holding.as_of)).where(Holding.fund_id == fund_id))


def exposure(fund: Fund, as_of: dt.date | None = None) -> FundExposure:
    """The fund's flagged holdings at a date (default: its latest), with value, weight and flags."""
    as_of = as_of or latest_as_of(fund.id)
    if as_of is None:
        return FundExposure(fund, None, Decimal(0), Decimal(0), [])
    total = db.session.scalar(sa.select(sa.func.coalesce(sa.func.sum(Holding.market_value), 0)).where(
        Holding.fund_id == fund.id, Holding.as_of == as_of)) or Decimal(0)
    flagged = sa.select(RiskFlag.company_id).distinct()
    holdings = db.session.execute(
        sa.select(Holding, Company).join(Company, Company.id == Holding.company_id)
        .where(Holding.fund_id == fund.id, Holding.as_of == as_of, Holding.company_id.in_(flagged))
        .order_by(Holding.market_value.desc().nulls_last(), Company.normalized_name)
    ).all()
    ids = [company.id for _, company in holdings]
    flags: dict[int, list[RiskFlag]] = defaultdict(list)
    for flag in db.session.scalars(sa.select(RiskFlag).where(RiskFlag.company_id.in_(ids or [-1]))):
        flags[flag.company_id].append(flag)
    open_engagements = set(db.session.scalars(sa.select(Engagement.company_id).where(
        Engagement.company_id.in_(ids or [-1]), Engagement.stage != Stage.CLOSED.value)))
    rows = [{"holding": h, "company": c, "flags": flags[c.id], "engaged": c.id in open_engagements}
            for h, c in holdings]
    flagged_value = sum((h.market_value or Decimal(0) for h, _ in holdings), Decimal(0))
    return FundExposure(fund, as_of, Decimal(total), flagged_value, rows)


def open_engagements(companies: list[Company], campaign, owner, today: dt.date) -> list[Engagement]:
    """Open an `identified` engagement for each flagged company that has none in the campaign."""
    engaged = set(db.session.scalars(sa.select(Engagement.company_id).where(
        Engagement.campaign_id == campaign.id, Engagement.stage != Stage.CLOSED.value,
        Engagement.company_id.in_([c.id for c in companies] or [-1]))))
    opened = []
    for company in companies:
        if company.id in engaged:
            continue
        engagement = Engagement(company=company, campaign=campaign, owner=owner, opened_on=today,
                                stage=Stage.IDENTIFIED.value,
                                objectives="Opened from screening: the company is on a public list and held by our funds.")
        db.session.add(engagement)
        opened.append(engagement)
    return opened
