// Pure helpers of the panel: text formatting and the cell that opens a project (tested by vitest, no JupyterLab).
import { PathExt } from '@jupyterlab/coreutils';

export function percent(fraction: number): string {
  if (!Number.isFinite(fraction)) return '0%';
  const p = Math.max(0, Math.min(1, fraction)) * 100;
  return p > 0 && p < 1 ? '<1%' : `${Math.round(p)}%`;
}

export function accuracy(value: number | null): string {
  return value === null || value === undefined || !Number.isFinite(value) ? '–' : `${(value * 100).toFixed(1)}%`;
}

export function latency(ms: number | null): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '–';
  return ms < 10 ? `${ms.toFixed(2)} ms` : ms < 1000 ? `${ms.toFixed(1)} ms` : `${(ms / 1000).toFixed(2)} s`;
}

export function count(n: number): string {
  return n >= 10_000 ? `${(n / 1000).toFixed(n >= 100_000 ? 0 : 1)}k` : String(n);
}

/** "red 12 · green 9 · blue 3": the classes by count, largest first, at most `limit` then "+N more". */
export function classesLine(classes: Record<string, number>, limit = 6): string {
  const entries = Object.entries(classes).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  const shown = entries.slice(0, limit).map(([k, v]) => `${k} ${count(v)}`);
  if (entries.length > limit) shown.push(`+${entries.length - limit} more`);
  return shown.join(' · ');
}

/** "2026-11-30 19:04" from an ISO 8601 time, in the browser's time zone; '' when missing or unreadable. */
export function when(iso: string | null): string {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** The project's path as the notebook's kernel sees it: relative to the notebook's folder (both relative to root). */
export function relativeToNotebook(projectPath: string, notebookPath: string | null): string {
  if (!notebookPath) return projectPath;
  const rel = PathExt.relative(PathExt.dirname(notebookPath), projectPath);
  return rel || projectPath;
}

/** The code cell `nbml:open-project` inserts (JSON string escapes are valid Python string escapes). */
export function openProjectCode(projectPath: string, notebookPath: string | null): string {
  const path = relativeToNotebook(projectPath, notebookPath);
  return `import nbml\nds = nbml.Dataset(${JSON.stringify(path)})\nds.label()`;
}

/** An absolute URL for a proxied path (the copy button copies what a browser or curl can use). */
export function absoluteUrl(path: string, origin: string): string {
  return new URL(path, origin).href;
}
