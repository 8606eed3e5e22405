"""Dates read one way everywhere: '05 Dec 2026' for a day, '05 Dec 2026, 14:05 UTC' for a moment.

The walk renders every page of the demo data set (plus one row of every kind a URL can name) and
looks for dates written any other way in what a person reads: text, titles and labels. Input
values, data attributes, links and machine files (CSV, ICS, JSON) keep ISO dates.
"""

from __future__ import annotations

import datetime as dt
import re
from html.parser import HTMLParser
from pathlib import Path

import sqlalchemy as sa
from flask import url_for

from engage import formatting
from engage.extensions import db
from engage.models import Engagement, Letter, ListVersion
from tests.test_no_server_errors import SKIPPED, ids_for, world  # noqa: F401 (world is a fixture)

#: Dates and times written in any way but the app's: ISO days and months, slashed days, US-style
#: month-first days, full month names, seconds, a moment without its comma, the zone twice. ("9 Oct
#: 2019" is not looked for: a source's citation is quoted as published, and the seeds quote some so.)
OTHER_FORMATS = {
    "ISO date": re.compile(r"(?<![\w/-])\d{4}-\d{2}-\d{2}(?![\w/-])"),
    "ISO month": re.compile(r"(?<![\w/.-])(?:19|20)\d{2}-(?:0[1-9]|1[0-2])(?![\w/-])"),
    "slashed date": re.compile(r"(?<![\w/])\d{1,2}/\d{1,2}/\d{2,4}(?![\w/])"),
    "month first": re.compile(r"\b(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]* \d{1,2}, \d{4}\b"),
    "full month name": re.compile(r"\b\d{1,2} (?:January|February|March|April|June|July|August|September|October"
                                  r"|November|December) \d{4}\b"),
    "time with seconds": re.compile(r"\b\d{2}:\d{2}:\d{2}\b"),
    "moment without comma": re.compile(r"\b\d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}\b"),
    "zone said twice": re.compile(r"\bUTC\W{0,3}UTC\b"),
}

#: Attributes a person reads (a tooltip, a screen reader's label, a hint in an empty field).
READ_ATTRIBUTES = {"title", "aria-label", "alt"}


class HumanText(HTMLParser):
    """The text of a page as a person reads it: no scripts, styles, field values or other attributes.

    A field's hint (`p.hint`) is left out too: it says what to type, and an example of another way
    of writing a date ("25/03/2024", "YYYY-MM-DD") belongs there.
    """

    #: `code` is text shown exactly as a machine wrote it (an email's headers, a file name, a code).
    SKIP = {"script", "style", "textarea", "template", "code"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0
        self.hints = 0

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self.skipping += 1
        if tag == "p" and "hint" in (dict(attrs).get("class") or "").split():
            self.hints += 1
        self.parts.extend(value for name, value in attrs if name in READ_ATTRIBUTES and value)

    def handle_endtag(self, tag):
        if tag in self.SKIP and self.skipping:
            self.skipping -= 1
        if tag == "p" and self.hints:
            self.hints -= 1

    def handle_data(self, data):
        if not self.skipping and not self.hints:
            self.parts.append(data)


def human_text(html: str) -> str:
    parser = HumanText()
    parser.feed(html)
    return " ".join(" ".join(parser.parts).split())


def other_formats(text: str) -> list[tuple[str, str]]:
    """(kind, the words around it) for each date or time not in the app's style."""
    found = []
    for kind, pattern in OTHER_FORMATS.items():
        for match in pattern.finditer(text):
            found.append((kind, text[max(0, match.start() - 60):match.end() + 40]))
    return found


# --- the helpers --------------------------------------------------------------------------------


def test_one_style_for_days_and_one_for_moments():
    assert formatting.format_date(dt.date(2026, 12, 5)) == "05 Dec 2026"
    assert formatting.format_date(dt.datetime(2026, 12, 5, 23, 59)) == "05 Dec 2026"
    assert formatting.format_datetime(dt.datetime(2026, 12, 5, 14, 5, 33)) == "05 Dec 2026, 14:05 UTC"
    assert formatting.format_datetime(dt.date(2026, 12, 5)) == "05 Dec 2026"
    assert formatting.format_month(dt.date(2026, 12, 5)) == "December 2026"
    assert formatting.format_date(None) == formatting.format_datetime(None) == "–"
    assert formatting.format_date(dt.date(26, 10, 31)) == "31 Oct 0026"  # a mistyped year reads as typed


def test_aware_moments_are_shown_in_utc():
    later = dt.datetime(2026, 12, 5, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    assert formatting.format_datetime(later) == "06 Dec 2026, 04:30 UTC"
    assert formatting.format_date(later) == "06 Dec 2026"


def test_the_jinja_filters_are_the_helpers(app):
    render = app.jinja_env.from_string("{{ d|date }} / {{ m|datetime }} / {{ none|date }}").render
    assert render(d=dt.date(2026, 1, 2), m=dt.datetime(2026, 1, 2, 3, 4), none=None) \
        == "02 Jan 2026 / 02 Jan 2026, 03:04 UTC / –"


def test_the_walk_sees_other_formats():
    """The check itself can fail: each other way of writing a date is caught, the app's is not."""
    html = ("<p>Due 2026-12-05</p><p title='sent 12/05/2026'>x</p><p>Dec 5, 2026</p><p>5 December 2026</p>"
            "<p>at 14:05:33</p><p>05 Dec 2026 14:05</p><p>month 2026-12</p>"
            "<p>05 Dec 2026, 14:05 UTC (UTC)</p>")
    kinds = {kind for kind, _ in other_formats(human_text(html))}
    assert kinds == set(OTHER_FORMATS)
    fine = ("<p>05 Dec 2026, 14:05 UTC</p><input type=date value='2026-12-05'><a href='/x?as_of=2026-12-05'>x</a>"
            "<time datetime='2026-12-05'>05 Dec 2026</time><p data-on='2026-12-05'>US$1,234 ISIN US0378331005</p>"
            "<script>let d = '2026-12-05'</script><textarea>2026-12-05</textarea>"
            "<code>Sat, 05 Dec 2026 06:58:05 +0000</code><p class='hint'>e.g. 25/03/2024 or 2026-06-15</p>")
    assert other_formats(human_text(fine)) == []


# --- typed dates --------------------------------------------------------------------------------


def test_a_typed_date_is_read_as_iso_or_as_the_pages_write_it(app):
    from werkzeug.datastructures import MultiDict
    from wtforms import Form

    from engage.forms import DateField

    class OneDate(Form):
        on = DateField("On")

    for typed in ("2026-12-05", " 2026-12-05 ", "05 Dec 2026", "5 Dec 2026"):
        form = OneDate(MultiDict({"on": typed}))
        assert form.validate() and form.on.data == dt.date(2026, 12, 5), typed
    for typed in ("05/12/2026", "2026-13-01", "Dec 5, 2026", "tomorrow", "2026-12-05T10:00"):
        form = OneDate(MultiDict({"on": typed}))
        assert not form.validate(), typed
        assert form.on.errors == [f"{typed!r} is not a date; write it as YYYY-MM-DD, e.g. 2026-06-15."]
    empty = OneDate(MultiDict({"on": ""}))
    assert empty.validate() and empty.on.data is None  # nothing typed: DataRequired or Optional decides
    assert 'value="2026-12-05"' in OneDate(on=dt.date(2026, 12, 5)).on()  # the input still holds ISO


def test_a_refused_typed_date_says_the_format_and_nothing_is_written(client, login_as):
    from engage.models import Reminder
    from tests import factories

    login_as("analyst")
    engagement = factories.engagement()
    db.session.commit()
    page = client.post(f"/reminders/add/{engagement.id}", data={"due_on": "12/05/2026", "reason": "x"},
                       follow_redirects=True).get_data(as_text=True)
    assert "Due on: &#39;12/05/2026&#39; is not a date; write it as YYYY-MM-DD" in page
    assert db.session.scalar(sa.select(sa.func.count(Reminder.id))) == 0
    typed = client.post(f"/reminders/add/{engagement.id}", data={"due_on": "05 Dec 2100", "reason": "x"})
    assert typed.status_code == 302
    assert db.session.scalar(sa.select(Reminder.due_on)) == dt.date(2100, 12, 5)


def test_messages_write_dates_the_pages_way(client, login_as, frozen_today):
    """A refusal quoting dates (here a reminder after the accepted range) uses the one style."""
    from tests import factories

    login_as("analyst")
    engagement = factories.engagement()
    db.session.commit()
    page = client.post(f"/reminders/add/{engagement.id}", data={"due_on": "2101-01-01", "reason": "x"},
                       follow_redirects=True).get_data(as_text=True)
    assert "01 Jan 2101 is outside the dates Engage accepts (01 Jan 1990 to 31 Dec 2100)." in page


# --- every page ---------------------------------------------------------------------------------

#: Responses that are files for a machine or a download, not pages.
MACHINE_TYPES = ("text/csv", "text/calendar", "application/json", "application/pdf",
                 "application/vnd.openxmlformats", "message/rfc822", "application/octet-stream", "image/")


def page_urls(app):
    """A URL for every page (one of each kind, and every engagement and company of the demo set)."""
    urls = set()
    with app.test_request_context():
        for rule in app.url_map.iter_rules():
            if "GET" not in rule.methods or rule.endpoint in SKIPPED or rule.endpoint.startswith("api."):
                continue
            if "version_id" in rule.arguments:
                urls.add(url_for(rule.endpoint, version_id=db.session.scalar(sa.select(sa.func.max(ListVersion.id)))))
                continue
            urls.add(url_for(rule.endpoint, **ids_for(rule)))
        urls |= {url_for("engagements.show", engagement_id=i) for i in db.session.scalars(sa.select(Engagement.id))}
        urls |= {url_for("valuechain.tab", engagement_id=i) for i in db.session.scalars(sa.select(Engagement.id))}
        urls |= {url_for("companies.show", company_id=i) for i in db.session.scalars(
            sa.select(Engagement.company_id))}
        urls |= {url_for("letters.show", letter_id=i) for i in db.session.scalars(sa.select(Letter.id))}
    return sorted(urls)


def test_every_page_writes_dates_one_way(app, client, make_user, world):  # noqa: F811
    from tests.conftest import login

    login(client, make_user("admin").email)
    urls = page_urls(app)
    assert len(urls) > 40
    found, walked = {}, 0
    for url in urls:
        response = client.get(url)
        if response.status_code != 200 or response.mimetype != "text/html":
            continue
        walked += 1
        for kind, words in other_formats(human_text(response.get_data(as_text=True))):
            found.setdefault(url, []).append((kind, words))
    assert walked > 40
    assert found == {}


def test_emails_and_cli_lines_write_dates_one_way(app, runner, smtp, world):  # noqa: F811
    """What the demo set's screening emailed, a reminders tick's emails and lines, and the CLI's reports."""
    from engage.models import OutboxEmail

    lines = []
    for args in (["reminders", "run", "--now", "2030-01-02T09:30"], ["screen"], ["lists", "versions"]):
        result = runner.invoke(args=args)
        assert result.exit_code == 0, result.output
        lines.append(result.output)
    assert "Reminders tick at 02 Jan 2030, 09:30 UTC" in lines[0]
    emails = db.session.scalars(sa.select(OutboxEmail)).all()
    app_style = re.compile(r"\b\d{2} [A-Z][a-z]{2} \d{4}\b")
    assert sum(bool(app_style.search(e.body_text)) for e in emails) >= 2  # the check reads dates, in the one style
    assert app_style.search(lines[1]) and app_style.search(lines[2])
    found = [(kind, words) for text in lines + [f"{e.subject}\n{e.body_text}" for e in emails]
             for kind, words in other_formats(text)]
    assert found == []


def test_a_citation_loaded_with_an_iso_day_is_not_a_change(runner, app, tmp_path):
    """CBP citations now end '24 Jun 2021'; a version loaded when they ended '2021-06-24' does not
    make every entry of the next version 'changed'. A real change of the day still is one."""
    from engage.models import ListedEntity

    source = Path(__file__).parent / "fixtures" / "lists" / "cbp_wro_2021-07-01.csv"
    first = runner.invoke(args=["lists", "import", str(source), "--retrieved", "2021-07-01"])
    assert first.exit_code == 0, first.output
    hoshine = db.session.scalar(sa.select(ListedEntity).where(ListedEntity.name.like("Hoshine%")))
    assert hoshine.citation == "CBP WRO on Silica-based products, 24 Jun 2021"
    for entity in db.session.scalars(sa.select(ListedEntity)):  # as an older Engage stored them
        entity.citation = entity.citation.replace("24 Jun 2021", "2021-06-24").replace("29 Mar 2016", "2016-03-29")
    db.session.commit()
    text = source.read_text()
    again = tmp_path / "cbp_wro_2021-08-01.csv"
    again.write_text(text.replace("03/29/2016", "03/30/2016", 1))  # one real change of day
    second = runner.invoke(args=["lists", "import", str(again), "--retrieved", "2021-08-01"])
    assert second.exit_code == 0, second.output
    assert "0 added, 0 removed, 1 changed" in second.output, second.output
