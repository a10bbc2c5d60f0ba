"""Every chart nbml returns, in a real JupyterLab in Debian's Chromium with every request outside 127.0.0.1 blocked:
its marks are drawn and nothing tried to leave the machine (altair's own renderers load vega from a CDN there).

Needs /usr/bin/chromium (`apt-get install chromium`, as .ci/run does); skipped with that reason otherwise.
"""
from pathlib import Path

import pytest

from conftest import make_images
from lab import Lab, block_outside, chromium_available, launch
from test_charts import log_predictions

pytestmark = pytest.mark.skipif(not chromium_available(), reason="needs Debian's chromium (apt-get install chromium)")

SCREENSHOTS = Path(__file__).resolve().parent.parent / ".cache" / "screenshots"
# (cell, the vega marks its output must draw)
CHARTS = [("import nbml\nds = nbml.Dataset('served.nbml')\nds.stats()", [".mark-rect path"]),
          ("nbml.monitor(ds)", [".mark-rect path", ".mark-line path", ".mark-symbol path"]),
          ("nbml.monitor(nbml.Dataset('new.nbml'))", [".mark-text text"])]


@pytest.fixture
def folder(tmp_path):
    import nbml
    ds = nbml.Dataset(tmp_path / "served.nbml")
    ds.add_images(make_images(tmp_path / "images", per_class=4))
    log_predictions(ds)
    ds.close()
    return tmp_path


def test_every_chart_draws_with_the_network_blocked(folder):
    from playwright.sync_api import sync_playwright
    errors = []
    with Lab(folder) as lab, sync_playwright() as p:
        browser = launch(p)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        outside = block_outside(context)
        page = context.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        lab.write_notebook("charts.ipynb", [cell for cell, _ in CHARTS])
        lab.open(page, "charts.ipynb")
        cells = page.locator(".jp-Notebook .jp-CodeCell")
        try:
            cells.nth(len(CHARTS) - 1).locator(".jp-OutputArea-output").wait_for(timeout=180_000)   # all have run
            lab.wait_idle(page)
            for i, (_, marks) in enumerate(CHARTS):
                for mark in marks:
                    cells.nth(i).locator(f".jp-OutputArea .nbml-chart svg {mark}").first.wait_for(
                        state="attached", timeout=60_000)
            text = page.locator(".jp-Notebook").inner_text()
            assert "no predictions logged yet" in text and "Error" not in text
            assert outside == [] and errors == []
        except Exception:
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / "charts-page.png"), full_page=True)
            raise
        finally:
            browser.close()
