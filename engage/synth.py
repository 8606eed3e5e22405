"""A deterministic synthetic data set the size of a global equity universe (`flask synth`).

Defaults: 10,000 companies, 2 funds, 20,000 engagements across every stage and escalation,
200,000 interactions, 100,000 reminders (some due), letters, scores and cycle events.
Rows go in with Core bulk inserts, one transaction per batch, so it takes seconds, not hours.
The same seed and day give the same data.
"""

from __future__ import annotations

import datetime as dt
import random
import string
from decimal import Decimal

import sqlalchemy as sa

from engage import clock
from engage.engagements.cycle import LADDER, STAGES
from engage.extensions import db
from engage.identifiers import isin_check_digit
from engage.models import (
    Campaign,
    Company,
    CriterionScore,
    Engagement,
    EngagementEvent,
    Fund,
    Holding,
    Interaction,
    Letter,
    Reminder,
    RiskFlag,
    Role,
    Rubric,
    Criterion,
    Score,
    Stage,
    User,
    normalize_name,
)
from engage.names import stored_forms

BATCH = 5_000
SECTORS = ["Information Technology", "Consumer Discretionary", "Industrials", "Materials", "Financials",
           "Health Care", "Communication", "Energy", "Utilities", "Real Estate", "Consumer Staples"]
MARKETS = [("CN", "XSHE"), ("CN", "XSHG"), ("HK", "XHKG"), ("US", "XNAS"), ("US", "XNYS"), ("TW", "XTAI"),
           ("KR", "XKRX"), ("JP", "XTKS"), ("GB", "XLON"), ("DE", "XETR"), ("IN", "XNSE"), ("BR", "BVMF")]
WORDS = ["Golden", "River", "Eastern", "Harbour", "Summit", "Pacific", "Silk", "Lotus", "Northern", "Jade",
         "Bright", "Everest", "Pearl", "Phoenix", "Orient", "Crystal", "Evergreen", "Grand", "Union", "Star"]
KINDS = ["Technology", "Textiles", "Solar", "Electronics", "Holdings", "Industries", "Materials", "Energy",
         "Pharma", "Logistics", "Mining", "Chemicals", "Foods", "Motors", "Networks"]
KIND_WEIGHTS = ["letter", "email", "email", "call", "meeting", "response", "response", "note"]


class SynthError(ValueError):
    pass


def _isin(rng: random.Random, country: str) -> str:
    body = country + "".join(rng.choice(string.ascii_uppercase + string.digits) for _ in range(9))
    return body + str(isin_check_digit(body))


def _insert(model, rows: list[dict], progress=None) -> None:
    """Insert the rows in order (their ids follow that order): on PostgreSQL with COPY, elsewhere
    with one executemany per BATCH rows; a commit per batch either way."""
    if rows and db.session.get_bind().dialect.name == "postgresql" and _copy(model, rows, progress):
        return
    for start in range(0, len(rows), BATCH):
        db.session.execute(sa.insert(model.__table__), rows[start:start + BATCH])
        db.session.commit()
        if progress:
            progress(min(BATCH, len(rows) - start))


def _copy(model, rows: list[dict], progress=None) -> bool:
    """COPY the rows into the model's table through psycopg (several times faster than INSERTs
    for millions of rows). The columns the rows leave out get the model's constant defaults, as an
    INSERT would give them; False (nothing written) when a left-out column's default is computed
    in Python and the server has none, so the caller INSERTs instead."""
    # psycopg is PostgreSQL's driver: imported only when synth writes to PostgreSQL.
    from psycopg import sql
    from psycopg.types.json import Json

    table = model.__table__
    names = list(rows[0])
    constants: dict = {}
    for column in table.columns:
        if column.name in names or column.primary_key or column.default is None:
            continue
        if column.default.is_scalar:
            constants[column.name] = column.default.arg
        elif column.server_default is None:
            return False
    json_columns = {c.name for c in table.columns if isinstance(c.type, sa.JSON)}
    columns = names + list(constants)
    is_json = [name in json_columns for name in columns]
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table.name), sql.SQL(", ").join(sql.Identifier(name) for name in columns))
    for start in range(0, len(rows), BATCH * 10):
        chunk = rows[start:start + BATCH * 10]
        driver = db.session.connection().connection.driver_connection
        with driver.cursor() as cursor, cursor.copy(statement) as copy:
            for row in chunk:
                values = [row[name] for name in names] + list(constants.values())
                copy.write_row([Json(v) if json and v is not None else v for v, json in zip(values, is_json)])
        db.session.commit()
        if progress:
            progress(len(chunk))
    return True


def _ids(model, column, values) -> list[int]:
    """The ids of the rows whose `column` holds `values`, in that order; looked up BATCH values at
    a time (PostgreSQL takes at most 65,535 bound parameters in a statement, SQLite 32,766)."""
    found: dict = {}
    for start in range(0, len(values), BATCH):
        found.update(db.session.execute(sa.select(column, model.id).where(column.in_(values[start:start + BATCH]))).all())
    return [found[v] for v in values]


def synthesize(companies: int = 10_000, seed: int = 1, progress=None) -> dict[str, int]:
    """Build the data set; refuses to run twice on one database.

    The steps draw from one random generator in a fixed order: the same seed, the same data.
    """
    if companies < 10:
        raise SynthError("--companies must be at least 10")
    if db.session.scalar(sa.select(Campaign.id).where(Campaign.slug == "synthetic-a")):
        raise SynthError("this database already holds a synthetic data set")
    rng = random.Random(seed)
    today = clock.today()
    now = clock.utcnow()
    stamp = {"created_at": now, "updated_at": now}
    users, campaigns, rubric, funds = _reference_rows(now)
    user_ids = [u.id for u in users]

    company_ids = _companies(rng, companies, stamp, progress)
    flags = _risk_flags(rng, company_ids, today, stamp)
    _insert(RiskFlag, flags, progress)
    holdings = _holdings(rng, funds, company_ids, today, stamp)
    _insert(Holding, holdings, progress)
    engagement_rows = _engagements(rng, company_ids, campaigns, user_ids, today, stamp)
    _insert(Engagement, engagement_rows, progress)
    engagements = db.session.execute(
        sa.select(Engagement.id, Engagement.opened_on, Engagement.stage, Engagement.escalation)
        .where(Engagement.campaign_id.in_([c.id for c in campaigns])).order_by(Engagement.id)).all()
    history = _histories(rng, engagements, today, stamp)
    for model in (EngagementEvent, Interaction, Reminder, Letter):
        _insert(model, history[model], progress)
    scores = _scores(rng, engagements, rubric, user_ids, today, stamp, progress)
    return {"companies": len(company_ids), "risk flags": len(flags), "holdings": len(holdings),
            "engagements": len(engagement_rows), "events": len(history[EngagementEvent]),
            "interactions": len(history[Interaction]), "reminders": len(history[Reminder]),
            "letters": len(history[Letter]), "scores": scores}


def _reference_rows(now: dt.datetime) -> tuple[list[User], list[Campaign], Rubric, list[Fund]]:
    """Analysts, two campaigns, a published rubric and two funds (committed: the bulk rows point at them)."""
    users = [User(email=f"synth.analyst{i}@example.org", name=f"Synthetic Analyst {i}", role=Role.ANALYST.value,
                  password_hash="!synthetic: cannot sign in") for i in range(8)]
    campaigns = [Campaign(slug=f"synthetic-{c}", name=f"Synthetic campaign {c.upper()}", expectations=[],
                          summary="Synthetic data for benchmarks.") for c in "ab"]
    db.session.add_all(users + campaigns)
    db.session.flush()
    rubric = Rubric(campaign=campaigns[0], version=1, name="Synthetic rubric", published_at=now)
    rubric.criteria = [Criterion(key=f"c{i}", title=f"Criterion {i}", weight=Decimal(1 + i % 3),
                                 levels=[f"level {n}" for n in range(5)], position=i) for i in range(5)]
    funds = [Fund(name="Synthetic All-Cap Index Fund", provider="Synthetic", base_currency="USD"),
             Fund(name="Synthetic Emerging Markets Fund", provider="Synthetic", base_currency="USD")]
    db.session.add_all([rubric, *funds])
    db.session.commit()
    return users, campaigns, rubric, funds


def _companies(rng: random.Random, count: int, stamp: dict, progress) -> list[int]:
    """Insert `count` companies spread over the markets; their ids in insertion order."""
    rows = []
    for i in range(count):
        country, exchange = MARKETS[i % len(MARKETS)]
        name = f"{rng.choice(WORDS)} {rng.choice(KINDS)} {i:05d} Co., Ltd."
        rows.append({"name": name, "normalized_name": normalize_name(name), "name_forms": stored_forms([name]),
                     "isin": _isin(rng, country),
                     "ticker": f"{rng.randint(1, 999999):06d}" if country == "CN" else
                     "".join(rng.choice(string.ascii_uppercase) for _ in range(4)),
                     "exchange": exchange, "country": country, "sector": rng.choice(SECTORS),
                     "description": "", "address": "", **stamp})
    _insert(Company, rows, progress)
    return _ids(Company, Company.isin, [r["isin"] for r in rows])


def _risk_flags(rng: random.Random, company_ids: list[int], today: dt.date, stamp: dict) -> list[dict]:
    return [{"company_id": cid, "source": rng.choice(["us_entity_list", "uflpa_entity_list", "cbp_wro", "sector_risk"]),
             "effective_date": today - dt.timedelta(days=rng.randint(30, 2000)),
             "citation": "Synthetic list entry", "note": "", **stamp}
            for cid in company_ids if rng.random() < 0.06]


def _holdings(rng: random.Random, funds: list[Fund], company_ids: list[int], today: dt.date,
              stamp: dict) -> list[dict]:
    """One snapshot per fund at the end of last month: most companies in the first, a third in the second."""
    as_of = today.replace(day=1) - dt.timedelta(days=1)
    holdings = []
    for fund, share in ((funds[0], 0.9), (funds[1], 0.35)):
        for cid in company_ids:
            if rng.random() < share:
                holdings.append({"fund_id": fund.id, "company_id": cid, "as_of": as_of,
                                 "shares": Decimal(rng.randint(1_000, 5_000_000)),
                                 "market_value": Decimal(rng.randint(10_000, 500_000_000)),
                                 "weight": Decimal(rng.randint(1, 5000)) / 10000, **stamp})
    return holdings


def _engagements(rng: random.Random, company_ids: list[int], campaigns: list[Campaign], user_ids: list[int],
                 today: dt.date, stamp: dict) -> list[dict]:
    """One engagement per company and campaign, at a random stage and escalation."""
    rows = []
    for cid in company_ids:
        for campaign in campaigns:
            stage = rng.choice(STAGES)
            opened = today - dt.timedelta(days=rng.randint(60, 900))
            closed = stage == Stage.CLOSED.value
            rows.append({
                "company_id": cid, "campaign_id": campaign.id, "owner_id": rng.choice(user_ids),
                "stage": stage, "escalation": rng.choice(LADDER), "objectives": "",
                "opened_on": opened, "closed_on": opened + dt.timedelta(days=rng.randint(10, 50)) if closed else None,
                "outcome": rng.choice(["resolved", "divested", "dropped"]) if closed else None, "version": 1, **stamp})
    return rows


def _histories(rng: random.Random, engagements, today: dt.date, stamp: dict) -> dict[type, list[dict]]:
    """Per engagement: the cycle events that lead to its stage and escalation, 10 interactions,
    5 reminders and a sent letter."""
    events, interactions, reminders, letters = [], [], [], []
    for engagement_id, opened, stage, escalation in engagements:
        span = max((today - opened).days, 1)
        for index in range(1, STAGES.index(stage) + 1):
            events.append({"engagement_id": engagement_id, "kind": "close" if STAGES[index] == "closed" else "stage",
                           "from_value": STAGES[index - 1], "to_value": STAGES[index],
                           "occurred_on": opened + dt.timedelta(days=min(span, index * 20)), "note": "", "reason": "",
                           "evidence": "", "outcome": None, **stamp})
        if escalation != "none":
            events.append({"engagement_id": engagement_id, "kind": "escalation", "from_value": "none",
                           "to_value": escalation, "occurred_on": opened + dt.timedelta(days=span // 2), "note": "",
                           "reason": "", "evidence": "", "outcome": None, **stamp})
        for n in range(10):
            kind = rng.choice(KIND_WEIGHTS)
            interactions.append({"engagement_id": engagement_id, "kind": kind,
                                 "direction": "inbound" if kind == "response" else "internal" if kind == "note" else "outbound",
                                 "occurred_on": opened + dt.timedelta(days=rng.randint(0, span)),
                                 "subject": f"Synthetic {kind} {n}", "summary": "", "participants": "", **stamp})
        for n in range(5):
            reminders.append({"engagement_id": engagement_id, "due_on": today + dt.timedelta(days=rng.randint(-60, 120)),
                              "reason": f"Synthetic follow-up {n}", "kind": "manual",
                              "status": rng.choice(["open", "open", "done", "snoozed"]), "notified_at": None, **stamp})
        letters.append({"engagement_id": engagement_id, "kind": "initial", "subject": "Synthetic letter",
                        "body": "Synthetic letter text.", "status": "sent", "sent_on": opened + dt.timedelta(days=3),
                        "channel": "post", "signatories": [], "letterhead": "", "template_version": None, **stamp})
    return {EngagementEvent: events, Interaction: interactions, Reminder: reminders, Letter: letters}


def _scores(rng: random.Random, engagements, rubric: Rubric, user_ids: list[int], today: dt.date, stamp: dict,
            progress) -> int:
    """Score a quarter of the engagements on the rubric (total = the weighted levels); how many were scored."""
    criteria = [(c.id, c.weight) for c in rubric.criteria]
    scored = [e for e in engagements if rng.random() < 0.25]
    score_rows = [{"engagement_id": e[0], "rubric_id": rubric.id, "scorer_id": rng.choice(user_ids),
                   "scored_on": today - dt.timedelta(days=rng.randint(1, 300)), "total": Decimal(0), "note": "",
                   "interaction_id": None, "moderates_id": None, **stamp} for e in scored]
    levels = {e[0]: [rng.randint(0, 4) for _ in criteria] for e in scored}
    total_weight = sum(w for _, w in criteria)
    for row in score_rows:
        weighted = sum(w * lvl for (_, w), lvl in zip(criteria, levels[row["engagement_id"]]))
        row["total"] = (Decimal(weighted) * 100 / (total_weight * 4)).quantize(Decimal("0.01"))
    _insert(Score, score_rows, progress)
    score_ids = dict(db.session.execute(sa.select(Score.engagement_id, Score.id).where(
        Score.rubric_id == rubric.id)).all())
    criterion_rows = [{"score_id": score_ids[e[0]], "criterion_id": cid, "level": lvl, "evidence": "",
                       "evidence_url": None, **stamp}
                      for e in scored for (cid, _), lvl in zip(criteria, levels[e[0]])]
    _insert(CriterionScore, criterion_rows, progress)
    return len(score_rows)


def planned_rows(companies: int) -> int:
    """Rough number of rows, for the progress bar."""
    return int(companies * (1 + 0.06 + 1.25 + 2 + 8 + 20 + 10 + 2 + 0.5 + 2.5))
