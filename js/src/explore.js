// ds.explore(): the embedding map (drag a box to select, click a point for its neighbours), class counts, and
// lists of duplicates and likely wrong labels, all fixable with the grid's keys.
import { injectStyle } from "./lib/style.js";
import { mountChart } from "./lib/chart.js";
import { mountGrid, escapeHtml, defaultCaption } from "./lib/grid.js";

/** Ids of the points inside a brush {x: [a, b], y: [c, d]}. Pure. */
export function pointsInBrush(points, brush) {
  if (!brush || !brush.x || !brush.y) return [];
  const [x0, x1] = [Math.min(...brush.x), Math.max(...brush.x)];
  const [y0, y1] = [Math.min(...brush.y), Math.max(...brush.y)];
  return points.filter((p) => p.x >= x0 && p.x <= x1 && p.y >= y0 && p.y <= y1).map((p) => p.id);
}

function caption(item) {
  const lines = defaultCaption(item);
  if (item.caption) lines.push(`<span class="nbml-muted">${escapeHtml(item.caption)}</span>`);
  return lines;
}

function render({ model, el }) {
  const root = document.createElement("div");
  root.className = "nbml nbml-explore";
  injectStyle(root);
  const info = document.createElement("div");
  info.className = "nbml-muted";
  const charts = document.createElement("div");
  charts.className = "nbml-bar";
  const mapDiv = document.createElement("div");
  const classDiv = document.createElement("div");
  charts.append(mapDiv, classDiv);
  const mode = document.createElement("select");
  root.append(info, charts);
  el.append(root);

  const fill = () => {
    mode.innerHTML = (model.get("mode_options") || []).map(([v, t]) =>
      `<option value="${escapeHtml(v)}">${escapeHtml(t)}</option>`).join("");
    mode.value = model.get("mode");
    info.textContent = model.get("info");
  };
  fill();
  mode.addEventListener("change", () => { model.set("mode", mode.value); model.save_changes(); root.focus(); });
  model.on("change:mode", fill);
  model.on("change:info", fill);

  let timer = null;
  mountChart(mapDiv, model.get("spec")).then((view) => {
    view.addSignalListener("brush", (_name, value) => {
      clearTimeout(timer);
      timer = setTimeout(() => model.send({ type: "brush", ids: pointsInBrush(model.get("points") || [], value) }), 250);
    });
    view.addEventListener("click", (_event, item) => {
      if (item && item.datum && item.datum.id !== undefined) model.send({ type: "point", id: item.datum.id });
    });
  });
  mountChart(classDiv, model.get("classes_spec"));
  mountGrid(model, root, { caption, extraBar: mode });
}

export default { render };
