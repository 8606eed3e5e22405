"""A company's value-chain figures (engage.valuechain.figures): what the tab, the export, the score
evidence and the public report count, from the latest map."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa


from engage import clock
from engage.extensions import db
from engage.models import Company
from engage.valuechain import figures, service
from tests import factories
from tests.test_valuechain import MAP, load_lists, maker, relationship_to


def test_figures_count_the_latest_map_flags_exits_and_overdue(runner, count_queries):
    load_lists(runner)
    company = maker()
    assert figures.for_company(company.id) == figures.Figures()
    service.save(company, MAP.read_bytes(), MAP.name)
    db.session.commit()
    first = figures.for_company(company.id)
    assert first.mapped and first.map_number == 1
    assert first.disclosed == 12 and first.by_tier == {1: 5, 2: 4, 3: 3}
    # Daqo, GCL, Hoshine, East Hope are listed (and in the region); the quartz miner is in the region only
    assert (first.flagged, first.listed, first.in_region) == (5, 4, 5)
    assert (first.exited, first.overdue, first.not_linked) == (0, 0, 0)

    today = clock.today()
    hoshine = relationship_to("Hoshine Silicon Industry Co. Ltd.")
    service.change_status(hoshine, "exit_planned", today - dt.timedelta(days=30),
                          target_date=today - dt.timedelta(days=1))
    daqo = relationship_to("Xinjiang Daqo New Energy Co. Ltd.")
    service.change_status(daqo, "exited", today, evidence="Supplier list 2027 without Daqo")
    quartz = relationship_to("Tarim Fictional Quartz Mining Co.")
    service.change_status(quartz, "not_linked", today, reason="a trading office in Hotan, no mining")
    db.session.commit()
    now = figures.for_company(company.id)
    assert (now.flagged, now.exited, now.exit_planned, now.overdue, now.not_linked) == (4, 1, 1, 1, 1)
    assert now.open_flags == 3 and now.under_way == 1
    assert now.as_row() == {"disclosed": 12, "flagged": 4, "exited": 1, "overdue": 1}
    # not overdue on the target date itself
    assert figures.for_company(company.id, today=today - dt.timedelta(days=1)).overdue == 0

    other = factories.company("Unmapped Co.")
    db.session.commit()
    ids = [company.id, other.id]
    with count_queries() as queries:
        many = figures.for_companies(ids)
    assert len(queries.statements) <= 3
    assert set(many) == {company.id}


def test_the_demo_records_the_solar_makers_map(runner, monkeypatch):
    """`flask seed --demo` shows the value chain: a disclosed map, screened, one exit planned."""
    monkeypatch.setenv("ENGAGE_DEMO_PASSWORD", "demo password for tests")
    assert runner.invoke(args=["seed", "--demo"]).exit_code == 0
    solar = db.session.scalar(sa.select(Company).where(Company.name == "Brightpeak Solar Modules Co. (demo)"))
    shown = figures.for_company(solar.id)
    assert (shown.disclosed, shown.flagged, shown.listed, shown.exit_planned) == (12, 5, 4, 1)
