"""axe-core in the browser journeys: inject it into the page, run the WCAG 2.1 A/AA rules, report.

axe-core comes from npm (package.json at the repo root, pinned in package-lock.json, installed by
`make install-test`); Playwright injects node_modules/axe-core/axe.min.js into the page under test.
The app's Content-Security-Policy (script-src 'self') refuses inline scripts, and the scan keeps
it on: the file is served to the browser at a same-origin path that Playwright answers from disk
(page.route), so no request reaches the app and the page runs exactly as a user's would.
A serious or critical violation fails the test with, for each one, the rule, its impact, the
CSS selectors of the offending elements and axe's help text and link.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

#: axe-core's browser build; ENGAGE_AXE_JS points elsewhere (the test of a missing install uses it).
AXE_JS = Path(os.environ.get("ENGAGE_AXE_JS") or Path(__file__).resolve().parents[2] / "node_modules" / "axe-core" / "axe.min.js")
#: The rule sets the scan runs: WCAG 2.0 and 2.1, levels A and AA.
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
#: Impacts that fail a page; "minor" and "moderate" findings are left to review.
FAILING_IMPACTS = ("serious", "critical")
#: Elements listed per violation and page (the rest are counted).
MAX_NODES = 12
#: The same-origin path Playwright answers with axe.min.js (never sent to the app).
AXE_PATH = "/__axe-core__/axe.min.js"
#: Widths every page is scanned at: a laptop and a phone.
WIDTHS = {"wide": (1280, 900), "phone": (390, 844)}

RUN_AXE = """async (tags) => {
  const results = await axe.run(document, {runOnly: {type: "tag", values: tags}, resultTypes: ["violations"]});
  return results.violations.map((v) => ({
    id: v.id, impact: v.impact, help: v.help, helpUrl: v.helpUrl,
    nodes: v.nodes.map((n) => ({impact: n.impact, target: n.target.map((t) => [].concat(t).join(" >> ")),
                                summary: n.failureSummary || ""})),
  }));
}"""


def axe_missing() -> str | None:
    """Why axe-core cannot be injected, or None when it can."""
    if not AXE_JS.is_file():
        return f"axe-core is not installed ({AXE_JS} missing): run `npm ci` (make install-test)"
    return None


def require_axe() -> None:
    """Skip, saying why, when axe-core is missing; fail instead under ENGAGE_REQUIRE_BROWSER=1 (CI)."""
    reason = axe_missing()
    if reason is None:
        return
    if os.environ.get("ENGAGE_REQUIRE_BROWSER") == "1":
        pytest.fail(f"accessibility scan required (ENGAGE_REQUIRE_BROWSER=1) but {reason}", pytrace=False)
    pytest.skip(reason)


def violations(page) -> list[dict]:
    """The serious and critical WCAG 2.1 A/AA violations on the page as it is now."""
    require_axe()
    if not getattr(page, "axe_routed", False):
        page.route(f"**{AXE_PATH}", lambda route: route.fulfill(path=str(AXE_JS), content_type="text/javascript"))
        page.axe_routed = True
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.add_script_tag(url=AXE_PATH)
    found = page.evaluate(RUN_AXE, WCAG_TAGS)
    failing = []
    for violation in found:
        nodes = [n for n in violation["nodes"] if (n["impact"] or violation["impact"]) in FAILING_IMPACTS]
        if nodes:
            failing.append({**violation, "nodes": nodes})
    return failing


def describe(where: str, found: list[dict]) -> str:
    """One block per violation: where, rule id, impact, help and link, then each target selector."""
    lines = []
    for v in found:
        lines.append(f"{where}: {v['id']} ({v['impact']}): {v['help']} <{v['helpUrl']}>")
        for node in v["nodes"][:MAX_NODES]:
            detail = " ".join(node["summary"].split())
            lines.append(f"    {', '.join(node['target'])}" + (f" -- {detail[:300]}" if detail else ""))
        if len(v["nodes"]) > MAX_NODES:
            lines.append(f"    ... and {len(v['nodes']) - MAX_NODES} more elements")
    return "\n".join(lines)


def check(page, where: str | None = None) -> str:
    """Scan the page; the report of its serious/critical violations ('' when there are none)."""
    found = violations(page)
    return describe(where or page.url, found) if found else ""


def assert_accessible(page, where: str | None = None) -> None:
    """Fail listing every serious or critical violation on the page."""
    report = check(page, where)
    assert not report, "axe-core found serious or critical WCAG 2.1 A/AA violations:\n" + report


def check_at_widths(page, where: str) -> str:
    """Scan the page as it is at each of WIDTHS, then give it back its own size; the combined report.

    Without axe-core the scan is left out here (the journey still runs its own checks); the
    collection hook in conftest.py fails the run instead when ENGAGE_REQUIRE_BROWSER=1.
    """
    if axe_missing():
        return ""
    size = page.viewport_size
    reports = []
    try:
        for w, h in WIDTHS.values():
            page.set_viewport_size({"width": w, "height": h})
            # let the page's resize handlers (static/js/app.js) run before the scan
            page.evaluate("() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))")
            reports.append(check(page, f"{where} at {w}px"))
    finally:
        if size:
            page.set_viewport_size(size)
    return "\n".join(r for r in reports if r)
