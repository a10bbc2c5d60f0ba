// The paged thumbnail grid shared by the labelling, confusion-matrix and top-loss widgets.
// Python holds every decision: the grid sends actions, Python writes them to the store, then sends back the
// refreshed page (`items`) and a `done` message carrying the action's sequence number.
import { captureKeys, moveCursor, clickSelection, classKeys, matchClass, actionKey, labelHelp } from "./keys.js";
import { textCard, readerHtml } from "./text.js";

// Thumbnails arrive once per content key (sha256) as binary message buffers, on request; items only name their key.
// Blob URLs are shared by every grid of this module and the oldest are revoked past MAX_THUMBS.
const thumbs = new Map();   // key -> blob URL (insertion order = age)
const MAX_THUMBS = 5000;

function storeThumb(key, view) {
  const bytes = new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
  if (thumbs.has(key)) return;
  thumbs.set(key, URL.createObjectURL(new Blob([bytes], { type: "image/jpeg" })));
  if (thumbs.size > MAX_THUMBS) {
    const oldest = thumbs.keys().next().value;
    URL.revokeObjectURL(thumbs.get(oldest));
    thumbs.delete(oldest);
  }
}

/**
 * A card's picture: an <img> born with its source when the key's bytes are here, else a grey placeholder that
 * showThumbs swaps for one. Never an <img> whose source comes later: Chromium can leave such an image without a
 * layout box when its source arrives while JupyterLab skips the off-screen cell (content-visibility), and the card
 * then shows no picture at all, even once scrolled into view.
 */
function thumbSlot(item) {
  const url = item.thumb ? thumbs.get(item.thumb) : undefined;
  if (url) return thumbImage(url, `item ${item.id}`);
  const slot = document.createElement("div");
  slot.className = "nbml-thumb";
  slot.setAttribute("role", "img");
  slot.setAttribute("aria-label", `item ${item.id}`);
  if (item.thumb) slot.dataset.thumb = item.thumb;
  return slot;
}

function thumbImage(url, alt) {
  return Object.assign(document.createElement("img"), { src: url, alt });
}

function pct(p) {
  return p === null || p === undefined ? "" : `${Math.round(p * 100)}%`;
}

/** Default caption: label, then the model's suggestion and its confidence when there is one, then a note (the
 * review filter's "alice: cat, bob: dog"). */
export function defaultCaption(item) {
  const lines = [`<span class="nbml-label">${escapeHtml(item.label ?? "unlabelled")}</span>`];
  if (item.suggestion) {
    lines.push(`<span class="nbml-muted">model: ${escapeHtml(item.suggestion)} ${pct(item.confidence)}</span>`);
  }
  if (item.note) {
    lines.push(`<span class="nbml-muted">${escapeHtml(item.note)}</span>`);
  }
  return lines;
}

export function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

/**
 * `help(key)` gives the widget's key help line; `key("label")` (or "relabel") describes the class keys,
 * `key("unusable")` (or keep, next, previous) the key of that action with the current classes (see keys.js).
 */
export function mountGrid(model, root, { caption = defaultCaption, extraBar = null, help = null } = {}) {
  const bar = document.createElement("div");
  bar.className = "nbml-bar";
  const classBar = document.createElement("span");
  classBar.className = "nbml-bar";
  const addInput = Object.assign(document.createElement("input"), { placeholder: "+ new class", size: 10 });
  const pager = document.createElement("span");
  const message = document.createElement("span");
  message.className = "nbml-muted";
  const typing = document.createElement("span");
  typing.className = "nbml-typing";
  const helpLine = document.createElement("span");
  helpLine.className = "nbml-muted nbml-help";
  // text items: a search box, cards with the start of each text, and a reader with the whole text of the cursor's
  const texts = model.get("item_kind") === "text";
  const search = Object.assign(document.createElement("input"), { type: "search",
    placeholder: `search ${model.get("item_noun") || "text"}s`,
    size: 14, value: model.get("search") || "" });
  search.className = "nbml-search";
  bar.append(classBar, typing, addInput, pager, message);
  if (texts) bar.insertBefore(search, pager);
  if (extraBar) bar.append(extraBar);
  if (help) bar.append(helpLine);
  const reader = document.createElement("div");
  reader.className = "nbml-reader";
  reader.hidden = true;
  const grid = document.createElement("div");
  grid.className = "nbml-grid" + (texts ? " nbml-texts" : "");
  root.append(bar, reader, grid);

  let cursor = 0, anchor = null, selection = new Set(), seq = 0;
  // ids chosen outside the grid (the explore map's lasso or box), on this page or beyond it: the next decision
  // applies to all of them; the grid's own selection (a click, an arrow, Escape) replaces them
  let chosen = null;
  let typed = "";   // type-ahead text (more than nine classes)
  let reading = false;   // text items: the reader shows the whole text of the item under the cursor
  const fullTexts = new Map(), textAsked = new Set();   // id -> the `text` message; ids asked for
  const pending = new Map();   // seq -> time the key was pressed
  // thumbnail keys asked for (key -> request id) and keys whose request ended without their bytes (asked again when
  // the page is next sent), so no key waits forever whatever happens to a request or its reply
  const requested = new Map(), unanswered = new Set();
  let asked = 0;
  window.nbmlTimings = window.nbmlTimings || [];

  // A decision shows at once (optimistically); the page Python sends after its `done` reply replaces it.
  let local = null;
  const items = () => local || model.get("items") || [];
  const classes = () => model.get("classes") || [];

  function columns() {
    const first = grid.firstElementChild;
    if (!first) return 1;
    return Math.max(1, Math.round(grid.clientWidth / (first.offsetWidth + 6)));
  }

  function targets() {
    if (chosen) return [...chosen];
    const list = items();
    const idx = selection.size ? [...selection].sort((a, b) => a - b) : [cursor];
    return idx.filter((i) => i < list.length).map((i) => list[i].id);
  }

  function send(content) {
    seq += 1;
    pending.set(seq, performance.now());
    model.send({ ...content, seq });
  }

  function act(action) {
    const list = items();
    const many = chosen ? chosen.size > 1 : selection.size > 1;
    if (["move", "toggle", "clear"].includes(action.type)) chosen = null;
    if (action.type !== "type") typed = "";
    switch (action.type) {
      case "type":
        typed = action.text;
        return renderBar();
      case "move":
        if (action.extend) {
          if (anchor === null) anchor = cursor;
          selection.add(cursor);   // the cell the extension starts from is part of it
        }
        cursor = moveCursor(cursor, action.dx, action.dy, columns(), list.length);
        if (action.extend) selection.add(cursor);
        else anchor = cursor;
        return render();
      case "toggle":
        selection = clickSelection(selection, anchor, cursor, { toggle: true });
        anchor = cursor;
        return render();
      case "clear":
        selection = new Set();
        reading = false;
        return render();
      case "open":
        reading = texts && !reading;
        return render();
      case "page":
        return send({ type: "page", page: model.get("page") + action.delta });
      case "undo":
        return send({ type: "undo" });
      case "label": {
        const ids = targets();
        if (!ids.length) return;
        send({ type: "label", ids, label: classes()[action.index] });
        showDecision(ids, (i) => ({ ...i, label: classes()[action.index] }));
        break;
      }
      case "accept": case "unusable": case "remove": case "keep": {
        const ids = targets();
        if (!ids.length) return;
        send({ type: action.type, ids });
        const change = {
          accept: (i) => (i.suggestion ? { ...i, label: i.suggestion } : i),
          unusable: (i) => ({ ...i, status: "unusable" }),
          remove: (i) => ({ ...i, status: "removed" }),
          keep: (i) => ({ ...i, decision: "kept" }),
        }[action.type];
        showDecision(ids, change);
        break;
      }
    }
    // after a decision on one item, move on to the next (unless decided items leave the list when Python
    // refreshes it); from the last item of a page, on to the next page
    if (!many && !model.get("drops_decided")) {
      const pages = Math.ceil((model.get("n_total") || 0) / model.get("page_size"));
      if (cursor >= list.length - 1 && model.get("page") < pages - 1) {
        cursor = 0;
        model.send({ type: "page", page: model.get("page") + 1 });
      } else {
        cursor = Math.min(cursor + 1, Math.max(list.length - 1, 0));
      }
    }
    selection = new Set();
    chosen = null;
    anchor = null;
    render();
  }

  /** Select these ids (from outside the grid), or none; they need not be on the current page. */
  function selectIds(ids) {
    chosen = ids && ids.length ? new Set(ids) : null;
    selection = new Set();
    anchor = null;
    render();
  }

  function showDecision(ids, change) {
    const chosen = new Set(ids);
    const list = items();
    local = model.get("drops_decided") ? list.filter((i) => !chosen.has(i.id))
      : list.map((i) => (chosen.has(i.id) ? change(i) : i));
  }

  captureKeys(root, () => ({ classes: classes(), typed, texts }), act);

  let searchTimer = null;
  const sendSearch = () => {
    clearTimeout(searchTimer);
    if (search.value !== (model.get("search") || "")) send({ type: "search", query: search.value });
  };
  search.addEventListener("input", () => { clearTimeout(searchTimer); searchTimer = setTimeout(sendSearch, 300); });
  search.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === "Escape" || e.key === "ArrowDown") {
      e.preventDefault();
      if (e.key === "Escape" && search.value) search.value = "";
      sendSearch();
      root.focus();
    }
  });
  model.on("change:search", () => { if (document.activeElement !== search) search.value = model.get("search") || ""; });

  addInput.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && addInput.value.trim()) {
      send({ type: "add_class", name: addInput.value.trim() });
      addInput.value = "";
      root.focus();
    }
  });

  model.on("msg:custom", (msg, buffers) => {
    if (msg.type === "text") {
      fullTexts.set(msg.id, msg);
      if (fullTexts.size > 200) fullTexts.delete(fullTexts.keys().next().value);
      return renderReader();
    }
    if (msg.type === "thumbs") {
      const keys = msg.keys || [], came = keys.filter((_, i) => buffers && buffers[i]);
      keys.forEach((key, i) => { if (buffers && buffers[i]) storeThumb(key, buffers[i]); });
      came.forEach((key) => requested.delete(key));
      giveUp([...keys.filter((key) => !came.includes(key)), ...(msg.missing || [])]);
      return showThumbs();
    }
    if (msg.type !== "done") return;
    if (msg.seq == null && msg.error) textAsked.clear();   // a full text that could not come is asked again later
    if (msg.request !== undefined) {   // a thumbnail request is over: what it did not bring is not waited for
      return giveUp([...requested].filter(([, id]) => id === msg.request).map(([key]) => key));
    }
    const t0 = pending.get(msg.seq);
    pending.delete(msg.seq);
    if (t0 !== undefined) window.nbmlTimings.push(performance.now() - t0);
    // every message gets a `done`: a silent one for a message that is not an action keeps the line as it is, so
    // "12 items selected..." stays up while the page's thumbnails arrive
    if (msg.seq == null && !msg.message && !msg.error) return;
    message.textContent = msg.error ? msg.error : (msg.message || "");
    message.className = msg.error ? "nbml-error" : "nbml-muted";
  });

  function renderBar() {
    const counts = model.get("counts") || {};
    const names = classes(), { keys } = classKeys(names), pick = matchClass(names, typed);
    classBar.replaceChildren(...names.map((name, i) => {
      const chip = document.createElement("span");
      const dim = typed && !name.toLowerCase().startsWith(typed.toLowerCase());
      chip.className = "nbml-class" + (dim ? " nbml-dim" : "") + (typed && i === pick ? " nbml-pick" : "");
      const key = keys[i] === null ? "" : `<b>${escapeHtml(keys[i])}</b>`;
      chip.innerHTML = `${key}${keys[i] === name ? "" : escapeHtml(name)} <span class="nbml-muted">${counts[name] ?? 0}</span>`;
      chip.title = keys[i] === null ? `type ${name} and Enter to label the selected items ${name}`
        : `press ${keys[i]} to label the selected items ${name}`;
      chip.addEventListener("click", () => { act({ type: "label", index: i }); root.focus(); });
      return chip;
    }));
    typing.textContent = typed ? `${typed}▏ ${pick >= 0 ? `Enter labels ${names[pick]}` : "no class starts so"}` : "";
    const key = (name) => (["label", "relabel"].includes(name) ? labelHelp(names, name) : actionKey(name, names));
    const whole = model.get("item_noun") === "row" ? "all columns" : "full text";
    helpLine.textContent = help ? help(key) + (texts ? ` · Space ${whole} · Shift+Space selects` : "") : "";
    const page = model.get("page"), pages = Math.max(1, Math.ceil((model.get("n_total") || 0) / model.get("page_size")));
    pager.innerHTML = "";
    const prev = Object.assign(document.createElement("button"), { textContent: "‹", disabled: page <= 0 });
    const next = Object.assign(document.createElement("button"), { textContent: "›", disabled: page >= pages - 1 });
    prev.onclick = () => act({ type: "page", delta: -1 });
    next.onclick = () => act({ type: "page", delta: 1 });
    const label = document.createElement("span");
    label.textContent = ` page ${page + 1}/${pages} (${model.get("n_total") || 0} items) `;
    pager.append(prev, label, next);
  }

  /** Put in every picture whose bytes are here; ask for the keys nobody has asked for yet. */
  function showThumbs() {
    const missing = new Set();
    for (const slot of grid.querySelectorAll(".nbml-thumb[data-thumb]")) {
      const key = slot.dataset.thumb;
      if (thumbs.has(key)) slot.replaceWith(thumbImage(thumbs.get(key), slot.getAttribute("aria-label")));
      else if (!requested.has(key) && !unanswered.has(key)) missing.add(key);
    }
    if (!missing.size) return;
    asked += 1;
    for (const key of missing) requested.set(key, asked);
    model.send({ type: "thumbs", keys: [...missing], request: asked });
  }

  function giveUp(keys) {
    for (const key of keys) {
      requested.delete(key);
      unanswered.add(key);
    }
  }

  /** The whole text of the item under the cursor, asked for once per item, while the reader is open. */
  function renderReader() {
    const item = items()[cursor];
    reader.hidden = !(reading && item);
    if (reader.hidden) return;
    const full = fullTexts.get(item.id);
    if (!full && !textAsked.has(item.id)) {
      textAsked.add(item.id);
      model.send({ type: "text", id: item.id });
    }
    reader.dataset.id = item.id;
    reader.innerHTML = readerHtml(item, full, model.get("search") || "");
  }

  function render() {
    const list = items();
    cursor = Math.min(cursor, Math.max(list.length - 1, 0));
    renderBar();
    const cells = list.map((item, i) => {
      const cell = document.createElement("div");
      const picked = selection.has(i) || (chosen !== null && chosen.has(item.id));
      cell.className = "nbml-cell" + (i === cursor ? " cursor" : "") + (picked ? " selected" : "") +
        (item.status && item.status !== "ok" ? ` ${item.status}` : "");
      cell.dataset.id = item.id;
      if (texts) {
        cell.classList.add("nbml-text-cell");
        cell.append(textCard(item, model.get("search") || "", () => { chosen = null; selection = new Set([i]);
          anchor = cursor = i; reading = true; root.focus(); render(); }));
      } else {
        cell.append(thumbSlot(item));
      }
      for (const line of caption(item)) {
        const div = document.createElement("div");
        div.className = "nbml-cap";
        div.innerHTML = line;
        cell.append(div);
      }
      if (item.decision) {
        const badge = document.createElement("span");
        badge.className = "nbml-decision";
        badge.textContent = item.decision;
        cell.append(badge);
      }
      cell.addEventListener("click", (e) => {
        chosen = null;
        selection = clickSelection(selection, anchor, i, { shift: e.shiftKey, toggle: e.ctrlKey || e.metaKey });
        if (!e.shiftKey || anchor === null) anchor = i;
        cursor = i;
        root.focus();
        render();
      });
      return cell;
    });
    grid.replaceChildren(...cells);
    renderReader();
    if (!texts) showThumbs();
  }

  model.on("change:items", () => { local = null; unanswered.clear(); render(); });
  model.on("change:classes", render);
  model.on("change:counts", renderBar);
  render();
  return { render, act, selectIds };
}
