// One stylesheet for all nbml widgets, scoped under .nbml; uses JupyterLab's theme variables when present.
export const CSS = `
.nbml { font: 13px/1.4 var(--jp-ui-font-family, system-ui, sans-serif); color: var(--jp-ui-font-color1, #222);
  outline: none; padding: 6px; border: 1px solid var(--jp-border-color2, #ddd); border-radius: 6px; }
.nbml:focus { border-color: var(--jp-brand-color1, #1976d2); box-shadow: 0 0 0 2px rgba(25,118,210,.25); }
.nbml-bar { display: flex; flex-wrap: wrap; gap: 6px; align-items: center; margin-bottom: 6px; }
.nbml-bar button, .nbml-bar select, .nbml-bar input { font: inherit; padding: 2px 8px; }
.nbml-class { border: 1px solid var(--jp-border-color1, #bbb); border-radius: 12px; padding: 1px 8px;
  background: var(--jp-layout-color2, #f4f4f4); cursor: pointer; }
.nbml-class b { margin-right: 4px; color: var(--jp-brand-color1, #1976d2); }
.nbml-class.nbml-dim { opacity: .35; }
.nbml-class.nbml-pick { border-color: var(--jp-brand-color1, #1976d2); }
.nbml-typing { font-family: var(--jp-code-font-family, monospace); }
.nbml-grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(112px, 1fr)); gap: 6px; }
.nbml-cell { position: relative; border: 2px solid transparent; border-radius: 4px; padding: 2px;
  background: var(--jp-layout-color1, #fff); cursor: pointer; user-select: none; }
.nbml-cell img, .nbml-thumb { width: 100%; aspect-ratio: 1; object-fit: contain; background: #eee; display: block; }
.nbml-cell.cursor { border-color: var(--jp-brand-color1, #1976d2); }
.nbml-cell.selected { background: rgba(25,118,210,.15); }
.nbml-cell.removed, .nbml-cell.unusable { opacity: .35; }
.nbml-grid.nbml-texts { grid-template-columns: repeat(auto-fill, minmax(220px, 1fr)); }
.nbml-text { font-size: 12px; line-height: 1.35; white-space: pre-wrap; overflow-wrap: anywhere; height: 8.1em;
  overflow: hidden; padding: 2px 4px; border-radius: 3px; background: var(--jp-layout-color2, #f6f6f6); }
.nbml-more { color: var(--jp-brand-color1, #1976d2); text-decoration: underline; cursor: pointer; }
.nbml-cut { color: #b26a00; }
.nbml-reader { border: 1px solid var(--jp-border-color2, #ddd); border-radius: 4px; padding: 4px 8px; margin-bottom: 6px;
  max-height: 40vh; overflow: auto; }
.nbml-fulltext { white-space: pre-wrap; overflow-wrap: anywhere; }
.nbml-scroll { max-width: 100%; overflow-x: auto; }
.nbml-unread { opacity: .45; }
.nbml mark { background: #ffe082; color: inherit; padding: 0; border-radius: 2px; }
.nbml-cap { font-size: 11px; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.nbml-label { font-weight: 600; }
.nbml-muted { color: var(--jp-ui-font-color2, #777); }
.nbml-decision { position: absolute; top: 4px; right: 4px; font-size: 10px; padding: 0 4px; border-radius: 3px;
  background: #2e7d32; color: #fff; }
.nbml-progress { height: 8px; background: var(--jp-layout-color3, #e0e0e0); border-radius: 4px; overflow: hidden;
  flex: 1; min-width: 120px; }
.nbml-progress > div { height: 100%; background: var(--jp-brand-color1, #1976d2); width: 0; transition: width .2s; }
.nbml-error { color: #c62828; }
.nbml-map { position: relative; user-select: none; }
.nbml-lasso { position: absolute; left: 0; top: 0; width: 100%; height: 100%; pointer-events: none; overflow: visible; }
.nbml-lasso path { fill: rgba(25,118,210,.12); stroke: var(--jp-brand-color1, #1976d2); stroke-width: 1.5;
  stroke-dasharray: 4 3; }
.nbml-tools button[aria-pressed="true"] { background: var(--jp-brand-color1, #1976d2); color: #fff;
  border-color: var(--jp-brand-color1, #1976d2); }
.nbml table { border-collapse: collapse; font-size: 12px; }
.nbml td, .nbml th { border-bottom: 1px solid var(--jp-border-color2, #e0e0e0); padding: 2px 8px; text-align: right; }
.nbml th:first-child, .nbml td:first-child { text-align: left; }
`;

export function injectStyle(el) {
  const style = document.createElement("style");
  style.textContent = CSS;
  el.appendChild(style);
}
