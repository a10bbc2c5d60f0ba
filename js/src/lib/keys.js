// Keyboard handling shared by every grid widget. Keys reach the widget only while it has focus, and never the
// notebook: `data-lm-suppress-shortcuts` tells JupyterLab's command registry to ignore them, and
// stopPropagation keeps them from the notebook's own handlers (and from VS Code's and Colab's).

/**
 * Which key labels each class. Pure: unit-tested with vitest.
 *
 * - When every class name is a single character that can be typed (digits `0`..`9`, letters, `?`...), a class's key
 *   is its name, ignoring case unless two names differ only by case: `3` labels `3`, `a` labels `A`.
 * - Otherwise the first nine classes take `1`..`9` in order, and with more than nine classes a type-ahead reaches
 *   every class: type the first letters of its name (any typeable key that is not a class's key starts it), Enter
 *   labels the class whose name is what was typed, else the first one that starts with it; Backspace deletes a
 *   letter and Escape gives up. When such a name starts with a digit (`10`, `2nd`), digits type too and no class
 *   has a one-key shortcut: `3` would be ambiguous.
 *
 * The class always wins: a letter that is a class's key, or that starts the type-ahead, labels or types. Each
 * letter action also has a key no class can take, shown in the help line whenever its letter is taken:
 * Shift+Delete marks unusable (X), Shift+Enter keeps the label (K), PageDown/PageUp turn pages (N/P).
 *
 * Returns `{keys, typeahead}`: the key shown on each class's chip (null past the ninth in numbered mode) and
 * whether the type-ahead is on.
 */
export function classKeys(classes) {
  const named = classes.length > 0 && classes.every(isTypeable);
  if (named) return { keys: [...classes], typeahead: false };
  const typeahead = classes.length > 9;
  const numbered = !typeahead || !classes.some((c) => /^[1-9]/.test(c));   // else digits must type names
  return { keys: classes.map((_, i) => (numbered && i < 9 ? String(i + 1) : null)), typeahead };
}

/** One printable character, not a space: what a single key press gives as `event.key`. */
function isTypeable(s) {
  return typeof s === "string" && [...s].length === 1 && /^\S$/u.test(s) && !/\p{C}/u.test(s);
}

/** The index of the class whose key is `key`: exactly, else ignoring case when that picks one class; else -1. */
export function classForKey(keys, key) {
  const exact = keys.indexOf(key);
  if (exact >= 0 || !isTypeable(key)) return exact;
  const folded = keys.map((k, i) => (k !== null && k.toLowerCase() === key.toLowerCase() ? i : -1)).filter((i) => i >= 0);
  return folded.length === 1 ? folded[0] : -1;
}

/** The class the type-ahead text picks: the one named exactly so (ignoring case), else the first starting so; -1. */
export function matchClass(classes, typed) {
  const t = typed.toLowerCase();
  if (!t) return -1;
  const exact = classes.findIndex((c) => c.toLowerCase() === t);
  return exact >= 0 ? exact : classes.findIndex((c) => c.toLowerCase().startsWith(t));
}

// The letter actions and the key each keeps when a class takes its letter.
const LETTERS = { x: "unusable", k: "keep", n: "next", p: "previous" };
const FALLBACK = { unusable: "Shift+Delete", keep: "Shift+Enter", next: "PageDown", previous: "PageUp" };

/** The key to show for a letter action (`unusable`, `keep`, `next`, `previous`) with these classes. */
export function actionKey(name, classes) {
  const letter = Object.keys(LETTERS).find((l) => LETTERS[l] === name);
  return letterTaken(letter, classKeys(classes)) ? FALLBACK[name] : letter.toUpperCase();
}

/** How the class keys work with these classes, for the help line; `verb` is what they do (label, relabel). */
export function labelHelp(classes, verb = "label") {
  const { keys, typeahead } = classKeys(classes);
  if (!keys.length) return `add a class to ${verb}`;
  if (!typeahead) return keys[0] === classes[0] ? `the key on each chip: ${verb}` : `1-${keys.length} ${verb}`;
  const typing = `type a class's first letters + Enter: ${verb}`;
  return keys[0] === null ? typing : `1-9 ${verb} · ${typing}`;
}

function letterTaken(letter, { keys, typeahead }) {
  return typeahead || classForKey(keys, letter) >= 0;   // either case: classForKey ignores case when it can
}

/**
 * The grid action for a keyboard event, or null. `typed` is the type-ahead text so far; the actions
 * `{type: "type", text}` set it. Pure: unit-tested with vitest.
 */
export function actionForKey(e, classes, typed = "", { texts = false } = {}) {
  const mod = e.ctrlKey || e.metaKey;
  if (mod && (e.key === "z" || e.key === "Z")) return { type: "undo" };
  if (mod || e.altKey) return null;
  if (typed) {
    const typing = typeAhead(e, classes, typed);
    if (typing) return typing;
  }
  const { keys, typeahead } = classKeys(classes);
  const index = classForKey(keys, e.key);
  if (index >= 0) return { type: "label", index };
  if (typeahead && isTypeable(e.key)) return { type: "type", text: e.key };
  return namedKey(e, texts);
}

/** Keys while type-ahead text is being typed: printable keys extend it, Enter labels, Backspace and Escape edit. */
function typeAhead(e, classes, typed) {
  if (e.key === "Enter") {
    const index = matchClass(classes, typed);
    return index >= 0 ? { type: "label", index } : { type: "type", text: typed };
  }
  if (e.key === "Escape") return { type: "type", text: "" };
  if (e.key === "Backspace") return { type: "type", text: typed.slice(0, -1) };
  if (e.key.length === 1) return { type: "type", text: typed + e.key };
  return null;
}

/** Keys that name an action (a letter reaches here only when no class takes it). With text items Space opens the
 * full text and Shift+Space toggles the selection. */
function namedKey(e, texts = false) {
  switch (e.key) {
    case "ArrowLeft": return { type: "move", dx: -1, dy: 0, extend: e.shiftKey };
    case "ArrowRight": return { type: "move", dx: 1, dy: 0, extend: e.shiftKey };
    case "ArrowUp": return { type: "move", dx: 0, dy: -1, extend: e.shiftKey };
    case "ArrowDown": return { type: "move", dx: 0, dy: 1, extend: e.shiftKey };
    case "Enter": return { type: e.shiftKey ? "keep" : "accept" };
    case "Backspace": return { type: "undo" };
    case "x": case "X": return { type: "unusable" };
    case "Delete": return { type: e.shiftKey ? "unusable" : "remove" };
    case "k": case "K": return { type: "keep" };
    case " ": return texts && !e.shiftKey ? { type: "open" } : { type: "toggle" };
    case "Escape": return { type: "clear" };
    case "PageDown": case "n": case "N": return { type: "page", delta: 1 };
    case "PageUp": case "p": case "P": return { type: "page", delta: -1 };
    default: return null;
  }
}

/** Make `el` focusable and route its keys to `onAction`, swallowing every key while it has focus; `context()`
 * gives the current `{classes, typed, texts}`. */
export function captureKeys(el, context, onAction) {
  el.tabIndex = 0;
  el.setAttribute("data-lm-suppress-shortcuts", "true");
  el.addEventListener("keydown", (e) => {
    if (e.target instanceof HTMLInputElement || e.target instanceof HTMLSelectElement) {
      e.stopPropagation();   // typing a class name: the input gets the key, the notebook does not
      return;
    }
    if (e.key === "Tab") return;   // keep focus navigation working
    e.stopPropagation();
    const { classes, typed, texts } = context();
    const action = actionForKey(e, classes, typed, { texts });
    if (action) {
      e.preventDefault();
      onAction(action, e);
    }
  });
}

/** Cursor movement in a grid of `n` cells, `columns` wide. Pure. */
export function moveCursor(cursor, dx, dy, columns, n) {
  if (n === 0) return 0;
  const next = cursor + dx + dy * columns;
  return Math.max(0, Math.min(n - 1, next));
}

/** Selection after a click on `index`: plain click selects one, ctrl/meta toggles, shift selects a range. Pure. */
export function clickSelection(selection, anchor, index, { shift = false, toggle = false } = {}) {
  if (shift && anchor !== null && anchor !== undefined) {
    const [a, b] = anchor < index ? [anchor, index] : [index, anchor];
    const out = new Set(selection);
    for (let i = a; i <= b; i++) out.add(i);
    return out;
  }
  if (toggle) {
    const out = new Set(selection);
    out.has(index) ? out.delete(index) : out.add(index);
    return out;
  }
  return new Set([index]);
}
