// Text items in the grid: a card shows the preview Python sent with the page (control characters already escaped),
// the reader shows the whole text of the item under the cursor, and a search query is highlighted in both.
import { escapeHtml } from "./grid.js";

function escapeRegExp(s) {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** HTML of `text` with every match of `query` (ignoring case) in <mark>. Pure: unit-tested with vitest. */
export function highlight(text, query) {
  const s = String(text ?? "");
  if (!query) return escapeHtml(s);
  const re = new RegExp(escapeRegExp(query), "giu");
  let out = "", last = 0;
  for (const m of s.matchAll(re)) {
    if (!m[0]) break;
    out += escapeHtml(s.slice(last, m.index)) + `<mark>${escapeHtml(m[0])}</mark>`;
    last = m.index + m[0].length;
  }
  return out + escapeHtml(s.slice(last));
}

const count = (n) => Number(n || 0).toLocaleString("en-US");

/** The note under a card: its length, the link to the full text, and whether the model reads only its start. */
export function cardNote(text) {
  const row = text.noun === "row";        // a table row's card: its columns, not a text with a length
  const parts = row ? [] : [`${count(text.chars)} chars`];
  if (text.more) parts.push(`<a class="nbml-more" role="button">${row ? "all columns" : "full text"}</a>`);
  if (text.cut) parts.push(`<span class="nbml-cut" title="the model reads only the first ${text.max_tokens || 256} ` +
    `tokens of this text">cut</span>`);
  return parts.join(" · ");
}

/** A text card's body: the snippet, with "…" where it starts past the beginning or stops before the end. */
export function textCard(item, query, onOpen) {
  const text = item.text || {};
  const body = document.createElement("div");
  body.className = "nbml-text";
  body.innerHTML = (text.start ? "…" : "") + highlight(text.snippet, query) + (text.more ? "…" : "");
  const note = document.createElement("div");
  note.className = "nbml-cap nbml-muted nbml-text-note";
  note.innerHTML = cardNote(text);
  const more = note.querySelector(".nbml-more");
  if (more) more.addEventListener("click", (e) => { e.stopPropagation(); onOpen(); });
  const frag = document.createDocumentFragment();
  frag.append(body, note);
  return frag;
}

/** The reader's HTML for an item: the whole text (`full`: the `text` message) or, until it comes, the snippet. */
export function readerHtml(item, full, query) {
  const text = item.text || {};
  const head = `<div class="nbml-muted">#${item.id} · ${escapeHtml(item.label ?? "unlabelled")} · ` +
    `${count(text.chars)} chars · Space closes</div>`;
  if (!full) return head + `<div class="nbml-fulltext">${highlight(text.snippet, query)}` +
    `<span class="nbml-muted"> … loading the full text</span></div>`;
  let body = highlight(full.read, query);
  if (full.unread) body += `<span class="nbml-unread" title="the model never reads this part">${highlight(full.unread, query)}</span>`;
  let note = "";
  if (full.cut) note += `<div class="nbml-cut">cut: the model reads only the first ${full.max_tokens} tokens; ` +
    `the greyed part is never read</div>`;
  if (full.shown_chars < full.chars) note += `<div class="nbml-muted">the first ${count(full.shown_chars)} of ` +
    `${count(full.chars)} characters are shown</div>`;
  return head + note + `<div class="nbml-fulltext">${body}</div>`;
}
