"""Companies and their risk flags. Functions mutate; the request commits."""

from __future__ import annotations

import re

import sqlalchemy as sa

from engage import dbutil
from engage.errors import FieldError
from engage.extensions import db
from engage.identifiers import compact_isin, compact_lei, isin_problem, lei_problem
from engage.models import Company, CompanyAlias, Fund, Holding, RiskFlag
from engage.models.companies import normalize_name
from engage.models.holdings import in_snapshot, latest_snapshots


def apply_form(company: Company, form) -> Company:
    """Copy a validated CompanyForm onto `company` and sync its aliases."""
    company.name = form.name.data.strip()
    company.isin = form.isin.data or None
    company.lei = form.lei.data or None
    company.parent = form.parent_company
    company.ticker = (form.ticker.data or "").strip().upper() or None
    company.exchange = (form.exchange.data or "").strip().upper() or None
    company.country = (form.country.data or "").strip().upper() or None
    company.sector = (form.sector.data or "").strip() or None
    company.website = form.website.data or None
    company.description = (form.description.data or "").strip()
    company.address = (form.address.data or "").strip()
    wanted = form.alias_list()
    for alias in list(company.aliases):
        if alias.alias not in wanted:
            company.aliases.remove(alias)
    present = set(company.alias_names)
    for name in wanted:
        if name not in present:
            company.aliases.append(CompanyAlias(alias=name))
    return company


def add_flag(company: Company, form, actor_id: int | None) -> RiskFlag:
    flag = RiskFlag(source=form.source.data, section=(form.section.data or "").strip() or None,
                    effective_date=form.effective_date.data, citation=form.citation.data.strip(),
                    citation_url=form.citation_url.data or None, note=(form.note.data or "").strip(),
                    created_by_id=actor_id)
    company.risk_flags.append(flag)
    return flag


def latest_holdings(company_id: int):
    """The company's position in each fund's latest snapshot that holds it."""
    latest = latest_snapshots()
    return db.session.execute(
        sa.select(Holding, Fund)
        .join(Fund, Fund.id == Holding.fund_id)
        .join(latest, in_snapshot(latest))
        .where(Holding.company_id == company_id)
        .order_by(Fund.name)
    ).all()


def distinct_values(column) -> list[str]:
    """The column's values other than NULL, once each, in order (the list's filter choices)."""
    return dbutil.distinct_values(column)


def parent_reference(company: Company) -> str:
    """How the company form shows the parent: its number, then its name ("#42 Hikvision")."""
    return f"#{company.parent.id} {company.parent.name}" if company.parent is not None else ""


def find_company(reference: str, field: str = "parent_ref") -> Company:
    """The one company `reference` names: "#42" (its number, as the form shows it), an LEI,
    an ISIN, or its name (case and legal form aside). FieldError when none or several."""
    text = reference.strip()
    number = re.match(r"^#\s*(\d{1,18})\b", text)
    if number:
        company = db.session.get(Company, int(number.group(1)))
        if company is None:
            raise FieldError(field, f"There is no company #{number.group(1)}.")
        return company
    if lei_problem(text) is None:
        query = sa.select(Company).where(Company.lei == compact_lei(text))
    elif isin_problem(text) is None:
        query = sa.select(Company).where(Company.isin == compact_isin(text))
    else:
        query = sa.select(Company).where(sa.func.lower(Company.name) == text.lower())
        if db.session.scalar(query.limit(1)) is None:
            query = sa.select(Company).where(Company.normalized_name == normalize_name(text))
    found = db.session.scalars(query.order_by(Company.id).limit(3)).all()
    if not found:
        raise FieldError(field, f"No company is called or identified by {text!r}: give its name, ISIN, LEI "
                                "or number (#42, from its page address).")
    if len(found) > 1:
        listed = ", ".join(f"#{c.id} {c.name}" for c in found[:2])
        raise FieldError(field, f"Several companies match {text!r} ({listed}…): give the number, e.g. #{found[0].id}.")
    return found[0]


def ancestor_ids(company_id: int) -> list[int]:
    """`company_id` and the companies above it (parent, its parent...), in one recursive query
    (UNION, so a loop already in the data ends it)."""
    chain = sa.select(Company.id, Company.parent_id).where(Company.id == company_id).cte("chain", recursive=True)
    chain = chain.union(sa.select(Company.id, Company.parent_id).join(chain, Company.id == chain.c.parent_id))
    return list(db.session.scalars(sa.select(chain.c.id)))


def check_parent(company: Company | None, parent: Company, field: str = "parent_ref") -> None:
    """Refuse a parent that would make `company` its own ancestor."""
    if company is None or company.id is None:
        return
    if parent.id == company.id:
        raise FieldError(field, f"{company.name} cannot be its own parent.")
    if company.id in ancestor_ids(parent.id):
        raise FieldError(field, f"{parent.name} is already a subsidiary of {company.name} (directly or further "
                                "down): a company cannot be its own ancestor.")
