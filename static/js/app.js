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
