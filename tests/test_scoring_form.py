"""The scoring form (issue #17): every problem in one submit, nothing saved, and a page that
carries the server's own rule for the running total."""

import datetime as dt
import re
from decimal import Decimal
from html import unescape

import pytest
import sqlalchemy as sa

from engage import clock
from engage.extensions import db
from engage.models import AuditEvent, Campaign, Criterion, CriterionScore, FormSubmission, Interaction, Rubric, Score
from engage.scoring import service
from tests import factories

LEVELS = ["none", "words", "some", "much", "all"]


@pytest.fixture()
def xuar(runner):
    assert runner.invoke(args=["seed"]).exit_code == 0
    return db.session.scalar(sa.select(Campaign).where(Campaign.slug == "xuar"))


def reply_to(engagement, on=dt.date(2026, 6, 1)) -> Interaction:
    item = Interaction(engagement=engagement, kind="response", direction="inbound", occurred_on=on,
                       subject="Reply", summary="Our supplier list.")
    db.session.add(item)
    db.session.commit()
    return item


def edge_rubric(weights=("2.67", "4", "4.93")) -> Campaign:
    """A published rubric whose weights reach the rounding edges (x.xx5, x.5 and x.4957 → x.50)."""
    campaign = factories.campaign()
    rubric = Rubric(campaign=campaign, version=1, name="Edge rubric", published_at=clock.utcnow())
    for position, weight in enumerate(weights):
        rubric.criteria.append(Criterion(key=f"c{position}", title=f"Criterion {position}", weight=Decimal(weight),
                                         levels=LEVELS, position=position))
    db.session.add(rubric)
    db.session.commit()
    return campaign


def counts() -> tuple:
    return tuple(db.session.scalar(sa.select(sa.func.count()).select_from(model))
                 for model in (Score, CriterionScore, AuditEvent, FormSubmission))


def test_one_submit_reports_every_missing_item_and_saves_nothing(client, login_as, xuar, frozen_today):
    login_as("analyst")
    engagement = factories.engagement(campaign=xuar, opened_on=dt.date(2026, 1, 1))
    reply = reply_to(engagement)
    criteria = xuar.rubrics[-1].criteria
    first, second, third = criteria[0], criteria[1], criteria[2]
    page = client.get(f"/scoring/interactions/{reply.id}").get_data(as_text=True)
    token = re.search(r'name="form_token" type="hidden" value="([0-9a-f]+)"', page).group(1)
    before = counts()
    # a level of 3 without its note, a bad link, every other level missing, and no date
    data = {"form_token": token, "scored_on": "", f"level-{first.id}": "3", f"evidence-{first.id}": "  ",
            f"level-{second.id}": "1", f"url-{second.id}": "ftp://example.org/x"}
    response = client.post(f"/scoring/interactions/{reply.id}", data=data)
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    summary = re.search(r'<div class="flash flash-error score-problems".*?</div>', html, re.S).group(0)
    expected = [(f"evidence-{first.id}", f"{first.title}: a level of 3 needs a note on the evidence."),
                (f"url-{second.id}", f"{second.title}: ")]
    expected += [(f"level-{c.id}-0", f"{c.title}: choose a level from 0 to 4.") for c in criteria[2:]]
    expected += [("scored_on", "Scored on: ")]
    items = re.findall(r'<li><a href="#([^"]+)">(.*?)</a></li>', summary)
    assert len(items) == len(expected) == len(criteria) + 1, items
    for (anchor, message), (want_anchor, want_message) in zip(items, expected):
        assert anchor == want_anchor and unescape(message).startswith(want_message), (anchor, message)
        assert f'id="{anchor}"' in html  # the link leads to the field
    assert f"Not saved: {len(expected)} things to fix." in summary
    assert html.index("score-problems") < html.index("data-score-rule")  # summarised at the top
    # ... and each at its own field
    third_row = re.search(rf'<fieldset class="criterion score-row has-error"\s+data-weight="[^"]+" '
                          rf'aria-describedby="level-{third.id}-error">.*?</fieldset>', html, re.S).group(0)
    assert f"{third.title}: choose a level from 0 to 4." in third_row
    assert html.count(f"{first.title}: a level of 3 needs a note on the evidence.") == 2
    # what was typed is kept
    assert f'id="level-{first.id}-3" name="level-{first.id}" value="3" data-points="3" checked' in html
    assert 'value="ftp://example.org/x"' in html
    assert counts() == before

    # the same post with every item fixed saves once
    fixed = {**data, "scored_on": "2026-06-10", f"evidence-{first.id}": "Tier-1 list.", f"url-{second.id}": ""}
    fixed.update({f"level-{c.id}": "2" for c in criteria[2:]})
    assert client.post(f"/scoring/interactions/{reply.id}", data=fixed).status_code == 302
    saved = db.session.scalar(sa.select(Score))
    assert saved.total == service.compute_total({c.key: c.weight for c in criteria},
                                                {first.key: 3, second.key: 1} | {c.key: 2 for c in criteria[2:]})


def test_every_criterion_without_a_level_is_named_even_when_the_date_is_wrong(client, login_as, xuar,
                                                                              frozen_today):
    login_as("analyst")
    reply = reply_to(factories.engagement(campaign=xuar, opened_on=dt.date(2026, 1, 1)))
    before = counts()
    response = client.post(f"/scoring/interactions/{reply.id}", data={"scored_on": "2026-07-01"})
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    for criterion in xuar.rubrics[-1].criteria:
        assert html.count(f"{criterion.title}: choose a level from 0 to 4.") == 2  # summary and field
    assert html.count("cannot be in the future") == 2
    assert counts() == before


def test_the_service_names_every_problem_at_once(app, xuar, frozen_today):
    engagement = factories.engagement(campaign=xuar, opened_on=dt.date(2026, 1, 1))
    reply = reply_to(engagement)
    criteria = xuar.rubrics[-1].criteria
    entries = {criteria[0].id: service.Entry(level=4), criteria[1].id: service.Entry(level=7)}
    with pytest.raises(service.ScoreProblems) as refused:
        service.score_response(reply, scorer_id=None, scored_on=dt.date(2026, 5, 1), today=frozen_today,
                               entries=entries)
    problems = refused.value.problems
    assert problems[f"evidence-{criteria[0].id}"].endswith("a level of 4 needs a note on the evidence.")
    assert problems[f"level-{criteria[1].id}"].endswith("levels run from 0 to 4.")
    assert all(problems[f"level-{c.id}"].endswith("choose a level from 0 to 4.") for c in criteria[2:])
    assert problems["scored_on"] == "The response cannot be scored before it was received."
    assert len(problems) == len(criteria) + 1


def test_the_form_carries_the_servers_rule(client, login_as, app, frozen_today):
    """The running total's numbers come from the rubric and the service, not from the script."""
    login_as("analyst")
    campaign = edge_rubric()
    reply = reply_to(factories.engagement(campaign=campaign, opened_on=dt.date(2026, 1, 1)))
    html = client.get(f"/scoring/interactions/{reply.id}").get_data(as_text=True)
    form = re.search(r"<form [^>]*data-score-rule[^>]*>", html).group(0)
    attrs = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', form))
    assert attrs == {"scale": str(service.TOTAL_SCALE), "places": str(service.TOTAL_PLACES),
                     "shown-places": str(service.SHOWN_PLACES), "best": str(service.level_points(service.MAX_LEVEL)),
                     "evidence-from": str(service.EVIDENCE_FROM_LEVEL)}
    assert re.findall(r'<fieldset class="criterion score-row"\s+data-weight="([^"]+)"', html) == ["2.67", "4.00", "4.93"]
    rubric = campaign.rubrics[0]
    for criterion in rubric.criteria:
        points = re.findall(rf'name="level-{criterion.id}" value="(\d)" data-points="(\d+)"', html)
        assert points == [(str(n), str(service.level_points(n))) for n in range(5)]
    assert "weight 4.93 · 43% of the total" in html  # 4.93 / 11.60 = 42.5 %, half up
    assert "worked out when you save" in html  # without the script the total comes with the save
    assert 'src="/static/js/scoring.js"' in html


@pytest.mark.parametrize("levels, stored, shown", [
    ((0, 0, 1), "10.63", "11"),   # 10.625: half up at the second decimal
    ((0, 0, 4), "42.50", "43"),   # 42.5: half up to the whole number
    ((0, 1, 3), "40.50", "41"),   # 40.4957 is stored as 40.50, which shows as 41 (not 40)
    ((4, 4, 4), "100.00", "100"),
])
def test_the_saved_total_follows_the_rule_at_its_rounding_edges(client, login_as, frozen_today, levels, stored,
                                                                shown):
    login_as("analyst")
    campaign = edge_rubric()
    reply = reply_to(factories.engagement(campaign=campaign, opened_on=dt.date(2026, 1, 1)))
    criteria = campaign.rubrics[0].criteria
    data = {"scored_on": "2026-06-10"}
    for criterion, level in zip(criteria, levels):
        data[f"level-{criterion.id}"] = str(level)
        data[f"evidence-{criterion.id}"] = "Seen in the reply."
    response = client.post(f"/scoring/interactions/{reply.id}", data=data, follow_redirects=True)
    assert response.status_code == 200
    saved = db.session.scalar(sa.select(Score).where(Score.interaction_id == reply.id))
    assert saved.total == Decimal(stored)
    assert f"Scored {shown} / 100." in response.get_data(as_text=True)


def test_the_form_and_a_refused_post_take_the_same_queries_for_3_and_30_criteria(client, login_as, frozen_today,
                                                                                 count_queries):
    login_as("analyst")
    used = []
    for weights in (("1", "2", "3"), tuple(str(n % 7 + 1) for n in range(30))):
        campaign = edge_rubric(weights)
        reply = reply_to(factories.engagement(campaign=campaign, opened_on=dt.date(2026, 1, 1)))
        with count_queries() as shown:
            assert client.get(f"/scoring/interactions/{reply.id}").status_code == 200
        with count_queries() as refused:
            assert client.post(f"/scoring/interactions/{reply.id}", data={"scored_on": ""}).status_code == 422
        used.append((shown.count, refused.count))
    assert used[0] == used[1], used


def test_a_moderation_form_posts_back_as_a_moderation(client, login_as, app, xuar, frozen_today):
    """The form names its own action (so another page can include it); a moderation's keeps ?moderate=."""
    login_as("analyst")
    reply = reply_to(factories.engagement(campaign=xuar, opened_on=dt.date(2026, 1, 1)))
    first = service.score_response(reply, scorer_id=None, scored_on=dt.date(2026, 6, 2), today=frozen_today,
                                   entries={c.id: service.Entry(level=1) for c in xuar.rubrics[-1].criteria})
    db.session.commit()
    plain = client.get(f"/scoring/interactions/{reply.id}").get_data(as_text=True)
    assert f'action="/scoring/interactions/{reply.id}"' in plain
    moderation = client.get(f"/scoring/interactions/{reply.id}?moderate={first.id}").get_data(as_text=True)
    assert f'action="/scoring/interactions/{reply.id}?moderate={first.id}"' in moderation
