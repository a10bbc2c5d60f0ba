// Captions for items under review (confusion-matrix cells, top losses): label and prediction with probabilities.
import { escapeHtml } from "./grid.js";

const pct = (p) => (p === null || p === undefined ? "?" : `${Math.round(p * 100)}%`);

export function reviewCaption(item) {
  const lines = [`<span class="nbml-label">${escapeHtml(item.label ?? "unlabelled")}</span> ` +
    `<span class="nbml-muted">${pct(item.p_label)}</span>`];
  lines.push(`<span class="nbml-muted">pred ${escapeHtml(item.suggestion ?? "?")} ${pct(item.confidence)}</span>`);
  if (item.loss !== undefined && item.loss !== null) lines.push(`<span class="nbml-muted">loss ${item.loss.toFixed(2)} · ${escapeHtml(item.split ?? "")}</span>`);
  return lines;
}
