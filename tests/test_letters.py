"""Letters: the sandbox, the template editor, generating, sending, downloads and bulk batches."""

import datetime as dt
import re
import io
import zipfile
from decimal import Decimal

import pytest
import sqlalchemy as sa
from docx import Document
from pypdf import PdfReader

from engage.extensions import db
from engage.letters.rendering import SAMPLE_CONTEXT, LetterTemplateError, Record, render
from engage.models import (
    Engagement,
    Interaction,
    Investor,
    Letter,
    LetterTemplate,
    LetterTemplateVersion,
    Reminder,
)
from tests import factories

ESCAPES = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ company|attr('__class__') }}",
    "{{ company.__class__.__init__.__globals__ }}",
    "{{ cycler.__init__.__globals__.os }}",
    "{{ lipsum.__globals__['os'].popen('id').read() }}",
    "{{ self._TemplateReference__context.cycler }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ company.update({'name': 'x'}) }}",
    "{{ signatories.append(1) }}",
    "{{ ''.format.__self__ }}",
    "{% for x in range(100000) %}{% endfor %}",
    "{% for a in range(9000) %}{% for b in range(9000) %}{% endfor %}{% endfor %}",
    "{{ 'x' * 100000000 }}",
    "{{ [1] * 100000000 }}",
    "{{ 9 ** 99999999 }}",
    "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}",
]


@pytest.mark.parametrize("payload", ESCAPES)
def test_sandbox_refuses_known_escapes(payload):
    with pytest.raises(LetterTemplateError):
        render(payload, SAMPLE_CONTEXT)


def test_output_is_capped():
    with pytest.raises(LetterTemplateError, match="longer than"):
        render("{% for a in range(100) %}{{ 'y' * 5000 }}{% endfor %}", SAMPLE_CONTEXT)


def test_strict_undefined_names_the_variable_and_line():
    with pytest.raises(LetterTemplateError) as error:
        render("Dear board,\n\n{{ compnay.name }}", SAMPLE_CONTEXT)
    assert error.value.line == 3 and "compnay is not a variable" in error.value.message


def test_missing_data_is_named_with_a_hint():
    context = dict(SAMPLE_CONTEXT, company=Record("company", {"name": "No Address Ltd"}))
    context.pop("signatories")
    with pytest.raises(LetterTemplateError, match="company.address is missing: add the company's postal address"):
        render("{{ company.address }}", context)
    with pytest.raises(LetterTemplateError, match="signatories is missing: the campaign has no co-signatories"):
        render("{% for s in signatories %}{{ s.name }}{% endfor %}", context)
    assert render("{% if signatories is defined %}x{% else %}none{% endif %}", context) == "none"


def test_syntax_error_reports_the_line():
    with pytest.raises(LetterTemplateError) as error:
        render("line one\nline two {% if %}", SAMPLE_CONTEXT)
    assert error.value.line == 2 and "syntax error" in error.value.message


@pytest.fixture()
def seeded(runner):
    assert runner.invoke(args=["seed"]).exit_code == 0
    return {t.kind: t for t in db.session.scalars(sa.select(LetterTemplate))}


def xuar_engagement(**kw):
    from engage.models import Campaign

    campaign = db.session.scalar(sa.select(Campaign).where(Campaign.slug == "xuar"))
    return factories.engagement(campaign=campaign, opened_on=dt.date(2026, 3, 1), **kw)


def test_generate_edit_send_and_download(client, login_as, seeded, frozen_today):
    analyst = login_as("analyst")
    investor = Investor(name="Test Pension Fund", aum_usd=Decimal("12500000000"))
    db.session.add(investor)
    engagement = xuar_engagement(company=factories.company("Letter Test Electronics Co., Ltd."), owner=analyst)
    engagement.campaign.signatories.append(investor)
    db.session.commit()
    eid = engagement.id

    response = client.post(f"/letters/generate/{eid}", data={"template_id": seeded["initial"].id})
    assert response.status_code == 302
    letter = db.session.scalar(sa.select(Letter))
    assert letter.status == "draft" and letter.template_version == 1
    assert "Letter Test Electronics Co., Ltd." in letter.subject and "Map the value chain" in letter.body
    assert letter.signatories[-1]["name"] == "Test Pension Fund"

    edited = letter.body.replace("Yours faithfully", "With kind regards")
    assert client.post(f"/letters/{letter.id}/edit", data={"subject": letter.subject, "body": edited}).status_code == 302
    assert client.post(f"/letters/{letter.id}/send", data={"sent_on": "2026-06-20", "channel": "post"}).status_code == 422
    response = client.post(f"/letters/{letter.id}/send", data={"sent_on": "2026-06-10", "channel": "email"})
    assert response.status_code == 302

    db.session.expire_all()
    engagement = db.session.get(Engagement, eid)
    assert engagement.stage == "mapping_requested"
    reminder = db.session.scalar(sa.select(Reminder).where(Reminder.engagement_id == eid))
    assert reminder.due_on == dt.date(2026, 7, 10) and reminder.letter_id == letter.id  # 30-day window
    interaction = db.session.scalar(sa.select(Interaction).where(Interaction.engagement_id == eid))
    assert interaction.kind == "letter" and interaction.occurred_on == dt.date(2026, 6, 10)
    page = client.get(f"/engagements/{eid}").get_data(as_text=True)
    assert "Letter sent" in page and "10 Jul 2026" in page

    refused = client.post(f"/letters/{letter.id}/edit", data={"subject": "x", "body": "changed"})
    assert refused.status_code == 409 and "cannot be edited" in refused.get_data(as_text=True)
    again = client.post(f"/letters/{letter.id}/send", data={"sent_on": "2026-06-11", "channel": "post"})
    assert again.status_code == 409 and "already sent" in again.get_data(as_text=True)

    pdf = client.get(f"/letters/{letter.id}.pdf")
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf"
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf.data)).pages)
    assert "Letter Test Electronics" in text and "With kind regards" in text
    assert "Test Pension Fund (US$12.50 billion)" in text
    docx = client.get(f"/letters/{letter.id}.docx")
    paragraphs = [p.text for p in Document(io.BytesIO(docx.data)).paragraphs]
    assert letter.subject in paragraphs
    assert any("With kind regards" in p for p in paragraphs)
    assert "Test Pension Fund (US$12.50 billion)" in paragraphs


def test_follow_up_letter_raises_the_escalation(client, login_as, seeded, frozen_today):
    login_as("analyst")
    engagement = xuar_engagement(stage="mapping_requested")
    client.post(f"/letters/generate/{engagement.id}", data={"template_id": seeded["follow_up"].id})
    letter = db.session.scalar(sa.select(Letter))
    assert "our earlier letter" in letter.subject  # no letter sent before
    client.post(f"/letters/{letter.id}/send", data={"sent_on": "2026-06-01", "channel": "post"})
    db.session.expire_all()
    assert db.session.get(Engagement, engagement.id).escalation == "follow_up"


def test_letter_html_in_the_text_is_not_fetched_or_rendered(client, login_as, seeded, frozen_today):
    login_as("analyst")
    engagement = xuar_engagement()
    client.post(f"/letters/generate/{engagement.id}", data={"template_id": seeded["initial"].id})
    letter = db.session.scalar(sa.select(Letter))
    body = "<img src='http://127.0.0.1:9/beacon.png'><script>alert(1)</script> plain"
    client.post(f"/letters/{letter.id}/edit", data={"subject": letter.subject, "body": body})
    page = client.get(f"/letters/{letter.id}").get_data(as_text=True)
    assert "<script>alert(1)" not in page and "&lt;img" in page
    text = PdfReader(io.BytesIO(client.get(f"/letters/{letter.id}.pdf").data)).pages[0].extract_text()
    assert "<img src=" in text  # shown as text, never loaded


def test_viewer_reads_and_downloads_but_changes_nothing(client, login_as, seeded, frozen_today, make_user):
    engagement = xuar_engagement()
    from engage.letters import service

    letter = service.generate(engagement, seeded["initial"], make_user("analyst"))
    db.session.commit()
    login_as("viewer")
    assert client.get(f"/letters/{letter.id}").status_code == 200
    assert client.get(f"/letters/{letter.id}.docx").status_code == 200
    page = client.get(f"/letters/{letter.id}").get_data(as_text=True)
    assert "Mark as sent" not in page and "Edit the draft" not in page
    assert client.post(f"/letters/generate/{engagement.id}", data={"template_id": 1}).status_code == 403
    assert client.post(f"/letters/{letter.id}/edit", data={}).status_code == 403
    assert client.post(f"/letters/{letter.id}/send", data={}).status_code == 403
    assert client.post("/letters/bulk", data={}).status_code == 403
    assert client.get("/letters/templates").status_code == 403


def test_bulk_generation_for_200_engagements(client, login_as, seeded, frozen_today, count_queries):
    login_as("analyst")
    from engage.models import Campaign

    campaign = db.session.scalar(sa.select(Campaign).where(Campaign.slug == "xuar"))
    for i in range(200):
        company = factories.company(f"Bulk {i:03d} Ltd")
        factories.contact(company)
        db.session.add(Engagement(company=company, campaign=campaign,
                                  opened_on=dt.date(2026, 3, 1)))
    other = factories.engagement(stage="acknowledged")  # not matching the filter below
    db.session.commit()
    with count_queries() as counter:
        response = client.post("/letters/bulk", data={
            "template_id": seeded["initial"].id, "scope": "all",
            "campaign": campaign.id, "stage": "identified"})
    assert response.status_code == 302
    selects = [s for s in counter.statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) < 20, selects  # no look-up per letter (the inserts themselves are one per row)
    assert db.session.scalar(sa.select(sa.func.count(Letter.id))) == 200
    assert db.session.scalar(sa.select(Letter.id).where(Letter.engagement_id == other.id)) is None
    batch_url = response.headers["Location"]
    assert "200 letters" in client.get(batch_url).get_data(as_text=True)


def test_bulk_selected_rows_progress_and_zip(client, login_as, seeded, frozen_today):
    login_as("analyst")
    engagements = [xuar_engagement() for _ in range(3)]
    response = client.post("/letters/bulk", data={
        "template_id": seeded["initial"].id, "scope": "selected",
        "engagement_ids": [str(e.id) for e in engagements[:2]]})
    assert response.status_code == 302
    batch_id = int(response.headers["Location"].rstrip("/").split("/")[-1])
    progress = client.post(f"/letters/batches/{batch_id}/prepare").get_json()
    assert progress["done"] == progress["total"] == 2 and progress["zip"]
    archive = zipfile.ZipFile(io.BytesIO(client.get(f"/letters/batches/{batch_id}.zip").data))
    names = archive.namelist()
    assert len(names) == 4 and sum(n.endswith(".pdf") for n in names) == 2
    assert client.post("/letters/bulk", data={"template_id": seeded["initial"].id, "scope": "selected"}).status_code == 302
    assert db.session.scalar(sa.select(sa.func.count(Letter.id))) == 2  # an empty selection wrote nothing


def test_bulk_is_all_or_nothing(client, login_as, seeded, frozen_today):
    login_as("analyst")
    good = xuar_engagement()
    closed = xuar_engagement(company=factories.company("Closed Co"), stage="closed",
                             closed_on=dt.date(2026, 4, 1), outcome="dropped")
    response = client.post("/letters/bulk", data={"template_id": seeded["initial"].id, "scope": "selected",
                                                  "engagement_ids": [str(good.id), str(closed.id)]})
    assert response.status_code == 302
    assert "Closed Co" in client.get(response.headers["Location"]).get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count(Letter.id))) == 0


def test_template_editor_versions_and_refusals(client, login_as, seeded):
    login_as("admin")
    template = seeded["initial"]
    form = {"name": template.name, "kind": "initial", "subject": template.subject, "active": "y",
            "body": template.body + "\nPostscript: {{ company.name }}"}
    assert client.post(f"/letters/templates/{template.id}", data=form).status_code == 302
    db.session.expire_all()
    template = db.session.get(LetterTemplate, template.id)
    assert template.version == 2 and [v.version for v in template.versions] == [1, 2]
    assert client.post(f"/letters/templates/{template.id}", data=dict(form, name="Renamed")).status_code == 302
    db.session.expire_all()
    assert db.session.get(LetterTemplate, template.id).version == 2  # same text, no new version
    old = client.get(f"/letters/templates/{template.id}/versions/1").get_data(as_text=True)
    assert "Postscript" not in old

    bad = [
        ("Hello {{ company.nmae }}", "company.nmae is not a variable"),
        ("Hello\n{% for x in %}", "line 2"),
        ("{{ ''.__class__ }}", "not allowed in a letter template"),
    ]
    for body, message in bad:
        response = client.post(f"/letters/templates/{template.id}", data=dict(form, body=body))
        assert response.status_code == 422
        assert message in response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(LetterTemplate, template.id).version == 2
    assert db.session.scalar(sa.select(sa.func.count(LetterTemplateVersion.id))) == 2 + 3  # 4 seeded + 1


def test_letters_keep_the_template_version_they_used(client, login_as, seeded, frozen_today):
    login_as("admin")
    engagement = xuar_engagement()
    client.post(f"/letters/generate/{engagement.id}", data={"template_id": seeded["initial"].id})
    template = seeded["initial"]
    client.post(f"/letters/templates/{template.id}", data={
        "name": template.name, "kind": "initial", "subject": "New subject for {{ company.name }}",
        "body": template.body, "active": "y"})
    letter = db.session.scalar(sa.select(Letter))
    assert letter.template_version == 1 and not letter.subject.startswith("New subject")


def test_live_preview(client, login_as, seeded):
    login_as("admin")
    engagement = xuar_engagement(company=factories.company("Preview Co"))
    ok = client.post("/letters/templates/preview", data={"subject": "To {{ company.name }}", "body": "{{ today }}",
                                                       "preview_engagement": str(engagement.id)}).get_json()
    assert ok["subject"] == "To Preview Co"
    sample = client.post("/letters/templates/preview", data={"subject": "To {{ company.name }}", "body": "x"}).get_json()
    assert sample["subject"] == "To Example Holdings Ltd"
    error = client.post("/letters/templates/preview", data={"subject": "ok", "body": "a\nb\n{{ nope }}"}).get_json()
    assert error == {"error": "nope is not a variable letters can use.", "line": 3, "field": "body"}


def test_new_template_and_campaign_signatories(client, login_as, seeded, frozen_today):
    login_as("admin")
    response = client.post("/letters/templates/new", data={
        "name": "Thank-you note", "kind": "other", "subject": "Thank you, {{ company.name }}",
        "body": "Dear board,\n\nThank you.\n\n{{ sender.name }}", "active": "y"})
    assert response.status_code == 302
    assert db.session.scalar(sa.select(LetterTemplate).where(LetterTemplate.name == "Thank-you note")).slug == "thank-you-note"
    response = client.post("/admin/investors/new", data={"name": "Fjord Pension", "kind": "investor",
                                                          "aum_usd": "2500000000", "contact_email": "a@fjord.example.org"})
    assert response.status_code == 302
    assert client.post("/admin/investors/new", data={"name": "Fjord Pension", "kind": "investor"}).status_code == 422
    assert client.post("/admin/investors/new", data={"name": "Bad", "kind": "investor", "aum_usd": "-5"}).status_code == 422
    from engage.models import Campaign

    campaign = db.session.scalar(sa.select(Campaign).where(Campaign.slug == "xuar"))
    fjord = db.session.scalar(sa.select(Investor).where(Investor.name == "Fjord Pension"))
    response = client.post(f"/admin/campaigns/{campaign.id}", data={
        "name": campaign.name, "summary": "", "letterhead": "Fjord Stewardship\nOslo",
        "call_to_action": campaign.call_to_action, "call_to_action_url": campaign.call_to_action_url,
        "response_window_days": "21", "follow_up_interval_days": "14", "follow_ups_before_escalation": "2",
        "warn_days_before": "3", "signatory_ids": [str(fjord.id)]})
    assert response.status_code == 302
    engagement = xuar_engagement()
    client.post(f"/letters/generate/{engagement.id}", data={"template_id": seeded["initial"].id})
    letter = db.session.scalar(sa.select(Letter))
    assert "together responsible for US$2.50 billion" in letter.body
    assert letter.letterhead == "Fjord Stewardship\nOslo"
    bad = client.post(f"/admin/campaigns/{campaign.id}", data={"name": campaign.name, "response_window_days": "0",
                                                              "follow_up_interval_days": "14",
                                                              "follow_ups_before_escalation": "2", "warn_days_before": "3"})
    assert bad.status_code == 422


def test_generate_draft_clicked_twice_makes_one_draft(client, login_as, seeded, frozen_today):
    analyst = login_as("analyst")
    engagement = xuar_engagement(company=factories.company("Double Click Optics Co., Ltd."), owner=analyst)
    db.session.commit()
    eid = engagement.id
    page = client.get(f"/engagements/{eid}").get_data(as_text=True)
    form = page.split(f'action="/letters/generate/{eid}"')[1].split("</form>")[0]
    token = re.search(r'name="form_token" type="hidden" value="([0-9a-f]{32})"', form).group(1)
    data = {"template_id": seeded["initial"].id, "form_token": token}
    first = client.post(f"/letters/generate/{eid}", data=data)
    second = client.post(f"/letters/generate/{eid}", data=data)
    assert first.status_code == 302 and second.status_code == 303
    letters = db.session.scalars(sa.select(Letter).where(Letter.engagement_id == eid)).all()
    assert len(letters) == 1
    assert second.headers["Location"] == first.headers["Location"] == f"/letters/{letters[0].id}"
    # a fresh page (a fresh token) generates a second draft on purpose
    page = client.get(f"/engagements/{eid}").get_data(as_text=True)
    form = page.split(f'action="/letters/generate/{eid}"')[1].split("</form>")[0]
    token = re.search(r'name="form_token" type="hidden" value="([0-9a-f]{32})"', form).group(1)
    assert client.post(f"/letters/generate/{eid}", data={**data, "form_token": token}).status_code == 302
    assert db.session.scalar(sa.select(sa.func.count(Letter.id)).where(Letter.engagement_id == eid)) == 2


def test_bulk_action_carries_the_lists_filters_as_its_form_fields(client, login_as, seeded, frozen_today):
    """The bulk form repeats the list's GET fields; the action checks them with the list's own form."""
    login_as("analyst")
    engagement = xuar_engagement()
    page = client.get(f"/engagements?campaign={engagement.campaign_id}&stage=identified&sort=stage")
    html = page.get_data(as_text=True)
    bulk = html[html.index('id="bulk-letters"'):]
    assert f'name="campaign" type="hidden" value="{engagement.campaign_id}"' in bulk
    assert 'name="stage" type="hidden" value="identified"' in bulk and 'name="sort"' not in bulk
    refused = client.post("/letters/bulk", data={"template_id": seeded["initial"].id, "scope": "all",
                                                 "stage": "nowhere"})
    assert refused.status_code == 400 and "Unknown stage &#39;nowhere&#39;." in refused.get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count(Letter.id))) == 0
    done = client.post("/letters/bulk", data={"template_id": seeded["initial"].id, "scope": "all",
                                              "campaign": engagement.campaign_id, "stage": "identified"})
    assert done.status_code == 302 and db.session.scalar(sa.select(sa.func.count(Letter.id))) == 1
