"""Scoring: the total, scoring responses through the app, moderation, rubric versions, progress."""

import datetime as dt
import re
from decimal import Decimal

import pytest
import sqlalchemy as sa

from engage.extensions import db
from engage.models import Campaign, Interaction, Rubric, Score
from engage.scoring.service import compute_total
from tests import factories


def test_compute_total_weights_and_rounding():
    weights = {"a": 3, "b": 1}
    assert compute_total(weights, {"a": 4, "b": 4}) == Decimal("100.00")
    assert compute_total(weights, {"a": 0, "b": 0}) == Decimal("0.00")
    assert compute_total(weights, {"a": 2, "b": 4}) == Decimal("62.50")  # (6 + 4) / 16
    assert compute_total({"a": 1, "b": 1, "c": 1}, {"a": 1, "b": 0, "c": 0}) == Decimal("8.33")
    assert compute_total({"a": 1, "b": 2}, {"a": 1, "b": 0}) == Decimal("8.33")  # 8.333 → 8.33
    assert compute_total({"a": 1, "b": 7}, {"a": 1, "b": 0}) == Decimal("3.13")  # 3.125 rounds half up
    assert compute_total({"a": Decimal("1.5"), "b": Decimal("0.5")}, {"a": 3, "b": 1}) == Decimal("62.50")


def test_compute_total_missing_criteria_count_as_zero():
    assert compute_total({"a": 1, "b": 1}, {"a": 4}) == Decimal("50.00")
    assert compute_total({"a": 1, "b": 1}, {"a": 4, "b": None}) == Decimal("50.00")


@pytest.mark.parametrize("weights, levels, message", [
    ({}, {}, "at least one criterion"),
    ({"a": 1}, {"a": 5}, "levels run from 0 to 4"),
    ({"a": 1}, {"a": -1}, "levels run from 0 to 4"),
    ({"a": 1}, {"b": 1}, "does not have"),
    ({"a": 0}, {"a": 1}, "must be positive"),
    ({"a": -2}, {"a": 1}, "must be positive"),
])
def test_compute_total_refuses_bad_input(weights, levels, message):
    with pytest.raises(ValueError, match=message):
        compute_total(weights, levels)


@pytest.fixture()
def xuar(runner):
    assert runner.invoke(args=["seed"]).exit_code == 0
    campaign = db.session.scalar(sa.select(Campaign).where(Campaign.slug == "xuar"))
    return campaign


def response_on(engagement, on=dt.date(2026, 6, 1), kind="response"):
    item = Interaction(engagement=engagement, kind=kind, direction="inbound", occurred_on=on, subject="Reply",
                       summary="We have mapped our **tier-1** suppliers.")
    db.session.add(item)
    db.session.commit()
    return item


def levels_form(rubric, level=1, overrides=None, evidence="See the reply of 1 June.", scored_on="2026-06-10"):
    data = {"scored_on": scored_on, "note": ""}
    for criterion in rubric.criteria:
        data[f"level-{criterion.id}"] = str(level)
        data[f"evidence-{criterion.id}"] = evidence
    for key, value in (overrides or {}).items():
        criterion = next(c for c in rubric.criteria if c.key == key)
        data[f"level-{criterion.id}"] = str(value)
    return data


def test_analyst_scores_a_response_and_sees_progress(client, login_as, xuar, frozen_today):
    analyst = login_as("analyst")
    engagement = factories.engagement(campaign=xuar, owner=analyst, stage="acknowledged", opened_on=dt.date(2026, 1, 1))
    rubric = xuar.rubrics[-1]
    first = response_on(engagement, dt.date(2026, 3, 1))
    assert client.post(f"/scoring/interactions/{first.id}", data=levels_form(rubric, 1, scored_on="2026-03-05")).status_code == 302
    second = response_on(engagement, dt.date(2026, 6, 1))
    response = client.post(f"/scoring/interactions/{second.id}",
                           data=levels_form(rubric, 1, {"value_chain_mapping": 3, "disengagement": 2}))
    assert response.status_code == 302
    latest = db.session.scalar(sa.select(Score).order_by(Score.id.desc()))
    weights = {c.key: c.weight for c in rubric.criteria}
    expected = compute_total(weights, {c.key: 1 for c in rubric.criteria} | {"value_chain_mapping": 3, "disengagement": 2})
    assert latest.total == expected and latest.rubric_id == rubric.id and latest.scorer_id == analyst.id

    page = client.get(f"/engagements/{engagement.id}").get_data(as_text=True)
    assert f"{expected:.0f} / 100" in page
    change = expected - compute_total(weights, {c.key: 1 for c in rubric.criteria})
    assert f"(+{change:.0f})" in page
    assert "<polyline" in page and "Score totals over time" in page
    assert "consider moving the stage to <strong>Value chain mapped</strong>" in page
    listing = client.get("/engagements?sort=change&dir=desc&trend=up").get_data(as_text=True)
    assert f"+{change:.0f}" in listing


def test_bad_scores_are_refused_and_nothing_written(client, login_as, xuar, frozen_today):
    login_as("analyst")
    engagement = factories.engagement(campaign=xuar, opened_on=dt.date(2026, 1, 1))
    rubric = xuar.rubrics[-1]
    reply = response_on(engagement)
    missing_evidence = levels_form(rubric, 3, evidence="")
    cases = [
        (missing_evidence, "needs a note on the evidence"),
        (levels_form(rubric, 5), "levels run from 0 to 4"),
        (levels_form(rubric, 1, scored_on="2026-06-20"), "cannot be in the future"),
        (levels_form(rubric, 1, scored_on="2026-05-01"), "before it was received"),
        ({**levels_form(rubric, 1), f"level-{rubric.criteria[0].id}": ""}, "choose a level"),
        ({**levels_form(rubric, 1), f"url-{rubric.criteria[0].id}": "javascript:alert(1)"}, "http:// or https://"),
    ]
    for data, message in cases:
        response = client.post(f"/scoring/interactions/{reply.id}", data=data)
        assert response.status_code == 422, message
        assert message in response.get_data(as_text=True), message
    note = response_on(engagement, kind="note")
    assert client.post(f"/scoring/interactions/{note.id}", data=levels_form(rubric)).status_code == 400
    assert db.session.scalar(sa.select(sa.func.count(Score.id))) == 0


def test_moderation_keeps_both_scores_and_flags_disagreement(client, login_as, xuar, frozen_today, app, make_user):
    login_as("analyst")
    engagement = factories.engagement(campaign=xuar, opened_on=dt.date(2026, 1, 1))
    rubric = xuar.rubrics[-1]
    reply = response_on(engagement)
    client.post(f"/scoring/interactions/{reply.id}", data=levels_form(rubric, 1))
    first = db.session.scalar(sa.select(Score))
    assert client.post(f"/scoring/interactions/{reply.id}?moderate={first.id}",
                       data=levels_form(rubric, 1)).status_code == 422  # not by the same person
    second_user = make_user("analyst", email="second@example.org")
    other = app.test_client()
    other.post("/auth/login", data={"email": second_user.email, "password": "correct horse battery staple"})
    response = other.post(f"/scoring/interactions/{reply.id}?moderate={first.id}",
                          data=levels_form(rubric, 3, {"value_chain_mapping": 4}))
    assert response.status_code == 302
    scores = db.session.scalars(sa.select(Score).order_by(Score.id)).all()
    assert len(scores) == 2 and scores[1].moderates_id == first.id
    page = client.get(f"/scoring/scores/{first.id}").get_data(as_text=True)
    assert "Disagreement flagged" in page and "Value-chain mapping: 1 against 4" in page
    engagement_page = client.get(f"/engagements/{engagement.id}").get_data(as_text=True)
    assert "disputed" in engagement_page
    # the moderation does not replace the first score as the engagement's latest score
    assert f"{first.total:.0f} / 100 on" in engagement_page


def test_rubric_versions(client, login_as, xuar, frozen_today):
    login_as("admin")
    v1 = xuar.rubrics[-1]
    engagement = factories.engagement(campaign=xuar, opened_on=dt.date(2026, 1, 1))
    reply = response_on(engagement)
    from engage.scoring import service

    service.score_response(reply, scorer_id=None, scored_on=dt.date(2026, 6, 2), today=dt.date(2026, 6, 15),
                           entries={c.id: service.Entry(level=1) for c in v1.criteria})
    db.session.commit()
    edit = {"count": "2", "key-1": "only", "title-1": "Only one", "weight-1": "1",
            **{f"level{n}-1": f"level {n}" for n in range(5)}}
    refused = client.post(f"/scoring/rubrics/{v1.id}", data=edit)
    assert refused.status_code == 422 and "used by 1 score(s) and cannot change" in refused.get_data(as_text=True)

    assert client.post(f"/scoring/campaigns/{xuar.id}/rubrics/new").status_code == 302
    v2 = db.session.scalar(sa.select(Rubric).where(Rubric.version == 2))
    assert v2.published_at is None and len(v2.criteria) == len(v1.criteria)
    bad = client.post(f"/scoring/rubrics/{v2.id}", data={**edit, "weight-1": "0"})
    assert bad.status_code == 422 and "weight must be a positive number" in bad.get_data(as_text=True)
    assert client.post(f"/scoring/rubrics/{v2.id}", data=edit).status_code == 302
    assert client.post(f"/scoring/campaigns/{xuar.id}/rubrics/new").status_code == 302  # refused: v2 is a draft
    assert db.session.scalar(sa.select(sa.func.count(Rubric.id))) == 2
    assert client.post(f"/scoring/rubrics/{v2.id}/publish").status_code == 302
    db.session.expire_all()
    assert [c.key for c in db.session.get(Rubric, v2.id).criteria] == ["only"]
    assert len(db.session.get(Rubric, v1.id).criteria) == 9  # the old version is untouched
    new_reply = response_on(engagement, dt.date(2026, 6, 5))
    form = {"scored_on": "2026-06-10", f"level-{db.session.get(Rubric, v2.id).criteria[0].id}": "4",
            f"evidence-{db.session.get(Rubric, v2.id).criteria[0].id}": "Public report"}
    assert client.post(f"/scoring/interactions/{new_reply.id}", data=form).status_code == 302
    newest = db.session.scalar(sa.select(Score).order_by(Score.id.desc()))
    assert newest.rubric_id == v2.id and newest.total == Decimal("100.00")


def test_campaign_progress_page(client, login_as, xuar, frozen_today):
    login_as("viewer")
    from engage.scoring import service

    rubric = xuar.rubrics[-1]
    for i, level in enumerate([0, 2, 4]):
        engagement = factories.engagement(campaign=xuar, opened_on=dt.date(2026, 1, 1),
                                          company=factories.company(f"Progress {i}", sector="Solar" if i else "Cotton"))
        reply = response_on(engagement)
        service.score_response(reply, scorer_id=None, scored_on=dt.date(2026, 6, 2), today=dt.date(2026, 6, 15),
                               entries={c.id: service.Entry(level=level, evidence="x") for c in rubric.criteria})
    db.session.commit()
    page = client.get(f"/scoring/campaigns/{xuar.id}").get_data(as_text=True)
    assert "0–19: 1. 20–39: 0. 40–59: 1. 60–79: 0. 80–100: 1." in page
    assert "Solar" in page and "Cotton" in page
    assert "Value-chain mapping</td><td class=\"num\">1</td><td class=\"num\">3</td><td class=\"num\">33 %" in page


def test_roles_on_scoring(client, login_as, xuar):
    login_as("viewer")
    engagement = factories.engagement(campaign=xuar)
    reply = response_on(engagement)
    rubric = xuar.rubrics[-1]
    assert client.post(f"/scoring/interactions/{reply.id}", data=levels_form(rubric)).status_code == 403
    assert client.get(f"/scoring/campaigns/{xuar.id}/rubrics").status_code == 403
    assert client.post(f"/scoring/rubrics/{rubric.id}/publish").status_code == 403
    assert client.get(f"/scoring/campaigns/{xuar.id}").status_code == 200


def test_company_list_sorts_and_filters_by_score(client, login_as, xuar, frozen_today):
    login_as("viewer")
    from engage.scoring import service

    rubric = xuar.rubrics[-1]
    for name, levels in (("Rising Co", (1, 3)), ("Falling Co", (3, 1)), ("Flat Co", (2,))):
        engagement = factories.engagement(campaign=xuar, opened_on=dt.date(2026, 1, 1), company=factories.company(name))
        for day, level in enumerate(levels, start=1):
            reply = response_on(engagement, dt.date(2026, 5, day))
            service.score_response(reply, scorer_id=None, scored_on=dt.date(2026, 5, day), today=dt.date(2026, 6, 15),
                                   entries={c.id: service.Entry(level=level, evidence="x") for c in rubric.criteria})
    db.session.commit()

    def order(query):
        text = client.get("/companies" + query).get_data(as_text=True)
        return [n for n in sorted(("Rising Co", "Falling Co", "Flat Co"), key=text.find) if n in text]

    assert order("?sort=score&dir=desc") == ["Rising Co", "Flat Co", "Falling Co"]
    assert order("?trend=up") == ["Rising Co"]
    assert order("?trend=down") == ["Falling Co"]
    assert order("?score_below=40") == ["Falling Co"]
    assert client.get("/companies?score_below=abc").status_code == 400


@pytest.mark.parametrize("value, places, sign, shown", [
    (Decimal("62.50"), 0, False, "63"), (Decimal("62.49"), 0, False, "62"), (62.5, 0, False, "63"),
    (Decimal("0.50"), 0, False, "1"), (Decimal("100.00"), 0, False, "100"), (Decimal("0"), 0, False, "0"),
    (Decimal("12.45"), 0, True, "+12"), (Decimal("12.50"), 0, True, "+13"), (Decimal("-12.50"), 0, True, "-13"),
    (Decimal("-0.40"), 0, True, "+0"), (Decimal("62.45"), 1, False, "62.5"), (12.45, 1, True, "+12.5"),
    (None, 0, False, "–"), (float("nan"), 0, False, "–"), (float("inf"), 0, False, "–"),
])
def test_score_filter_rounds_half_up(app, value, places, sign, shown):
    from engage.formatting import format_score

    assert format_score(value, places, sign) == shown
    template = app.jinja_env.from_string("{{ v|score(p, sign=s) }}")
    assert template.render(v=value, p=places, s=sign) == shown


def test_scores_are_shown_half_up_on_every_page(client, login_as, xuar, frozen_today):
    """62.50 shows as 63 and 62.49 as 62 wherever a score is drawn; averages and changes round half up too."""
    login_as("viewer")
    rubric = xuar.rubrics[-1]
    made = {}
    # Half Co: 50.05 then 62.50 (change 12.45); Below Co: 62.49; Third Co: 62.36. Average 62.45.
    for name, totals in (("Half Co", ("50.05", "62.50")), ("Below Co", ("62.49",)), ("Third Co", ("62.36",))):
        engagement = factories.engagement(campaign=xuar, opened_on=dt.date(2026, 1, 1),
                                          company=factories.company(name, sector="Solar"))
        for day, total in enumerate(totals, start=1):
            reply = response_on(engagement, dt.date(2026, 5, day))
            score = Score(engagement=engagement, interaction=reply, rubric=rubric, scored_on=dt.date(2026, 5, day),
                          total=Decimal(total))
            db.session.add(score)
        db.session.commit()
        made[name] = (engagement, score)
    half, half_score = made["Half Co"]

    page = client.get(f"/engagements/{half.id}").get_data(as_text=True)
    assert "63 / 100 on" in page and "(+12)" in page
    assert ">63</text>" in page and "01 May 2026 50, 02 May 2026 63." in page  # chart labels and description
    assert "<strong>63</strong>" in page and "Scored 63 / 100" in page
    assert "62 / 100" not in page
    assert client.get(f"/scoring/scores/{half_score.id}").get_data(as_text=True).count("<h1>63 / 100") == 1
    below = client.get(f"/scoring/scores/{made['Below Co'][1].id}").get_data(as_text=True)
    assert "<h1>62 / 100" in below

    def row(html, name):  # the cells as written, without the column names narrow screens show (data-label)
        return re.sub(r' data-label="[^"]*"', "", next(line for line in html.split("<tr") if name in line))

    companies = client.get("/companies").get_data(as_text=True)
    assert '<td class="num">63</td>' in row(companies, "Half Co") and '<td class="num">+12</td>' in row(companies, "Half Co")
    assert '<td class="num">62</td>' in row(companies, "Below Co")
    engagements = client.get("/engagements").get_data(as_text=True)
    assert '<td class="num">63</td>' in row(engagements, "Half Co") and '<td class="num">+12</td>' in row(engagements, "Half Co")
    assert '<td class="num">62</td>' in row(engagements, "Below Co")
    # "below 63" lists what is shown below 63, so not Half Co (shown as 63)
    filtered = client.get("/companies?score_below=63").get_data(as_text=True)
    assert "Below Co" in filtered and "Third Co" in filtered and "Half Co" not in filtered
    filtered = client.get("/engagements?score_below=63").get_data(as_text=True)
    assert "Below Co" in filtered and "Half Co" not in filtered

    campaign = client.get(f"/scoring/campaigns/{xuar.id}").get_data(as_text=True)
    assert "<dd>62.5</dd>" in campaign and '<td class="num">62.5</td>' in campaign  # 62.45 half up, not 62.4
    report = client.get(f"/exports/campaigns/{xuar.id}/report").get_data(as_text=True)
    assert "changed by +12.5 points on average" in report


def test_public_report_pdf_rounds_the_average_change_half_up(client, login_as, xuar, frozen_today):
    from pypdf import PdfReader
    import io

    login_as("viewer")
    rubric = xuar.rubrics[-1]
    engagement = factories.engagement(campaign=xuar, opened_on=dt.date(2026, 1, 1))
    for day, total in ((1, "50.05"), (2, "62.50")):
        db.session.add(Score(engagement=engagement, rubric=rubric, scored_on=dt.date(2026, 5, day), total=Decimal(total)))
    db.session.commit()
    pdf = client.get(f"/exports/campaigns/{xuar.id}/report.pdf")
    text = " ".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf.data)).pages)
    assert "+12.5 points" in " ".join(text.split())


def test_no_template_formats_a_score_any_other_way():
    """Guard beside the behaviour tests above: scores go through |score, never printf or round()."""
    import re
    from pathlib import Path

    hits = []
    pattern = re.compile(r"""'[^']*%[+ ]?\d*\.?\d*f[^']*'\|format\(([^)]*)\)|'\{:[^}]*f\}'\.format\(([^)]*)\)|"""
                         r"""([\w.]+)\|round|round\(([^)]*)\)""")
    for path in (Path(__file__).parent.parent / "templates").rglob("*.html"):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            for match in pattern.finditer(line):
                argument = next(g for g in match.groups() if g)
                if re.search(r"score|total|average|change|gap", argument) and "weight" not in argument:
                    hits.append(f"{path.name}:{number}: {match.group(0)}")
    assert hits == []
