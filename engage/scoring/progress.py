"""Progress views: an engagement's score history and a campaign's picture, in a few queries."""

from __future__ import annotations

from collections import Counter, defaultdict
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import selectinload

from engage.extensions import db
from engage.formatting import round_half_up, shown_score
from engage.models import Campaign, Company, Criterion, CriterionScore, Engagement, Score
from engage.models.scoring import primary_scores, ranked_scores

#: Bands of latest totals as shown (whole numbers, half up: 59.5 shows as 60 and counts in 60–79).
BANDS = [(0, 19), (20, 39), (40, 59), (60, 79), (80, 100)]


def engagement_history(engagement: Engagement) -> dict:
    """Primary scores oldest first, with per-criterion levels, moderation and chart geometry."""
    scores = db.session.scalars(
        primary_scores(Score.engagement_id == engagement.id)
        .options(selectinload(Score.criterion_scores).selectinload(CriterionScore.criterion),
                 selectinload(Score.scorer),
                 selectinload(Score.moderations).selectinload(Score.criterion_scores))
    ).all()
    criteria = []
    seen = set()
    for score in scores:
        for cs in sorted(score.criterion_scores, key=lambda c: c.criterion.position):
            if cs.criterion.key not in seen:
                seen.add(cs.criterion.key)
                criteria.append((cs.criterion.key, cs.criterion.title))
    table = [{cs.criterion.key: cs.level for cs in score.criterion_scores} for score in scores]
    return {"scores": scores, "criteria": criteria, "levels": table, "chart": chart(scores)}


def chart(scores) -> dict | None:
    """Points for an inline SVG line chart of totals (x: order of scoring, y: 0-100)."""
    if not scores:
        return None
    width, height, pad = 560, 160, 30
    step = (width - 2 * pad) / max(len(scores) - 1, 1)
    points = []
    for index, score in enumerate(scores):
        x = pad + index * step if len(scores) > 1 else width / 2
        y = height - pad - float(score.total) / 100 * (height - 2 * pad)
        points.append({"x": round(x, 1), "y": round(y, 1), "total": score.total, "on": score.scored_on})
    return {"width": width, "height": height, "pad": pad, "points": points,
            "path": " ".join(f"{p['x']},{p['y']}" for p in points)}


def campaign_report(campaign: Campaign) -> dict:
    """Distribution of latest totals, average by sector, and the criteria most often failed."""
    ranked = ranked_scores(Score.engagement_id, Engagement.campaign_id == campaign.id)
    latest = db.session.execute(
        sa.select(ranked.c.id, ranked.c.total, Company.sector, Engagement.stage)
        .join(Engagement, Engagement.id == ranked.c.engagement_id)
        .join(Company, Company.id == Engagement.company_id)
        .where(ranked.c.rank == 1)
    ).all()
    bands = Counter()
    by_sector: dict[str, list[Decimal]] = defaultdict(list)
    for _, total, sector, _stage in latest:
        shown = shown_score(total)  # bands count the number the page shows
        for low, high in BANDS:
            if low <= shown <= high:
                bands[(low, high)] += 1
        by_sector[sector or "Unknown"].append(Decimal(total))
    failing = db.session.execute(
        sa.select(CriterionScore.criterion_id, sa.func.count(),
                  sa.func.sum(sa.case((CriterionScore.level <= 1, 1), else_=0)))
        .where(CriterionScore.score_id.in_([row.id for row in latest] or [-1]))
        .group_by(CriterionScore.criterion_id)
    ).all()
    titles = {}
    if failing:
        titles = dict(db.session.execute(
            sa.select(Criterion.id, Criterion.title).where(Criterion.id.in_([f[0] for f in failing]))).all())
    criteria = sorted(
        ({"title": titles.get(cid, "?"), "scored": n, "failing": int(bad or 0),
          "share": round_half_up(Decimal(100 * int(bad or 0)) / n) if n else 0} for cid, n, bad in failing),
        key=lambda c: (-c["share"], c["title"]))
    engaged = db.session.scalar(sa.select(sa.func.count(Engagement.id)).where(
        Engagement.campaign_id == campaign.id, Engagement.is_open))
    return {
        "scored": len(latest),
        "engaged": engaged,
        # Unrounded: the page rounds averages like every score, with the `score` filter.
        "average": sum((Decimal(r.total) for r in latest), Decimal(0)) / len(latest) if latest else None,
        "bands": [{"label": f"{low}–{high}", "count": bands[(low, high)]} for low, high in BANDS],
        "sectors": sorted(({"sector": s, "count": len(v), "average": sum(v) / len(v)}
                           for s, v in by_sector.items()), key=lambda r: r["average"]),
        "criteria": criteria,
    }
