"""A letter as PDF (WeasyPrint) and DOCX (python-docx), both from the frozen text.

The PDF is rendered from an escaped HTML page and the app's letter stylesheet, read by us.
WeasyPrint's URL fetcher refuses every URL, so a letter never makes the server fetch anything
from the network or read a file it names.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from decimal import Decimal
from pathlib import Path

from flask import current_app, render_template

from engage import formatting
from engage.models import Letter


class FetchRefused(ValueError):
    pass


def _refuse_fetch(url: str, *args, **kwargs):
    """WeasyPrint's URL fetcher for letters: nothing is fetched, from the network or the disk."""
    raise FetchRefused(f"letters may not load {url!r}")


def _letter_css():
    from weasyprint import CSS

    return CSS(string=(Path(current_app.static_folder) / "css" / "letter.css").read_text(encoding="utf-8"),
               url_fetcher=_refuse_fetch)


def signatory_lines(letter: Letter) -> list[str]:
    lines = []
    for s in letter.signatories or []:
        aum = s.get("aum_usd")
        lines.append(f"{s['name']} ({formatting.format_money(Decimal(aum))})" if aum else s["name"])
    return lines


def signatories_total(letter: Letter) -> str | None:
    amounts = [Decimal(s["aum_usd"]) for s in letter.signatories or [] if s.get("aum_usd")]
    return formatting.format_money(sum(amounts, Decimal(0))) if amounts else None


def paragraphs(text: str) -> list[list[str]]:
    """Blank-line separated paragraphs, each a list of its lines."""
    blocks, current = [], []
    for line in text.replace("\r\n", "\n").split("\n"):
        if line.strip():
            current.append(line.rstrip())
        elif current:
            blocks.append(current)
            current = []
    if current:
        blocks.append(current)
    return blocks


def letter_html(letter: Letter) -> str:
    return render_template("letters/print.html", letter=letter, paragraphs=paragraphs(letter.body),
                           letterhead=letter.letterhead.splitlines(), signatories=signatory_lines(letter),
                           total=signatories_total(letter))


def letter_pdf(letter: Letter) -> bytes:
    from weasyprint import HTML

    return HTML(string=letter_html(letter), url_fetcher=_refuse_fetch).write_pdf(stylesheets=[_letter_css()])


def letter_docx(letter: Letter) -> bytes:
    from docx import Document
    from docx.shared import Pt

    document = Document()
    style = document.styles["Normal"]
    style.font.name = "Georgia"
    style.font.size = Pt(11)
    for line in letter.letterhead.splitlines():
        document.add_paragraph(line).runs[0].bold = True if line == letter.letterhead.splitlines()[0] else False
    subject = document.add_paragraph()
    subject.add_run(letter.subject).bold = True
    for block in paragraphs(letter.body):
        paragraph = document.add_paragraph()
        for index, line in enumerate(block):
            run = paragraph.add_run(line)
            if index < len(block) - 1:
                run.add_break()
    lines = signatory_lines(letter)
    if lines:
        document.add_heading("Signatories", level=2)
        for line in lines:
            document.add_paragraph(line, style="List Bullet")
        total = signatories_total(letter)
        if total:
            document.add_paragraph(f"Together responsible for {total} in assets.")
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def file_stem(letter: Letter) -> str:
    safe = "".join(ch if ch.isalnum() else "-" for ch in letter.engagement.company.name).strip("-")
    return f"letter-{letter.id}-{safe[:60]}".rstrip("-")


def _cache_path(letter: Letter) -> Path:
    digest = hashlib.sha256(
        "\x00".join([letter.subject, letter.body, letter.letterhead, repr(letter.signatories)]).encode()
    ).hexdigest()[:16]
    folder = Path(current_app.instance_path) / "letter-cache"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{letter.id}-{digest}.pdf"


def cached_pdf(letter: Letter) -> bytes:
    """The letter's PDF, rendered once per version of its text."""
    path = _cache_path(letter)
    if path.is_file():
        return path.read_bytes()
    data = letter_pdf(letter)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return data


def is_cached(letter: Letter) -> bool:
    return _cache_path(letter).is_file()


def batch_zip(letters: list[Letter]) -> bytes:
    """One ZIP with each letter as PDF and DOCX."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for letter in letters:
            stem = file_stem(letter)
            archive.writestr(f"{stem}.pdf", cached_pdf(letter))
            archive.writestr(f"{stem}.docx", letter_docx(letter))
    return buffer.getvalue()
