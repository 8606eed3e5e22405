// The scoring form's running total (templates/scoring/_form.html). The form works without this
// file: the server then shows the total once the score is saved.
//
// The total follows the server's rule (engage.scoring.service.compute_total) with the numbers the
// server rendered into the page: each criterion's exact weight (data-weight), the points of each
// level (data-points), the best level's points, the scale and the rounding. Sums are exact
// (weights become whole numbers of their smallest decimal, BigInt arithmetic), then the total is
// rounded half up to data-places decimals as stored, and again half up to data-shown-places as
// every page shows a score. Until the score is saved it is shown with "≈".
(function () {
  "use strict";

  // "3.25" → {units: 325n, places: 2}; weights are positive decimals without exponents.
  function parseDecimal(text) {
    const match = /^(\d+)(?:\.(\d+))?$/.exec(String(text).trim());
    if (!match) return null;
    const fraction = match[2] || "";
    return { units: BigInt(match[1] + fraction), places: fraction.length };
  }

  const TEN = 10n;
  const pow10 = (n) => TEN ** BigInt(n);

  // numerator / denominator (both >= 0) to `places` decimals, half up, as a whole number of units.
  function roundHalfUp(numerator, denominator, places) {
    return (2n * numerator * pow10(places) + denominator) / (2n * denominator);
  }

  function formatUnits(units, places) {
    if (places === 0) return units.toString();
    const digits = units.toString().padStart(places + 1, "0");
    return `${digits.slice(0, -places)}.${digits.slice(-places)}`;
  }

  // The total for the chosen levels; a criterion without a level counts as 0, as on the server.
  function computeTotal(form, rows) {
    const scale = BigInt(form.dataset.scale);
    const best = BigInt(form.dataset.best);
    const places = Number(form.dataset.places);
    const shownPlaces = Number(form.dataset.shownPlaces);
    const weights = rows.map((row) => parseDecimal(row.dataset.weight));
    if (weights.some((weight) => weight === null || weight.units <= 0n)) return null;
    const common = Math.max(...weights.map((weight) => weight.places));
    let weighted = 0n;
    let totalWeight = 0n;
    rows.forEach((row, index) => {
      const weight = weights[index].units * pow10(common - weights[index].places);
      const chosen = row.querySelector("input[type=radio]:checked");
      const points = chosen ? BigInt(chosen.dataset.points) : 0n;
      weighted += weight * points;
      totalWeight += weight;
    });
    if (totalWeight === 0n) return null;
    const stored = roundHalfUp(weighted * scale, totalWeight * best, places);
    const shown = roundHalfUp(stored, pow10(places), shownPlaces);
    return { stored: formatUnits(stored, places), shown: formatUnits(shown, shownPlaces) };
  }

  function setUp(form) {
    const rows = Array.from(form.querySelectorAll("fieldset[data-weight]"));
    const output = form.querySelector("[data-score-total]");
    const chosenText = form.querySelector("[data-score-chosen]");
    const evidenceFrom = Number(form.dataset.evidenceFrom);
    if (!rows.length || !output) return;

    const refresh = () => {
      const total = computeTotal(form, rows);
      if (total === null) return;
      output.textContent = `≈ ${total.shown} / ${form.dataset.scale}`;
      output.dataset.exact = total.stored;
      const chosen = rows.filter((row) => row.querySelector("input[type=radio]:checked")).length;
      chosenText.textContent = chosen === rows.length
        ? `all ${rows.length} criteria chosen; saved when you press Save score`
        : `${chosen} of ${rows.length} criteria chosen; the others count as 0 until chosen`;
      rows.forEach((row) => {
        const level = row.querySelector("input[type=radio]:checked");
        const needsNote = level !== null && Number(level.value) >= evidenceFrom;
        row.classList.toggle("needs-note", needsNote);
        const note = row.querySelector("textarea");
        if (note) note.setAttribute("aria-required", String(needsNote));
      });
    };
    form.addEventListener("change", refresh);
    refresh();
    const problems = document.getElementById("score-problems");
    if (problems) problems.focus();
  }

  function init() {
    document.querySelectorAll("form[data-score-rule]").forEach(setUp);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
