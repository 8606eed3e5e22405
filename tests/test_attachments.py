"""Attachment names: the user's own name in any script, kept for display and download, never trusted."""

from __future__ import annotations

import io
from urllib.parse import quote

import pytest
import sqlalchemy as sa

from engage.engagements.attachments import display_name
from engage.web import content_disposition
from engage.extensions import db
from engage.models import Attachment, Engagement, Interaction
from tests import factories

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
DOCX = b"PK\x03\x04" + b"\x00" * 60


@pytest.fixture()
def attachment_dir(app, tmp_path):
    app.config["ATTACHMENT_DIR"] = str(tmp_path)
    yield tmp_path
    app.config["ATTACHMENT_DIR"] = None


def upload(client, engagement_id: int, name: str, data: bytes = PDF):
    version = str(db.session.get(Engagement, engagement_id).version)
    return client.post(f"/engagements/{engagement_id}/interactions", content_type="multipart/form-data", data={
        "kind": "response", "direction": "inbound", "occurred_on": "2026-01-20", "subject": "Reply",
        "version": version, "attachments": [(io.BytesIO(data), name)]})


def only_attachment() -> Attachment:
    db.session.expire_all()
    return db.session.scalar(sa.select(Attachment).order_by(Attachment.id.desc()))


@pytest.mark.parametrize("name, data, shown, fallback", [
    ("回复函.pdf", PDF, "回复函.pdf", "attachment.pdf"),
    ("Réponse.docx", DOCX, "Réponse.docx", "Reponse.docx"),
    ("Ответ компании.PDF", PDF, "Ответ компании.PDF", "attachment.pdf"),
    ("reply letter.pdf", PDF, "reply letter.pdf", "reply letter.pdf"),
    ("/home/analyst/Desktop/réponse.pdf", PDF, "réponse.pdf", "reponse.pdf"),
    ("../../etc/passwd.pdf", PDF, "passwd.pdf", "passwd.pdf"),
    ("a\x00b.pdf", PDF, "ab.pdf", "ab.pdf"),
    ("report\u202egpj.pdf", PDF, "reportgpj.pdf", "reportgpj.pdf"),
    ("  .hidden.pdf  ", PDF, "hidden.pdf", "hidden.pdf"),
    ("O'Brien; reply.pdf", PDF, "O'Brien; reply.pdf", "O_Brien_ reply.pdf"),
])
def test_names_in_any_script_are_kept_for_display_and_download(client, login_as, attachment_dir, name, data,
                                                                 shown, fallback):
    login_as("analyst")
    engagement = factories.engagement()
    response = upload(client, engagement.id, name, data)
    assert response.status_code == 302, response.get_data(as_text=True)
    attachment = only_attachment()
    assert attachment.filename == shown
    extension = shown.rsplit(".", 1)[1].lower()
    stem = attachment.stored_name.rsplit(".", 1)[0]
    assert attachment.stored_name.endswith("." + extension) and len(stem) == 32 and stem.isalnum()
    assert [p.name for p in attachment_dir.iterdir()] == [attachment.stored_name]
    page = client.get(f"/engagements/{engagement.id}").get_data(as_text=True)
    from markupsafe import escape

    assert str(escape(shown)) in page
    download = client.get(f"/engagements/attachments/{attachment.id}")
    assert download.status_code == 200 and download.data == data
    disposition = download.headers["Content-Disposition"]
    assert disposition == f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(shown, safe='')}"
    assert disposition.isascii()


def test_long_names_are_cut_to_255_characters_keeping_the_extension(client, login_as, attachment_dir):
    login_as("analyst")
    engagement = factories.engagement()
    assert upload(client, engagement.id, "长" * 300 + ".pdf").status_code == 302
    attachment = only_attachment()
    assert len(attachment.filename) == 255 and attachment.filename.endswith("长.pdf")


@pytest.mark.parametrize("name, message", [
    ("invoice\u202efdp.exe", "invoicefdp.exe: files of type .exe are not accepted"),
    ("回复函", "回复函: the name has no extension"),
    ("回复函.文档", "files of type .文档 are not accepted"),
    ("\x00\u202e", "attachment: the name has no extension"),
    ("photo.pdf.exe", "files of type .exe are not accepted"),
])
def test_dangerous_or_typeless_names_are_refused_with_a_clear_message(client, login_as, attachment_dir, name,
                                                                      message):
    login_as("analyst")
    engagement = factories.engagement()
    response = upload(client, engagement.id, name)
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count(Interaction.id))) == 0
    assert list(attachment_dir.iterdir()) == []


def test_display_name_and_disposition_units():
    assert display_name(None) == "attachment" and display_name("...") == "attachment"
    assert display_name("dir/sub\\name.txt") == "name.txt"
    assert display_name("e\u0301te\u0301.pdf") == "été.pdf"  # composed (NFC)
    assert display_name("a\u2028b\u200bc.pdf") == "abc.pdf"
    assert content_disposition("回复函.pdf").startswith('attachment; filename="attachment.pdf"; ')
    assert content_disposition('say "hi".pdf') == "attachment; filename=\"say _hi.pdf\"; filename*=UTF-8''say%20%22hi%22.pdf"
    assert content_disposition("no extension") == "attachment; filename=\"no extension\"; filename*=UTF-8''no%20extension"
