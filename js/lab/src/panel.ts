// The left side panel: projects with their runs, and the running model servers. It refreshes every few seconds
// while visible (and at once when shown) and stops its timer and requests while hidden.
import { Clipboard, showErrorMessage } from '@jupyterlab/apputils';
import { ServerConnection } from '@jupyterlab/services';
import { Widget } from '@lumino/widgets';
import { requestAPI } from './api';
import { absoluteUrl } from './format';
import { Actions, errorBox, projectsSection, serversSection } from './render';
import { Project, Projects, Server, Servers } from './types';

export const REFRESH_MS = 3000;

export interface PanelOptions {
  settings: ServerConnection.ISettings;
  openProject(project: Project): void;
  refreshMs?: number;
}

export class NbmlPanel extends Widget {
  private timer: ReturnType<typeof setTimeout> | null = null;
  private loading: Promise<void> | null = null;
  private readonly body: HTMLElement;
  private readonly refreshMs: number;
  /** How many refreshes fetched data (tests read it to check the panel stays quiet while hidden). */
  fetches = 0;

  constructor(private readonly options: PanelOptions) {
    super();
    this.addClass('nbml-panel');
    this.refreshMs = options.refreshMs ?? REFRESH_MS;
    this.body = document.createElement('div');
    this.body.className = 'nbml-body';
    this.body.textContent = 'Loading…';
    this.node.appendChild(this.body);
  }

  private get actions(): Actions {
    return {
      openProject: (p) => this.options.openProject(p),
      copyUrl: (s) => Clipboard.copyToSystem(absoluteUrl(s.url, window.location.origin)),
      stopServer: (s) => void this.stop(s),
      absolute: (path) => absoluteUrl(path, window.location.origin),
    };
  }

  /** Fetch and draw now (one request pair at a time), then schedule the next refresh if still visible. */
  refresh(): Promise<void> {
    if (this.loading) return this.loading;
    this.cancelTimer();
    this.loading = this.load().finally(() => {
      this.loading = null;
      if (this.isVisible && !this.isDisposed) {
        this.timer = setTimeout(() => void this.refresh(), this.refreshMs);
      }
    });
    return this.loading;
  }

  private async load(): Promise<void> {
    this.fetches += 1;
    const { settings } = this.options;
    let nodes: HTMLElement[];
    try {
      const [projects, servers] = await Promise.all([requestAPI<Projects>(settings, 'projects'),
                                                     requestAPI<Servers>(settings, 'servers')]);
      nodes = [serversSection(servers, this.actions), projectsSection(projects, this.actions)];
    } catch (e) {
      nodes = [errorBox(`nbml: ${(e as Error).message}`)];
    }
    if (!this.isDisposed) this.body.replaceChildren(...nodes);
  }

  private async stop(server: Server): Promise<void> {
    const card = this.body.querySelector(`.nbml-server[data-name="${CSS.escape(server.name)}"]`);
    const button = card?.querySelector<HTMLButtonElement>('.nbml-stop');
    if (button) {
      button.disabled = true;
      button.textContent = 'Stopping…';
    }
    try {
      await requestAPI<{ stopped: boolean }>(this.options.settings,
                                             `servers/${encodeURIComponent(server.name)}/stop`, { method: 'POST' });
    } catch (e) {
      void showErrorMessage('nbml', `Could not stop the model server ${server.name}: ${(e as Error).message}`);
    }
    await this.loading;
    await this.refresh();
  }

  private cancelTimer(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
  }

  protected onAfterShow(): void {
    void this.refresh();
  }

  protected onAfterHide(): void {
    this.cancelTimer();
  }

  dispose(): void {
    this.cancelTimer();
    super.dispose();
  }
}
