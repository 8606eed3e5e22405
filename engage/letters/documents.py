"""A letter as PDF (WeasyPrint) and DOCX (python-docx), both from the frozen text.

The PDF is rendered from an escaped HTML page and the app's letter stylesheet, read by us.
WeasyPrint's URL fetcher refuses every URL but the app's own CJK font file, so a letter never
makes the server fetch anything from the network or read a file it names.

Chinese text: the fonts come with the project (the `pylopdf-fonts-zh-cn` package from PyPI ships
Noto Serif SC and Noto Sans SC, SIL Open Font License), never from the machine or a CDN. A letter
with CJK characters gets an @font-face for Noto Serif SC in its PDF stylesheet, and its DOCX
runs name it as their East Asian font.

Rendering is bounded twice. Before any work, a letter longer than LETTER_MAX_LINES (letterhead,
text and signatories) is refused with a message saying what to shorten. The rendering itself
runs in a worker process (engage.bounded) with DOCUMENT_RENDER_SECONDS and
DOCUMENT_RENDER_MEMORY_MB per document, killed when its time is up; a refusal is remembered for
that letter version for REFUSAL_TTL seconds, so opening the PDF again costs nothing.

Layout (issue 17): both formats are laid out on the campaign's paper size (A4 unless the
campaign says US Letter); the letterhead, then the addressee block (the contact's name, title,
company and postal address as frozen with the letter; the company's name and address for a
letter generated before addressees were recorded); the closing ("Yours faithfully," and what
follows it) is kept on one page with the signature; a letter not sent yet carries a DRAFT
mark (a page header, and a watermark in the PDF) which a sent letter, or the PDF attached when
a letter is emailed, never has.

Output is cached per letter version: one file per letter and format under DOCUMENT_CACHE_DIR,
named by the letter id and a hash of everything the document shows, written atomically (a temp
file renamed into place). Writing a new version, or editing the letter, removes the older ones.
Concurrent requests for one letter wait for the one rendering it instead of rendering again.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
import time
import zipfile
from contextlib import closing, contextmanager
from decimal import Decimal, InvalidOperation
from pathlib import Path

import pylopdf_fonts_zh_cn
from flask import current_app, render_template

from engage import bounded, formatting
from engage.core.documents import letter_css_text, pdf_bytes
from engage.letters.rendering import MAX_OUTPUT
from engage.models import Letter, PaperSize

try:
    import fcntl
except ImportError:  # no advisory locks on Windows: concurrent requests may render twice there
    fcntl = None

FORMATS = ("pdf", "docx")
#: Part of every cache key: bump it when the documents' layout changes.
RENDER_VERSION = "4"
#: The font CJK text is set in (PDF @font-face and DOCX East Asian font), shipped by a PyPI package.
CJK_FONT_NAME = "Noto Serif SC"
CJK_FONT_PATH = pylopdf_fonts_zh_cn.serif_path()
#: How long a letter version that ran out of budget stays refused without trying again.
REFUSAL_TTL = 3600
#: Paper sizes: the CSS @page size and the DOCX section's width and height in millimetres.
PAGE_SIZES = {PaperSize.A4.value: ("A4", 210.0, 297.0), PaperSize.LETTER.value: ("letter", 215.9, 279.4)}
#: Page margins (top, right, bottom, left) in millimetres, the same in the PDF (letter.css) and the DOCX.
MARGINS_MM = (25, 22, 22, 22)
#: The mark on every page of a letter that has not been sent.
DRAFT_MARK = "DRAFT"
DRAFT_HEADER = "DRAFT (not sent)"
#: How a closing starts, in the languages letters are written in: the paragraph that starts
#: with one of these, and everything after it, is kept on one page (the signature with it).
VALEDICTIONS = re.compile(
    r"^\s*(yours\s+(faithfully|sincerely|truly)|sincerely|(kind|best|warm|with\s+best|with\s+kind)\s+regards|"
    r"regards|best\s+wishes|with\s+best\s+wishes|respectfully|"
    r"mit\s+freundlichen\s+gr(ü|ue)(ß|ss)en|cordialement|veuillez\s+agr(é|e)er|bien\s+(à|a)\s+vous|"
    r"atentamente|saludos|un\s+cordial\s+saludo|此致|敬上|顺颂|順頌|敬具|草々|かしこ|올림|드림)",
    re.IGNORECASE)
#: A closing is looked for in the last lines of the body only, so a body paragraph that happens to
#: start like one ("Sincerely held...") never makes the whole letter one unbreakable block.
CLOSING_MAX_LINES = 12


class DocumentRefused(ValueError):
    """A letter that cannot be made into a document; the message says why and what to do."""

    def __init__(self, message: str, letter: Letter | None = None, fmt: str | None = None):
        super().__init__(message)
        self.message = message
        self.letter = letter
        self.fmt = fmt


@functools.lru_cache(maxsize=4)
def _css_digest(folder: str, mtime: float) -> str:
    return hashlib.sha256((Path(folder) / "css" / "letter.css").read_bytes()).hexdigest()


def has_cjk(*texts: str) -> bool:
    """True if any text has Han, kana, hangul or CJK punctuation (the fonts of letter.css lack them)."""
    return any(0x2E80 <= ord(ch) <= 0x9FFF or 0xAC00 <= ord(ch) <= 0xD7AF or 0xF900 <= ord(ch) <= 0xFAFF
               or 0xFF00 <= ord(ch) <= 0xFFEF or 0x20000 <= ord(ch) <= 0x3FFFF for text in texts for ch in text)


def cjk_font_face() -> str:
    """The @font-face that brings the project's CJK font into a letter's stylesheet."""
    return (f'@font-face {{ font-family: "{CJK_FONT_NAME}"; src: url("{CJK_FONT_PATH.as_uri()}"); }}\n'
            f'body {{ font-family: "DejaVu Serif", "{CJK_FONT_NAME}", serif; }}\n')


def _amount(name: str, value) -> Decimal:
    """A signatory's frozen AUM as a finite Decimal, or a refusal naming the signatory."""
    try:
        amount = Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        amount = Decimal("NaN")
    if not amount.is_finite():
        raise DocumentRefused(f"The AUM of {name} in this letter is not a finite number ({value}); correct it in "
                              "Admin → Investors and generate the letter again.")
    return amount


def signatory_lines(letter: Letter, strict: bool = True) -> list[str]:
    """'Name (US$12.50 billion)' per signatory; a non-finite AUM is refused (strict) or left out."""
    lines = []
    for s in letter.signatories or []:
        aum = s.get("aum_usd")
        if not aum:
            lines.append(s["name"])
            continue
        try:
            lines.append(f"{s['name']} ({formatting.format_money(_amount(s['name'], aum))})")
        except DocumentRefused:
            if strict:
                raise
            lines.append(f"{s['name']} (AUM not a number: {aum})")
    return lines


def signatories_total(letter: Letter, strict: bool = True) -> str | None:
    try:
        amounts = [_amount(s["name"], s["aum_usd"]) for s in letter.signatories or [] if s.get("aum_usd")]
    except DocumentRefused:
        if strict:
            raise
        return None
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


def split_closing(blocks: list[list[str]]) -> tuple[list[list[str]], list[list[str]]]:
    """The body's paragraphs as (text, closing): the closing is kept on one page with the signature.

    The closing starts at the last paragraph that opens with a valediction ("Yours faithfully,",
    "Kind regards", "此致"...) within the last CLOSING_MAX_LINES lines. Without one, the last paragraph is the signature and, if it is
    short (at most four lines: a name and a role), the paragraph before it goes with it.
    """
    lines = 0
    for index in range(len(blocks) - 1, -1, -1):
        lines += len(blocks[index])
        if lines > CLOSING_MAX_LINES:
            break
        if VALEDICTIONS.match(blocks[index][0]):
            return blocks[:index], blocks[index:]
    if len(blocks) >= 2 and len(blocks[-1]) <= 4:
        return blocks[:-2], blocks[-2:]
    return blocks[:-1], blocks[-1:]


def paper_size(letter: Letter) -> str:
    """The letter's paper size: its campaign's setting, A4 when the campaign has none."""
    value = getattr(letter.engagement.campaign, "paper_size", None)
    return value if value in PAGE_SIZES else PaperSize.A4.value


def paper_label(letter: Letter) -> str:
    """The letter's paper size as people say it: "A4 (210 × 297 mm)"."""
    return PaperSize(paper_size(letter)).label


def is_draft(letter: Letter, final: bool = False) -> bool:
    """True when the document carries the DRAFT mark: a letter not sent, unless rendered `final`
    (the PDF attached to the email that sends it)."""
    return not letter.is_sent and not final


def addressee_lines(letter: Letter) -> list[str]:
    """The printed addressee block: the frozen one, or (a letter generated before addressees were
    recorded) the company's name and postal address."""
    lines = letter.addressee_lines
    if lines:
        return lines
    company = letter.engagement.company
    return [line.strip() for line in [company.name, *(company.address or "").splitlines()] if line and line.strip()]


def _line_count(text: str) -> int:
    return text.count("\n") + 1 if text else 0


def too_long(body: str, letterhead: str, signatories, max_lines: int | None = None) -> str | None:
    """Why a letter is too long to render (cheap: counts lines only), or None."""
    if max_lines is None:
        max_lines = int(current_app.config.get("LETTER_MAX_LINES", 1000))
    if len(body) > MAX_OUTPUT:
        return f"The letter has {len(body):,} characters of text; a letter may have at most {MAX_OUTPUT:,}."
    text, head, names = _line_count(body), _line_count(letterhead), len(signatories or [])
    if text + head + names <= max_lines:
        return None
    detail = f"{text:,} of text" + (f", {head:,} of letterhead" if head else "") + \
        (f", {names:,} signatories" if names else "")
    return f"The letter has {text + head + names:,} lines ({detail}); a letter may have at most {max_lines:,}."


def _letter_text(letter: Letter) -> list[str]:
    return [letter.subject, letter.body, letter.letterhead, *addressee_lines(letter),
            *(s.get("name", "") for s in letter.signatories or [])]


def letter_html(letter: Letter, final: bool = False) -> str:
    text, closing = split_closing(paragraphs(letter.body))
    return render_template("letters/print.html", letter=letter, paragraphs=text, closing=closing,
                           letterhead=letter.letterhead.splitlines(), signatories=signatory_lines(letter),
                           total=signatories_total(letter), addressee=addressee_lines(letter),
                           page_size=PAGE_SIZES[paper_size(letter)][0], draft=is_draft(letter, final),
                           draft_mark=DRAFT_MARK, draft_header=DRAFT_HEADER)


def docx_data(letter: Letter, final: bool = False) -> dict:
    """Everything the DOCX shows, as plain data for the worker."""
    text, closing = split_closing(paragraphs(letter.body))
    return {"letterhead": letter.letterhead.splitlines(), "subject": letter.subject,
            "addressee": addressee_lines(letter), "language": letter.language or "en",
            "cjk_font": CJK_FONT_NAME if has_cjk(*_letter_text(letter)) else None,
            "paragraphs": text, "closing": closing, "signatories": signatory_lines(letter),
            "total": signatories_total(letter), "page_mm": PAGE_SIZES[paper_size(letter)][1:],
            "margins_mm": MARGINS_MM, "draft": is_draft(letter, final)}


# --- in the worker process ---------------------------------------------------------------

def _east_asian_font(run, name: str) -> None:
    """Name the font Word uses for the run's Chinese characters (w:rFonts w:eastAsia)."""
    # python-docx sets only the Latin font through `font.name`; the East Asian slot is an attribute.
    # python-docx is imported in the worker that renders documents (see _docx_bytes).
    from docx.oxml.ns import qn

    fonts = run._element.get_or_add_rPr().get_or_add_rFonts()
    fonts.set(qn("w:eastAsia"), name)


def _docx_paragraph(document, lines: list[str], cjk: str | None):
    """One paragraph of the letter, its lines separated by line breaks (as in the PDF)."""
    paragraph = document.add_paragraph()
    for index, line in enumerate(lines):
        run = paragraph.add_run(line)
        if cjk:
            _east_asian_font(run, cjk)
        if index < len(lines) - 1:
            run.add_break()
    return paragraph


def _docx_bytes(data: dict) -> bytes:
    # python-docx is imported in the worker that renders documents, like WeasyPrint.
    from docx import Document
    from docx.enum.text import WD_ALIGN_PARAGRAPH
    from docx.oxml.ns import qn
    from docx.shared import Mm, Pt, RGBColor

    document = Document()
    section = document.sections[0]
    width, height = data["page_mm"]
    section.page_width, section.page_height = Mm(width), Mm(height)
    top, right, bottom, left = data["margins_mm"]
    section.top_margin, section.right_margin, section.bottom_margin, section.left_margin = \
        Mm(top), Mm(right), Mm(bottom), Mm(left)
    if data["draft"]:
        header = section.header.paragraphs[0]
        header.alignment = WD_ALIGN_PARAGRAPH.CENTER
        run = header.add_run(DRAFT_HEADER)
        run.bold = True
        run.font.size = Pt(14)
        run.font.color.rgb = RGBColor(0xB0, 0x1C, 0x1C)
    style = document.styles["Normal"]
    style.font.name = "Georgia"
    style.font.size = Pt(11)
    cjk = data.get("cjk_font")
    if cjk:
        style.element.get_or_add_rPr().get_or_add_rFonts().set(qn("w:eastAsia"), cjk)
        language = style.element.get_or_add_rPr().find(qn("w:lang"))
        if language is None:
            language = style.element.get_or_add_rPr().makeelement(qn("w:lang"), {})
            style.element.get_or_add_rPr().append(language)
        language.set(qn("w:eastAsia"), "zh-CN")
    for index, line in enumerate(data["letterhead"]):
        document.add_paragraph(line).runs[0].bold = index == 0 if line else False
    if data.get("addressee"):
        _docx_paragraph(document, data["addressee"], cjk).paragraph_format.keep_together = True
    subject = document.add_paragraph()
    run = subject.add_run(data["subject"])
    run.bold = True
    if cjk:
        _east_asian_font(run, cjk)
    for block in data["paragraphs"]:
        _docx_paragraph(document, block, cjk)
    closing = data.get("closing") or []
    for index, block in enumerate(closing):
        # The closing and the signature stay on one page: no break inside, none before the next.
        layout = _docx_paragraph(document, block, cjk).paragraph_format
        layout.keep_together = True
        layout.keep_with_next = index < len(closing) - 1
    if data["signatories"]:
        document.add_heading("Signatories", level=2).paragraph_format.keep_with_next = True
        for line in data["signatories"]:
            document.add_paragraph(line, style="List Bullet")
        if data["total"]:
            document.add_paragraph(f"Together responsible for {data['total']} in assets.")
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def _render_document(_shared, job: tuple) -> bytes:
    """Run in the worker: one document from plain data."""
    fmt, payload = job
    return pdf_bytes(*payload) if fmt == "pdf" else _docx_bytes(payload)


# --- in the web process: budget, cache, refusals --------------------------------------------

def budget(total_seconds: float | None = None) -> bounded.Budget:
    """Seconds and memory per document from the settings; `total_seconds` for several in one request."""
    config = current_app.config
    return bounded.Budget(seconds=float(config.get("DOCUMENT_RENDER_SECONDS", 20.0)),
                          memory_mb=int(config.get("DOCUMENT_RENDER_MEMORY_MB", 512)), total_seconds=total_seconds)


#: Cache folders found unusable in this process, so the warning is logged once, not per call.
_UNUSABLE: set[str] = set()


def cache_dir() -> Path:
    """The cache folder; if it cannot be made (read-only disk), documents are rendered uncached."""
    folder = Path(current_app.config.get("DOCUMENT_CACHE_DIR")
                  or Path(current_app.instance_path) / "cache" / "letters")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if str(folder) not in _UNUSABLE:
            _UNUSABLE.add(str(folder))
            current_app.logger.warning("the document cache %s cannot be used (%s); documents are rendered uncached",
                                       folder, exc)
    return folder


def cache_usable() -> bool:
    """True when rendered documents can be kept; a batch is then prepared ahead of its ZIP."""
    folder = cache_dir()
    return folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)


def _version(letter: Letter, final: bool = False) -> str:
    """A hash of everything the documents show, so any change of the letter is a new version
    (its text, addressee, paper size, and whether it carries the DRAFT mark)."""
    content = json.dumps([RENDER_VERSION, letter.subject, letter.body, letter.letterhead, letter.signatories or [],
                          letter.addressee or {}, addressee_lines(letter), letter.language, paper_size(letter),
                          is_draft(letter, final),
                          _css_digest(current_app.static_folder, _css_mtime())], sort_keys=True, default=str)
    return hashlib.sha256(content.encode()).hexdigest()[:24]


def _css_mtime() -> float:
    return (Path(current_app.static_folder) / "css" / "letter.css").stat().st_mtime


def cache_path(letter: Letter, fmt: str, final: bool = False) -> Path:
    return cache_dir() / f"{letter.id}-{_version(letter, final)}.{fmt}"


def _refusal_path(path: Path) -> Path:
    return path.with_name(path.name + ".refused")


def is_cached(letter: Letter, fmt: str = "pdf") -> bool:
    return cache_path(letter, fmt).is_file()


def forget(letter_id: int) -> int:
    """Remove every cached file (and remembered refusal) of a letter: its text changed."""
    removed = 0
    for path in cache_dir().glob(f"{letter_id}-*"):
        try:
            path.unlink()
            removed += 1
        except OSError:  # gone already (another worker), or not ours to remove
            pass
    return removed


def _write_atomically(path: Path, data: bytes) -> None:
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _earlier_refusal(path: Path) -> str | None:
    marker = _refusal_path(path)
    try:
        if time.time() - marker.stat().st_mtime < REFUSAL_TTL:
            return marker.read_text(encoding="utf-8")
    except OSError:  # none, or no usable cache folder
        pass
    return None


def _budget_message(exc: bounded.OverBudget, limits: bounded.Budget, fmt: str) -> str:
    kind = fmt.upper()
    if exc.reason == "time":
        return (f"Rendering this letter as {kind} took longer than {limits.seconds:g} s, the limit; "
                "shorten the letter (fewer lines or paragraphs) and try again.")
    if exc.reason == "memory":
        return f"Rendering this letter as {kind} needs more than {limits.memory_mb} MB of memory, the limit; shorten it."
    if exc.reason == "crashed" and exc.detail.startswith("SIG"):  # a C library aborts when an allocation fails
        return (f"Rendering this letter as {kind} stopped ({exc.detail}), most likely because it needs more than "
                f"{limits.memory_mb} MB of memory, the limit; shorten it.")
    return f"This letter could not be rendered as {kind} ({exc.detail or exc.reason})."


def _job(letter: Letter, fmt: str, final: bool = False) -> tuple:
    if fmt != "pdf":
        return (fmt, docx_data(letter, final))
    css, fonts = letter_css_text(), []
    if has_cjk(*_letter_text(letter)):
        css, fonts = css + "\n" + cjk_font_face(), [str(CJK_FONT_PATH)]
    return (fmt, (letter_html(letter, final), css, fonts))


def render_missing(items: list[tuple[Letter, str]], total_seconds: float | None = None, limit: int | None = None,
                   final: bool = False):
    """Render the (letter, format) pairs not cached yet, at most `limit` of them, in one worker.

    Returns (made, refused, pending): made maps (letter id, format) to the bytes rendered (and
    cached); refused lists DocumentRefused (too long, over budget now or recently); pending
    lists the pairs left for later (beyond `limit`, or not reached in the total time).
    `final`: without the DRAFT mark even for a letter not marked sent yet (the PDF its email carries).
    """
    made: dict[tuple[int, str], bytes] = {}
    refused: list[DocumentRefused] = []
    todo = []
    for letter, fmt in items:
        path = cache_path(letter, fmt, final)
        if path.is_file():
            continue
        problem = too_long(letter.body, letter.letterhead, letter.signatories) or _earlier_refusal(path)
        if problem:
            refused.append(DocumentRefused(problem, letter, fmt))
            continue
        try:
            todo.append((letter, fmt, path, _job(letter, fmt, final)))
        except DocumentRefused as exc:
            exc.letter, exc.fmt = letter, fmt
            refused.append(exc)
    limits = budget(total_seconds)
    pending: list[tuple[Letter, str]] = [(letter, fmt) for letter, fmt, *_ in todo[limit:]] if limit is not None else []
    todo = todo[:limit] if limit is not None else todo
    if not todo:
        return made, refused, pending
    with closing(bounded.run(_render_document, None, [job for *_, job in todo], limits)) as runs:
        try:
            for index, data in runs:
                letter, fmt, path, _ = todo[index]
                made[(letter.id, fmt)] = data
                try:
                    _write_atomically(path, data)
                    _forget_format(letter.id, fmt, path)
                except OSError:
                    current_app.logger.exception("could not cache %s", path)
        except bounded.OverBudget as exc:
            letter, fmt, path, _ = todo[exc.index]
            if exc.reason == "total_time":
                pending = [(letter, fmt) for letter, fmt, *_ in todo[exc.index:]] + pending
            else:
                message = _budget_message(exc, limits, fmt)
                try:
                    _write_atomically(_refusal_path(path), message.encode("utf-8"))
                except OSError:
                    current_app.logger.exception("could not record the refusal of %s", path)
                refused.append(DocumentRefused(message, letter, fmt))
                pending = [(letter, fmt) for letter, fmt, *_ in todo[exc.index + 1:]] + pending
    return made, refused, pending


def _forget_format(letter_id: int, fmt: str, keep: Path) -> None:
    """Remove the other versions of one format of a letter, now that `keep` is written."""
    for path in cache_dir().glob(f"{letter_id}-*.{fmt}*"):
        if path != keep:
            try:
                path.unlink()
            except OSError:
                pass


@contextmanager
def lock(name: str, wait: bool = True):
    """An advisory file lock in the cache folder, across requests and workers; yields whether it was got.

    Renders of one letter (or one batch) are serialised, so simultaneous requests wait for the
    one rendering and then read its result instead of rendering again.
    """
    try:
        handle = open(cache_dir() / f"{name}.lock", "a")
    except OSError:  # no usable cache folder: nothing to share anyway
        handle = None
    if handle is None:
        yield True
        return
    with handle:
        if fcntl is None:
            yield True
            return
        try:
            fcntl.flock(handle, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def document(letter: Letter, fmt: str, final: bool = False) -> bytes:
    """The letter as PDF or DOCX: from the cache, or rendered within the budget and cached.

    `final`: without the DRAFT mark even if the letter is not marked sent yet (see render_missing).
    """
    path = cache_path(letter, fmt, final)
    with lock(str(letter.id)):
        if path.is_file():
            return path.read_bytes()
        made, refused, _ = render_missing([(letter, fmt)], final=final)
    if refused:
        raise refused[0]
    return made[(letter.id, fmt)]


def file_stem(letter: Letter) -> str:
    safe = "".join(ch if ch.isalnum() else "-" for ch in letter.engagement.company.name).strip("-")
    return f"letter-{letter.id}-{safe[:60]}".rstrip("-")


def batch_zip(letters: list[Letter]) -> bytes:
    """One ZIP with each letter as PDF and DOCX; raises DocumentRefused if any cannot be made in time.

    In memory: a batch small enough to be made by the page. A big batch's job writes its ZIP to a
    file (`write_batch_zip`), a document at a time."""
    buffer = io.BytesIO()
    _batch_zip(letters, buffer)
    return buffer.getvalue()


def write_batch_zip(letters: list[Letter], path: Path) -> None:
    """The batch's ZIP written to `path` atomically (a temporary name in its folder, renamed when
    complete), each cached document copied in chunks: memory holds one chunk of one document,
    whatever the batch's size (the whole ZIP was built in memory before)."""
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(handle, "wb") as file:
            _batch_zip(letters, file)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _batch_zip(letters: list[Letter], out) -> None:
    items = [(letter, fmt) for letter in letters for fmt in FORMATS]
    made, refused, pending = render_missing(items, float(current_app.config.get("DOCUMENT_BATCH_SECONDS", 60.0)))
    if refused:
        names = "; ".join(f"letter {r.letter.id} to {r.letter.engagement.company.name} ({r.fmt.upper()}): {r.message}"
                          for r in refused[:5])
        raise DocumentRefused(f"{len(refused)} document(s) cannot be made. {names}")
    if pending:
        raise DocumentRefused(f"{len({letter.id for letter, _ in pending})} letter(s) are not prepared yet; open the "
                              "batch page, which prepares them, then download the ZIP again.")
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for letter, fmt in items:
            name = f"{file_stem(letter)}.{fmt}"
            data = made.pop((letter.id, fmt), None)
            if data is not None:  # rendered just now
                archive.writestr(name, data)
                continue
            try:
                source = cache_path(letter, fmt).open("rb")
            except FileNotFoundError:  # edited meanwhile
                raise DocumentRefused(f"Letter {letter.id} changed while the ZIP was made; download it again.",
                                      letter, fmt) from None
            # the entry writestr would make (dated now, read-write for its owner), copied in chunks
            info = zipfile.ZipInfo(name, date_time=time.localtime(time.time())[:6])
            info.compress_type, info.external_attr = zipfile.ZIP_DEFLATED, 0o600 << 16
            with source, archive.open(info, "w") as entry:
                shutil.copyfileobj(source, entry, 1 << 20)
