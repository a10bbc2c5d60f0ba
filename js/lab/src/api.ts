// Requests to the nbml server extension, through Jupyter's own connection (base URL, token, XSRF cookie).
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

export async function requestAPI<T>(settings: ServerConnection.ISettings, path: string,
                                    init: RequestInit = {}): Promise<T> {
  const url = URLExt.join(settings.baseUrl, 'nbml/api', path);
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (e) {
    throw new Error(`the Jupyter server did not answer (${(e as Error).message ?? e}); is it still running?`);
  }
  const text = await response.text();
  let body: any = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (!response.ok) {
    const detail = body && (body.message || body.error || body.reason);
    if (response.status === 404 && !detail) {
      throw new Error('the nbml server extension is not enabled in this Jupyter server: '
                      + 'check `jupyter server extension list` and restart Jupyter.');
    }
    throw new Error(`${response.status} ${detail || response.statusText}`);
  }
  return body as T;
}
