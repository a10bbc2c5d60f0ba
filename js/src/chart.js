// A Vega-Lite chart built in Python (ds.stats(), nbml.monitor()), drawn by the bundled vega-embed: nothing is fetched.
import { injectStyle } from "./lib/style.js";
import { mountChart } from "./lib/chart.js";
import { escapeHtml } from "./lib/grid.js";

function render({ model, el }) {
  const root = document.createElement("div");
  root.className = "nbml nbml-chart";
  root.style.overflowX = "auto";   // a chart wider than the output area scrolls instead of losing its legend
  injectStyle(root);
  const box = document.createElement("div");
  root.append(box);
  el.append(root);

  // Each spec change draws into a new element that replaces the old one; a draw overtaken by a newer one is dropped.
  let view = null, drawn = 0;
  async function draw() {
    const mine = ++drawn;
    const target = document.createElement("div");
    box.append(target);
    try {
      const next = await mountChart(target, model.get("spec"));
      if (mine !== drawn) { next.finalize(); target.remove(); return; }
      if (view) view.finalize();
      view = next;
      box.replaceChildren(target);
    } catch (e) {
      if (mine === drawn) target.innerHTML = `<span class="nbml-error">could not draw this chart: ${escapeHtml(e.message)}</span>`;
      else target.remove();
    }
  }
  model.on("change:spec", draw);
  draw();
  return () => {
    model.off("change:spec", draw);
    if (view) view.finalize();
  };
}

export default { render };
