// ds.compare_runs(): the runs' curves overlaid, and a table of parameters and final metrics.
import { injectStyle } from "./lib/style.js";
import { mountChart } from "./lib/chart.js";
import { escapeHtml } from "./lib/grid.js";

export function tableHtml(columns, rows) {
  const head = columns.map((c) => `<th>${escapeHtml(c)}</th>`).join("");
  const body = rows.map((r) => `<tr>${columns.map((c) => {
    const v = r[c];
    return `<td>${v === null || v === undefined ? "" : escapeHtml(typeof v === "number" && !Number.isInteger(v) ? v.toFixed(4) : v)}</td>`;
  }).join("")}</tr>`).join("");
  return `<table><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table>`;
}

function render({ model, el }) {
  const root = document.createElement("div");
  root.className = "nbml nbml-runs";
  injectStyle(root);
  const chart = document.createElement("div");
  const table = document.createElement("div");
  table.className = "nbml-scroll";       // a wide table scrolls sideways instead of being cut off
  root.append(chart, table);
  el.append(root);
  const draw = () => {
    chart.replaceChildren();
    if ((model.get("rows") || []).length) mountChart(chart, model.get("spec"));
    else chart.textContent = "no runs yet: train one with nbml.train(ds)";
    table.innerHTML = tableHtml(model.get("columns") || [], model.get("rows") || []);
  };
  model.on("change:spec", draw);
  model.on("change:rows", draw);
  draw();
}

export default { render };
