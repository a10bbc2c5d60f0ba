"""The side panel (js/lab) in a real JupyterLab with the nbml server extension, in Debian's Chromium: it lists a
project and its run, shows the model server a notebook started, a request from the page through the proxied URL it
shows returns the model's prediction, Stop stops that server (the kernel keeps running), and Open inserts the cell
that opens the project. Jupyter's XSRF checks stay on, as for a user.

Needs /usr/bin/chromium (`apt-get install chromium`, as .ci/run does); skipped with that reason otherwise.
"""
import base64
import re
import socket
from pathlib import Path

import httpx
import pytest

from conftest import trained_and_exported
from lab import Lab, block_outside, chromium_available

pytestmark = pytest.mark.skipif(not chromium_available(), reason="needs Debian's chromium (apt-get install chromium)")

SCREENSHOTS = Path(__file__).resolve().parent.parent / ".cache" / "screenshots"
PANEL = "#nbml-panel"

# A request as a page script makes it: the login cookie and Jupyter's XSRF header, no token.
FETCH = """async ([url, body]) => {
  const xsrf = decodeURIComponent((document.cookie.match(/(?:^|; )_xsrf=([^;]*)/) || [])[1] || '');
  const r = await fetch(url, {method: 'POST', body: JSON.stringify(body),
                              headers: {'Content-Type': 'application/json', 'X-XSRFToken': xsrf}});
  return [r.status, await r.json()];
}"""

KERNEL = """async (code) => {
  const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
  let out = '';
  const future = kernel.requestExecute({code});
  future.onIOPub = (msg) => { if (msg.header.msg_type === 'stream') out += msg.content.text; };
  await future.done;
  return [kernel.status, out];
}"""


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def lab(tmp_path, monkeypatch):
    """A project with one run and its exported model in the Lab's root; server registrations in a runtime dir of
    the test's own (the kernel inherits it from the Jupyter server)."""
    images, ds, model, artifact = trained_and_exported(tmp_path, "colours-model")
    ds.close()
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    with Lab(tmp_path, xsrf=True) as running:
        running.png = (images / "red" / "0.png").read_bytes()
        yield running


@pytest.fixture
def page(browser, request):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    pg = context.new_page()
    pg.blocked = block_outside(context)
    yield pg
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        pg.screenshot(path=str(SCREENSHOTS / f"{request.node.name}-page.png"))
    context.close()


def test_panel_lists_projects_and_servers_proxies_and_stops(lab, page):
    lab.write_notebook("serve.ipynb", ["import nbml\nserver = nbml.serve('colours-model', port=0)"])
    lab.open(page, "serve.ipynb")
    lab.wait_run_all(page, timeout=120)
    page.evaluate("() => window.jupyterapp.shell.activateById('nbml-panel')")

    # the project, its labels and its run
    card = page.wait_for_selector(f'{PANEL} .nbml-project[data-path="colours.nbml"]', timeout=30_000)
    assert card.query_selector(".nbml-labelled").inner_text() == "36 of 36 labelled (100%)"
    assert card.query_selector(".nbml-classes").inner_text() == "blue 12 · green 12 · red 12"
    run = card.query_selector(".nbml-run")
    assert run.query_selector(".nbml-arch").inner_text() == "test_resnet"
    assert re.fullmatch(r"\d{1,3}\.\d%", run.query_selector(".nbml-acc").inner_text())

    # the server the notebook started, at its proxied URL
    server = page.wait_for_selector(f"{PANEL} .nbml-server", timeout=30_000)
    name = server.get_attribute("data-name")
    url = server.query_selector(".nbml-url").get_attribute("href")
    assert url == f"http://127.0.0.1:{lab.port}/nbml/models/{name}/"
    port = int(re.search(r"port (\d+)", server.query_selector(".nbml-stats").inner_text()).group(1))
    assert listening(port)

    # a prediction through the proxy from the page equals the model server's own answer
    body = {"image": base64.b64encode(lab.png).decode()}
    status, proxied = page.evaluate(FETCH, [url + "predict", body])
    assert status == 200, proxied
    direct = httpx.post(f"http://127.0.0.1:{port}/predict", json=body).json()
    assert proxied == direct and proxied["label"] in {"red", "green", "blue"}
    status, refused = page.evaluate("async (url) => { const r = await fetch(url, {credentials: 'omit'});"
                                    " return [r.status, await r.json()]; }", url)      # no login cookie
    assert status == 403 and "log in to Jupyter" in refused["message"]
    page.wait_for_selector(f'{PANEL} .nbml-server[data-name="{name}"] .nbml-stats:has-text("2 requests")',
                           timeout=15_000)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.locator(PANEL).screenshot(path=str(SCREENSHOTS / "side-panel.png"))

    # Copy puts the full proxied URL on the clipboard
    page.click(f'{PANEL} .nbml-server[data-name="{name}"] .nbml-copy')
    assert page.evaluate("() => navigator.clipboard.readText()") == url

    # Stop in the panel: the server goes, its port closes, the kernel keeps running
    page.click(f'{PANEL} .nbml-server[data-name="{name}"] .nbml-stop')
    page.wait_for_selector(f"{PANEL} .nbml-servers .nbml-empty", timeout=30_000)
    assert not listening(port)
    assert not list((lab.folder / "runtime").glob("nbml-server-*.json"))
    status, out = page.evaluate(KERNEL, "print(server.running)")
    assert out.strip() == "False" and status in ("idle", "busy")

    # Open: a cell that opens the project in the notebook, below the active cell
    cells = page.evaluate("() => window.jupyterapp.shell.currentWidget.content.widgets.length")
    page.click(f'{PANEL} .nbml-project[data-path="colours.nbml"] .nbml-open')
    page.wait_for_function(f"() => window.jupyterapp.shell.currentWidget.content.widgets.length === {cells + 1}")
    source = page.evaluate("() => window.jupyterapp.shell.currentWidget.content.activeCell.model.sharedModel"
                           ".getSource()")
    assert source == 'import nbml\nds = nbml.Dataset("colours.nbml")\nds.label()'
    assert page.blocked == []


def test_each_address_works_where_it_is_shown(lab, page):
    """Issue 26: the server's notebook display links `server.browser_url` (proxied, opened by the logged-in browser),
    and `server.url` answers from the kernel, the tour's `requests.post(server.url + "/predict")`."""
    lab.write_notebook("show.ipynb", ["import nbml\nserver = nbml.serve('colours-model', port=0)\nserver"])
    lab.open(page, "show.ipynb")
    lab.wait_run_all(page, timeout=120)
    link = page.wait_for_selector(".jp-OutputArea-output a[target=_blank]", timeout=30_000)
    href = link.get_attribute("href")
    assert re.fullmatch(rf"http://127\.0\.0\.1:{lab.port}/nbml/models/[\w.-]+/", href), href
    opened = page.context.new_page()
    response = opened.goto(href)                          # what a click opens: the proxied page, logged in
    assert response.status == 200 and "POST /predict" in opened.content()      # the server's own index
    opened.close()
    code = ("import json, urllib.request\n"
            "req = urllib.request.Request(server.url + '/predict', data=open('images/red/0.png', 'rb').read(),"
            " headers={'Content-Type': 'image/png'})\n"
            "print(json.load(urllib.request.urlopen(req))['label'], server.url)")
    status, out = page.evaluate(KERNEL, code)
    label, url = out.split()
    assert label in {"red", "green", "blue"} and url.startswith("http://127.0.0.1:") and "/nbml/" not in url
    page.evaluate(KERNEL, "server.stop()")
    assert page.blocked == []
