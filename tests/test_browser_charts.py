"""Every chart nbml returns, in a real JupyterLab in Debian's Chromium with every request outside 127.0.0.1 blocked:
its marks are drawn and nothing tried to leave the machine (altair's own renderers load vega from a CDN there).

Needs /usr/bin/chromium (`apt-get install chromium`, as .ci/run does); skipped with that reason otherwise.
"""
from pathlib import Path

import pytest

from conftest import make_images
from lab import Lab, block_outside, chromium_available, launch, notebook_page
from test_browser import poll
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


def test_what_a_newcomer_sees_after_one_request_and_on_table_rows(tmp_path):
    """Sparse data drawn sensibly (one request: a point and its count, readable time ticks) and table rows in the grid
    shown as rows (issue 26), in a real JupyterLab with the network blocked."""
    import nbml
    from sklearn.datasets import load_breast_cancer
    ds = nbml.Dataset(tmp_path / "one.nbml")
    ds.add_images(make_images(tmp_path / "images", per_class=2))
    log_predictions(ds, n=1)
    ds.close()
    frame = load_breast_cancer(as_frame=True).frame.head(30)
    frame.to_csv(tmp_path / "rows.csv", index=False)
    cells = ["import nbml\nnbml.monitor(nbml.Dataset('one.nbml'))",
             "rows = nbml.Dataset('rows.nbml')\nrows.add_table('rows.csv', label_col=None)\nrows.label()",
             "from sklearn.datasets import load_breast_cancer\nt = nbml.Dataset('train.nbml')\n"
             "t.add_table(load_breast_cancer(as_frame=True).frame.head(120), label_col='target')\n"
             "m = nbml.train(t, arch='tabular', epochs=2, seed=0)"]
    with Lab(tmp_path) as lab, notebook_page(lab, "newcomer.ipynb", cells) as (page, outside, errors):
        out = page.locator(".jp-Notebook .jp-CodeCell")
        out.nth(2).locator(".nbml-monitor").wait_for(timeout=180_000)
        lab.wait_idle(page)
        chart = out.nth(0).locator(".jp-OutputArea .nbml-chart svg")
        chart.locator(".mark-symbol path").first.wait_for(state="attached", timeout=60_000)
        texts = "els => els.map((e) => e.textContent)"          # SVG text has no innerText
        labels = chart.locator(".mark-text text").evaluate_all(texts)
        assert "1" in labels                                          # the count beside the point
        ticks = " ".join(chart.locator(".role-axis-label text").evaluate_all(texts))
        assert ".800" not in ticks and ":" in ticks                    # whole times, not a lone fraction
        search = out.nth(1).locator("input.nbml-search")
        search.wait_for(timeout=60_000)
        assert search.get_attribute("placeholder") == "search rows"
        grid = out.nth(1).inner_text()
        assert "mean radius" in grid and " chars" not in grid
        # the training monitor's axes say what they count, and their titles are inside the drawing, not cut off
        shown = """(svg) => [...svg.querySelectorAll('.role-axis-title text')].filter((t) => {
            t.scrollIntoView({block: 'center'});
            const r = t.getBoundingClientRect();
            const top = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
            return r.height > 0 && top !== null && svg.contains(top); }).map((t) => t.textContent)"""
        monitor = out.nth(2).locator(".nbml-monitor svg")
        titles = poll(lambda: {"batch", "epoch"} <= set(monitor.evaluate(shown)), timeout=60)
        assert titles, monitor.evaluate(shown)
        assert outside == [] and errors == []
