// ds.explore(): the embedding map (drag a free-hand lasso, or a box, to select; click a point for its neighbours),
// class counts, and lists of duplicates and likely wrong labels, all fixable with the grid's keys.
import { injectStyle } from "./lib/style.js";
import { mountChart } from "./lib/chart.js";
import { mountGrid, escapeHtml, defaultCaption } from "./lib/grid.js";
import { mountLasso, pixelToData, pointsInBrush, pointsInPolygon } from "./lib/lasso.js";

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
  const mapCol = document.createElement("div");
  const tools = document.createElement("div");
  tools.className = "nbml-bar nbml-tools";
  const mapBox = document.createElement("div");
  mapBox.className = "nbml-map";
  const mapDiv = document.createElement("div");
  mapBox.append(mapDiv);
  mapCol.append(tools, mapBox);
  const classDiv = document.createElement("div");
  charts.append(mapCol, classDiv);
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

  // select with: lasso (default) | box
  let tool = "lasso";
  const hint = document.createElement("span");
  hint.className = "nbml-muted";
  const buttons = ["lasso", "box"].map((name) => {
    const b = Object.assign(document.createElement("button"), { textContent: name, type: "button" });
    b.dataset.tool = name;
    b.addEventListener("click", () => { setTool(name); root.focus(); });
    return b;
  });
  tools.append(Object.assign(document.createElement("span"), { textContent: "select with", className: "nbml-muted" }),
    ...buttons, hint);

  let view = null, lasso = null, timer = null, grid = null;
  const selectIds = (ids) => {     // the grid marks them at once; Python lists them (its page) and keeps them
    grid.selectIds(ids);
    model.send({ type: "brush", ids });
  };

  function clearBox() {     // a double click clears a Vega-Lite box brush: the same, without naming its internals
    const svg = mapDiv.querySelector("svg");
    if (svg) svg.dispatchEvent(new MouseEvent("dblclick", { bubbles: true, cancelable: true }));
  }

  function setTool(name) {
    tool = name;
    clearTimeout(timer);
    for (const b of buttons) b.setAttribute("aria-pressed", String(b.dataset.tool === name));
    hint.textContent = name === "lasso" ? "drag around points to select them · click a point for its neighbours"
      : "drag a box to select · click a point for its neighbours";
    if (lasso) lasso.setEnabled(name === "lasso");
    if (name === "lasso") clearBox();
  }
  setTool("lasso");

  mountChart(mapDiv, model.get("spec")).then((v) => {
    view = v;
    lasso = mountLasso(mapBox, () => mapDiv.querySelector("svg"), (pixels) => {
      const origin = view.origin(), x = view.scale("x"), y = view.scale("y");
      const polygon = pixels.map((p) => pixelToData(p, origin, (px) => x.invert(px), (py) => y.invert(py)));
      selectIds(pointsInPolygon(model.get("points") || [], polygon));
      root.focus();
    });
    setTool(tool);
    view.addSignalListener("brush", (_name, value) => {
      if (tool !== "box") return;
      clearTimeout(timer);
      timer = setTimeout(() => selectIds(pointsInBrush(model.get("points") || [], value)), 250);
    });
    view.addEventListener("click", (_event, item) => {
      if (item && item.datum && item.datum.id !== undefined) model.send({ type: "point", id: item.datum.id });
    });
  });
  mountChart(classDiv, model.get("classes_spec"));
  grid = mountGrid(model, root, { caption, extraBar: mode });
  model.on("change:mode", () => { if (model.get("mode") !== "selection") grid.selectIds([]); });
}

export default { render };
