"""The label grid's forecast line in a real JupyterLab (Debian's Chromium, network blocked): it appears, and it
changes as labels are added by keyboard, computed in the background (issue 27).

Needs /usr/bin/chromium (`apt-get install chromium`, as .ci/run does); skipped with that reason otherwise.
"""
import re

import pytest

from lab import Lab, chromium_available, notebook_page
from test_browser import poll, query

pytestmark = pytest.mark.skipif(not chromium_available(), reason="needs Debian's chromium (apt-get install chromium)")


def test_grid_header_forecast_follows_the_labels(tmp_path):
    import nbml
    from sklearn.datasets import load_breast_cancer
    frame = load_breast_cancer(as_frame=True).frame.sample(200, random_state=0).reset_index(drop=True)
    frame["target"] = frame["target"].map({0: "malignant", 1: "benign"}).astype(object)
    frame.loc[160:, "target"] = None                       # 160 labelled rows, 40 to label
    ds = nbml.Dataset(tmp_path / "rows.nbml")
    ds.add_table(frame, label_col="target")
    ds.close()
    cells = ["import nbml\nnbml.Dataset('rows.nbml').label(page_size=8)"]
    with Lab(tmp_path) as lab, notebook_page(lab, "label.ipynb", cells) as (page, outside, errors):
        line = page.locator(".nbml-label-widget .nbml-forecast")
        page.wait_for_selector(".nbml-label-widget .nbml-cell", timeout=120_000)
        first = poll(lambda: line.inner_text().strip(), timeout=120)
        assert re.search(r"\(160 labels\)|not yet", first), first
        page.locator(".nbml-label-widget .nbml-cell").first.click()
        for _ in range(4):
            page.keyboard.press("1")                   # label the cursor's row; the cursor moves on
        labelled = lambda: int(query(str(tmp_path / "rows.nbml"),       # noqa: E731  (what the store holds now)
                                     "SELECT count(*) FROM items WHERE label IS NOT NULL")[0][0])
        assert poll(lambda: labelled() > 160, timeout=60)
        poll(lambda: labelled() >= 164, timeout=10)     # the four keys' labels, as far as they landed
        n = labelled()
        changed = poll(lambda: (t := line.inner_text().strip()) != first and f"({n} labels)" in t and t, timeout=120)
        assert changed, (n, line.inner_text())
        assert outside == [] and errors == []
