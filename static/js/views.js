// List pages: filters apply as soon as one changes, and fold into a panel on narrow screens.
// Progressive: without this file the panel stays open and the Filter button submits as before.
document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("form[data-apply-on-change]").forEach((form) => {
    form.addEventListener("change", (event) => {
      // Text and number fields send "change" when left or on Enter, so typing is not interrupted.
      if (!event.target.name) return;
      if (event.target.type === "number" && !event.target.checkValidity()) return;
      form.classList.add("applying");
      form.requestSubmit();
    });
  });

  // The views menu closes on Escape (focus back on its button) and when a click lands outside it.
  const menu = document.getElementById("views-menu");
  if (menu) {
    menu.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && menu.open) {
        menu.open = false;
        menu.querySelector("summary").focus();
      }
    });
    document.addEventListener("click", (event) => {
      if (menu.open && !menu.contains(event.target)) menu.open = false;
    });
  }

  const narrow = window.matchMedia("(max-width: 40rem)");
  const panels = document.querySelectorAll("details.filter-panel");
  const fold = () => panels.forEach((panel) => { panel.open = !narrow.matches; });
  fold();
  narrow.addEventListener("change", fold);
});
