// ds.label(): the keyboard labelling grid.
import { injectStyle } from "./lib/style.js";
import { mountGrid, escapeHtml } from "./lib/grid.js";

function render({ model, el }) {
  const root = document.createElement("div");
  root.className = "nbml nbml-label-widget";
  injectStyle(root);
  const filter = document.createElement("select");
  const fill = () => {
    const options = model.get("filter_options") || [];
    filter.innerHTML = options.map(([value, text]) =>
      `<option value="${escapeHtml(value)}">${escapeHtml(text)}</option>`).join("");
    filter.value = model.get("filter");
  };
  fill();
  filter.addEventListener("change", () => { model.set("filter", filter.value); model.save_changes(); root.focus(); });
  model.on("change:filter_options", fill);
  model.on("change:filter", fill);
  const source = document.createElement("span");
  source.className = "nbml-muted";
  const showSource = () => {
    const err = model.get("error");
    source.className = err ? "nbml-error" : "nbml-muted";
    source.textContent = err || (model.get("filter") === "queue" && model.get("queue_source")
      ? `ranked on embeddings from ${model.get("queue_source")}` : "");
  };
  showSource();
  model.on("change:queue_source", showSource);
  model.on("change:error", showSource);
  model.on("change:filter", showSource);
  const forecast = document.createElement("span");
  forecast.className = "nbml-muted nbml-forecast";
  forecast.title = "the accuracy nbml.train(ds) would reach with more labels: ds.forecast() for the details";
  const showForecast = () => { forecast.textContent = model.get("forecast") || ""; };
  showForecast();
  model.on("change:forecast", showForecast);
  const extra = document.createElement("span");
  extra.append(filter, source, forecast);
  const help = (key) => `${key("label")} · arrows move · Enter accept suggestion · Backspace/Ctrl+Z undo · ` +
    `${key("unusable")} unusable · shift-click selects`;
  mountGrid(model, root, { extraBar: extra, help });
  el.append(root);
}

export default { render };
