"""Every allowed and forbidden move of the cycle, through cycle.move_stage/move_escalation."""

import datetime as dt

import pytest

from engage.engagements import cycle
from engage.engagements.cycle import LADDER, OPEN_STAGES, STAGES, MoveError, escalation_moves, stage_moves
from engage.extensions import db
from tests import factories

TODAY = dt.date(2026, 6, 1)
ON = dt.date(2026, 5, 20)


def at(stage: str, escalation: str = "none", **kw):
    closed = stage == "closed"
    return factories.engagement(stage=stage, escalation=escalation,
                                closed_on=dt.date(2026, 3, 1) if closed else None,
                                outcome=kw.pop("outcome", "dropped") if closed else None, **kw)


@pytest.mark.parametrize("start", OPEN_STAGES)
@pytest.mark.parametrize("target", STAGES)
def test_every_stage_pair_from_an_open_stage(app, start, target):
    engagement = at(start)
    here, there = STAGES.index(start), STAGES.index(target)
    if target == start:
        with pytest.raises(MoveError, match="already at"):
            cycle.move_stage(engagement, target, on=ON, today=TODAY, actor_id=None)
        return
    if target == "closed":
        with pytest.raises(MoveError) as refused:
            cycle.move_stage(engagement, target, on=ON, today=TODAY, actor_id=None)
        assert refused.value.field == "outcome"
        event = cycle.move_stage(engagement, target, on=ON, today=TODAY, actor_id=None, outcome="resolved")
        assert (engagement.stage, engagement.outcome, engagement.closed_on) == ("closed", "resolved", ON)
        assert event.kind == "close"
    elif there > here:
        event = cycle.move_stage(engagement, target, on=ON, today=TODAY, actor_id=None, note="dated event",
                                 evidence_url="https://example.org/report.pdf")
        assert engagement.stage == target and event.kind == "stage"
        assert event.evidence_url == "https://example.org/report.pdf"
    else:
        with pytest.raises(MoveError) as refused:
            cycle.move_stage(engagement, target, on=ON, today=TODAY, actor_id=None)
        assert refused.value.field == "reason"
        cycle.move_stage(engagement, target, on=ON, today=TODAY, actor_id=None, reason="the map was incomplete")
        assert engagement.stage == target
    db.session.commit()
    assert engagement.events[-1].from_value == start and engagement.events[-1].to_value == target


@pytest.mark.parametrize("target", OPEN_STAGES)
def test_reopening_needs_a_reason(app, target):
    engagement = at("closed")
    with pytest.raises(MoveError) as refused:
        cycle.move_stage(engagement, target, on=ON, today=TODAY, actor_id=None)
    assert refused.value.field == "reason"
    event = cycle.move_stage(engagement, target, on=ON, today=TODAY, actor_id=None, reason="new allegations")
    assert event.kind == "reopen"
    assert (engagement.stage, engagement.outcome, engagement.closed_on) == (target, None, None)
    db.session.commit()


def test_closed_engagement_offers_only_reopening_and_no_escalation(app):
    engagement = at("closed")
    assert {m.kind for m in stage_moves(engagement)} == {"reopen"}
    assert escalation_moves(engagement) == []
    with pytest.raises(MoveError, match="reopen it"):
        cycle.move_escalation(engagement, "follow_up", on=ON, today=TODAY, actor_id=None)


def test_divested_company_is_readmitted_only_on_evidence_of_change(app):
    engagement = at("closed", escalation="divested", outcome="divested")
    move = [m for m in stage_moves(engagement) if m.target == "identified"][0]
    assert move.needs_evidence
    with pytest.raises(MoveError) as refused:
        cycle.move_stage(engagement, "identified", on=ON, today=TODAY, actor_id=None, reason="asked to review")
    assert refused.value.field == "evidence"
    cycle.move_stage(engagement, "identified", on=ON, today=TODAY, actor_id=None, reason="asked to review",
                     evidence="Audited exit from the two regional contracts, published 2026-04.")
    assert engagement.escalation == "observation"  # readmitted, but watched
    db.session.commit()


def test_closing_as_divested_puts_the_escalation_at_divested(app):
    engagement = at("disengaging", escalation="divestment_recommended")
    cycle.move_stage(engagement, "closed", on=ON, today=TODAY, actor_id=None, outcome="divested")
    assert engagement.escalation == "divested"


@pytest.mark.parametrize("start", LADDER)
@pytest.mark.parametrize("target", LADDER)
def test_every_escalation_pair(app, start, target):
    engagement = at("acknowledged", escalation=start)
    if target == start:
        with pytest.raises(MoveError, match="already"):
            cycle.move_escalation(engagement, target, on=ON, today=TODAY, actor_id=None)
    elif LADDER.index(target) > LADDER.index(start):
        event = cycle.move_escalation(engagement, target, on=ON, today=TODAY, actor_id=None, note="no reply")
        assert engagement.escalation == target and event.kind == "escalation"
    else:
        with pytest.raises(MoveError) as refused:
            cycle.move_escalation(engagement, target, on=ON, today=TODAY, actor_id=None)
        assert refused.value.field == "reason"
        if start == "divested":
            with pytest.raises(MoveError) as refused:
                cycle.move_escalation(engagement, target, on=ON, today=TODAY, actor_id=None, reason="improved")
            assert refused.value.field == "evidence"
            cycle.move_escalation(engagement, target, on=ON, today=TODAY, actor_id=None, reason="improved",
                                  evidence="Independent audit confirms the supplier relationships ended.")
        else:
            cycle.move_escalation(engagement, target, on=ON, today=TODAY, actor_id=None, reason="company signed")
        assert engagement.escalation == target
    db.session.commit()


def test_moves_are_dated_within_the_engagement(app):
    engagement = at("identified")
    with pytest.raises(MoveError) as refused:
        cycle.move_stage(engagement, "mapping_requested", on=TODAY + dt.timedelta(days=1), today=TODAY, actor_id=None)
    assert refused.value.field == "occurred_on" and "future" in refused.value.message
    with pytest.raises(MoveError, match="before the engagement was opened"):
        cycle.move_stage(engagement, "mapping_requested", on=dt.date(2025, 1, 1), today=TODAY, actor_id=None)
    with pytest.raises(MoveError, match="not a stage"):
        cycle.move_stage(engagement, "somewhere", on=ON, today=TODAY, actor_id=None)
    with pytest.raises(MoveError) as refused:
        cycle.move_stage(engagement, "mapping_requested", on=ON, today=TODAY, actor_id=None, evidence_url="javascript:alert(1)")
    assert refused.value.field == "evidence_url"
    assert engagement.stage == "identified" and engagement.events == []


def test_every_move_is_audited(app):
    from sqlalchemy import select

    from engage.models import AuditEvent

    engagement = at("identified")
    cycle.move_stage(engagement, "mapping_requested", on=ON, today=TODAY, actor_id=None)
    db.session.commit()
    events = db.session.scalars(select(AuditEvent).where(AuditEvent.object_id == engagement.id,
                                                         AuditEvent.object_type == "Engagement",
                                                         AuditEvent.action == "update")).all()
    assert events[-1].changes["stage"] == ["identified", "mapping_requested"]
    assert db.session.scalar(select(AuditEvent).where(AuditEvent.object_type == "EngagementEvent"))
