import { describe, it, expect } from "vitest";
import { actionForKey, moveCursor, clickSelection, classKeys, classForKey, matchClass, actionKey, labelHelp } from "../src/lib/keys.js";

const key = (k, mods = {}) => ({ key: k, ctrlKey: false, metaKey: false, altKey: false, shiftKey: false, ...mods });
const names = (n) => Array.from({ length: n }, (_, i) => `class ${i}`);   // not single characters: numbered keys

describe("actionForKey", () => {
  it("maps digits 1-9 to label indices 0-8 when there are enough classes", () => {
    for (let d = 1; d <= 9; d++) {
      expect(actionForKey(key(String(d)), names(9))).toEqual({ type: "label", index: d - 1 });
    }
  });

  it("gives null for a digit beyond the class count", () => {
    expect(actionForKey(key("3"), names(3))).toEqual({ type: "label", index: 2 });
    expect(actionForKey(key("4"), names(3))).toBeNull();
    expect(actionForKey(key("9"), names(2))).toBeNull();
    expect(actionForKey(key("1"), names(0))).toBeNull();
  });

  it("gives null for 0 and multi-digit keys", () => {
    expect(actionForKey(key("0"), names(9))).toBeNull();
    expect(actionForKey(key("10"), names(20))).toBeNull();
  });

  it("maps arrows to moves, extending only with shift", () => {
    expect(actionForKey(key("ArrowLeft"), names(3))).toEqual({ type: "move", dx: -1, dy: 0, extend: false });
    expect(actionForKey(key("ArrowRight"), names(3))).toEqual({ type: "move", dx: 1, dy: 0, extend: false });
    expect(actionForKey(key("ArrowUp"), names(3))).toEqual({ type: "move", dx: 0, dy: -1, extend: false });
    expect(actionForKey(key("ArrowDown"), names(3))).toEqual({ type: "move", dx: 0, dy: 1, extend: false });
    expect(actionForKey(key("ArrowLeft", { shiftKey: true }), names(3))).toEqual({ type: "move", dx: -1, dy: 0, extend: true });
    expect(actionForKey(key("ArrowRight", { shiftKey: true }), names(3))).toEqual({ type: "move", dx: 1, dy: 0, extend: true });
    expect(actionForKey(key("ArrowUp", { shiftKey: true }), names(3))).toEqual({ type: "move", dx: 0, dy: -1, extend: true });
    expect(actionForKey(key("ArrowDown", { shiftKey: true }), names(3))).toEqual({ type: "move", dx: 0, dy: 1, extend: true });
  });

  it("maps Enter to accept and Backspace to undo", () => {
    expect(actionForKey(key("Enter"), names(3))).toEqual({ type: "accept" });
    expect(actionForKey(key("Backspace"), names(3))).toEqual({ type: "undo" });
  });

  it("maps Ctrl+Z and Meta+Z (either case) to undo", () => {
    expect(actionForKey(key("z", { ctrlKey: true }), names(3))).toEqual({ type: "undo" });
    expect(actionForKey(key("z", { metaKey: true }), names(3))).toEqual({ type: "undo" });
    expect(actionForKey(key("Z", { ctrlKey: true }), names(3))).toEqual({ type: "undo" });
    expect(actionForKey(key("Z", { metaKey: true }), names(3))).toEqual({ type: "undo" });
  });

  it("gives null for a plain z", () => {
    expect(actionForKey(key("z"), names(3))).toBeNull();
  });

  it("maps x/X to unusable, Delete to remove, k/K to keep", () => {
    expect(actionForKey(key("x"), names(3))).toEqual({ type: "unusable" });
    expect(actionForKey(key("X"), names(3))).toEqual({ type: "unusable" });
    expect(actionForKey(key("Delete"), names(3))).toEqual({ type: "remove" });
    expect(actionForKey(key("k"), names(3))).toEqual({ type: "keep" });
    expect(actionForKey(key("K"), names(3))).toEqual({ type: "keep" });
  });

  it("maps space to toggle and Escape to clear", () => {
    expect(actionForKey(key(" "), names(3))).toEqual({ type: "toggle" });
    expect(actionForKey(key("Escape"), names(3))).toEqual({ type: "clear" });
  });

  it("maps PageDown/n to the next page and PageUp/p to the previous one", () => {
    expect(actionForKey(key("PageDown"), names(3))).toEqual({ type: "page", delta: 1 });
    expect(actionForKey(key("n"), names(3))).toEqual({ type: "page", delta: 1 });
    expect(actionForKey(key("PageUp"), names(3))).toEqual({ type: "page", delta: -1 });
    expect(actionForKey(key("p"), names(3))).toEqual({ type: "page", delta: -1 });
  });

  it("gives null for unbound keys", () => {
    for (const k of ["m", "a", "b", "Tab", "Shift", "Home", "F1", "?"]) {
      expect(actionForKey(key(k), names(9)), k).toBeNull();
    }
  });

  it("gives null for modified keys other than undo (Ctrl/Meta/Alt + digit or letter)", () => {
    expect(actionForKey(key("1", { ctrlKey: true }), names(9))).toBeNull();
    expect(actionForKey(key("1", { metaKey: true }), names(9))).toBeNull();
    expect(actionForKey(key("1", { altKey: true }), names(9))).toBeNull();
    expect(actionForKey(key("x", { ctrlKey: true }), names(9))).toBeNull();
    expect(actionForKey(key("Enter", { altKey: true }), names(9))).toBeNull();
    expect(actionForKey(key("ArrowRight", { ctrlKey: true }), names(9))).toBeNull();
    // Alt+Z is not undo
    expect(actionForKey(key("z", { altKey: true }), names(9))).toBeNull();
  });
});

const digits = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
const animals = ["cat", "cow", "dog", "duck", "eel", "emu", "fox", "gnu", "hen", "kiwi", "yak", "x-ray fish"];

describe("classKeys", () => {
  it("uses the names themselves when every class is one typeable character", () => {
    expect(classKeys(digits)).toEqual({ keys: digits, typeahead: false });
    expect(classKeys(["a", "B", "?", "é"])).toEqual({ keys: ["a", "B", "?", "é"], typeahead: false });
  });

  it("numbers the first nine classes otherwise, with a type-ahead past nine", () => {
    expect(classKeys(["cat", "dog"])).toEqual({ keys: ["1", "2"], typeahead: false });
    expect(classKeys([...animals, "fish"]).keys).toEqual(["1", "2", "3", "4", "5", "6", "7", "8", "9", null, null, null, null]);
    expect(classKeys(animals).typeahead).toBe(true);
    expect(classKeys(["a", " "]).keys).toEqual(["1", "2"]);     // a space cannot be a key: it toggles
    expect(classKeys(["a", "\u0007"]).keys).toEqual(["1", "2"]);
    expect(classKeys([])).toEqual({ keys: [], typeahead: false });
  });

  it("finds a class by key, ignoring case unless two classes differ only by case", () => {
    expect(classForKey(["A", "B"], "a")).toBe(0);
    expect(classForKey(["a", "A"], "A")).toBe(1);
    expect(classForKey(["a", "A"], "a")).toBe(0);
    expect(classForKey(["b", "B"], "c")).toBe(-1);
    expect(classForKey(["1", "2"], "Enter")).toBe(-1);
  });

  it("type-ahead picks the exact name first, then the first name starting with the text", () => {
    expect(matchClass(animals, "d")).toBe(2);
    expect(matchClass(animals, "du")).toBe(3);
    expect(matchClass(["cat", "catfish"], "CAT")).toBe(0);
    expect(matchClass(["catfish", "cat"], "cat")).toBe(1);
    expect(matchClass(animals, "zebra")).toBe(-1);
    expect(matchClass(animals, "")).toBe(-1);
  });
});

describe("actionForKey with class names as keys", () => {
  it("on digits 0-9 each digit labels the class of that name", () => {
    for (const d of digits) expect(actionForKey(key(d), digits)).toEqual({ type: "label", index: Number(d) });
  });

  it("a letter class takes its letter from the action; the action keeps another key", () => {
    const letters = ["k", "n", "p", "x", "y"];
    expect(actionForKey(key("x"), letters)).toEqual({ type: "label", index: 3 });
    expect(actionForKey(key("K"), letters)).toEqual({ type: "label", index: 0 });
    expect(actionForKey(key("Delete", { shiftKey: true }), letters)).toEqual({ type: "unusable" });
    expect(actionForKey(key("Enter", { shiftKey: true }), letters)).toEqual({ type: "keep" });
    expect(actionForKey(key("PageDown"), letters)).toEqual({ type: "page", delta: 1 });
    expect(actionForKey(key("Delete"), letters)).toEqual({ type: "remove" });
    expect(actionForKey(key("z"), letters)).toBeNull();
    expect(actionForKey(key("x"), ["a", "b"])).toEqual({ type: "unusable" });   // free letters still act
  });

  it("the help shows the key each action has with these classes", () => {
    expect(actionKey("unusable", ["a", "b"])).toBe("X");
    expect(actionKey("unusable", ["x", "y"])).toBe("Shift+Delete");
    expect(actionKey("keep", ["K", "L"])).toBe("Shift+Enter");
    expect(actionKey("next", ["cat", "dog"])).toBe("N");
    expect(actionKey("previous", animals)).toBe("PageUp");        // the type-ahead takes every letter
    expect(labelHelp(digits)).toBe("the key on each chip: label");
    expect(labelHelp(["cat", "dog"], "relabel")).toBe("1-2 relabel");
    expect(labelHelp(animals)).toContain("type a class's first letters + Enter");
  });
});

describe("actionForKey type-ahead (more than nine classes, not single characters)", () => {
  it("1-9 still label the first nine; any other typeable key starts typing", () => {
    expect(actionForKey(key("9"), animals)).toEqual({ type: "label", index: 8 });
    expect(actionForKey(key("k"), animals)).toEqual({ type: "type", text: "k" });
    expect(actionForKey(key("x"), animals)).toEqual({ type: "type", text: "x" });
    expect(actionForKey(key("0"), animals)).toEqual({ type: "type", text: "0" });
    expect(actionForKey(key(" "), animals)).toEqual({ type: "toggle" });
  });

  it("when a name starts with a digit, digits type (no one-key shortcuts) and the chips say so", () => {
    const numeric = [...digits, "10", "11"];
    expect(classKeys(numeric).keys.every((k) => k === null)).toBe(true);
    expect(actionForKey(key("1"), numeric)).toEqual({ type: "type", text: "1" });
    expect(labelHelp(numeric)).toBe("type a class's first letters + Enter: label");
  });

  it("while typing, every printable key extends the text; Backspace and Escape edit it", () => {
    expect(actionForKey(key("i"), animals, "k")).toEqual({ type: "type", text: "ki" });
    expect(actionForKey(key("3"), animals, "k")).toEqual({ type: "type", text: "k3" });
    expect(actionForKey(key(" "), animals, "x-ray")).toEqual({ type: "type", text: "x-ray " });
    expect(actionForKey(key("Backspace"), animals, "ki")).toEqual({ type: "type", text: "k" });
    expect(actionForKey(key("Escape"), animals, "ki")).toEqual({ type: "type", text: "" });
    expect(actionForKey(key("ArrowRight"), animals, "ki")).toEqual({ type: "move", dx: 1, dy: 0, extend: false });
  });

  it("Enter labels the matching class, so every class is reachable; no match keeps the text", () => {
    const numeric = [...digits, "10", "11", "2nd"];
    for (const classes of [animals, numeric]) {
      classes.forEach((name, index) => {
        let typed = "";
        for (const ch of name) typed = actionForKey(key(ch), classes, typed).text;
        expect(actionForKey(key("Enter"), classes, typed), name).toEqual({ type: "label", index });
      });
    }
    expect(actionForKey(key("Enter"), animals, "ya")).toEqual({ type: "label", index: 10 });
    expect(actionForKey(key("Enter"), animals, "zz")).toEqual({ type: "type", text: "zz" });
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
