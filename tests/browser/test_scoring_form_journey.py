"""The scoring form in a real Chromium (issue 17): the running total "≈ N" equals what the server
saves for the same choices (rounding edges included), the grid at 1280 and 390 px, every missing
item in one submit, and the form without JavaScript."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from tests.browser.conftest import PASSWORD, sign_in

pytestmark = pytest.mark.browser
LEVELS = ["No evidence.", "Words only.", "Some steps.", "Most steps, dated.", "Done and verified."]
#: Weights whose totals reach the rounding edges: 10.625 (half up at the second decimal), 42.5
#: (half up to the whole number) and 40.4957 (stored as 40.50, so shown as 41, not 40).
EDGE_WEIGHTS = ("2.67", "4", "4.93")


@pytest.fixture(scope="module")
def responses(live_app):
    """A company with one response in a campaign with the edge rubric and one in the seeded XUAR campaign."""
    from engage import audit, clock
    from engage.extensions import db
    from engage.models import Campaign, Company, Criterion, Engagement, Interaction, Rubric

    with live_app.app.app_context(), audit.acting_as("browser test"):
        today = clock.today()
        xuar = db.session.scalar(sa.select(Campaign).where(Campaign.slug == "xuar"))
        edge = Campaign(slug="rounding-edges", name="Rounding edges (browser test)")
        rubric = Rubric(campaign=edge, version=1, name="Edge rubric", published_at=clock.utcnow())
        for position, weight in enumerate(EDGE_WEIGHTS):
            rubric.criteria.append(Criterion(key=f"edge{position}", title=f"Edge criterion {position}",
                                             weight=Decimal(weight), levels=LEVELS, position=position))
        company = Company(name="Rounding Edge Holdings")
        found = {}
        for name, campaign in (("edge", edge), ("xuar", xuar)):
            engagement = Engagement(company=company, campaign=campaign, opened_on=today - dt.timedelta(days=30),
                                    stage="acknowledged")
            found[name] = Interaction(engagement=engagement, kind="response", direction="inbound",
                                      occurred_on=today - dt.timedelta(days=1), subject=f"Reply ({name})")
            db.session.add(found[name])
        db.session.add(rubric)
        db.session.commit()
        return {name: item.id for name, item in found.items()}


def latest_score(live_app, interaction_id: int) -> tuple[Decimal, list[int]]:
    """The total and the levels (in the rubric's order) of the response's latest saved score."""
    from engage.extensions import db
    from engage.models import Score

    with live_app.app.app_context():
        score = db.session.scalar(sa.select(Score).where(Score.interaction_id == interaction_id)
                                  .order_by(Score.id.desc()).limit(1))
        return score.total, [cs.level for cs in sorted(score.criterion_scores, key=lambda cs: cs.criterion.position)]


def score_count(live_app, interaction_id: int) -> int:
    from engage.extensions import db
    from engage.models import Score

    with live_app.app.app_context():
        return db.session.scalar(sa.select(sa.func.count(Score.id)).where(Score.interaction_id == interaction_id))


def rule_total(live_app, interaction_id: int, levels: list[int | None]) -> Decimal:
    """The server's rule (compute_total) for these levels, a missing level counting as 0."""
    from engage.extensions import db
    from engage.models import Interaction
    from engage.scoring import service

    with live_app.app.app_context():
        rubric = service.current_rubric(db.session.get(Interaction, interaction_id).engagement.campaign_id)
        return service.compute_total({c.key: c.weight for c in rubric.criteria},
                                     {c.key: level for c, level in zip(rubric.criteria, levels)})


def choose(page, levels: list[int | None]) -> None:
    rows = page.locator("fieldset.criterion")
    assert rows.count() == len(levels)
    for index, level in enumerate(levels):
        if level is None:
            continue
        rows.nth(index).get_by_role("radio").nth(level).check()
        if level >= 3:
            rows.nth(index).get_by_label("Evidence note").fill("Seen in the reply.")


def shown_total(page) -> tuple[str, str]:
    """The running total as shown ("≈ N / 100" → N) and the exact value it rounds (data-exact)."""
    output = page.locator("#score-total")
    match = re.fullmatch(r"≈ (\d+) / 100", output.inner_text())
    assert match, output.inner_text()
    return match.group(1), output.get_attribute("data-exact")


@pytest.mark.parametrize("which, levels", [
    ("edge", [0, 0, 1]),       # 10.625 → 10.63 → 11
    ("edge", [0, 0, 4]),       # 42.5 → 43
    ("edge", [0, 1, 3]),       # 40.4957 → 40.50 → 41
    ("edge", [1, 0, 0]),       # 5.754 → 5.75 → 6
    ("edge", [4, 4, 4]),       # 100
    ("xuar", [2, 0, 0, 1, 0, 0, 0, 0, 0]),  # 12.5 → 13 (half up, not to even)
    ("xuar", [4, 4, 4, 3, 0, 0, 0, 0, 0]),  # 62.5 → 63
    ("xuar", [1, 2, 3, 0, 4, 1, 0, 2, 1]),
])
def test_the_running_total_is_what_the_server_saves(page, live_app, responses, which, levels):
    interaction_id = responses[which]
    sign_in(page, "analyst@example.org")
    page.goto(f"/scoring/interactions/{interaction_id}")
    expect(page.locator("#score-total")).to_have_text("≈ 0 / 100")  # nothing chosen yet counts as 0
    # while only some levels are chosen, the total is the rule's, the others counting as 0
    partial = [None] * (len(levels) - 1) + levels[-1:]
    choose(page, partial)
    shown, exact = shown_total(page)
    assert Decimal(exact) == rule_total(live_app, interaction_id, partial)
    choose(page, levels)
    shown, exact = shown_total(page)
    expect(page.locator("[data-score-chosen]")).to_contain_text(f"all {len(levels)} criteria chosen")
    page.get_by_role("button", name="Save score").click()
    expect(page.locator("h1")).to_contain_text(f"{shown} / 100")
    total, saved_levels = latest_score(live_app, interaction_id)
    assert total == Decimal(exact) == rule_total(live_app, interaction_id, levels)
    assert saved_levels == levels


def test_the_grid_at_1280_and_390_and_every_problem_in_one_submit(page, live_app, responses):
    interaction_id = responses["xuar"]
    before = score_count(live_app, interaction_id)
    sign_in(page, "analyst@example.org")
    page.goto(f"/scoring/interactions/{interaction_id}")
    form = page.locator("form[data-score-rule]")
    rows = page.locator("fieldset.criterion")
    # at 1280 px a criterion is one row: its five levels side by side, the note beside them
    first = rows.first
    boxes = [first.locator("label.level").nth(n).bounding_box() for n in range(5)]
    assert all(abs(box["y"] - boxes[0]["y"]) < 2 for box in boxes), boxes
    assert all(later["x"] > earlier["x"] for earlier, later in zip(boxes, boxes[1:])), boxes
    note = first.get_by_label("Evidence note").bounding_box()
    assert note["x"] > boxes[-1]["x"] and note["y"] < boxes[0]["y"] + boxes[0]["height"]
    expect(first.locator("legend")).to_contain_text(re.compile(r"weight 3 · 21% of the total"))
    page.shot("score-form")
    assert form.bounding_box()["height"] < 1800, form.bounding_box()  # nine criteria; it was 4,984 px

    # one submit: a level of 3 without its note and eight levels missing, all reported at once
    page.expected_statuses = {422}
    first.get_by_role("radio").nth(3).check()
    expect(first).to_have_class(re.compile(r"\bneeds-note\b"))
    page.get_by_role("button", name="Save score").click()
    summary = page.locator("#score-problems")
    expect(summary).to_be_visible()
    expect(summary).to_be_focused()
    expect(summary.locator("li")).to_have_count(rows.count())
    expect(summary).to_contain_text("Not saved: 9 things to fix.")
    expect(summary).to_contain_text("Value-chain mapping: a level of 3 needs a note on the evidence.")
    expect(first.locator(".error")).to_have_text("Value-chain mapping: a level of 3 needs a note on the evidence.")
    for index in range(1, rows.count()):
        expect(rows.nth(index).locator(".error")).to_contain_text("choose a level from 0 to 4")
    expect(first.get_by_role("radio").nth(3)).to_be_checked()  # what was chosen is kept
    summary.get_by_role("link").nth(1).click()
    expect(page).to_have_url(re.compile(r"#level-\d+-0$"))
    assert score_count(live_app, interaction_id) == before  # nothing saved
    page.shot("score-form-problems")

    # at 390 px the rows stack: one level under the other, and the page does not scroll sideways
    page.set_viewport_size({"width": 390, "height": 800})
    boxes = [first.locator("label.level").nth(n).bounding_box() for n in range(5)]
    assert all(later["y"] >= earlier["y"] + earlier["height"] - 1 for earlier, later in zip(boxes, boxes[1:])), boxes
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    for selector in ("fieldset.criterion", ".score-total-bar", "textarea", "input[type=url]"):
        widest = page.evaluate(f"Math.max(...[...document.querySelectorAll('{selector}')]"
                               ".map(e => e.getBoundingClientRect().right))")
        assert widest <= 390, (selector, widest)
    expect(page.locator("#score-total")).to_be_visible()
    page.shot("score-form-narrow")


def test_without_javascript_the_form_saves_and_the_total_comes_with_the_save(browser, live_server, live_app,
                                                                             responses):
    context = browser.new_context(base_url=live_server, java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto("/auth/login")
        page.get_by_label("Email").fill("analyst@example.org")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.goto(f"/scoring/interactions/{responses['edge']}")
        expect(page.locator("#score-total")).to_have_text("worked out when you save")
        choose(page, [0, 1, 3])
        page.get_by_role("button", name="Save score").click()
        expect(page.locator("h1")).to_contain_text("41 / 100")
        assert latest_score(live_app, responses["edge"]) == (Decimal("40.50"), [0, 1, 3])
    finally:
        context.close()


SET_AND_READ = """(combos) => combos.map((levels) => {
  document.querySelectorAll("fieldset.criterion").forEach((row, index) => {
    row.querySelectorAll("input[type=radio]").forEach((radio) => {
      radio.checked = levels[index] !== null && Number(radio.value) === levels[index];
    });
  });
  document.querySelector("form[data-score-rule]").dispatchEvent(new Event("change", { bubbles: true }));
  const output = document.getElementById("score-total");
  return [output.textContent, output.dataset.exact];
})"""


@pytest.mark.parametrize("which", ["edge", "xuar"])
def test_every_choice_shows_the_servers_total(page, live_app, responses, which):
    """Every choice of the edge rubric (a level or none for each of its 3 criteria: 216), and 400
    drawn at random for the seeded rubric's 9, against compute_total run by the server's code."""
    import itertools
    import random

    from engage.formatting import format_score

    interaction_id = responses[which]
    sign_in(page, "analyst@example.org")
    page.goto(f"/scoring/interactions/{interaction_id}")
    count = page.locator("fieldset.criterion").count()
    choices = [None, 0, 1, 2, 3, 4]
    if which == "edge":
        combos = [list(levels) for levels in itertools.product(choices, repeat=count)]
    else:
        draw = random.Random(17)
        combos = [[draw.choice(choices) for _ in range(count)] for _ in range(400)]
    for levels, (text, exact) in zip(combos, page.evaluate(SET_AND_READ, combos)):
        expected = rule_total(live_app, interaction_id, levels)
        assert (text, exact) == (f"≈ {format_score(expected)} / 100", f"{expected:.2f}"), levels


def test_the_grid_follows_the_width_it_is_given(page, responses):
    """In a narrower column (a tab beside other content) the grid folds by its own width, not the window's."""
    sign_in(page, "analyst@example.org")
    page.goto(f"/scoring/interactions/{responses['xuar']}")
    first = page.locator("fieldset.criterion").first
    levels = first.locator("label.level")
    note = first.get_by_label("Evidence note")
    page.evaluate("document.querySelector('.score-form').style.width = '44rem'")  # medium: the note under the levels
    boxes = [levels.nth(n).bounding_box() for n in range(5)]
    assert all(abs(box["y"] - boxes[0]["y"]) < 2 for box in boxes), boxes
    assert note.bounding_box()["y"] > boxes[0]["y"] + boxes[0]["height"]
    page.evaluate("document.querySelector('.score-form').style.width = '22rem'")  # narrow: one level a line
    boxes = [levels.nth(n).bounding_box() for n in range(5)]
    assert all(later["y"] >= earlier["y"] + earlier["height"] - 1 for earlier, later in zip(boxes, boxes[1:])), boxes
    right = page.evaluate("document.querySelector('.score-form').getBoundingClientRect().right")
    widest = page.evaluate("Math.max(...[...document.querySelectorAll('.score-form *')]"
                           ".map(e => e.getBoundingClientRect().right))")
    assert widest <= right + 0.5, (widest, right)
