// nbml's JupyterLab (and Notebook 7) extension: the side panel and the `nbml:open-project` command.
import { ILayoutRestorer, JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette, showErrorMessage } from '@jupyterlab/apputils';
import { INotebookTracker } from '@jupyterlab/notebook';
import { LabIcon } from '@jupyterlab/ui-components';
import { openProjectCode } from './format';
import { NbmlPanel } from './panel';

const OPEN_PROJECT = 'nbml:open-project';

const ICON = '<svg xmlns="http://www.w3.org/2000/svg" width="16" viewBox="0 0 24 24">'
  + '<path class="jp-icon3" fill="#616161" d="M3 3h8l10 10-8 8L3 11V3zm4 2.5a1.5 1.5 0 1 0 0 3 1.5 1.5 0 0 0 0-3z'
  + 'M12.5 9.5l-1 1 5 5 1-1-5-5z"/></svg>';

export const nbmlIcon = new LabIcon({ name: 'nbml:panel', svgstr: ICON });

function insertOpenCell(tracker: INotebookTracker | null, projectPath: string): boolean {
  const current = tracker?.currentWidget;
  const model = current?.content.model;
  if (!current || !model) return false;
  const notebook = current.content;
  const index = notebook.activeCellIndex >= 0 ? notebook.activeCellIndex + 1 : model.cells.length;
  model.sharedModel.insertCell(index, { cell_type: 'code', source: openProjectCode(projectPath, current.context.path) });
  notebook.activeCellIndex = index;
  return true;
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'nbml:plugin',
  description: 'A side panel of nbml projects, runs and model servers.',
  autoStart: true,
  optional: [INotebookTracker, ILayoutRestorer, ICommandPalette],
  activate: (app: JupyterFrontEnd, tracker: INotebookTracker | null, restorer: ILayoutRestorer | null,
             palette: ICommandPalette | null) => {
    app.commands.addCommand(OPEN_PROJECT, {
      label: (args) => (args.path ? `Open ${args.path} in the notebook` : 'nbml: open a project in the notebook'),
      caption: 'Insert a cell that opens an nbml project (nbml.Dataset, ds.label()) into the current notebook',
      execute: (args) => {
        const path = typeof args.path === 'string' ? args.path : '';
        if (!path) {
          return showErrorMessage('nbml', 'Choose a project: click Open beside it in the nbml side panel.');
        }
        if (!insertOpenCell(tracker, path)) {
          return showErrorMessage('nbml', `Open a notebook first: ${path} opens in a new cell of the current notebook.`);
        }
        const current = tracker?.currentWidget;
        if (current) app.shell.activateById(current.id);
      },
    });
    palette?.addItem({ command: OPEN_PROJECT, category: 'nbml' });

    const panel = new NbmlPanel({
      settings: app.serviceManager.serverSettings,
      openProject: (p) => void app.commands.execute(OPEN_PROJECT, { path: p.path }),
    });
    panel.id = 'nbml-panel';
    panel.title.icon = nbmlIcon;
    panel.title.caption = 'nbml: projects, runs and model servers';
    app.shell.add(panel, 'left', { rank: 650 });
    restorer?.add(panel, 'nbml-panel');
  },
};

export default plugin;
