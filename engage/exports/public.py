"""A campaign progress report for publication: aggregates only, no notes, owners or contacts.

The value chain appears as totals over the campaign's companies (their latest maps): how many
disclosed a map, and the relationships disclosed, flagged and exited. Never a counterparty's name:
the issue allows names "marked public", and no such mark exists yet, so none is published.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from decimal import Decimal

import sqlalchemy as sa
from flask import render_template

from engage.core import documents
from engage.extensions import db
from engage.models import Campaign, Company, Engagement, Escalation, Score, Stage
from engage.models.scoring import primary_scores
from engage.valuechain import figures


def report(campaign: Campaign, today: dt.date) -> dict:
    rows = db.session.execute(
        sa.select(Engagement.id, Engagement.stage, Engagement.escalation, Engagement.outcome, Company.sector,
                  Engagement.is_open, Engagement.company_id)
        .join(Company, Company.id == Engagement.company_id)
        .where(Engagement.campaign_id == campaign.id)
    ).all()
    ids = [r[0] for r in rows]
    chain = figures.for_companies(sorted({r.company_id for r in rows}))
    first_last: dict[int, list[Decimal]] = {}
    for engagement_id, total in db.session.execute(
        primary_scores(Score.engagement_id.in_(ids or [-1])).with_only_columns(Score.engagement_id, Score.total)
    ):
        first_last.setdefault(engagement_id, []).append(Decimal(total))
    changes = [values[-1] - values[0] for values in first_last.values() if len(values) > 1]
    stage = Counter(r[1] for r in rows)
    escalation = Counter(r.escalation for r in rows if r.is_open)
    return {
        "campaign": {"name": campaign.name, "summary": campaign.summary, "expectations": campaign.expectations},
        "date": today,
        "companies": len({r[0] for r in rows}),
        "sectors": sorted(Counter(r[4] or "Other" for r in rows).items(), key=lambda item: (-item[1], item[0])),
        "stages": [(s.label, stage.get(s.value, 0)) for s in Stage],
        "escalations": [(e.label, escalation.get(e.value, 0)) for e in Escalation],
        "outcomes": sorted(Counter(r[3] for r in rows if r[3]).items()),
        "scored": len(first_last),
        "average_change": sum(changes, Decimal(0)) / len(changes) if changes else None,  # rounded by |score
        "value_chain": {"companies": len(chain), "disclosed": sum(f.disclosed for f in chain.values()),
                        "flagged": sum(f.flagged for f in chain.values()),
                        "exited": sum(f.exited for f in chain.values())},
    }


def report_pdf(data: dict) -> bytes:
    html = render_template("exports/public_report.html", report=data, standalone=True)
    return documents.pdf_bytes(html, documents.letter_css_text())
