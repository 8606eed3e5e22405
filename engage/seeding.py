"""Load the reference data in seeds/ idempotently: a second run changes nothing.

Rows are matched on natural keys (campaign slug, investor name, ISIN or company name,
template slug). Existing rows are left as they are, so edits made in the app survive
a re-seed; only missing rows, aliases and flags are added.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import sqlalchemy as sa
import yaml

from engage import clock
from engage.extensions import db
from engage.identifiers import compact_isin, compact_lei, isin_problem, lei_problem
from engage.lists import service as lists_service
from engage.lists.screening import screen
from engage.letters.rendering import LetterTemplateError, check_template
from engage.models import (
    Campaign,
    Company,
    CompanyAlias,
    Criterion,
    Investor,
    InvestorKind,
    LetterKind,
    LetterTemplate,
    LetterTemplateVersion,
    ListVersion,
    RiskFlag,
    RiskSource,
    Rubric,
)


class SeedError(ValueError):
    """Bad seed data: names the file and the entry."""


def _load(seeds_dir: Path, name: str) -> dict:
    path = seeds_dir / name
    try:
        with path.open(encoding="utf-8") as handle:
            data = yaml.safe_load(handle) or {}
    except FileNotFoundError as exc:
        raise SeedError(f"{path}: seed file missing") from exc
    except yaml.YAMLError as exc:
        raise SeedError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise SeedError(f"{path}: expected a mapping at the top level")
    return data


def _require(entry: dict, key: str, where: str):
    value = entry.get(key)
    if value in (None, ""):
        raise SeedError(f"{where}: '{key}' is required")
    return value


def load_reference(seeds_dir: Path) -> dict[str, int]:
    """Load campaigns, investors, rubric, companies and letter templates. Returns counts added."""
    added = {"investors": 0, "campaigns": 0, "criteria": 0, "companies": 0, "aliases": 0, "flags": 0, "templates": 0}
    campaigns_data = _load(seeds_dir, "campaigns.yaml")

    investors: dict[str, Investor] = {}
    for i, entry in enumerate(campaigns_data.get("investors", [])):
        where = f"campaigns.yaml investors[{i}]"
        name = _require(entry, "name", where)
        kind = entry.get("kind", "investor")
        if kind not in InvestorKind.values():
            raise SeedError(f"{where}: kind {kind!r} is not one of {InvestorKind.values()}")
        investor = db.session.scalar(sa.select(Investor).where(Investor.name == name))
        if investor is None:
            investor = Investor(name=name, kind=kind, website=entry.get("website"), aum_usd=entry.get("aum_usd"))
            db.session.add(investor)
            added["investors"] += 1
        investors[name] = investor

    campaigns: dict[str, Campaign] = {}
    for i, entry in enumerate(campaigns_data.get("campaigns", [])):
        where = f"campaigns.yaml campaigns[{i}]"
        slug = _require(entry, "slug", where)
        campaign = db.session.scalar(sa.select(Campaign).where(Campaign.slug == slug))
        if campaign is None:
            campaign = Campaign(
                slug=slug,
                name=_require(entry, "name", where),
                summary=entry.get("summary", ""),
                source=entry.get("source", ""),
                expectations=entry.get("expectations", []),
                call_to_action=entry.get("call_to_action", ""),
                call_to_action_url=entry.get("call_to_action_url"),
                response_window_days=entry.get("response_window_days", 30),
                follow_up_interval_days=entry.get("follow_up_interval_days", 14),
                follow_ups_before_escalation=entry.get("follow_ups_before_escalation", 2),
                warn_days_before=entry.get("warn_days_before", 3),
            )
            db.session.add(campaign)
            added["campaigns"] += 1
        for name in entry.get("signatories", []):
            if name not in investors:
                raise SeedError(f"{where}: signatory {name!r} is not among the investors")
            if investors[name] not in campaign.signatories:
                campaign.signatories.append(investors[name])
        campaigns[slug] = campaign

    added["criteria"] += _load_rubric(_load(seeds_dir, "rubric.yaml"), campaigns)
    companies_added, aliases_added, flags_added = _load_companies(_load(seeds_dir, "companies.yaml"))
    added["companies"] += companies_added
    added["aliases"] += aliases_added
    added["flags"] += flags_added
    added["templates"] += _load_templates(_load(seeds_dir, "letter_templates.yaml"), campaigns)
    db.session.flush()
    added.update(_load_lists(seeds_dir / "lists"))
    return added


def _load_lists(folder: Path) -> dict[str, int]:
    """Each seeds/lists/*.csv in its publisher's layout (told from the content), then screening.

    A file already loaded (the same SHA-256 as a version) is skipped, so seeding again adds nothing.
    """
    entries = 0
    for path in sorted(folder.glob("*.csv")) if folder.is_dir() else []:
        data = path.read_bytes()
        if db.session.scalar(sa.select(ListVersion.id).where(ListVersion.sha256 == hashlib.sha256(data).hexdigest())
                             .limit(1)):
            continue
        try:
            shown, _saved = lists_service.save(data, path.name)
        except lists_service.ListError as exc:
            details = "; ".join(str(e) for e in exc.errors[:5])
            raise SeedError(f"{path}: {exc.message}{': ' + details if details else ''}") from exc
        entries += sum(len(d.added) for d in shown.diffs)
    db.session.flush()
    return {"list entries": entries, "list flags": len(screen(notify=False, record=False).flags_created)}


def _load_rubric(data: dict, campaigns: dict[str, Campaign]) -> int:
    slug = _require(data, "campaign", "rubric.yaml")
    if slug not in campaigns:
        raise SeedError(f"rubric.yaml: campaign {slug!r} is not defined in campaigns.yaml")
    campaign = campaigns[slug]
    version = int(data.get("version", 1))
    exists = campaign.id is not None and db.session.scalar(
        sa.select(Rubric.id).where(Rubric.campaign_id == campaign.id, Rubric.version == version)
    )
    if exists:
        return 0
    rubric = Rubric(campaign=campaign, version=version, name=_require(data, "name", "rubric.yaml"),
                    published_at=clock.utcnow())
    keys = set()
    for position, entry in enumerate(data.get("criteria", [])):
        where = f"rubric.yaml criteria[{position}]"
        key = _require(entry, "key", where)
        if key in keys:
            raise SeedError(f"{where}: duplicate key {key!r}")
        keys.add(key)
        levels = entry.get("levels", [])
        if len(levels) != 5:
            raise SeedError(f"{where}: needs 5 level descriptors (0-4), found {len(levels)}")
        weight = entry.get("weight", 1)
        if not isinstance(weight, (int, float)) or weight <= 0:
            raise SeedError(f"{where}: weight must be a positive number, got {weight!r}")
        hint = entry.get("stage_hint")
        if hint is not None and hint not in ("acknowledged", "value_chain_mapped", "disengaging", "disclosed"):
            raise SeedError(f"{where}: stage_hint {hint!r} is not a stage a score can suggest")
        rubric.criteria.append(
            Criterion(key=key, title=_require(entry, "title", where), guidance=entry.get("guidance", ""),
                      weight=weight, levels=levels, position=position, stage_hint=hint)
        )
    db.session.add(rubric)
    return len(rubric.criteria)


def _find_company(entry: dict) -> Company | None:
    if entry.get("isin"):
        found = db.session.scalar(sa.select(Company).where(Company.isin == entry["isin"]))
        if found:
            return found
    return db.session.scalar(sa.select(Company).where(Company.name == entry["name"]))


def _load_companies(data: dict) -> tuple[int, int, int]:
    companies = aliases = flags = 0
    for i, entry in enumerate(data.get("companies", [])):
        where = f"companies.yaml companies[{i}]"
        name = _require(entry, "name", where)
        if entry.get("isin") and (problem := isin_problem(entry["isin"])):
            raise SeedError(f"{where} ({name}): {problem}")
        if entry.get("lei") and (problem := lei_problem(entry["lei"])):
            raise SeedError(f"{where} ({name}): {problem}")
        entry = {**entry, "isin": compact_isin(entry.get("isin")) or None, "lei": compact_lei(entry.get("lei")) or None}
        company = _find_company(entry)
        if company is None:
            company = Company(
                name=name,
                isin=entry["isin"],
                lei=entry["lei"],
                ticker=str(entry["ticker"]) if entry.get("ticker") else None,
                exchange=entry.get("exchange"),
                country=entry.get("country"),
                sector=entry.get("sector"),
                website=entry.get("website"),
                description=(entry.get("description") or "").strip(),
            )
            db.session.add(company)
            companies += 1
        known_aliases = set(company.alias_names)
        for alias in entry.get("aliases", []):
            if alias not in known_aliases:
                company.aliases.append(CompanyAlias(alias=alias))
                known_aliases.add(alias)
                aliases += 1
        known_flags = {(f.source, f.citation) for f in company.risk_flags}
        for j, flag in enumerate(entry.get("flags", [])):
            flag_where = f"{where} ({name}) flags[{j}]"
            source = _require(flag, "source", flag_where)
            if source not in RiskSource.values():
                raise SeedError(f"{flag_where}: source {source!r} is not one of {RiskSource.values()}")
            citation = _require(flag, "citation", flag_where)
            if (source, citation) in known_flags:
                continue
            effective = flag.get("effective_date")
            if effective is not None and not isinstance(effective, dt.date):
                raise SeedError(f"{flag_where}: effective_date must be a date (YYYY-MM-DD), got {effective!r}")
            company.risk_flags.append(
                RiskFlag(source=source, section=flag.get("section"), effective_date=effective, citation=citation,
                         citation_url=flag.get("citation_url"), note=(flag.get("note") or "").strip())
            )
            known_flags.add((source, citation))
            flags += 1
    return companies, aliases, flags


def _load_templates(data: dict, campaigns: dict[str, Campaign]) -> int:
    added = 0
    for i, entry in enumerate(data.get("templates", [])):
        where = f"letter_templates.yaml templates[{i}]"
        slug = _require(entry, "slug", where)
        if db.session.scalar(sa.select(LetterTemplate.id).where(LetterTemplate.slug == slug)):
            continue
        kind = _require(entry, "kind", where)
        if kind not in LetterKind.values():
            raise SeedError(f"{where}: kind {kind!r} is not one of {LetterKind.values()}")
        subject, body = _require(entry, "subject", where), _require(entry, "body", where)
        for part, source in (("subject", subject), ("body", body)):
            try:
                check_template(source)
            except LetterTemplateError as exc:
                raise SeedError(f"{where} ({slug}) {part}: {exc}") from exc
        campaign = campaigns.get(entry.get("campaign")) if entry.get("campaign") else None
        template = LetterTemplate(slug=slug, name=_require(entry, "name", where), kind=kind, campaign=campaign,
                                  subject=subject, body=body, version=1)
        template.versions.append(
            LetterTemplateVersion(version=1, subject=subject, body=body, created_at=clock.utcnow())
        )
        db.session.add(template)
        added += 1
    return added
