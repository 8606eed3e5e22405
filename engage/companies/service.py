"""Companies and their risk flags. Functions mutate; the request commits."""

from __future__ import annotations

import sqlalchemy as sa

from engage.extensions import db
from engage.models import Company, CompanyAlias, Fund, Holding, RiskFlag
from engage.models.holdings import in_snapshot, latest_snapshots


def apply_form(company: Company, form) -> Company:
    """Copy a validated CompanyForm onto `company` and sync its aliases."""
    company.name = form.name.data.strip()
    company.isin = form.isin.data or None
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
    return [v for v in db.session.scalars(sa.select(column).where(column.is_not(None)).distinct().order_by(column))]
