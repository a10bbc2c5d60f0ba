// @vitest-environment jsdom
import { describe, it, expect, beforeEach, afterEach, vi } from "vitest";
import { mountGrid, escapeHtml, defaultCaption } from "../src/lib/grid.js";

let nextId = 1;   // thumbnails are cached by module-level key, so every test gets fresh ids (and keys)

function thumb(n = 4) {
  const bytes = new Uint8Array(n + 2);
  for (let i = 0; i < bytes.length; i++) bytes[i] = i;
  return new DataView(bytes.buffer, 1, n);   // a view that does not start at offset 0
}

function makeItems(n, extra = {}) {
  return Array.from({ length: n }, () => {
    const id = nextId++;
    return { id, label: null, status: "ok", thumb: `key${id}`, ...extra };
  });
}

function fakeModel(state) {
  const data = { classes: ["cat", "dog", "bird"], counts: { cat: 2, dog: 1 }, page: 0, page_size: 48,
    n_total: state.items ? state.items.length : 0, drops_decided: false, ...state };
  const callbacks = {};
  const sent = [];
  const thumbRequests = [];
  const model = {
    data, callbacks, sent, thumbRequests,
    get: (name) => data[name],
    set: (name, value) => { data[name] = value; },
    save_changes: vi.fn(),
    on: (event, cb) => { (callbacks[event] ||= []).push(cb); },
    // Like Python: a request for thumbnails is answered with one binary buffer per key (unless `manual`: then the
    // test answers); other messages recorded.
    send: (msg) => {
      if (msg.type !== "thumbs") return sent.push(msg);
      thumbRequests.push(msg.keys);
      if (state.manual) return;
      model.emit("msg:custom", { type: "thumbs", keys: msg.keys, missing: [] }, msg.keys.map(() => thumb()));
      model.emit("msg:custom", { type: "done", seq: null, request: msg.request });
    },
    emit(event, ...args) { for (const cb of callbacks[event] || []) cb(...args); },
    change(name, value) { data[name] = value; this.emit(`change:${name}`); },
  };
  return model;
}

let parent, root, parentKeys, createObjectURL;

beforeEach(() => {
  createObjectURL = vi.fn(() => `blob:fake/${createObjectURL.mock.calls.length}`);
  URL.createObjectURL = createObjectURL;
  URL.revokeObjectURL = vi.fn();
  parent = document.createElement("div");
  parentKeys = [];
  parent.addEventListener("keydown", (e) => parentKeys.push(e.key));
  root = document.createElement("div");
  parent.append(root);
  document.body.append(parent);
});

afterEach(() => {
  parent.remove();
  delete URL.createObjectURL;
  delete URL.revokeObjectURL;
});

function mount(state) {
  const model = fakeModel(state);
  const api = mountGrid(model, root);
  root.focus();
  return { model, api };
}

function press(key, mods = {}, target = document.activeElement) {
  const e = new KeyboardEvent("keydown", { key, bubbles: true, cancelable: true, ...mods });
  target.dispatchEvent(e);
  return e;
}

function click(el, mods = {}) {
  el.dispatchEvent(new MouseEvent("click", { bubbles: true, cancelable: true, ...mods }));
}

const cells = () => [...root.querySelectorAll(".nbml-cell")];

describe("mountGrid", () => {
  it("renders one .nbml-cell per item, with data-id and a blob thumbnail", () => {
    const items = makeItems(4);
    const { model } = mount({ items });
    expect(model.thumbRequests).toEqual([items.map((i) => i.thumb)]);   // asked once, for the page's keys
    const cs = cells();
    expect(cs).toHaveLength(4);
    expect(cs.map((c) => c.dataset.id)).toEqual(items.map((i) => String(i.id)));
    expect(createObjectURL).toHaveBeenCalledTimes(4);
    const blob = createObjectURL.mock.calls[0][0];
    expect(blob).toBeInstanceOf(Blob);
    expect(blob.size).toBe(4);
    expect(blob.type).toBe("image/jpeg");
    expect(cs[0].querySelector("img").getAttribute("src")).toBe("blob:fake/1");
    expect(cs[3].querySelector("img").getAttribute("src")).toBe("blob:fake/4");
    expect(cs[0].classList.contains("cursor")).toBe(true);
    expect(cs[1].classList.contains("cursor")).toBe(false);
  });

  it("items without a thumbnail get no blob URL", () => {
    const items = makeItems(1, { thumb: null });
    mount({ items });
    expect(createObjectURL).not.toHaveBeenCalled();
    expect(cells()).toHaveLength(1);
  });

  it("renders class chips with shortcut numbers and counts, and the pager", () => {
    mount({ items: makeItems(2), n_total: 100, page_size: 48, page: 1 });
    const chips = [...root.querySelectorAll(".nbml-class")];
    expect(chips.map((c) => c.textContent)).toEqual(["1cat 2", "2dog 1", "3bird 0"]);
    expect(root.textContent).toContain("page 2/3 (100 items)");
  });

  it("makes the root focusable and tells JupyterLab to suppress its shortcuts", () => {
    mount({ items: makeItems(2) });
    expect(root.getAttribute("data-lm-suppress-shortcuts")).toBe("true");
    expect(root.tabIndex).toBe(0);
    expect(document.activeElement).toBe(root);
  });

  it("pressing 2 labels the cursor item with the second class, seq 1", () => {
    const items = makeItems(3);
    const { model } = mount({ items });
    const e = press("2");
    expect(model.sent).toEqual([{ type: "label", ids: [items[0].id], label: "dog", seq: 1 }]);
    expect(e.defaultPrevented).toBe(true);
  });

  it("a digit beyond the class count sends nothing", () => {
    const { model } = mount({ items: makeItems(3) });
    press("4");
    expect(model.sent).toEqual([]);
  });

  it("ArrowRight then 1 labels the second item; the cursor class moves", () => {
    const items = makeItems(3);
    const { model } = mount({ items });
    press("ArrowRight");
    expect(cells()[1].classList.contains("cursor")).toBe(true);
    expect(cells()[0].classList.contains("cursor")).toBe(false);
    press("1");
    expect(model.sent).toEqual([{ type: "label", ids: [items[1].id], label: "cat", seq: 1 }]);
  });

  it("after a decision the cursor moves on to the next item; sequence numbers increase", () => {
    const items = makeItems(3);
    const { model } = mount({ items });
    press("1");
    press("2");
    press("3");
    press("1");   // clamped at the last item
    expect(model.sent.map((m) => [m.ids[0], m.label, m.seq])).toEqual([
      [items[0].id, "cat", 1], [items[1].id, "dog", 2], [items[2].id, "bird", 3], [items[2].id, "cat", 4],
    ]);
  });

  it("when decided items drop out of the list, they leave at once and the cursor stays put on the next one", () => {
    const items = makeItems(3);
    const { model } = mount({ items, drops_decided: true });
    press("1");
    expect(cells().map((c) => Number(c.dataset.id))).toEqual([items[1].id, items[2].id]);
    press("2");
    expect(model.sent.map((m) => m.ids)).toEqual([[items[0].id], [items[1].id]]);
    model.change("items", [items[2]]);                 // Python's page replaces the optimistic one
    expect(cells().map((c) => Number(c.dataset.id))).toEqual([items[2].id]);
  });

  it("a label shows on the cell before Python answers", () => {
    const items = makeItems(2);
    mount({ items });
    press("2");
    expect(cells()[0].textContent).toContain("dog");
  });

  it("shift-click range then 3 sends every selected id in order", () => {
    const items = makeItems(5);
    const { model } = mount({ items });
    click(cells()[3]);
    click(cells()[1], { shiftKey: true });
    expect(cells().map((c) => c.classList.contains("selected"))).toEqual([false, true, true, true, false]);
    expect(document.activeElement).toBe(root);
    press("3");
    expect(model.sent).toEqual([{ type: "label", ids: [items[1].id, items[2].id, items[3].id], label: "bird", seq: 1 }]);
  });

  it("ctrl-click toggles items into the selection", () => {
    const items = makeItems(5);
    const { model } = mount({ items });
    click(cells()[4], { ctrlKey: true });
    click(cells()[0], { metaKey: true });
    press("Enter");
    expect(model.sent).toEqual([{ type: "accept", ids: [items[0].id, items[4].id], seq: 1 }]);
  });

  it("space toggles the cursor item, Escape clears the selection", () => {
    const items = makeItems(4);
    const { model } = mount({ items });
    press(" ");
    press("ArrowRight");
    press("ArrowRight");
    press(" ");
    expect(cells().map((c) => c.classList.contains("selected"))).toEqual([true, false, true, false]);
    press("x");
    expect(model.sent).toEqual([{ type: "unusable", ids: [items[0].id, items[2].id], seq: 1 }]);
    press(" ");
    press("Escape");
    expect(cells().some((c) => c.classList.contains("selected"))).toBe(false);
    press("Delete");
    expect(model.sent[1]).toEqual({ type: "remove", ids: [items[2].id], seq: 2 });
  });

  it("Backspace sends undo, Ctrl+Z too", () => {
    const { model } = mount({ items: makeItems(2) });
    press("Backspace");
    press("z", { ctrlKey: true });
    expect(model.sent).toEqual([{ type: "undo", seq: 1 }, { type: "undo", seq: 2 }]);
  });

  it("Enter sends accept, x sends unusable, k sends keep, Delete sends remove", () => {
    const items = makeItems(4);
    const { model } = mount({ items });
    press("Enter");
    press("x");
    press("k");
    press("Delete");
    expect(model.sent).toEqual([
      { type: "accept", ids: [items[0].id], seq: 1 },
      { type: "unusable", ids: [items[1].id], seq: 2 },
      { type: "keep", ids: [items[2].id], seq: 3 },
      { type: "remove", ids: [items[3].id], seq: 4 },
    ]);
  });

  it("n / PageDown / p / PageUp ask for another page", () => {
    const { model } = mount({ items: makeItems(2), page: 3, n_total: 500 });
    press("n");
    press("PageDown");
    press("p");
    press("PageUp");
    expect(model.sent).toEqual([
      { type: "page", page: 4, seq: 1 }, { type: "page", page: 4, seq: 2 },
      { type: "page", page: 2, seq: 3 }, { type: "page", page: 2, seq: 4 },
    ]);
  });

  it("an empty page sends no decision", () => {
    const { model } = mount({ items: [] });
    press("1");
    press("Enter");
    press("x");
    expect(model.sent).toEqual([]);
    expect(cells()).toHaveLength(0);
  });

  it("the parent never sees handled or unhandled keys, but Tab propagates", () => {
    mount({ items: makeItems(3) });
    const keys = [["2"], ["ArrowRight"], ["ArrowLeft", { shiftKey: true }], ["Enter"], ["Backspace"], ["x"],
      ["Delete"], ["k"], [" "], ["Escape"], ["n"], ["z", { ctrlKey: true }], ["m"], ["a"], ["1", { ctrlKey: true }],
      ["1", { altKey: true }], ["9"]];
    for (const [k, mods] of keys) press(k, mods);
    expect(parentKeys).toEqual([]);
    const m = press("m");
    expect(m.defaultPrevented).toBe(false);   // unhandled: swallowed, but the browser default is left alone
    expect(parentKeys).toEqual([]);
    const tab = press("Tab");
    expect(parentKeys).toEqual(["Tab"]);
    expect(tab.defaultPrevented).toBe(false);
  });

  it("keys typed in the new-class input stay in the input; Enter adds the class", () => {
    const { model } = mount({ items: makeItems(2) });
    const input = root.querySelector("input");
    input.focus();
    input.value = "  fish ";
    press("1", {}, input);
    press("x", {}, input);
    expect(model.sent).toEqual([]);
    expect(parentKeys).toEqual([]);
    press("Enter", {}, input);
    expect(model.sent).toEqual([{ type: "add_class", name: "fish", seq: 1 }]);
    expect(input.value).toBe("");
    expect(document.activeElement).toBe(root);
  });

  it("clicking a class chip labels the cursor item", () => {
    const items = makeItems(2);
    const { model } = mount({ items });
    click(root.querySelectorAll(".nbml-class")[2]);
    expect(model.sent).toEqual([{ type: "label", ids: [items[0].id], label: "bird", seq: 1 }]);
  });

  it("a done message with an error shows it in the bar and records a timing", () => {
    const { model } = mount({ items: makeItems(2) });
    const before = (window.nbmlTimings || []).length;
    press("2");
    const seq = model.sent[0].seq;
    model.emit("msg:custom", { type: "done", seq, error: "boom" });
    const error = root.querySelector(".nbml-error");
    expect(error).not.toBeNull();
    expect(error.textContent).toBe("boom");
    expect(window.nbmlTimings).toHaveLength(before + 1);
    expect(typeof window.nbmlTimings[before]).toBe("number");
    expect(window.nbmlTimings[before]).toBeGreaterThanOrEqual(0);
    // a second done for the same seq records nothing more; a message replaces the error
    model.emit("msg:custom", { type: "done", seq, message: "undid label" });
    expect(window.nbmlTimings).toHaveLength(before + 1);
    expect(root.querySelector(".nbml-error")).toBeNull();
    expect(root.querySelector(".nbml-bar").textContent).toContain("undid label");
  });

  it("the silent done that answers a thumbnail request leaves the message; the next action's done clears it", () => {
    const { model } = mount({ items: makeItems(2) });
    model.emit("msg:custom", { type: "done", seq: null, message: "5 items selected on the map" });
    model.emit("msg:custom", { type: "done", seq: null });            // Python's reply to {type: "thumbs"}
    expect(root.querySelector(".nbml-bar").textContent).toContain("5 items selected on the map");
    press("1");
    model.emit("msg:custom", { type: "done", seq: model.sent[0].seq });
    expect(root.querySelector(".nbml-bar").textContent).not.toContain("selected on the map");
  });

  it("other custom messages are ignored", () => {
    const { model } = mount({ items: makeItems(2) });
    const before = (window.nbmlTimings || []).length;
    press("1");
    model.emit("msg:custom", { type: "rows", seq: 1, error: "nope" });
    expect(root.querySelector(".nbml-error")).toBeNull();
    expect(window.nbmlTimings).toHaveLength(before);
  });

  it("change:items re-renders with the new items and clamps the cursor", () => {
    const first = makeItems(4);
    const { model } = mount({ items: first });
    press("ArrowRight");
    press("ArrowRight");
    press("ArrowRight");
    const second = makeItems(2, { label: "dog" });
    model.change("items", second);
    expect(cells().map((c) => c.dataset.id)).toEqual(second.map((i) => String(i.id)));
    expect(cells()[1].classList.contains("cursor")).toBe(true);
    expect(cells()[0].querySelector(".nbml-label").textContent).toBe("dog");
    press("1");
    expect(model.sent.at(-1)).toEqual({ type: "label", ids: [second[1].id], label: "cat", seq: 1 });
  });

  it("change:classes re-renders the chips and the keys follow the new classes", () => {
    const items = makeItems(2);
    const { model } = mount({ items });
    press("4");
    expect(model.sent).toEqual([]);
    model.change("classes", ["cat", "dog", "bird", "fish"]);
    expect(root.querySelectorAll(".nbml-class")).toHaveLength(4);
    press("4");
    expect(model.sent).toEqual([{ type: "label", ids: [items[0].id], label: "fish", seq: 1 }]);
  });

  it("escapes HTML in labels, suggestions and class names", () => {
    const items = makeItems(1, { label: "<script>alert(1)</script>", suggestion: "<b>x</b>", confidence: 0.5 });
    mount({ items, classes: ["<img src=x onerror=1>"] });
    const caps = [...cells()[0].querySelectorAll(".nbml-cap")];
    expect(caps[0].innerHTML).toContain("&lt;script&gt;alert(1)&lt;/script&gt;");
    expect(cells()[0].querySelector("script")).toBeNull();
    expect(caps[1].innerHTML).toContain("model: &lt;b&gt;x&lt;/b&gt; 50%");
    expect(caps[1].querySelector("b")).toBeNull();
    const chip = root.querySelector(".nbml-class");
    expect(chip.querySelector("img")).toBeNull();
    expect(chip.textContent).toContain("<img src=x onerror=1>");
  });

  it("shows a decision badge and a status class", () => {
    mount({ items: makeItems(1, { decision: "kept", status: "unusable" }) });
    expect(cells()[0].classList.contains("unusable")).toBe(true);
    expect(cells()[0].querySelector(".nbml-decision").textContent).toBe("kept");
  });
});

describe("escapeHtml and defaultCaption", () => {
  it("escapes the five HTML-special characters", () => {
    expect(escapeHtml(`<a href="x" title='y'>&</a>`)).toBe("&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;");
    expect(escapeHtml(42)).toBe("42");
  });

  it("defaultCaption shows 'unlabelled' and the suggestion only when there is one", () => {
    expect(defaultCaption({ label: null })).toEqual(['<span class="nbml-label">unlabelled</span>']);
    expect(defaultCaption({ label: "cat", suggestion: "dog", confidence: 0.876 })).toEqual([
      '<span class="nbml-label">cat</span>', '<span class="nbml-muted">model: dog 88%</span>',
    ]);
    expect(defaultCaption({ label: "cat", suggestion: "dog", confidence: null })[1]).toBe('<span class="nbml-muted">model: dog </span>');
  });

  it("defaultCaption adds the review filter's note (who said what), escaped", () => {
    expect(defaultCaption({ label: "cat", note: "alice: cat, bob: <dog>" })).toEqual([
      '<span class="nbml-label">cat</span>', '<span class="nbml-muted">alice: cat, bob: &lt;dog&gt;</span>',
    ]);
  });
});

// Regressions: bugs these tests found in mountGrid, fixed since.
describe("cursor and selection after decisions", () => {
  it("after a decision the highlight moves on with the cursor, before Python re-renders", () => {
    const items = makeItems(3);
    const { model } = mount({ items });
    press("1");
    expect(model.sent[0].ids).toEqual([items[0].id]);
    // the next key acts on item 1, so item 1 should be highlighted; act() never calls render()
    expect(cells()[1].classList.contains("cursor")).toBe(true);
  });

  it("after a failed decision (done with error, no new items) the highlight is the item the keys target", () => {
    const items = makeItems(3);
    const { model } = mount({ items });
    press("Enter");   // e.g. accept without a model: Python answers with an error and sends no new page
    model.emit("msg:custom", { type: "done", seq: 1, error: "no model suggestion to accept" });
    const highlighted = cells().findIndex((c) => c.classList.contains("cursor"));
    press("1");
    expect(model.sent[1].ids).toEqual([items[highlighted].id]);
  });

  it("shift+arrow selects the cell it started from and the one it moved to", () => {
    const items = makeItems(3);
    const { model } = mount({ items });
    press("ArrowRight", { shiftKey: true });
    press("1");
    expect(model.sent[0].ids).toEqual([items[0].id, items[1].id]);
  });
});

describe("ids selected outside the grid (the explore map)", () => {
  it("a class key labels every chosen id, on this page or not, and then the choice is spent", () => {
    const items = makeItems(4);
    const { model, api } = mount({ items, n_total: 6, page_size: 4 });
    const offPage = nextId + 100;
    api.selectIds([items[1].id, items[3].id, offPage]);
    expect(cells().map((c) => c.classList.contains("selected"))).toEqual([false, true, false, true]);
    press("2");
    expect(model.sent).toEqual([{ type: "label", ids: [items[1].id, items[3].id, offPage], label: "dog", seq: 1 }]);
    expect(cells().map((c) => c.querySelector(".nbml-label").textContent)).toEqual(["unlabelled", "dog", "unlabelled", "dog"]);
    expect(cells()[0].classList.contains("cursor")).toBe(true);         // a bulk decision does not move the cursor
    press("1");
    expect(model.sent[1]).toEqual({ type: "label", ids: [items[0].id], label: "cat", seq: 2 });
  });

  it("the grid's own selection replaces them: a click, an arrow or Escape", () => {
    const items = makeItems(3);
    const { model, api } = mount({ items });
    api.selectIds([items[0].id, items[2].id]);
    click(cells()[1]);
    press("1");
    expect(model.sent[0].ids).toEqual([items[1].id]);
    api.selectIds([items[0].id, items[2].id]);
    press("Escape");
    press("1");
    expect(model.sent[1].ids).toEqual([items[2].id]);                  // the cursor item, moved on after the click's label
    api.selectIds([items[0].id, items[2].id]);
    api.selectIds([]);
    expect(cells().some((c) => c.classList.contains("selected"))).toBe(false);
  });
});

describe("class keys on the chips", () => {
  const digits = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

  it("with classes 0-9 each chip shows its own digit, and pressing 3 labels 3, 9 labels 9", () => {
    const items = makeItems(3);
    const { model } = mount({ items, classes: digits, counts: { 3: 4 } });
    const chips = [...root.querySelectorAll(".nbml-class")];
    expect(chips.map((c) => c.querySelector("b").textContent)).toEqual(digits);
    expect(chips[3].textContent).toBe("3 4");
    press("3");
    press("9");
    expect(model.sent.map((m) => m.label)).toEqual(["3", "9"]);
  });

  it("the help line shows the keys actions keep when classes take their letters", () => {
    const model = fakeModel({ items: makeItems(1), classes: ["k", "x"] });
    mountGrid(model, root, { help: (key) => `${key("label")} · ${key("unusable")} unusable · ${key("keep")} keep` });
    expect(root.querySelector(".nbml-help").textContent)
      .toBe("the key on each chip: label · Shift+Delete unusable · Shift+Enter keep");
    model.change("classes", ["cat", "dog"]);
    expect(root.querySelector(".nbml-help").textContent).toBe("1-2 label · X unusable · K keep");
  });

  it("past nine classes, typing a name's first letters and Enter labels it; the chips show the match", () => {
    const classes = ["ant", "bee", "cat", "cow", "dog", "eel", "emu", "fox", "gnu", "hen", "yak"];
    const items = makeItems(2);
    const { model } = mount({ items, classes });
    expect(root.querySelectorAll(".nbml-class b")).toHaveLength(9);
    press("y");
    expect(root.querySelector(".nbml-typing").textContent).toContain("Enter labels yak");
    expect(root.querySelectorAll(".nbml-class.nbml-dim")).toHaveLength(10);
    press("Enter");
    expect(model.sent).toEqual([{ type: "label", ids: [items[0].id], label: "yak", seq: 1 }]);
    expect(root.querySelector(".nbml-typing").textContent).toBe("");
    press("c"); press("o"); press("Escape");
    expect(root.querySelectorAll(".nbml-class.nbml-dim")).toHaveLength(0);
    press("Enter");
    expect(model.sent.at(-1).type).toBe("accept");                    // Escape gave the type-ahead up
  });
});

describe("thumbnails whatever happens to requests and replies", () => {
  const pictures = () => cells().map((c) => (c.querySelector("img") ? c.querySelector("img").getAttribute("src") : "wait"));

  it("a card waits with a placeholder, then gets an <img> that has its source from the start", () => {
    const items = makeItems(2);
    const { model } = mount({ items, manual: true });
    expect(pictures()).toEqual(["wait", "wait"]);
    expect(root.querySelectorAll(".nbml-cell .nbml-thumb")).toHaveLength(2);
    const born = [];
    new MutationObserver((records) => records.forEach((r) => r.addedNodes.forEach((n) => born.push(n.getAttribute("src")))))
      .observe(root.querySelector(".nbml-grid"), { childList: true, subtree: true });
    model.emit("msg:custom", { type: "thumbs", keys: model.thumbRequests[0], missing: [] }, [thumb(), thumb()]);
    return Promise.resolve().then(() => {
      expect(pictures().every((src) => src.startsWith("blob:"))).toBe(true);
      expect(born.length).toBe(2);
      expect(born.every((src) => src && src.startsWith("blob:"))).toBe(true);
      expect(root.querySelectorAll(".nbml-thumb")).toHaveLength(0);
    });
  });

  it("an answer for a page that has since changed is kept: going back shows the pictures without asking", () => {
    const first = makeItems(2), second = makeItems(2);
    const { model } = mount({ items: first, manual: true });
    model.change("items", second);                                   // the page changed before the answer
    expect(model.thumbRequests).toHaveLength(2);
    model.emit("msg:custom", { type: "thumbs", keys: model.thumbRequests[0], missing: [] }, [thumb(), thumb()]);
    model.change("items", first);
    expect(pictures().every((src) => src.startsWith("blob:"))).toBe(true);
    expect(model.thumbRequests).toHaveLength(2);
  });

  it("keys a request did not bring (missing, no bytes, or no reply) are asked again with the next page", () => {
    const items = makeItems(4);
    const { model } = mount({ items, manual: true });
    const [a, b, c, d] = model.thumbRequests[0];
    model.emit("msg:custom", { type: "thumbs", keys: [a, c], missing: [b] }, [thumb()]);   // c came without bytes
    model.emit("msg:custom", { type: "done", seq: null, request: 1 });      // d's reply never came
    expect(pictures()).toEqual([expect.stringMatching(/^blob:/), "wait", "wait", "wait"]);
    press("ArrowRight");                                              // a re-render asks for nothing more
    expect(model.thumbRequests).toHaveLength(1);
    model.change("items", items.map((i) => ({ ...i })));              // the page is sent again
    expect(model.thumbRequests[1]).toEqual([b, c, d]);
  });

  it("a request's done does not touch the message line", () => {
    const { model } = mount({ items: makeItems(1), manual: true });
    model.emit("msg:custom", { type: "done", seq: null, message: "5 items selected on the map" });
    model.emit("msg:custom", { type: "done", seq: null, request: 1 });
    expect(root.textContent).toContain("5 items selected on the map");
  });
});

describe("thumbnails by key", () => {
  it("asks only for keys it has not seen: a re-render or a key press asks for nothing", () => {
    const items = makeItems(3);
    const { model } = mount({ items });
    expect(model.thumbRequests).toHaveLength(1);
    press("1");
    model.change("items", items.map((i) => ({ ...i, label: "cat" })));   // the page comes back, same pictures
    expect(model.thumbRequests).toHaveLength(1);
    const fresh = makeItems(1);
    model.change("items", [...items, ...fresh]);
    expect(model.thumbRequests[1]).toEqual([fresh[0].thumb]);
    expect(cells()[3].querySelector("img").getAttribute("src")).toMatch(/^blob:/);
  });
});
