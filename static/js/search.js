// Search everywhere (issue 17): "/" moves to the header's search box, unless a field has the keyboard.
document.addEventListener("keydown", (event) => {
  if (event.key !== "/" || event.ctrlKey || event.metaKey || event.altKey || event.defaultPrevented) return;
  const target = event.target;
  const typing = target instanceof HTMLElement &&
    (target.isContentEditable || target.closest("input, textarea, select, [contenteditable]"));
  if (typing) return;
  const box = document.getElementById("site-search-q");
  if (!box) return;
  event.preventDefault();
  box.focus();
  box.select();
});
