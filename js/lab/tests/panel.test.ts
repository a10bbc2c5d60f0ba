// @vitest-environment jsdom
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { absoluteUrl, accuracy, classesLine, latency, openProjectCode, percent, relativeToNotebook } from '../src/format';
import { Actions, projectsSection, serversSection } from '../src/render';
import type { Project, Server } from '../src/types';

// The panel's requests are replaced by a counter: these tests check when it fetches, not what the server answers
// (tests/test_browser_panel.py runs it against the real server extension).
const api = vi.hoisted(() => ({ calls: [] as string[] }));
vi.mock('../src/api', () => ({
  requestAPI: vi.fn(async (_settings: unknown, path: string) => {
    api.calls.push(path);
    return path === 'projects' ? { root: '/r', projects: [] } : { servers: [] };
  }),
}));
// Lumino's drag and drop (imported by @lumino/widgets) defines a subclass of DragEvent, which jsdom lacks.
(globalThis as any).DragEvent ??= class DragEvent extends MouseEvent {};
// apputils pulls in much of JupyterLab; the panel uses only these two from it.
vi.mock('@jupyterlab/apputils', () => ({ Clipboard: { copyToSystem: vi.fn() }, showErrorMessage: vi.fn() }));

const project: Project = {
  path: 'data/colours.nbml', name: 'colours', kind: 'image', items: 36, labelled: 27, labelled_fraction: 0.75,
  classes: { red: 12, green: 9, blue: 6 },
  runs: [{ id: 1, arch: 'resnet18', accuracy: 0.9166, status: 'done', started: '2026-11-30T10:04:00+00:00' }],
  error: null,
};
const server: Server = {
  name: 'colours', port: 8123, pid: 42, folder: '/r/colours-model', kind: 'image', url: '/user/ana/nbml/models/colours/',
  direct_url: 'http://127.0.0.1:8123/', requests: 12, p50_ms: 3.456, started: '2026-11-30T10:05:00+00:00',
};

function actions(): Actions & { [k: string]: any } {
  return { openProject: vi.fn(), copyUrl: vi.fn(), stopServer: vi.fn(), absolute: (p) => absoluteUrl(p, 'http://hub.example') };
}

describe('format', () => {
  it('rounds fractions, keeps a trace of tiny ones and clamps', () => {
    expect(percent(0.75)).toBe('75%');
    expect(percent(0.001)).toBe('<1%');
    expect(percent(0)).toBe('0%');
    expect(percent(1.2)).toBe('100%');
    expect(percent(NaN)).toBe('0%');
  });

  it('shows accuracy and latency, a dash when missing', () => {
    expect(accuracy(0.91666)).toBe('91.7%');
    expect(accuracy(null)).toBe('–');
    expect(latency(3.456)).toBe('3.46 ms');
    expect(latency(45.2)).toBe('45.2 ms');
    expect(latency(2500)).toBe('2.50 s');
    expect(latency(null)).toBe('–');
  });

  it('lists classes by count, largest first, and says how many more', () => {
    expect(classesLine({ b: 2, a: 5, c: 2 })).toBe('a 5 · b 2 · c 2');
    expect(classesLine({ a: 1, b: 2, c: 3 }, 2)).toBe('c 3 · b 2 · +1 more');
    expect(classesLine({})).toBe('');
  });

  it('writes the project path relative to the notebook', () => {
    expect(relativeToNotebook('data/colours.nbml', 'data/nb.ipynb')).toBe('colours.nbml');
    expect(relativeToNotebook('data/colours.nbml', 'nb.ipynb')).toBe('data/colours.nbml');
    expect(relativeToNotebook('colours.nbml', 'work/deep/nb.ipynb')).toBe('../../colours.nbml');
    expect(relativeToNotebook('colours.nbml', null)).toBe('colours.nbml');
  });

  it('inserts valid Python for any file name', () => {
    expect(openProjectCode('data/colours.nbml', 'nb.ipynb'))
      .toBe('import nbml\nds = nbml.Dataset("data/colours.nbml")\nds.label()');
    expect(openProjectCode('a "quoted" \\ name.nbml', 'nb.ipynb')).toContain('nbml.Dataset("a \\"quoted\\" \\\\ name.nbml")');
  });
});

describe('render', () => {
  it('draws a project: labelled bar, counts, classes and its runs; Open calls the action', () => {
    const a = actions();
    const node = projectsSection({ root: '/r', projects: [project] }, a);
    const card = node.querySelector<HTMLElement>('.nbml-project[data-path="data/colours.nbml"]')!;
    expect(card.querySelector<HTMLElement>('.nbml-bar-fill')!.style.width).toBe('75%');
    expect(card.querySelector('.nbml-labelled')!.textContent).toBe('27 of 36 labelled (75%)');
    expect(card.querySelector('.nbml-classes')!.textContent).toBe('red 12 · green 9 · blue 6');
    const run = card.querySelector('.nbml-run[data-run="1"]')!;
    expect(run.querySelector('.nbml-acc')!.textContent).toBe('91.7%');
    expect(run.querySelector('.nbml-status')!.textContent).toBe('done');
    expect((run as HTMLElement).title).toMatch(/^run 1, started 2026-11-30 \d\d:04$/);
    card.querySelector<HTMLButtonElement>('.nbml-open')!.click();
    expect(a.openProject).toHaveBeenCalledWith(project);
  });

  it('shows a project that could not be read with its error and no bar', () => {
    const broken = { ...project, error: 'not an nbml project', runs: [], items: 0, labelled: 0, labelled_fraction: 0 };
    const node = projectsSection({ root: '/r', projects: [broken] }, actions());
    expect(node.querySelector('.nbml-error')!.textContent).toBe('not an nbml project');
    expect(node.querySelector('.nbml-bar')).toBeNull();
  });

  it('draws a server with its absolute proxied URL, requests and p50; Copy and Stop call the actions', () => {
    const a = actions();
    const node = serversSection({ servers: [server] }, a);
    const link = node.querySelector<HTMLAnchorElement>('.nbml-server[data-name="colours"] .nbml-url')!;
    expect(link.href).toBe('http://hub.example/user/ana/nbml/models/colours/');
    expect(node.querySelector('.nbml-stats')!.textContent).toBe('12 requests · p50 3.46 ms · port 8123');
    node.querySelector<HTMLButtonElement>('.nbml-copy')!.click();
    node.querySelector<HTMLButtonElement>('.nbml-stop')!.click();
    expect(a.copyUrl).toHaveBeenCalledWith(server);
    expect(a.stopServer).toHaveBeenCalledWith(server);
  });

  it('says what to do when there is nothing to list', () => {
    expect(serversSection({ servers: [] }, actions()).textContent).toContain('model.serve()');
    expect(projectsSection({ root: '/r', projects: [] }, actions()).textContent).toContain('nbml.Dataset(');
  });
});

describe('NbmlPanel', () => {
  beforeEach(() => {
    api.calls.length = 0;
    vi.useFakeTimers();
  });
  afterEach(() => vi.useRealTimers());

  it('fetches when shown, every refreshMs while visible, and not at all while hidden', async () => {
    const { Widget } = await import('@lumino/widgets');
    const { NbmlPanel } = await import('../src/panel');
    const panel = new NbmlPanel({ settings: {} as any, openProject: vi.fn(), refreshMs: 1000 });
    panel.hide();
    Widget.attach(panel, document.body);
    await vi.advanceTimersByTimeAsync(5000);
    expect(panel.fetches).toBe(0);                 // attached but hidden: no request, no timer

    panel.show();
    await vi.advanceTimersByTimeAsync(0);
    expect(panel.fetches).toBe(1);                 // shown: refreshed at once
    await vi.advanceTimersByTimeAsync(3000);
    expect(panel.fetches).toBe(4);                 // then once a second
    expect(api.calls.filter((p) => p === 'projects').length).toBe(4);

    panel.hide();
    const before = panel.fetches;
    await vi.advanceTimersByTimeAsync(10_000);
    expect(panel.fetches).toBe(before);            // hidden: quiet
    expect(vi.getTimerCount()).toBe(0);

    panel.show();
    await vi.advanceTimersByTimeAsync(0);
    expect(panel.fetches).toBe(before + 1);
    panel.dispose();
    await vi.advanceTimersByTimeAsync(5000);
    expect(panel.fetches).toBe(before + 1);
    expect(vi.getTimerCount()).toBe(0);
  });
});
