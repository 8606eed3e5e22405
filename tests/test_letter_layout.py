"""The letter as a document (issue 17): addressee block, closing kept with the signature, DRAFT
mark on drafts only, one paper size per campaign for the PDF and the DOCX, coherent sample data.

Every document is downloaded through the app and read back: the PDF with pypdf (text per page,
page size), the DOCX with python-docx (section size, header, paragraph layout).
"""

import datetime as dt
import io
from pathlib import Path

import pytest
import sqlalchemy as sa
from docx import Document
from hypothesis import given, settings, strategies as st
from pypdf import PdfReader

from engage import clock
from engage.extensions import db
from engage.letters import service
from engage.letters.rendering import sample_context
from engage.models import AuditEvent, Campaign, LetterTemplate, OutboxEmail

NOW = dt.datetime(2026, 6, 15, 9, 0)
#: PDF points per millimetre.
PT_PER_MM = 72 / 25.4
SIGNATURE = "A. Example Analyst"
CLOSING = "Yours faithfully,"


@pytest.fixture(autouse=True)
def cache_dir(app, tmp_path):
    """Each test starts with an empty document cache of its own."""
    previous = app.config["DOCUMENT_CACHE_DIR"]
    app.config["DOCUMENT_CACHE_DIR"] = str(tmp_path / "cache")
    yield
    app.config["DOCUMENT_CACHE_DIR"] = previous


@pytest.fixture()
def frozen():
    with clock.frozen(NOW):
        yield NOW


@pytest.fixture()
def draft(frozen, make_user):
    """A draft letter of a fictional company, addressed to its contact, on a campaign with a letterhead."""
    from tests import factories

    campaign = factories.campaign()
    campaign.letterhead = "Example Stewardship Partners\n10 Example Square, London"
    company = factories.company("Example Optics Co., Ltd.", address="88 Example Avenue\nExample City")
    factories.contact(company, name="Morgan Example", title="Secretary to the Board",
                      address="Investor Relations Department\n12 Example Street\nExample District")
    engagement = factories.engagement(campaign=campaign, company=company, opened_on=dt.date(2026, 3, 1))
    template = LetterTemplate(slug="layout-test", name="Layout test", kind="other", subject="About {{ company.name }}",
                              body=f"Dear {{{{ addressee.name }}}},\n\nWe write about your value chain.\n\n"
                                   f"{CLOSING}\n\n{SIGNATURE}\non behalf of the signatories", version=1)
    db.session.add(template)
    letter = service.generate(engagement, template, make_user("analyst"))
    db.session.commit()
    return letter


def pdf_pages(response) -> tuple[PdfReader, list[str]]:
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    assert response.mimetype == "application/pdf"
    reader = PdfReader(io.BytesIO(response.data))
    return reader, [page.extract_text() for page in reader.pages]


def docx_of(response):
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return Document(io.BytesIO(response.data))


def page_size_mm(reader: PdfReader) -> set[tuple[float, float]]:
    return {(round(float(p.mediabox.width) / PT_PER_MM, 1), round(float(p.mediabox.height) / PT_PER_MM, 1))
            for p in reader.pages}


def docx_size_mm(document) -> tuple[float, float]:
    section = document.sections[0]
    return round(section.page_width.mm, 1), round(section.page_height.mm, 1)


def docx_text(document) -> str:
    """Every paragraph of the body and of every header and footer."""
    parts = [p.text for p in document.paragraphs]
    for section in document.sections:
        for part in (section.header, section.first_page_header, section.even_page_header, section.footer):
            parts += [p.text for p in part.paragraphs]
    return "\n".join(parts)


def edit(client, letter_id: int, body: str) -> None:
    response = client.post(f"/letters/{letter_id}/edit", data={"subject": "About the value chain", "body": body})
    assert response.status_code == 302, response.get_data(as_text=True)[:500]


# --- addressee -------------------------------------------------------------------------------

def test_the_pdf_and_the_docx_print_the_letterhead_then_the_addressee_block(client, login_as, draft):
    login_as("viewer")
    _, pages = pdf_pages(client.get(f"/letters/{draft.id}.pdf"))
    block = ["Example Stewardship Partners", "10 Example Square, London", "Morgan Example", "Secretary to the Board",
             "Example Optics Co., Ltd.", "Investor Relations Department", "12 Example Street", "Example District",
             "About Example Optics Co., Ltd.", "Dear Morgan Example,"]
    lines = [line.strip() for line in pages[0].splitlines()]
    assert all(line in lines for line in block), lines
    assert [lines.index(line) for line in block] == sorted(lines.index(line) for line in block)
    # The contact's own address is printed, not the company's.
    assert "88 Example Avenue" not in pages[0]

    document = docx_of(client.get(f"/letters/{draft.id}.docx"))
    paragraphs = [p.text for p in document.paragraphs]
    head = paragraphs.index("Example Stewardship Partners")
    assert paragraphs[head + 2].split("\n") == block[2:8]
    assert paragraphs[head + 3] == "About Example Optics Co., Ltd."


def test_a_letter_generated_without_an_addressee_is_addressed_to_the_company(client, login_as, draft):
    draft.addressee, draft.contact_id = {}, None  # as letters generated before contacts existed
    db.session.commit()
    login_as("viewer")
    _, pages = pdf_pages(client.get(f"/letters/{draft.id}.pdf"))
    lines = [line.strip() for line in pages[0].splitlines()]
    assert lines.index("Example Optics Co., Ltd.") < lines.index("88 Example Avenue") < lines.index("Example City") \
        < lines.index("About Example Optics Co., Ltd.")
    assert "Morgan Example" not in lines


# --- the closing stays with the signature -------------------------------------------------------

def _body(fillers: int) -> str:
    lines = "\n\n".join(f"Point {n:03d} of the letter." for n in range(1, fillers + 1))
    return f"Dear Morgan Example,\n\n{lines}\n\n{CLOSING}\n\n{SIGNATURE}\non behalf of the signatories listed below"


def _page_of(pages: list[str], text: str) -> int:
    [page] = [index for index, content in enumerate(pages) if text in content]
    return page


def test_the_closing_is_never_separated_from_the_signature(client, login_as, draft):
    """A letter grows a line at a time across the foot of page 1: "Yours faithfully," always
    stands on the page of the signature, and moves to page 2 with it."""
    login_as("analyst")
    edit(client, draft.id, _body(80))
    _, pages = pdf_pages(client.get(f"/letters/{draft.id}.pdf"))
    # How many one-line points fill page 1: with that many, nothing of the closing fits below them.
    full = max(n for n in range(1, 81) if f"Point {n:03d}" in pages[0])
    closing_pages = []
    for fillers in range(full - 3, full + 1):
        edit(client, draft.id, _body(fillers))
        _, pages = pdf_pages(client.get(f"/letters/{draft.id}.pdf"))
        closing, signature = _page_of(pages, CLOSING), _page_of(pages, SIGNATURE)
        assert closing == signature, (fillers, pages)
        closing_pages.append(closing)
    # The sweep crossed the foot of page 1: at one length, "Yours faithfully," fitted on page 1
    # only without its signature, and was moved with it.
    assert closing_pages[0] == 0 and closing_pages[-1] == 1, closing_pages

    document = docx_of(client.get(f"/letters/{draft.id}.docx"))
    paragraphs = {p.text: p.paragraph_format for p in document.paragraphs}
    assert paragraphs[CLOSING].keep_with_next and paragraphs[CLOSING].keep_together
    signature = paragraphs[f"{SIGNATURE}\non behalf of the signatories listed below"]
    assert signature.keep_together and not signature.keep_with_next
    assert not paragraphs[f"Point {full:03d} of the letter."].keep_with_next



def test_the_closing_is_found_without_a_known_valediction_and_never_swallows_the_letter(client, login_as, draft):
    login_as("analyst")
    points = "\n\n".join(f"Point {n} of the letter." for n in range(1, 16))
    # "Sincerely held" opens the text, far from the end: not a closing. "Best," is no valediction
    # we know, but a short last paragraph is a signature and takes the paragraph before it along.
    edit(client, draft.id, f"Sincerely held concerns bring us to write.\n\n{points}\n\nBest,\n\nA. Analyst\nStewardship")
    document = docx_of(client.get(f"/letters/{draft.id}.docx"))
    layout = {p.text: p.paragraph_format for p in document.paragraphs}
    assert not layout["Sincerely held concerns bring us to write."].keep_together
    assert not layout["Point 15 of the letter."].keep_with_next
    assert layout["Best,"].keep_with_next and layout["Best,"].keep_together
    assert layout["A. Analyst\nStewardship"].keep_together
    # A Chinese closing (此致, 敬礼, then the signature: three paragraphs) stays together.
    edit(client, draft.id, f"{points}\n\n此致\n\n敬礼！\n\n示例分析师\n代表以下签署方")
    layout = {p.text: p.paragraph_format for p in docx_of(client.get(f"/letters/{draft.id}.docx")).paragraphs}
    assert layout["此致"].keep_with_next and layout["敬礼！"].keep_with_next
    assert layout["示例分析师\n代表以下签署方"].keep_together
    assert not layout["Point 15 of the letter."].keep_with_next


# --- DRAFT mark ------------------------------------------------------------------------------------

def test_a_draft_is_marked_on_every_page_and_the_sent_letter_is_not(client, login_as, draft):
    login_as("analyst")
    edit(client, draft.id, _body(40))  # more than one page
    _, pages = pdf_pages(client.get(f"/letters/{draft.id}.pdf"))
    assert len(pages) >= 2 and all("DRAFT" in page for page in pages)
    document = docx_of(client.get(f"/letters/{draft.id}.docx"))
    assert "DRAFT" in "\n".join(p.text for p in document.sections[0].header.paragraphs)

    page = client.get(f"/letters/{draft.id}").get_data(as_text=True)
    assert "PDF and DOCX on A4 (210 × 297 mm) paper" in page and "marked DRAFT until" in page

    sent = client.post(f"/letters/{draft.id}/send", data={"sent_on": "2026-06-12", "channel": "post"})
    assert sent.status_code == 302
    page = client.get(f"/letters/{draft.id}").get_data(as_text=True)
    assert "PDF and DOCX on A4 (210 × 297 mm) paper" in page and "marked DRAFT" not in page
    reader, pages = pdf_pages(client.get(f"/letters/{draft.id}.pdf"))
    assert len(pages) >= 2 and not any("DRAFT" in page for page in pages)
    assert CLOSING in "".join(pages)
    document = docx_of(client.get(f"/letters/{draft.id}.docx"))
    assert "DRAFT" not in docx_text(document) and CLOSING in docx_text(document)


def test_the_pdf_an_email_sends_carries_no_draft_mark(client, login_as, draft, app):
    login_as("analyst")
    contact = draft.contact
    _, pages = pdf_pages(client.get(f"/letters/{draft.id}.pdf"))  # the draft's own PDF, cached, is marked
    assert "DRAFT" in pages[0]
    response = client.post(f"/letters/{draft.id}/email", data={"to": [str(contact.id)]})
    assert response.status_code == 302
    email = db.session.scalar(sa.select(OutboxEmail))
    [attachment] = email.attachments
    data = (Path(app.instance_path) / attachment["path"]).read_bytes()
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)
    assert "DRAFT" not in text and "Morgan Example" in text and CLOSING in text


# --- paper size ------------------------------------------------------------------------------------

def _campaign_form(campaign: Campaign, **changes) -> dict:
    return {"name": campaign.name, "summary": "", "letterhead": campaign.letterhead, "call_to_action": "",
            "call_to_action_url": "", "response_window_days": "30", "follow_up_interval_days": "14",
            "follow_ups_before_escalation": "2", "warn_days_before": "3", **changes}


def test_both_formats_are_a4_by_default_and_us_letter_when_the_campaign_says_so(client, login_as, draft):
    campaign = draft.engagement.campaign
    assert campaign.paper_size == "A4"
    login_as("admin")
    reader, _ = pdf_pages(client.get(f"/letters/{draft.id}.pdf"))
    assert page_size_mm(reader) == {(210.0, 297.0)}
    assert docx_size_mm(docx_of(client.get(f"/letters/{draft.id}.docx"))) == (210.0, 297.0)

    form = client.get(f"/admin/campaigns/{campaign.id}").get_data(as_text=True)
    assert "Paper size of letters" in form and "US Letter" in form
    response = client.post(f"/admin/campaigns/{campaign.id}", data=_campaign_form(campaign, paper_size="letter"))
    assert response.status_code == 302
    db.session.expire_all()
    assert db.session.get(Campaign, campaign.id).paper_size == "letter"
    change = db.session.scalar(sa.select(AuditEvent).where(AuditEvent.object_type == "Campaign")
                               .order_by(AuditEvent.id.desc()))
    assert change.changes["paper_size"] == ["A4", "letter"]

    reader, pages = pdf_pages(client.get(f"/letters/{draft.id}.pdf"))  # the cached A4 copies are not served
    assert page_size_mm(reader) == {(215.9, 279.4)} and "Morgan Example" in pages[0]
    assert docx_size_mm(docx_of(client.get(f"/letters/{draft.id}.docx"))) == (215.9, 279.4)


def test_an_unknown_paper_size_is_refused_naming_the_choices_and_nothing_is_saved(client, login_as, draft):
    campaign = draft.engagement.campaign
    login_as("admin")
    response = client.post(f"/admin/campaigns/{campaign.id}",
                           data=_campaign_form(campaign, paper_size="legal", summary="changed"))
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert "Choose the paper size of the campaign&#39;s letters: A4 (210 × 297 mm) or US Letter" in page
    db.session.expire_all()
    unchanged = db.session.get(Campaign, campaign.id)
    assert unchanged.paper_size == "A4" and unchanged.summary == ""


def test_the_database_refuses_a_paper_size_outside_the_list(draft):
    campaign = draft.engagement.campaign
    with pytest.raises(sa.exc.IntegrityError):
        db.session.execute(sa.update(Campaign).where(Campaign.id == campaign.id).values(paper_size="A3"))
        db.session.flush()
    db.session.rollback()


# --- the template editor's sample data -------------------------------------------------------------

DATES = "{{ engagement.opened_on }}|{{ engagement.last_letter_date }}|{{ today }}"


def _dates(text: str) -> list[dt.date]:
    return [dt.datetime.strptime(part, "%d %b %Y").date() for part in text.split("|")]


@settings(max_examples=50, deadline=None)
@given(st.dates(min_value=dt.date(2000, 3, 1), max_value=dt.date(2099, 12, 31)))
def test_the_sample_dates_tell_one_story_counted_back_from_its_today(today):
    context = sample_context(today)
    opened, last_letter, shown_today = _dates("|".join([context["engagement"]["opened_on"],
                                                        context["engagement"]["last_letter_date"], context["today"]]))
    assert opened < last_letter < shown_today == today


def test_the_preview_with_sample_data_is_dated_today_and_its_earlier_letter_before(client, login_as, freeze_clock):
    login_as("admin")
    freeze_clock(dt.datetime(2026, 12, 4, 10, 0))
    preview = client.post("/letters/templates/preview",
                          data={"subject": "Our letter of {{ engagement.last_letter_date }}", "body": DATES}).get_json()
    opened, last_letter, today = _dates(preview["body"])
    assert today == dt.date(2026, 12, 4) and opened < last_letter < today
    assert preview["subject"] == f"Our letter of {last_letter.strftime('%d %b %Y')}"

