// model.top_losses(): the items the model finds hardest, to relabel (class keys), remove (Delete) or keep (K).
import { injectStyle } from "./lib/style.js";
import { mountGrid, escapeHtml } from "./lib/grid.js";
import { reviewCaption, reviewHelp } from "./lib/review.js";

function render({ model, el }) {
  const root = document.createElement("div");
  root.className = "nbml nbml-cleaner";
  injectStyle(root);
  const filter = document.createElement("select");
  const fill = () => {
    filter.innerHTML = (model.get("filter_options") || []).map(([v, t]) =>
      `<option value="${escapeHtml(v)}">${escapeHtml(t)}</option>`).join("");
    filter.value = model.get("filter");
  };
  fill();
  filter.addEventListener("change", () => { model.set("filter", filter.value); model.save_changes(); root.focus(); });
  model.on("change:filter_options", fill);
  el.append(root);
  mountGrid(model, root, { caption: reviewCaption, extraBar: filter, help: reviewHelp });
}

export default { render };
