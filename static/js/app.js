// Small progressive enhancements; every page works without this file.
document.addEventListener("DOMContentLoaded", () => {
  const toggle = document.querySelector(".nav-toggle");
  const nav = document.getElementById("main-nav");
  if (toggle && nav) {
    toggle.addEventListener("click", () => {
      const open = toggle.getAttribute("aria-expanded") === "true";
      toggle.setAttribute("aria-expanded", String(!open));
      nav.classList.toggle("open", !open);
    });
  }
  document.querySelectorAll("form[data-confirm]").forEach((form) => {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  });

  setUpTemplatePreview();
  setUpBatchProgress();
  setUpSelectAll();
  setUpScrollingRegions();
  setUpTabs();
  setUpInteractionDirection();
  // A refusal listed at the top links to its field; one the page does not draw reads as plain text.
  document.querySelectorAll("#refusals a[href^='#']").forEach((a) => {
    if (!document.getElementById(a.getAttribute("href").slice(1))) a.replaceWith(a.textContent);
  });
});

// Letter template editor: preview against sample data or a chosen engagement while typing.
function setUpTemplatePreview() {
  const form = document.getElementById("template-form");
  if (!form) return;
  const chooser = document.getElementById("preview_engagement");
  const error = document.getElementById("preview-error");
  const subject = document.getElementById("preview-subject");
  const body = document.getElementById("preview-body");
  let timer = null;
  const refresh = async () => {
    const data = new FormData(form);
    if (chooser) data.set("preview_engagement", chooser.value);
    const response = await fetch(form.dataset.previewUrl, { method: "POST", body: data, credentials: "same-origin" });
    if (!response.ok) return;
    const result = await response.json();
    if (result.error) {
      error.hidden = false;
      error.textContent = `${result.field}${result.line ? `, line ${result.line}` : ""}: ${result.error}`;
    } else {
      error.hidden = true;
      subject.textContent = result.subject;
      body.textContent = result.body;
    }
  };
  const schedule = () => { clearTimeout(timer); timer = setTimeout(refresh, 300); };
  form.addEventListener("input", schedule);
  if (chooser) chooser.addEventListener("change", refresh);
  refresh();
}

// Letter batch: prepare the PDFs a chunk at a time and show how far it got.
function setUpBatchProgress() {
  const panel = document.getElementById("batch-download");
  if (!panel) return;
  const bar = document.getElementById("batch-progress");
  const text = document.getElementById("batch-progress-text");
  const step = async () => {
    const response = await fetch(panel.dataset.prepareUrl, {
      method: "POST", credentials: "same-origin", headers: { "X-CSRFToken": panel.dataset.csrf },
    });
    if (!response.ok) { text.textContent = "Preparing failed; the ZIP link still works."; return; }
    const result = await response.json();
    bar.value = result.done;
    bar.max = result.total;
    text.textContent = `${result.done} of ${result.total}`;
    const refused = result.refused || [];
    if (refused.length) {
      // A letter that cannot be made will not become ready: say which and why, and stop asking.
      const letters = new Set(refused.map((r) => r.letter));
      text.textContent = `${result.done} of ${result.total}; ${letters.size} cannot be made: ` +
        refused.map((r) => `${r.company} (${r.format.toUpperCase()}): ${r.message}`).join(" ");
      if (result.done + letters.size >= result.total) return;
    }
    if (result.busy) { setTimeout(step, 1000); return; } // another tab is preparing this batch
    if (result.done < result.total) step();
  };
  if (Number(bar.value) < Number(bar.max)) step();
}

// Engagements list: a header checkbox that selects every row on the page.
function setUpSelectAll() {
  document.querySelectorAll("input[data-select-all]").forEach((box) => {
    box.addEventListener("change", () => {
      document.querySelectorAll(`input[name="${box.dataset.selectAll}"]`).forEach((row) => { row.checked = box.checked; });
    });
  });
}

// On a narrow screen a wide table scrolls sideways inside itself (app.css). One with no link or
// control in it could not be scrolled from the keyboard, so while it overflows it is made a focus
// stop (WCAG 2.1.1, axe's scrollable-region-focusable); the arrow keys then scroll it.
function setUpScrollingRegions() {
  const regions = document.querySelectorAll("main table, main .table-scroll");
  if (!regions.length) return;
  const mark = () => regions.forEach((region) => {
    const scroller = ["auto", "scroll"].includes(getComputedStyle(region).overflowX);
    const overflows = scroller && region.scrollWidth > region.clientWidth + 1;
    if (overflows && !region.hasAttribute("tabindex")) {
      region.tabIndex = 0;
      region.dataset.scrollStop = "";
    } else if (!overflows && "scrollStop" in region.dataset) {
      region.removeAttribute("tabindex");
      delete region.dataset.scrollStop;
    }
  });
  mark();
  window.addEventListener("resize", mark);
  window.addEventListener("load", mark);
}

// Engagement page: the work tabs. Without this they are links (?tab=) the server draws; with it
// they follow the ARIA tabs pattern: one tab stop, arrow keys, Home and End, the URL kept in step.
function setUpTabs() {
  const list = document.querySelector("[data-tabs]");
  if (!list) return;
  const links = Array.from(list.querySelectorAll("a[data-tab]"));
  list.setAttribute("role", "tablist");
  list.querySelectorAll("li").forEach((item) => item.setAttribute("role", "presentation"));
  const panelOf = (link) => document.getElementById(link.getAttribute("aria-controls"));
  const show = (link, focus) => {
    links.forEach((other) => {
      const selected = other === link;
      other.setAttribute("aria-selected", String(selected));
      other.tabIndex = selected ? 0 : -1;
      other.removeAttribute("aria-current");
      panelOf(other).hidden = !selected;
    });
    if (focus) link.focus();
  };
  links.forEach((link) => {
    link.setAttribute("role", "tab");
    panelOf(link).setAttribute("role", "tabpanel");
    panelOf(link).tabIndex = 0;
    link.addEventListener("click", (event) => {
      event.preventDefault();
      show(link, false);
      const url = new URL(window.location.href);
      url.searchParams.set("tab", link.dataset.tab);
      url.hash = "";
      history.replaceState(null, "", url);
    });
    link.addEventListener("keydown", (event) => {
      const at = links.indexOf(link);
      const to = { ArrowRight: at + 1, ArrowLeft: at - 1, Home: 0, End: links.length - 1 }[event.key];
      if (to === undefined) return;
      event.preventDefault();
      links[(to + links.length) % links.length].click();
      links[(to + links.length) % links.length].focus();
    });
  });
  const current = links.find((link) => !panelOf(link).hidden) || links[0];
  show(current, false);
  // A link to a tab from elsewhere on the page (a hint), or a #fragment inside a hidden panel
  // (an error listed at the top, a redirect to #letters): open that tab first.
  const reveal = (target) => {
    const panel = target && target.closest("[role=tabpanel]");
    const link = panel && links.find((l) => panelOf(l) === panel);
    if (link && panel.hidden) show(link, false);
  };
  document.querySelectorAll("a[data-tab-link]").forEach((a) => {
    a.addEventListener("click", (event) => {
      const link = links.find((l) => l.dataset.tab === a.dataset.tabLink);
      if (!link) return;
      event.preventDefault();
      link.click();
      const target = document.querySelector(`#${link.getAttribute("aria-controls")} select[name=target]`);
      if (target && a.dataset.stage && target.querySelector(`option[value="${a.dataset.stage}"]`)) {
        target.value = a.dataset.stage;
      }
      document.getElementById("work").scrollIntoView();
      link.focus();
    });
  });
  document.querySelectorAll("#refusals a[href^='#']").forEach((a) => {
    a.addEventListener("click", () => reveal(document.getElementById(a.getAttribute("href").slice(1))));
  });
  if (window.location.hash) {
    const target = document.getElementById(window.location.hash.slice(1));
    if (target) { reveal(target); target.scrollIntoView(); }
  }
}

// Log an interaction: the direction follows the kind (a response comes in, a note stays in the
// team, the rest goes out) until the user picks a direction themselves.
function setUpInteractionDirection() {
  const form = document.querySelector("form[data-interaction-form]");
  if (!form) return;
  const kind = form.querySelector("select[name=kind]");
  const direction = form.querySelector("select[name=direction]");
  if (!kind || !direction) return;
  const byKind = { response: "inbound", note: "internal" };
  let chosen = false;
  direction.addEventListener("change", () => { chosen = true; });
  kind.addEventListener("change", () => {
    if (!chosen) direction.value = byKind[kind.value] || "outbound";
  });
}
