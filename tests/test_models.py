import datetime as dt

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from engage.extensions import db
from engage.identifiers import isin_problem
from engage.models import AuditEvent, Campaign, Company, Engagement, Interaction, RiskFlag, normalize_name


def make_company(name="Example Co., Ltd.", **kw):
    company = Company(name=name, **kw)
    db.session.add(company)
    return company


def make_campaign(slug="c1"):
    campaign = Campaign(slug=slug, name=f"Campaign {slug}")
    db.session.add(campaign)
    return campaign


def test_isin_check_digit():
    assert isin_problem("CNE100000PM8") is None  # Hikvision
    assert isin_problem("US0378331005") is None  # Apple
    assert "expected 8" in isin_problem("CNE100000PM9")
    assert "not an ISIN" in isin_problem("CNE10000PM8")
    assert "not an ISIN" in isin_problem("")


def test_normalize_name_drops_legal_and_share_class_suffixes(app):
    assert normalize_name("Hangzhou Hikvision Digital Technology Co., Ltd. A") == "hangzhou hikvision digital technology"
    assert normalize_name("Amazon.com, Inc.") == "amazon com"
    company = make_company("Zhejiang Dahua Technology Co., Ltd.")
    assert company.normalized_name == "zhejiang dahua technology"


def test_isin_is_unique(app):
    make_company("A", isin="CNE100000PM8")
    make_company("B", isin="CNE100000PM8")
    with pytest.raises(IntegrityError):
        db.session.commit()
    db.session.rollback()


def test_enum_columns_are_checked_by_the_database(app):
    company = make_company()
    db.session.add(RiskFlag(company=company, source="rumour", citation="x"))
    with pytest.raises(IntegrityError):
        db.session.commit()
    db.session.rollback()


def test_foreign_keys_are_enforced(app):
    db.session.add(RiskFlag(company_id=999_999, source="analyst", citation="x"))
    with pytest.raises(IntegrityError):
        db.session.commit()
    db.session.rollback()


def test_one_open_engagement_per_company_and_campaign(app):
    company, campaign = make_company(), make_campaign()
    today = dt.date(2026, 1, 5)
    db.session.add(Engagement(company=company, campaign=campaign, opened_on=today, stage="closed",
                              closed_on=today, outcome="dropped"))
    db.session.add(Engagement(company=company, campaign=campaign, opened_on=today))
    db.session.commit()  # a closed one plus an open one is fine
    db.session.add(Engagement(company=company, campaign=campaign, opened_on=today))
    with pytest.raises(IntegrityError):
        db.session.commit()
    db.session.rollback()


def test_closed_engagement_needs_date_and_outcome(app):
    db.session.add(Engagement(company=make_company(), campaign=make_campaign(), opened_on=dt.date(2026, 1, 5),
                              stage="closed"))
    with pytest.raises(IntegrityError):
        db.session.commit()
    db.session.rollback()


def test_engagement_update_from_a_stale_copy_fails(app):
    engagement = Engagement(company=make_company(), campaign=make_campaign(), opened_on=dt.date(2026, 1, 5))
    db.session.add(engagement)
    db.session.commit()
    first, second = (Session(db.engine, expire_on_commit=False) for _ in range(2))
    with first, second:
        mine = first.get(Engagement, engagement.id)
        first.commit()  # e.g. the form was rendered from this copy
        theirs = second.get(Engagement, engagement.id)
        theirs.escalation = "follow_up"
        second.commit()
        assert theirs.version == 2
        mine.objectives = "stale write"
        with pytest.raises(StaleDataError):
            first.commit()


def test_changes_are_audited_with_before_and_after(app):
    company = make_company("Before Ltd", sector="Textiles")
    db.session.commit()
    company.sector = "Solar"
    db.session.commit()
    company_id = company.id
    db.session.delete(company)
    db.session.commit()
    events = db.session.scalars(
        sa.select(AuditEvent).where(AuditEvent.object_type == "Company", AuditEvent.object_id == company_id)
        .order_by(AuditEvent.id)
    ).all()
    assert [e.action for e in events] == ["create", "update", "delete"]
    assert events[0].changes["sector"] == "Textiles"
    assert events[1].changes == {"sector": ["Textiles", "Solar"]}
    assert events[2].changes["name"] == "Before Ltd"
    assert all(e.actor_label == "system" for e in events)


def test_audit_event_rolls_back_with_the_change(app):
    make_company("Rolled Back Ltd")
    db.session.flush()
    db.session.rollback()
    assert db.session.scalar(sa.select(sa.func.count(AuditEvent.id))) == 0


def test_timestamps_are_set(app):
    engagement = Engagement(company=make_company(), campaign=make_campaign(), opened_on=dt.date(2026, 1, 5))
    db.session.add(Interaction(engagement=engagement, kind="note", direction="internal", occurred_on=dt.date(2026, 1, 6)))
    db.session.commit()
    assert engagement.created_at is not None and engagement.updated_at is not None
