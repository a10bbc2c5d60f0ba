// nbml.train() in a notebook: live loss chart, progress bar with ETA, learning rate, Stop button, summary.
import { injectStyle } from "./lib/style.js";
import { mountChart, insertRows } from "./lib/chart.js";
import { escapeHtml } from "./lib/grid.js";

function clock(s) {
  if (s === null || s === undefined || !isFinite(s)) return "?";
  s = Math.round(s);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

export function statusLine(st) {
  if (!st || !st.state) return "starting…";
  const parts = [st.state];
  if (st.phase) parts.push(st.phase === "lr_find" ? "finding a learning rate" : `${st.phase} phase`);
  if (st.epochs) parts.push(`epoch ${Math.min((st.epoch ?? 0) + 1, st.epochs)}/${st.epochs}`);
  if (st.lr) parts.push(`lr ${Number(st.lr).toExponential(2)}`);
  if (st.loss !== undefined && st.loss !== null) parts.push(`loss ${Number(st.loss).toFixed(4)}`);
  parts.push(`elapsed ${clock(st.elapsed_s)}`);
  if (st.state === "running") parts.push(`eta ${clock(st.eta_s)}`);
  return parts.join(" · ");
}

function render({ model, el }) {
  const root = document.createElement("div");
  root.className = "nbml nbml-monitor";
  injectStyle(root);
  const bar = document.createElement("div");
  bar.className = "nbml-bar";
  const progress = document.createElement("div");
  progress.className = "nbml-progress";
  const fill = document.createElement("div");
  progress.append(fill);
  const stop = Object.assign(document.createElement("button"), { textContent: "Stop" });
  stop.title = "end training after the current batch, keeping the best epoch's weights";
  const text = document.createElement("span");
  text.className = "nbml-muted";
  bar.append(progress, stop);
  const chart = document.createElement("div");
  const summary = document.createElement("div");
  root.append(bar, text, chart, summary);
  el.append(root);

  stop.addEventListener("click", () => {
    stop.disabled = true;
    stop.textContent = "Stopping…";
    model.send({ type: "stop" });
  });

  function showStatus() {
    const st = model.get("status") || {};
    fill.style.width = `${Math.round((st.progress || 0) * 100)}%`;
    text.textContent = statusLine(st);
    if (st.state && st.state !== "running" && st.state !== "starting") {
      stop.disabled = true;
      stop.textContent = st.state === "stopped" ? "Stopped" : "Done";
    }
  }

  function showSummary() {
    const s = model.get("summary") || {};
    if (!s.status) { summary.innerHTML = ""; return; }
    const metrics = Object.entries(s.metrics || {})
      .map(([k, v]) => `<tr><td>${escapeHtml(k)}</td><td>${typeof v === "number" ? v.toFixed(4) : escapeHtml(v)}</td></tr>`).join("");
    summary.innerHTML = `<p><b>Run ${s.run_id} ${escapeHtml(s.status)}</b> in ${clock(s.duration_s)}` +
      (s.best_epoch !== null && s.best_epoch !== undefined ? ` (weights of epoch ${s.best_epoch + 1} kept)` : "") +
      (s.error ? ` <span class="nbml-error">${escapeHtml(s.error)}</span>` : "") +
      (s.refit_on_all ? `<br><span class="nbml-muted">measured on the validation split, then trained again on all ` +
        `${Number(s.refit_on_all)} labelled items</span>` : "") + `</p><table>${metrics}</table>` +
      (s.scores ? `<p class="nbml-trust">${escapeHtml(s.scores.line)}</p>` +
        (s.scores.notes || []).map((n) => `<p class="nbml-muted nbml-note">note: ${escapeHtml(n)}</p>`).join("") : "") +
      (s.forecast ? `<p class="nbml-muted nbml-forecast">${escapeHtml(s.forecast)}</p>` : "");
  }

  // Rows come as they happen; the history (asked once the chart exists) covers what came before. Steps and
  // epoch numbers only grow, so anything already drawn is dropped.
  let view = null, lastStep = 0, lastEpoch = -1;
  async function add(msg) {
    const batches = (msg.batches || []).filter((r) => r.step > lastStep);
    const epochs = (msg.epochs || []).filter((r) => r.epoch > lastEpoch);
    if (batches.length) lastStep = batches[batches.length - 1].step;
    if (epochs.length) lastEpoch = epochs[epochs.length - 1].epoch;
    await insertRows(view, { batches, epochs });
  }
  model.on("msg:custom", (msg) => { if (msg.type === "rows" && view) add(msg); });
  mountChart(chart, model.get("spec")).then((v) => {
    view = v;
    model.send({ type: "history" });
  });
  model.on("change:status", showStatus);
  model.on("change:summary", showSummary);
  showStatus();
  showSummary();
}

export default { render };
