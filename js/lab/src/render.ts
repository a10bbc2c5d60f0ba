// Plain DOM rendering of the panel's sections; every action goes through `Actions`, so tests can drive it.
import { Project, Projects, Server, Servers } from './types';
import { accuracy, classesLine, count, latency, percent, when } from './format';

export interface Actions {
  openProject(project: Project): void;
  copyUrl(server: Server): void;
  stopServer(server: Server): void;
  absolute(path: string): string;
}

function el<K extends keyof HTMLElementTagNameMap>(tag: K, cls = '', text = ''): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text) node.textContent = text;
  return node;
}

function button(label: string, title: string, onClick: () => void, cls = ''): HTMLButtonElement {
  const b = el('button', `jp-Button jp-mod-styled nbml-button ${cls}`.trim(), label);
  b.type = 'button';
  b.title = title;
  b.addEventListener('click', (e) => { e.stopPropagation(); onClick(); });
  return b;
}

function bar(fraction: number): HTMLElement {
  const outer = el('div', 'nbml-bar');
  const fill = el('div', 'nbml-bar-fill');
  fill.style.width = `${Math.max(0, Math.min(1, fraction || 0)) * 100}%`;
  outer.appendChild(fill);
  return outer;
}

function runRow(run: Project['runs'][number]): HTMLTableRowElement {
  const tr = el('tr', `nbml-run nbml-status-${run.status.replace(/[^a-z0-9_-]/gi, '')}`);
  tr.dataset.run = String(run.id);
  tr.append(el('td', '', `#${run.id}`), el('td', 'nbml-arch', run.arch ?? '–'), el('td', 'nbml-acc', accuracy(run.accuracy)),
            el('td', 'nbml-status', run.status));
  if (run.started) tr.title = `run ${run.id}, started ${when(run.started)}`;   // the sidebar is too narrow for it
  return tr;
}

export function projectCard(p: Project, actions: Actions): HTMLElement {
  const card = el('div', 'nbml-project');
  card.dataset.path = p.path;
  const head = el('div', 'nbml-row');
  const name = el('span', 'nbml-name', p.name);
  name.title = p.path;
  head.appendChild(name);
  if (p.kind) head.appendChild(el('span', 'nbml-badge', p.kind));
  head.appendChild(button('Open', `Insert a cell that opens ${p.path} in the current notebook`,
                          () => actions.openProject(p), 'nbml-open'));
  card.appendChild(head);
  if (p.error) {
    card.appendChild(el('div', 'nbml-error', p.error));
    return card;
  }
  card.appendChild(bar(p.labelled_fraction));
  card.appendChild(el('div', 'nbml-muted nbml-labelled',
                      `${count(p.labelled)} of ${count(p.items)} labelled (${percent(p.labelled_fraction)})`));
  const classes = classesLine(p.classes);
  if (classes) card.appendChild(el('div', 'nbml-classes', classes));
  if (p.runs.length) {
    const table = el('table', 'nbml-runs');
    for (const run of p.runs) table.appendChild(runRow(run));
    card.appendChild(table);
  }
  return card;
}

export function serverCard(s: Server, actions: Actions): HTMLElement {
  const card = el('div', 'nbml-server');
  card.dataset.name = s.name;
  const head = el('div', 'nbml-row');
  head.appendChild(el('span', 'nbml-name', s.name));
  if (s.kind) head.appendChild(el('span', 'nbml-badge', s.kind));
  head.appendChild(button('Stop', `Stop the model server ${s.name} (its kernel keeps running)`,
                          () => actions.stopServer(s), 'nbml-stop'));
  card.appendChild(head);
  const urlRow = el('div', 'nbml-row');
  const link = el('a', 'nbml-url', actions.absolute(s.url));
  link.href = actions.absolute(s.url);
  link.target = '_blank';
  link.rel = 'noopener';
  urlRow.append(link, button('Copy', 'Copy the proxied URL', () => actions.copyUrl(s), 'nbml-copy'));
  card.appendChild(urlRow);
  card.appendChild(el('div', 'nbml-muted nbml-stats',
                      `${count(s.requests)} requests · p50 ${latency(s.p50_ms)} · port ${s.port}`));
  return card;
}

function section(title: string, body: HTMLElement[], empty: string): HTMLElement {
  const sec = el('section', 'nbml-section');
  sec.appendChild(el('h3', 'nbml-heading', title));
  if (body.length) sec.append(...body);
  else sec.appendChild(el('div', 'nbml-muted nbml-empty', empty));
  return sec;
}

export function projectsSection(data: Projects, actions: Actions): HTMLElement {
  const sec = section('Projects', data.projects.map((p) => projectCard(p, actions)),
                      'No nbml projects (*.nbml) under the server\'s root folder yet: nbml.Dataset("name.nbml") makes one.');
  sec.classList.add('nbml-projects');
  return sec;
}

export function serversSection(data: Servers, actions: Actions): HTMLElement {
  const sec = section('Model servers', data.servers.map((s) => serverCard(s, actions)),
                      'No model server running: model.serve() in a notebook starts one.');
  sec.classList.add('nbml-servers');
  return sec;
}

export function errorBox(message: string): HTMLElement {
  return el('div', 'nbml-error nbml-fetch-error', message);
}
