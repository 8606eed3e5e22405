"""The tables of a PDF (a supplier list published as a report's annex), as rows for the map reader.

pdfplumber finds the tables of each page drawn with rules (cell borders or shaded rows). A list
set as text aligned in columns, without rules, is refused rather than guessed at: pdfplumber's
text strategy splits a cell wrapped over two lines into two rows, which would import "Energy"
and "Material" as counterparties. The map is read as ONE table: the first table with a header row naming the
counterparty (within parsing.HEADER_ROWS rows) starts it; a later table whose first row repeats
that header, or that has the same number of columns and no header (a table continued on the next
page), continues it. Tables before the header are skipped (a table of contents, a title block);
a later table with another header, or with other columns and no header, is refused rather than
guessed at, so no counterparty is silently dropped.

The page of each row is kept (`Stitched.pages`); the reader records it as the row's source
("p. 12") unless the column mapping names a source column.

Refused (PdfRefused, with what and where): a PDF that is encrypted, damaged, has more than
MAX_PAGES pages, has no text at all (scanned pages are images), has no table, or takes more than
MAX_SECONDS to read. Rows are capped by the caller's max_rows while reading, so a huge PDF stops
early instead of being read whole.
"""

from __future__ import annotations

import io
import re
import time
from dataclasses import dataclass, field
from typing import Callable

#: A PDF with more pages than this is refused (a supplier-list annex has tens).
MAX_PAGES = 500
#: Reading the tables stops (refused) after this long.
MAX_SECONDS = 120


class PdfRefused(ValueError):
    """The PDF cannot be read as a map."""


@dataclass
class Table:
    page: int
    rows: list[list[str]]


@dataclass
class Stitched:
    #: (row number, cells): the header row first, then the map's rows, numbered from 1 through all tables.
    rows: list[tuple[int, list[str]]] = field(default_factory=list)
    #: row number -> the page it is on.
    pages: dict[int, int] = field(default_factory=dict)


def is_pdf(data: bytes) -> bool:
    """A PDF's header may follow up to 1 KB of other bytes."""
    return b"%PDF-" in data[:1024]


def _cell(value) -> str:
    """One line of text: a cell wrapped after a hyphen ("sub-" / "supplier") joins without a space."""
    if value is None:
        return ""
    return " ".join(re.sub(r"-[ \t]*\n\s*", "-", str(value)).split())


def _without_empty_columns(rows: list[list[str]]) -> list[list[str]]:
    """A table drawn against another one gets the other's column lines: drop columns empty in every row."""
    width = max(len(row) for row in rows)
    rows = [row + [""] * (width - len(row)) for row in rows]
    keep = [i for i in range(width) if any(row[i] for row in rows)]
    return [[row[i] for i in keep] for row in rows]


def _refuse_unreadable(exc: Exception) -> PdfRefused:
    # pdfminer (pdfplumber's parser) is loaded only when a PDF is read
    from pdfminer.pdfdocument import PDFEncryptionError, PDFPasswordIncorrect

    cause = exc.args[0] if exc.args and isinstance(exc.args[0], Exception) else exc
    if isinstance(cause, PDFPasswordIncorrect):
        return PdfRefused("the PDF is encrypted with a password; save an unprotected copy (or export the table "
                          "to CSV or XLSX) and import that")
    if isinstance(cause, PDFEncryptionError):
        return PdfRefused(f"the PDF is encrypted in a way that cannot be read ({cause}); save an unprotected copy")
    return PdfRefused(f"the PDF is damaged or not a PDF ({type(cause).__name__}: {str(cause)[:200] or 'unreadable'}); "
                      f"download it again or export the table to CSV or XLSX")


def tables(data: bytes, max_rows: int, max_seconds: float | None = None) -> list[Table]:
    """Every table of every page, cells cleaned (None -> "", whitespace and line breaks collapsed).

    `max_seconds` (default MAX_SECONDS) bounds the reading; the web gives less (a request cannot wait long)."""
    # pdfplumber and pdfminer take about 0.3 s to import: only a PDF map pays it
    import pdfplumber
    from pdfminer.pdftypes import resolve1

    try:
        pdf = pdfplumber.open(io.BytesIO(data), pages=range(1, MAX_PAGES + 1))
    except Exception as exc:  # noqa: BLE001 - PdfminerException, or whatever a damaged file makes pdfminer raise
        raise _refuse_unreadable(exc) from exc
    try:
        try:
            count = resolve1(resolve1(pdf.doc.catalog.get("Pages")) or {}).get("Count")
        except Exception:  # noqa: BLE001 - a damaged page tree is reported when the pages are read
            count = None
        if isinstance(count, int) and count > MAX_PAGES:
            raise PdfRefused(f"the PDF has {count:,} pages, more than the {MAX_PAGES} read for a map; extract the "
                             f"pages of the supplier list (or export the table to CSV or XLSX)")
        try:
            pages = pdf.pages
        except Exception as exc:  # noqa: BLE001 - as above
            raise _refuse_unreadable(exc) from exc
        if not pages:
            raise PdfRefused("the PDF has no pages that can be read (damaged?); download it again or export the table to CSV or XLSX")
        found, chars, images = _read(pages, max_rows, MAX_SECONDS if max_seconds is None else max_seconds)
        if not chars:
            what = f"{images} image(s) and no text" if images else "no text"
            raise PdfRefused(f"the PDF has {what} (scanned?): Engage reads the tables of a PDF's text; ask the "
                             f"company for the list as a spreadsheet, or run text recognition (OCR) on it first")
        if not found:
            raise PdfRefused(f"no table in the PDF ({len(pages)} page(s) of text): Engage reads tables drawn with "
                             f"rules (cell borders); a list set as text in columns without rules cannot be read "
                             f"reliably: export it to CSV or XLSX")
        return found
    finally:
        try:
            pdf.close()
        except Exception:  # noqa: BLE001 - closing reads the page tree again; the stream is a BytesIO of ours
            pass


def _read(pages, max_rows: int, max_seconds: float) -> tuple[list[Table], int, int]:
    """(tables, characters, images) of the pages; refused past max_seconds or max_rows."""
    deadline = time.monotonic() + max_seconds
    found: list[Table] = []
    chars = images = rows = 0
    # a repeated header on each page is a row too; allow for it and the lines above a header
    allowed = max_rows + len(pages) * 2 + 40
    for page in pages:
        if time.monotonic() > deadline:
            raise PdfRefused(f"reading the PDF's tables took more than {max_seconds:g} s (stopped at p. "
                             f"{page.page_number}); extract the pages of the supplier list and import those"
                             + (", or import it with `flask valuechain import`" if max_seconds < MAX_SECONDS else ""))
        try:
            chars += len(page.chars)
            images += len(page.images)
            extracted = page.extract_tables()
        except Exception as exc:  # noqa: BLE001 - pdfminer raises many kinds on a damaged page
            raise PdfRefused(f"p. {page.page_number} of the PDF cannot be read ({type(exc).__name__}: "
                             f"{str(exc)[:200]}); download it again or export the table to CSV or XLSX") from exc
        finally:
            page.close()
        for table in extracted:
            cleaned = [cells for cells in ([_cell(c) for c in row] for row in table) if any(cells)]
            if cleaned:
                found.append(Table(page=page.page_number, rows=cleaned))
                rows += len(cleaned)
        if rows > allowed:
            raise PdfRefused(f"the PDF's tables have more than {max_rows:,} rows, the limit for one map (MAX_ROWS); "
                             f"split it or ask for the limit to be raised")
    return found, chars, images


def stitch(found: list[Table], header_of: Callable[[list[str]], dict[str, int]], header_rows: int) -> Stitched:
    """The map's rows as one table (see the module's docstring); `header_of(row)` names a header's columns."""
    start = None
    for index, table in enumerate(found):
        for position, row in enumerate(table.rows[:header_rows]):
            if "name" in header_of(row):
                start = (index, position)
                break
        if start:
            break
    if start is None:
        pages = sorted({t.page for t in found})
        where = ", ".join(f"p. {p}" for p in pages[:10]) + (" ..." if len(pages) > 10 else "")
        raise PdfRefused(f"{len(found)} table(s) in the PDF ({where}), none with a header row naming the counterparty "
                         f"(a column such as Supplier, Counterparty or Name); give a column mapping such as "
                         f"name=Vendor")
    index, position = start
    first = _without_empty_columns(found[index].rows[position:])  # the rows above the header may be a title
    header = first[0]
    labels = _labels(header)
    result = Stitched()

    def add(page: int, row: list[str]) -> None:
        number = len(result.rows) + 1
        result.rows.append((number, row))
        result.pages[number] = page

    add(found[index].page, header)

    def take(page: int, rows: list[list[str]]) -> None:
        for row in rows:
            if _labels(row) == labels:
                continue  # the header repeated (a table drawn against the next one reads as one)
            if "name" in header_of(row) and len(header_of(row)) > 1:
                raise PdfRefused(f"p. {page}: a second table with other columns ({', '.join(c for c in row if c)}) "
                                 f"than the map's ({', '.join(c for c in header if c)}, p. {found[index].page}); a "
                                 f"map is one table: import the pages of one table, or export it to CSV or XLSX")
            add(page, row)

    take(found[index].page, first[1:])
    for table in found[index + 1:]:
        rows = _without_empty_columns(table.rows)
        if _labels(rows[0]) != labels and len(rows[0]) != len(header) and "name" not in header_of(rows[0]):
            raise PdfRefused(f"p. {table.page}: a table of {len(rows[0])} columns without a header follows the map's "
                             f"table of {len(header)} columns (p. {found[index].page}); Engage cannot tell whether it "
                             f"continues the map: import the pages of the map's table only, or export it to CSV or XLSX")
        take(table.page, rows)
    return result


def _labels(row: list[str]) -> list[str]:
    return [" ".join(cell.lower().split()) for cell in row]
