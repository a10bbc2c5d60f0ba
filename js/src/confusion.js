// model.confusion(): the confusion matrix as a heatmap; click a cell to review and fix its items below.
import { injectStyle } from "./lib/style.js";
import { mountChart } from "./lib/chart.js";
import { mountGrid, escapeHtml } from "./lib/grid.js";
import { reviewCaption, reviewHelp } from "./lib/review.js";

function render({ model, el }) {
  const root = document.createElement("div");
  root.className = "nbml nbml-confusion";
  injectStyle(root);
  const top = document.createElement("div");
  top.className = "nbml-bar";
  const toggle = document.createElement("label");
  const box = Object.assign(document.createElement("input"), { type: "checkbox", checked: model.get("normalize") });
  toggle.append(box, " row-normalised");
  const cellText = document.createElement("span");
  cellText.className = "nbml-muted";
  top.append(toggle, cellText);
  const chart = document.createElement("div");
  root.append(top, chart);
  el.append(root);

  box.addEventListener("change", () => { model.set("normalize", box.checked); model.save_changes(); });

  async function draw() {
    chart.replaceChildren();
    const view = await mountChart(chart, model.get("spec"));
    view.addEventListener("click", (_event, item) => {
      const d = item && item.datum;
      if (d && d.actual !== undefined && d.predicted !== undefined) {
        model.send({ type: "cell", actual: String(d.actual), predicted: String(d.predicted) });
        root.focus();
      }
    });
  }
  function showCell() {
    const cell = model.get("cell") || [];
    cellText.innerHTML = cell.length
      ? `showing actual <b>${escapeHtml(cell[0])}</b>, predicted <b>${escapeHtml(cell[1])}</b> (click another cell to switch)`
      : "showing every mistake; click a cell to see its items";
  }
  model.on("change:spec", draw);
  model.on("change:cell", showCell);
  draw();
  showCell();
  mountGrid(model, root, { caption: reviewCaption, help: reviewHelp });
}

export default { render };
