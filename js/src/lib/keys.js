// Keyboard handling shared by every grid widget. Keys reach the widget only while it has focus, and never the
// notebook: `data-lm-suppress-shortcuts` tells JupyterLab's command registry to ignore them, and
// stopPropagation keeps them from the notebook's own handlers (and from VS Code's and Colab's).

/** The grid action for a keyboard event, or null. Pure: unit-tested with vitest. */
export function actionForKey(e, nClasses) {
  const mod = e.ctrlKey || e.metaKey;
  if (mod && (e.key === "z" || e.key === "Z")) return { type: "undo" };
  if (mod || e.altKey) return null;
  if (/^[1-9]$/.test(e.key)) {
    const index = Number(e.key) - 1;
    return index < nClasses ? { type: "label", index } : null;
  }
  switch (e.key) {
    case "ArrowLeft": return { type: "move", dx: -1, dy: 0, extend: e.shiftKey };
    case "ArrowRight": return { type: "move", dx: 1, dy: 0, extend: e.shiftKey };
    case "ArrowUp": return { type: "move", dx: 0, dy: -1, extend: e.shiftKey };
    case "ArrowDown": return { type: "move", dx: 0, dy: 1, extend: e.shiftKey };
    case "Enter": return { type: "accept" };
    case "Backspace": return { type: "undo" };
    case "x": case "X": return { type: "unusable" };
    case "Delete": return { type: "remove" };
    case "k": case "K": return { type: "keep" };
    case " ": return { type: "toggle" };
    case "Escape": return { type: "clear" };
    case "PageDown": case "n": return { type: "page", delta: 1 };
    case "PageUp": case "p": return { type: "page", delta: -1 };
    default: return null;
  }
}

/** Make `el` focusable and route its keys to `onAction`, swallowing every key while it has focus. */
export function captureKeys(el, getClassCount, onAction) {
  el.tabIndex = 0;
  el.setAttribute("data-lm-suppress-shortcuts", "true");
  el.addEventListener("keydown", (e) => {
    if (e.target instanceof HTMLInputElement || e.target instanceof HTMLSelectElement) {
      e.stopPropagation();   // typing a class name: the input gets the key, the notebook does not
      return;
    }
    if (e.key === "Tab") return;   // keep focus navigation working
    e.stopPropagation();
    const action = actionForKey(e, getClassCount());
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
