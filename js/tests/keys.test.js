import { describe, it, expect } from "vitest";
import { actionForKey, moveCursor, clickSelection } from "../src/lib/keys.js";

const key = (k, mods = {}) => ({ key: k, ctrlKey: false, metaKey: false, altKey: false, shiftKey: false, ...mods });

describe("actionForKey", () => {
  it("maps digits 1-9 to label indices 0-8 when there are enough classes", () => {
    for (let d = 1; d <= 9; d++) {
      expect(actionForKey(key(String(d)), 9)).toEqual({ type: "label", index: d - 1 });
    }
  });

  it("gives null for a digit beyond the class count", () => {
    expect(actionForKey(key("3"), 3)).toEqual({ type: "label", index: 2 });
    expect(actionForKey(key("4"), 3)).toBeNull();
    expect(actionForKey(key("9"), 2)).toBeNull();
    expect(actionForKey(key("1"), 0)).toBeNull();
  });

  it("gives null for 0 and multi-digit keys", () => {
    expect(actionForKey(key("0"), 9)).toBeNull();
    expect(actionForKey(key("10"), 20)).toBeNull();
  });

  it("maps arrows to moves, extending only with shift", () => {
    expect(actionForKey(key("ArrowLeft"), 3)).toEqual({ type: "move", dx: -1, dy: 0, extend: false });
    expect(actionForKey(key("ArrowRight"), 3)).toEqual({ type: "move", dx: 1, dy: 0, extend: false });
    expect(actionForKey(key("ArrowUp"), 3)).toEqual({ type: "move", dx: 0, dy: -1, extend: false });
    expect(actionForKey(key("ArrowDown"), 3)).toEqual({ type: "move", dx: 0, dy: 1, extend: false });
    expect(actionForKey(key("ArrowLeft", { shiftKey: true }), 3)).toEqual({ type: "move", dx: -1, dy: 0, extend: true });
    expect(actionForKey(key("ArrowRight", { shiftKey: true }), 3)).toEqual({ type: "move", dx: 1, dy: 0, extend: true });
    expect(actionForKey(key("ArrowUp", { shiftKey: true }), 3)).toEqual({ type: "move", dx: 0, dy: -1, extend: true });
    expect(actionForKey(key("ArrowDown", { shiftKey: true }), 3)).toEqual({ type: "move", dx: 0, dy: 1, extend: true });
  });

  it("maps Enter to accept and Backspace to undo", () => {
    expect(actionForKey(key("Enter"), 3)).toEqual({ type: "accept" });
    expect(actionForKey(key("Backspace"), 3)).toEqual({ type: "undo" });
  });

  it("maps Ctrl+Z and Meta+Z (either case) to undo", () => {
    expect(actionForKey(key("z", { ctrlKey: true }), 3)).toEqual({ type: "undo" });
    expect(actionForKey(key("z", { metaKey: true }), 3)).toEqual({ type: "undo" });
    expect(actionForKey(key("Z", { ctrlKey: true }), 3)).toEqual({ type: "undo" });
    expect(actionForKey(key("Z", { metaKey: true }), 3)).toEqual({ type: "undo" });
  });

  it("gives null for a plain z", () => {
    expect(actionForKey(key("z"), 3)).toBeNull();
  });

  it("maps x/X to unusable, Delete to remove, k/K to keep", () => {
    expect(actionForKey(key("x"), 3)).toEqual({ type: "unusable" });
    expect(actionForKey(key("X"), 3)).toEqual({ type: "unusable" });
    expect(actionForKey(key("Delete"), 3)).toEqual({ type: "remove" });
    expect(actionForKey(key("k"), 3)).toEqual({ type: "keep" });
    expect(actionForKey(key("K"), 3)).toEqual({ type: "keep" });
  });

  it("maps space to toggle and Escape to clear", () => {
    expect(actionForKey(key(" "), 3)).toEqual({ type: "toggle" });
    expect(actionForKey(key("Escape"), 3)).toEqual({ type: "clear" });
  });

  it("maps PageDown/n to the next page and PageUp/p to the previous one", () => {
    expect(actionForKey(key("PageDown"), 3)).toEqual({ type: "page", delta: 1 });
    expect(actionForKey(key("n"), 3)).toEqual({ type: "page", delta: 1 });
    expect(actionForKey(key("PageUp"), 3)).toEqual({ type: "page", delta: -1 });
    expect(actionForKey(key("p"), 3)).toEqual({ type: "page", delta: -1 });
  });

  it("gives null for unbound keys", () => {
    for (const k of ["m", "a", "b", "Tab", "Shift", "Home", "F1", "?"]) {
      expect(actionForKey(key(k), 9), k).toBeNull();
    }
  });

  it("gives null for modified keys other than undo (Ctrl/Meta/Alt + digit or letter)", () => {
    expect(actionForKey(key("1", { ctrlKey: true }), 9)).toBeNull();
    expect(actionForKey(key("1", { metaKey: true }), 9)).toBeNull();
    expect(actionForKey(key("1", { altKey: true }), 9)).toBeNull();
    expect(actionForKey(key("x", { ctrlKey: true }), 9)).toBeNull();
    expect(actionForKey(key("Enter", { altKey: true }), 9)).toBeNull();
    expect(actionForKey(key("ArrowRight", { ctrlKey: true }), 9)).toBeNull();
    // Alt+Z is not undo
    expect(actionForKey(key("z", { altKey: true }), 9)).toBeNull();
  });
});

describe("moveCursor", () => {
  it("moves within a single row", () => {
    expect(moveCursor(0, 1, 0, 1, 5)).toBe(1);
    expect(moveCursor(3, -1, 0, 1, 5)).toBe(2);
  });

  it("clamps at the start and the end", () => {
    expect(moveCursor(0, -1, 0, 1, 5)).toBe(0);
    expect(moveCursor(4, 1, 0, 1, 5)).toBe(4);
    expect(moveCursor(0, 0, -1, 4, 10)).toBe(0);
    expect(moveCursor(9, 0, 1, 4, 10)).toBe(9);
  });

  it("moves by whole rows with columns", () => {
    expect(moveCursor(1, 0, 1, 4, 12)).toBe(5);
    expect(moveCursor(9, 0, -1, 4, 12)).toBe(5);
    expect(moveCursor(3, 1, 0, 4, 12)).toBe(4);   // right at the end of a row wraps to the next row
  });

  it("clamps a vertical move that overshoots a partial last row or the first row", () => {
    expect(moveCursor(3, 0, 1, 4, 6)).toBe(5);    // 7 does not exist: last item
    expect(moveCursor(2, 0, -1, 4, 6)).toBe(0);   // -2: first item
  });

  it("returns 0 for an empty grid", () => {
    expect(moveCursor(0, 1, 0, 4, 0)).toBe(0);
    expect(moveCursor(5, 0, 1, 4, 0)).toBe(0);
    expect(moveCursor(0, -1, -1, 4, 0)).toBe(0);
  });
});

describe("clickSelection", () => {
  const sorted = (s) => [...s].sort((a, b) => a - b);

  it("plain click selects only the clicked index", () => {
    const out = clickSelection(new Set([1, 2, 3]), 1, 5);
    expect(sorted(out)).toEqual([5]);
  });

  it("toggle adds an unselected index and removes a selected one, without mutating the input", () => {
    const sel = new Set([1, 3]);
    expect(sorted(clickSelection(sel, null, 2, { toggle: true }))).toEqual([1, 2, 3]);
    expect(sorted(clickSelection(sel, null, 3, { toggle: true }))).toEqual([1]);
    expect(sorted(sel)).toEqual([1, 3]);
  });

  it("shift selects the range from the anchor, adding to the selection", () => {
    const sel = new Set([0]);
    const out = clickSelection(sel, 2, 5, { shift: true });
    expect(sorted(out)).toEqual([0, 2, 3, 4, 5]);
    expect(sorted(sel)).toEqual([0]);
  });

  it("shift selects a reversed range (index before the anchor)", () => {
    expect(sorted(clickSelection(new Set(), 6, 3, { shift: true }))).toEqual([3, 4, 5, 6]);
  });

  it("shift on the anchor itself selects just it", () => {
    expect(sorted(clickSelection(new Set(), 4, 4, { shift: true }))).toEqual([4]);
  });

  it("shift with an anchor of 0 still makes a range (0 is not 'no anchor')", () => {
    expect(sorted(clickSelection(new Set(), 0, 2, { shift: true }))).toEqual([0, 1, 2]);
  });

  it("shift with a null or undefined anchor falls back to a plain click", () => {
    expect(sorted(clickSelection(new Set([7]), null, 3, { shift: true }))).toEqual([3]);
    expect(sorted(clickSelection(new Set([7]), undefined, 3, { shift: true }))).toEqual([3]);
  });

  it("shift with a null anchor and toggle toggles", () => {
    expect(sorted(clickSelection(new Set([7]), null, 3, { shift: true, toggle: true }))).toEqual([3, 7]);
  });
});
