// @vitest-environment jsdom
import { describe, it, expect, beforeEach, afterEach, vi } from "vitest";
import { mountGrid } from "../src/lib/grid.js";
import { highlight, cardNote, readerHtml } from "../src/lib/text.js";
import { actionForKey } from "../src/lib/keys.js";

function textItems(n, extra = {}) {
  return Array.from({ length: n }, (_, i) => ({
    id: i + 1, label: null, status: "ok", split: null,
    text: { snippet: `text number ${i + 1} about <b>spam</b>`, chars: 30 + i, more: false, cut: false, max_tokens: 256 },
    ...extra,
  }));
}

function fakeModel(state) {
  const data = { classes: ["ham", "spam"], counts: { ham: 0, spam: 0 }, page: 0, page_size: 48, item_kind: "text",
    search: "", n_total: state.items.length, drops_decided: false, ...state };
  const callbacks = {};
  const sent = [];
  const model = {
    data, sent,
    get: (name) => data[name],
    set: (name, value) => { data[name] = value; },
    save_changes: vi.fn(),
    on: (event, cb) => { (callbacks[event] ||= []).push(cb); },
    send: (msg) => sent.push(msg),
    emit(event, ...args) { for (const cb of callbacks[event] || []) cb(...args); },
    change(name, value) { data[name] = value; this.emit(`change:${name}`); },
  };
  return model;
}

let root;
beforeEach(() => { root = document.createElement("div"); document.body.append(root); });
afterEach(() => root.remove());

function mount(state) {
  const model = fakeModel(state);
  const api = mountGrid(model, root, { help: () => "keys" });
  root.focus();
  return { model, api };
}

function press(key, mods = {}, target = document.activeElement) {
  const e = new KeyboardEvent("keydown", { key, bubbles: true, cancelable: true, ...mods });
  target.dispatchEvent(e);
  return e;
}

const cells = () => [...root.querySelectorAll(".nbml-cell")];
const reader = () => root.querySelector(".nbml-reader");

describe("highlight", () => {
  it("marks every match ignoring case and escapes the rest", () => {
    expect(highlight("Free <FREE> free", "free")).toBe("<mark>Free</mark> &lt;<mark>FREE</mark>&gt; <mark>free</mark>");
  });
  it("treats the query as plain text, not a pattern", () => {
    expect(highlight("a.b axb", "a.b")).toBe("<mark>a.b</mark> axb");
    expect(highlight("x (y)", "(")).toBe("x <mark>(</mark>y)");
  });
  it("without a query only escapes", () => {
    expect(highlight("<i>", "")).toBe("&lt;i&gt;");
  });
});

describe("text cards", () => {
  it("show the snippet as text (never as HTML), with no thumbnail asked for", () => {
    const { model } = mount({ items: textItems(3) });
    expect(cells()).toHaveLength(3);
    expect(root.querySelector(".nbml-grid").classList.contains("nbml-texts")).toBe(true);
    expect(cells()[0].querySelector(".nbml-text").textContent).toBe("text number 1 about <b>spam</b>");
    expect(cells()[0].querySelector("b")).toBeNull();
    expect(root.querySelector("img, .nbml-thumb")).toBeNull();
    expect(model.sent.filter((m) => m.type === "thumbs")).toEqual([]);
  });

  it("say how long the text is, link to the full text when there is more, and say when it was cut", () => {
    expect(cardNote({ chars: 1234, more: false, cut: false })).toBe("1,234 chars");
    const note = cardNote({ chars: 5000, more: true, cut: true, max_tokens: 256 });
    expect(note).toContain("full text");
    expect(note).toContain("cut");
    expect(note).toContain("first 256 tokens");
  });

  it("a table row's card says nothing of characters and opens all its columns", () => {
    expect(cardNote({ chars: 92, more: false, cut: false, noun: "row" })).toBe("");
    expect(cardNote({ chars: 900, more: true, cut: false, noun: "row" })).toContain("all columns");
  });

  it("a snippet that starts past the beginning shows an ellipsis", () => {
    const items = textItems(1);
    items[0].text = { ...items[0].text, start: 400, more: true };
    mount({ items });
    expect(cells()[0].querySelector(".nbml-text").textContent.startsWith("…text number 1")).toBe(true);
  });

  it("the class keys label texts like images", () => {
    const { model } = mount({ items: textItems(3) });
    press("2");
    expect(model.sent).toEqual([{ type: "label", ids: [1], label: "spam", seq: 1 }]);
  });
});

describe("the full text", () => {
  it("Space opens the reader on the cursor's item and asks Python for its text once; Space closes it", () => {
    const { model } = mount({ items: textItems(3) });
    expect(reader().hidden).toBe(true);
    press(" ");
    expect(reader().hidden).toBe(false);
    expect(model.sent).toEqual([{ type: "text", id: 1 }]);
    expect(reader().textContent).toContain("loading");
    model.emit("msg:custom", { type: "text", id: 1, read: "the whole <text> ", unread: "never read", chars: 27,
      shown_chars: 27, max_tokens: 256, cut: true });
    expect(reader().querySelector(".nbml-fulltext").textContent).toBe("the whole <text> never read");
    expect(reader().querySelector(".nbml-unread").textContent).toBe("never read");
    expect(reader().textContent).toContain("cut: the model reads only the first 256 tokens");
    press(" ");
    expect(reader().hidden).toBe(true);
    press(" ");
    expect(model.sent.filter((m) => m.type === "text")).toHaveLength(1);   // kept, not asked again
  });

  it("the reader follows the cursor: an arrow shows the next item's text", () => {
    const { model } = mount({ items: textItems(3) });
    press(" ");
    press("ArrowRight");
    expect(reader().dataset.id).toBe("2");
    expect(model.sent.map((m) => m.id)).toEqual([1, 2]);
  });

  it("clicking 'full text' on a card opens the reader on that item", () => {
    const items = textItems(3);
    items[2].text = { ...items[2].text, more: true };
    const { model } = mount({ items });
    root.querySelector(".nbml-more").dispatchEvent(new MouseEvent("click", { bubbles: true }));
    expect(reader().hidden).toBe(false);
    expect(reader().dataset.id).toBe("3");
    expect(model.sent).toEqual([{ type: "text", id: 3 }]);
    expect(cells()[2].classList.contains("cursor")).toBe(true);
  });

  it("Shift+Space still toggles the selection, for bulk labels", () => {
    const { model } = mount({ items: textItems(3) });
    press(" ", { shiftKey: true });
    press("ArrowRight");
    press(" ", { shiftKey: true });
    press("1");
    expect(model.sent).toEqual([{ type: "label", ids: [1, 2], label: "ham", seq: 1 }]);
  });

  it("Escape closes the reader", () => {
    mount({ items: textItems(2) });
    press(" ");
    press("Escape");
    expect(reader().hidden).toBe(true);
  });

  it("reader HTML escapes the text and highlights the search", () => {
    const html = readerHtml({ id: 4, label: "ham", text: { chars: 10 } },
      { read: "<x> Free", unread: "", chars: 8, shown_chars: 8, cut: false, max_tokens: 256 }, "free");
    expect(html).toContain("&lt;x&gt; <mark>Free</mark>");
    expect(html).not.toContain("cut:");
  });
});

describe("search", () => {
  it("typing sends the query after a pause; Enter sends it at once and gives the keys back to the grid", () => {
    vi.useFakeTimers();
    try {
      const { model } = mount({ items: textItems(3) });
      const box = root.querySelector(".nbml-search");
      box.focus();
      box.value = "spam";
      box.dispatchEvent(new Event("input", { bubbles: true }));
      expect(model.sent).toEqual([]);
      vi.advanceTimersByTime(400);
      expect(model.sent).toEqual([{ type: "search", query: "spam", seq: 1 }]);
      model.change("search", "spam");
      box.value = "spa";
      press("Enter", {}, box);
      expect(model.sent.at(-1)).toEqual({ type: "search", query: "spa", seq: 2 });
      expect(document.activeElement).toBe(root);
      press("2");                                          // keys label again
      expect(model.sent.at(-1).type).toBe("label");
    } finally {
      vi.useRealTimers();
    }
  });

  it("letters typed in the search box never reach the grid's keys", () => {
    const { model } = mount({ items: textItems(3) });
    const box = root.querySelector(".nbml-search");
    box.focus();
    press("1", {}, box);
    press("x", {}, box);
    expect(model.sent).toEqual([]);
  });

  it("matches are highlighted in the cards", () => {
    mount({ items: textItems(2), search: "SPAM" });
    expect(cells()[0].querySelector(".nbml-text mark").textContent).toBe("spam");
  });
});

describe("keys with text items", () => {
  it("Space opens with texts, toggles with images", () => {
    const space = { key: " ", shiftKey: false };
    expect(actionForKey(space, ["a", "b"], "", { texts: true })).toEqual({ type: "open" });
    expect(actionForKey(space, ["a", "b"])).toEqual({ type: "toggle" });
    expect(actionForKey({ ...space, shiftKey: true }, ["a", "b"], "", { texts: true })).toEqual({ type: "toggle" });
  });
});

describe("image grids are unchanged", () => {
  it("have no search box and no reader showing", () => {
    mount({ items: [{ id: 1, label: null, status: "ok", thumb: null }], item_kind: "image" });
    expect(root.querySelector(".nbml-search")).toBeNull();
    expect(reader().hidden).toBe(true);
  });
});
