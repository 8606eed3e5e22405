"""HTML to PDF with the letter stylesheet (WeasyPrint), used by letters and the public report.

WeasyPrint's URL fetcher refuses every URL, so a document never makes the server fetch
anything from the network or read a file it names.
"""

from __future__ import annotations

from pathlib import Path

from flask import current_app


class FetchRefused(ValueError):
    pass


def refuse_fetch(url: str, *args, **kwargs):
    """WeasyPrint's URL fetcher for documents: nothing is fetched, from the network or the disk."""
    raise FetchRefused(f"letters may not load {url!r}")


def letter_css_text() -> str:
    """The letter stylesheet (static/css/letter.css), read by us."""
    return (Path(current_app.static_folder) / "css" / "letter.css").read_text(encoding="utf-8")


def pdf_bytes(html: str, css: str) -> bytes:
    """`html` as a PDF styled by `css`; runs in the caller's process (letters run it in a bounded worker)."""
    # WeasyPrint loads fonts and its layout engine on import (about a second): only PDF makers pay for it.
    from weasyprint import CSS, HTML

    return HTML(string=html, url_fetcher=refuse_fetch).write_pdf(
        stylesheets=[CSS(string=css, url_fetcher=refuse_fetch)])
