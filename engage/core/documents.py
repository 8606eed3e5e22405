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


def pdf_bytes(html: str, css: str, fonts: list[str] | None = None) -> bytes:
    """`html` as a PDF styled by `css`; runs in the caller's process (letters run it in a bounded worker).

    `fonts`: paths of the project's own font files the stylesheet's @font-face may load (the CJK
    font of Chinese letters); every other URL is refused.
    """
    # WeasyPrint loads fonts and its layout engine on import (about a second): only PDF makers pay for it.
    from weasyprint import CSS, HTML
    from weasyprint.text.fonts import FontConfiguration
    from weasyprint.urls import URLFetcher, URLFetcherResponse

    allowed = {Path(path).as_uri(): Path(path) for path in fonts or []}

    class FontFilesOnly(URLFetcher):
        """Fetches the font files named in `fonts`; refuses every other URL."""

        def fetch(self, url, headers=None):
            if url in allowed:
                return URLFetcherResponse(url, body=allowed[url].read_bytes(), headers={"Content-Type": "font/otf"})
            raise FetchRefused(f"letters may not load {url!r}")

    fetcher = FontFilesOnly() if allowed else refuse_fetch
    font_config = FontConfiguration()
    return HTML(string=html, url_fetcher=fetcher).write_pdf(
        stylesheets=[CSS(string=css, url_fetcher=fetcher, font_config=font_config)], font_config=font_config)
