"""A demo data set so every screen has something to show (`flask seed --demo`).

Fictional users, investors and funds (marked "demo"), engagements at every stage of the
cycle on the seeded companies, with letters, responses, reminders and scores. Dates are
relative to today. Loading twice adds nothing the second time.
"""

from __future__ import annotations

import datetime as dt
import secrets
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa

from engage import clock
from engage.engagements import cycle
from engage.engagements.service import log_interaction
from engage.extensions import db
from engage.letters import service as letters
from engage.valuechain import service as valuechain
from engage.models import (
    Campaign,
    Company,
    CompanyContact,
    CriterionScore,
    Direction,
    Engagement,
    Escalation,
    Fund,
    Holding,
    InteractionKind,
    Investor,
    LetterTemplate,
    LetterTemplateLanguage,
    MapSourceKind,
    Relationship,
    RelationshipStatus,
    Reminder,
    ReminderStatus,
    Role,
    Rubric,
    Score,
    Stage,
    User,
)

DEMO_USERS = [
    ("admin@example.org", "Alex Admin", Role.ADMIN),
    ("analyst@example.org", "Sam Analyst", Role.ANALYST),
    ("analyst2@example.org", "Robin Researcher", Role.ANALYST),
    ("viewer@example.org", "Casey Committee", Role.VIEWER),
]
DEMO_LOGIN = DEMO_USERS[0][0]

#: Days from today to each demo engagement's open reminder: a few overdue, most upcoming.
REMINDER_OFFSETS = [-6, -2, 3, 5, 9, 16, 24, 40, 12]

DEMO_INVESTORS = [
    ("Northbridge Pension Fund (demo)", Decimal("48000000000")),
    ("Lakeside Teachers' Retirement System (demo)", Decimal("21500000000")),
    ("Harbour Faith Investors (demo)", Decimal("3200000000")),
]

#: (company name, stage, escalation, outcome, owner index, days since opened)
DEMO_ENGAGEMENTS = [
    ("Hangzhou Hikvision Digital Technology Co., Ltd.", Stage.MAPPING_REQUESTED, Escalation.DIVESTMENT_RECOMMENDED, None, 1, 120),
    ("Zhejiang Dahua Technology Co., Ltd.", Stage.MAPPING_REQUESTED, Escalation.OBSERVATION, None, 1, 200),
    ("iFlytek Co., Ltd.", Stage.ACKNOWLEDGED, Escalation.FOLLOW_UP, None, 2, 60),
    ("Thermo Fisher Scientific Inc.", Stage.DISENGAGING, Escalation.NONE, None, 1, 130),
    ("Apple Inc.", Stage.VALUE_CHAIN_MAPPED, Escalation.CALL_TO_ACTION, None, 2, 125),
    ("Alphabet Inc.", Stage.IDENTIFIED, Escalation.NONE, None, 1, 10),
    ("Amazon.com, Inc.", Stage.DISCLOSED, Escalation.NONE, None, 2, 190),
    ("Xiamen Meiya Pico Information Co., Ltd.", Stage.CLOSED, Escalation.DIVESTED, "divested", 1, 300),
    ("SenseTime Group", Stage.MAPPING_REQUESTED, Escalation.COLLECTIVE, None, 2, 80),
    ("Brightpeak Solar Modules Co. (demo)", Stage.VALUE_CHAIN_MAPPED, Escalation.NONE, None, 2, 95),
]

#: The fictional solar-module maker whose disclosed supplier list the demo records (seeds/valuechain/README.md).
DEMO_SOLAR = ("Brightpeak Solar Modules Co. (demo)", "Solar modules", "CN")
DEMO_MAP = Path(__file__).resolve().parent.parent / "seeds" / "valuechain" / "demo_solar_supplier_list.csv"


#: Unflagged holdings, so exposure reads as a share of a real portfolio (name, sector, country).
DEMO_UNFLAGGED = [
    ("Harbour Semiconductor Manufacturing (demo)", "Semiconductors", "TW"),
    ("Jade River Bank (demo)", "Banks", "CN"),
    ("Northwind Retail Group (demo)", "Retail", "GB"),
    ("Lakeshore Utilities (demo)", "Utilities", "US"),
]


#: Extra demo contacts (company, name, role, title, language): fictional offices, not people.
DEMO_EXTRA_CONTACTS = [
    ("Hangzhou Hikvision Digital Technology Co., Ltd.", "董事会办公室 Board Office (demo)", "company_secretary",
     "董事会秘书办公室", "zh-Hans"),
    ("Zhejiang Dahua Technology Co., Ltd.", "证券事务部 Securities Affairs (demo)", "company_secretary",
     "证券事务代表", "zh-Hans"),
]

#: A Simplified Chinese version of the initial letter, so the demo shows a letter in the reader's language.
DEMO_ZH_INITIAL = {
    "subject": "关于维吾尔地区的投资者期望：致{{ company.name }}",
    "body": """{{ today }}

{{ addressee.name }}：

我们作为直接或通过客户持有{{ company.name }}股份的投资者和机构{% if signatories is defined %}（共{{ signatories|length }}家签署方）{% endif %}致函贵公司。可信的报告显示，新疆维吾尔自治区的监控技术、拘押和国家强制劳动与我们投资组合中公司的价值链存在关联。

根据《联合国工商企业与人权指导原则》，我们请{{ company.name }}：
{% for item in campaign.expectations %}
{{ loop.index }}. {{ item.title }}
{% endfor %}
我们期待在30天内收到贵公司的书面答复。

此致
敬礼

{{ sender.name }}
""",
}


#: Place names that start company names; the demo addresses use the next word (ir@hikvision.example).
_PLACES = {"hangzhou", "zhejiang", "xiamen", "shenzhen", "beijing", "shanghai", "anhui", "xinjiang"}


def _mail_slug(name: str) -> str:
    words = ["".join(ch for ch in word.lower() if ch.isalnum()) for word in name.split()]
    words = [w for w in words if w and w not in _PLACES]
    return words[0] if words else "company"


def _demo_contacts(companies: dict[str, Company], templates: dict[str, LetterTemplate]) -> None:
    """An investor-relations office (fictional, .example addresses) for every company, a few more."""
    for company in companies.values():
        slug = _mail_slug(company.name)
        db.session.add(CompanyContact(
            company=company, name="Investor Relations Office (demo)", role="investor_relations",
            title="Investor relations", email=f"ir@{slug}.example", language="en",
            address="Investor Relations Office\n1 Example Road (demo address)",
            source="Demo data: replace with the contact from the company's investor-relations website."))
    for name, person, role, title, language in DEMO_EXTRA_CONTACTS:
        company = companies.get(name)
        if company is not None:
            slug = _mail_slug(name)
            db.session.add(CompanyContact(company=company, name=person, role=role, title=title, language=language,
                                          email=f"board-office@{slug}.example", source="Demo data."))
    initial = templates.get("initial")
    if initial is not None and not any(v.language == "zh-Hans" for v in initial.languages):
        initial.languages.append(LetterTemplateLanguage(language="zh-Hans", **DEMO_ZH_INITIAL))


def ensure_demo_users(password: str | None) -> tuple[str, str]:
    """Create the demo users, and set their password to `password` (or a fresh random one)."""
    password = password or secrets.token_urlsafe(12)
    for email, name, role in DEMO_USERS:
        user = db.session.scalar(sa.select(User).where(User.email == email))
        if user is None:
            user = User(email=email, name=name, role=role.value, active=True)
            user.set_password(password)
            db.session.add(user)
        elif not user.check_password(password):
            user.set_password(password)
    db.session.flush()
    return DEMO_LOGIN, password


def load_demo(password: str | None = None) -> tuple[str, str]:
    """Load the demo data set; returns the login to print."""
    login = ensure_demo_users(password)
    campaign = db.session.scalar(sa.select(Campaign).where(Campaign.slug == "xuar"))
    if campaign is None:
        raise ValueError("the XUAR campaign is missing: run `flask seed` before the demo")
    if db.session.scalar(sa.select(Fund.id).where(Fund.name == "Demo Emerging Markets Index Fund")):
        return login  # already loaded
    users = [db.session.scalar(sa.select(User).where(User.email == email)) for email, _, _ in DEMO_USERS]
    if not campaign.letterhead:
        campaign.letterhead = "Demo Asset Management — Stewardship team\n1 Example Square, London\nstewardship@demo.example.org"
    for name, aum in DEMO_INVESTORS:
        investor = Investor(name=name, kind="investor", aum_usd=aum, contact_name="Stewardship team",
                            contact_email=f"stewardship@{name.split()[0].lower()}.example.org")
        db.session.add(investor)
        campaign.signatories.append(investor)

    companies = {c.name: c for c in db.session.scalars(sa.select(Company))}
    today = clock.today()
    _demo_funds(companies, today)
    templates = {t.kind: t for t in db.session.scalars(sa.select(LetterTemplate))}
    if campaign.sender_email is None:
        campaign.sender_email = "stewardship@demo.example.org"
    _demo_contacts(companies, templates)
    db.session.flush()
    rubric = db.session.scalar(
        sa.select(Rubric).where(Rubric.campaign_id == campaign.id).order_by(Rubric.version.desc())
    )
    for index, (name, stage, escalation, outcome, owner_index, age) in enumerate(DEMO_ENGAGEMENTS):
        company = companies.get(name)
        if company is None:
            continue
        due = today + dt.timedelta(days=REMINDER_OFFSETS[index % len(REMINDER_OFFSETS)])
        _demo_engagement(company, campaign, users[owner_index], stage, escalation, outcome,
                         today - dt.timedelta(days=age), today, templates, rubric, due)
    db.session.flush()
    _demo_value_chain(companies.get(DEMO_SOLAR[0]), users[2], today)
    return login


def _demo_value_chain(company: Company | None, analyst: User, today: dt.date) -> None:
    """The solar maker's supplier list as disclosed in its reply, screened; two links on their way out."""
    if company is None or not DEMO_MAP.exists():
        return
    disclosed = today - dt.timedelta(days=40)
    valuechain.save(company, DEMO_MAP.read_bytes(), DEMO_MAP.name, source_kind=MapSourceKind.LETTER_REPLY.value,
                    source_ref="Reply to our letter: supplier-list annex", disclosed_on=disclosed,
                    imported_by_id=analyst.id)
    db.session.flush()
    links = {r.counterparty.name: r for r in db.session.scalars(
        sa.select(Relationship).where(Relationship.company_id == company.id))}
    hoshine = links.get("Hoshine Silicon Industry Co. Ltd.")
    if hoshine is not None:
        valuechain.change_status(hoshine, RelationshipStatus.UNDER_REVIEW.value, disclosed + dt.timedelta(days=5),
                                 actor_id=analyst.id)
        valuechain.change_status(hoshine, RelationshipStatus.EXIT_PLANNED.value, disclosed + dt.timedelta(days=20),
                                 target_date=today + dt.timedelta(days=60), actor_id=analyst.id)
    daqo = links.get("Xinjiang Daqo New Energy Co. Ltd.")
    if daqo is not None:
        valuechain.change_status(daqo, RelationshipStatus.UNDER_REVIEW.value, disclosed + dt.timedelta(days=5),
                                 actor_id=analyst.id)


def _demo_funds(companies: dict[str, Company], today: dt.date) -> None:
    as_of = today.replace(day=1) - dt.timedelta(days=1)
    em = Fund(name="Demo Emerging Markets Index Fund", provider="Demo Asset Management", base_currency="USD",
              benchmark="MSCI Emerging Markets (tracked)")
    world = Fund(name="Demo Global Equity Fund", provider="Demo Asset Management", base_currency="USD",
                 benchmark="MSCI ACWI (tracked)")
    db.session.add_all([em, world])
    for name, sector, country in [*DEMO_UNFLAGGED, DEMO_SOLAR]:
        if name not in companies:
            companies[name] = Company(name=name, sector=sector, country=country,
                                      description="Fictional company in the demo data set.")
            db.session.add(companies[name])
    positions = [
        (em, "Harbour Semiconductor Manufacturing (demo)", 2_100_000, 96_400_000, "1.380000"),
        (em, "Jade River Bank (demo)", 5_400_000, 61_250_000, "0.880000"),
        (world, "Northwind Retail Group (demo)", 310_000, 24_900_000, "0.950000"),
        (world, "Lakeshore Utilities (demo)", 420_000, 18_300_000, "0.700000"),
        (em, "Hangzhou Hikvision Digital Technology Co., Ltd.", 1_250_000, 5_612_500, "0.080000"),
        (em, "Zhejiang Dahua Technology Co., Ltd.", 830_000, 2_158_000, "0.031000"),
        (em, "iFlytek Co., Ltd.", 410_000, 2_870_000, "0.041000"),
        (world, "Apple Inc.", 52_000, 11_960_000, "4.100000"),
        (world, "Alphabet Inc.", 38_000, 6_840_000, "2.300000"),
        (world, "Amazon.com, Inc.", 41_000, 8_610_000, "2.900000"),
        (world, "Thermo Fisher Scientific Inc.", 6_500, 3_380_000, "0.420000"),
        (world, "Hangzhou Hikvision Digital Technology Co., Ltd.", 300_000, 1_347_000, "0.020000"),
    ]
    for fund, name, shares, value, weight in positions:
        if name in companies:
            db.session.add(Holding(fund=fund, company=companies[name], as_of=as_of, shares=Decimal(shares),
                                   market_value=Decimal(value), weight=Decimal(weight)))


_STAGE_ORDER = [s.value for s in Stage]
_LADDER = [e.value for e in Escalation]


def _demo_engagement(company, campaign, owner, stage, escalation, outcome, opened, today, templates, rubric,
                     reminder_due):
    """Walk one engagement through the cycle with the same services an analyst's clicks use."""
    engagement = Engagement(company=company, campaign=campaign, owner=owner, stage=Stage.IDENTIFIED.value,
                            escalation=Escalation.NONE.value, opened_on=opened,
                            objectives="Obtain a value-chain map, a time-bound disengagement plan and public disclosure.")
    db.session.add(engagement)
    db.session.flush()
    target = Stage.MAPPING_REQUESTED.value if stage == Stage.CLOSED else stage.value
    reached = _STAGE_ORDER.index(target)
    day = opened

    def send(kind, when):
        template = templates.get(kind)
        if template is not None:
            letter = letters.generate(engagement, template, owner)
            db.session.flush()
            letters.mark_sent(letter, sent_on=when, channel="post", actor_id=owner.id, today=today)

    last_response = None
    steps = [
        (Stage.MAPPING_REQUESTED, 5, None),
        (Stage.ACKNOWLEDGED, 21, "Company reply"),
        (Stage.VALUE_CHAIN_MAPPED, 50, "Value-chain mapping shared"),
        (Stage.DISENGAGING, 40, "Disengagement plan"),
        (Stage.DISCLOSED, 60, "Public report published"),
    ]
    texts = {
        "Company reply": "The company acknowledged the letter and named a contact in its compliance team.",
        "Value-chain mapping shared": "Shared a supplier map covering direct suppliers and distributors; "
                                      "tier-2 component suppliers are **still being traced**.",
        "Disengagement plan": "Set out dates to end two distribution agreements connected to the region.",
        "Public report published": "The annual human-rights report now covers the mapping and the disengagement.",
    }
    for to, gap, what in steps[:reached]:
        day = min(today, day + dt.timedelta(days=gap))
        if what is None:
            send("initial", day)
        else:
            db.session.flush()
            last_response, _ = log_interaction(
                engagement, kind=InteractionKind.RESPONSE.value, direction=Direction.INBOUND.value, occurred_on=day,
                subject=what, summary=texts[what], participants="", uploads=[], today=today, actor_id=owner.id,
                move_to=to.value, seen_version=engagement.version)
    climb = _LADDER[1:_LADDER.index(escalation.value) + 1]
    if stage == Stage.CLOSED:
        climb = [level for level in climb if level != Escalation.DIVESTED.value]
    for level in climb:
        day = min(today, day + dt.timedelta(days=20))
        if level == Escalation.FOLLOW_UP.value:
            send("follow_up", day)
            continue
        if level == Escalation.COLLECTIVE.value and templates.get("escalation") is not None:
            letters.generate(engagement, templates["escalation"], owner)
        cycle.move_escalation(engagement, level, on=day, today=today, actor_id=owner.id,
                              note=f"Escalated to {Escalation(level).label.lower()}.")
    db.session.flush()
    if stage == Stage.CLOSED:
        for reminder in engagement.reminders:
            reminder.status = ReminderStatus.DONE.value
        day = min(today, day + dt.timedelta(days=30))
        cycle.move_stage(engagement, Stage.CLOSED.value, on=day, today=today, actor_id=owner.id, outcome=outcome,
                         note="Sold the remaining position after the divestment recommendation.")
    elif reached >= 2:
        db.session.add(Reminder(engagement=engagement, due_on=reminder_due, status=ReminderStatus.OPEN.value,
                                reason="Check progress against the plan", created_by_id=owner.id))
    if last_response is not None and rubric is not None:
        _demo_score(engagement, last_response, rubric, owner, reached)


def _demo_score(engagement, interaction, rubric, scorer, reached):
    """Levels rise with the stage reached, so the demo shows progress."""
    levels = {"value_chain_mapping": min(4, max(0, reached - 1)), "disengagement": min(4, max(0, reached - 2)),
              "public_disclosure": min(4, max(0, reached - 3))}
    criterion_scores = []
    weighted = Decimal(0)
    total_weight = Decimal(0)
    for criterion in rubric.criteria:
        level = levels.get(criterion.key, 1 if reached >= 2 else 0)
        weighted += Decimal(criterion.weight) * level
        total_weight += Decimal(criterion.weight)
        criterion_scores.append(CriterionScore(criterion=criterion, level=level,
                                               evidence="Demo evidence: see the company's reply on the timeline."))
    total = (weighted / (total_weight * 4) * 100).quantize(Decimal("0.01")) if total_weight else Decimal(0)
    db.session.add(Score(engagement=engagement, interaction=interaction, rubric=rubric, scorer_id=scorer.id,
                         scored_on=interaction.occurred_on, total=total, criterion_scores=criterion_scores))
