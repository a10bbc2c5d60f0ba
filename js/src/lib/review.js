// Items under review (confusion-matrix cells, top losses): captions with label and prediction, and the key help.
import { escapeHtml } from "./grid.js";

const pct = (p) => (p === null || p === undefined ? "?" : `${Math.round(p * 100)}%`);

export function reviewCaption(item) {
  const lines = [`<span class="nbml-label">${escapeHtml(item.label ?? "unlabelled")}</span> ` +
    `<span class="nbml-muted">${pct(item.p_label)}</span>`];
  lines.push(`<span class="nbml-muted">pred ${escapeHtml(item.suggestion ?? "?")} ${pct(item.confidence)}</span>`);
  if (item.loss !== undefined && item.loss !== null) lines.push(`<span class="nbml-muted">loss ${item.loss.toFixed(2)} · ${escapeHtml(item.split ?? "")}</span>`);
  return lines;
}

/** The key help line of the review grids (see mountGrid's `help`). */
export function reviewHelp(key) {
  return `${key("relabel")} · Delete remove · ${key("unusable")} unusable · ` +
    `${key("keep")} keep · Enter accept prediction · Backspace undo`;
}
