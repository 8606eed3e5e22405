"""Imported only by the worker fork server (engage.bounded.PRELOAD), never by the app.

- One malloc arena (glibc): an arena a passing thread leaves behind reserves 64 MB of address
  space, which the workers' memory limit (their address space at start plus the budget) would
  otherwise count as headroom.
- Renders a short letter once with the letter stylesheet, so fonts and the layout engine are
  loaded in the fork server and every worker forked from it starts with them (a PDF then takes
  about 0.1 s instead of 1 s).
"""

from pathlib import Path

try:
    import ctypes

    ctypes.CDLL("libc.so.6").mallopt(-8, 1)  # M_ARENA_MAX = 1
except (OSError, AttributeError):  # not glibc: the limit may be up to an arena looser
    pass

try:
    from weasyprint import CSS, HTML

    _css = (Path(__file__).resolve().parents[2] / "static" / "css" / "letter.css").read_text(encoding="utf-8")
    HTML(string="<div class='draft-mark'>DRAFT</div><header class='letterhead'><div class='org'>Engage</div></header>"
                "<h1 class='subject'>Warm-up</h1><p>Fonts <b>bold</b> <i>italic</i>.</p>"
                "<section class='signatories'><h2>S</h2><ul><li>x</li></ul></section><div class='closing'><p>Yours faithfully,</p></div>"
         ).write_pdf(stylesheets=[CSS(string=_css)])
except Exception:  # noqa: BLE001 (a failed warm-up only costs each worker the first-render time)
    pass
