"""The grid on a text project in a real JupyterLab (Debian's Chromium through Playwright, nothing fetched from
outside 127.0.0.1): cards with each text's start, labels by keyboard written to the store, the full text on Space,
search with highlights, and the confusion matrix fixing a text in place.

Needs /usr/bin/chromium (`apt-get install chromium`, as .ci/run does); skipped with that reason otherwise.
"""
import time

import pytest

from lab import Lab, block_outside, chromium_available
from test_browser import poll, query, screenshot_if_failed

pytestmark = pytest.mark.skipif(not chromium_available(), reason="needs Debian's chromium (apt-get install chromium)")

LONG = "a long message that goes on " * 120            # more than a card shows and than the model's 256 tokens
CONTROL = "ring the bell\x07 twice"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    import nbml
    from nbml.datasets import sms_spam
    folder = tmp_path_factory.mktemp("textlab")
    ds = nbml.Dataset(folder / "texts.nbml")
    texts = [f"note {i}: " + ("claim your FREE prize" if i % 4 == 0 else "lunch at noon?") for i in range(30)]
    ds.add_texts(texts + [LONG, CONTROL], labels=["ham", "spam"] + [None] * 30)
    ds.close()
    df = sms_spam().groupby("label").head(60).reset_index(drop=True)
    sms = nbml.Dataset(folder / "sms.nbml")
    sms.add_texts(df["text"].tolist(), labels=df["label"].tolist())
    sms.close()
    with Lab(folder) as running:
        yield running


@pytest.fixture
def page(browser, request):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    blocked = block_outside(context)
    pg = context.new_page()
    yield pg
    screenshot_if_failed(pg, request)
    context.close()
    assert blocked == [], f"requests outside 127.0.0.1: {blocked[:5]}"


def label_of(project, item):
    return query(project, "SELECT label FROM items WHERE id=?", item)


def test_label_texts_by_keyboard_read_in_full_and_search(lab, page):
    project = str(lab.folder / "texts.nbml")
    lab.write_notebook("texts.ipynb", ["import nbml\nds = nbml.Dataset('texts.nbml')\nw = ds.label(page_size=40)\nw"])
    lab.open(page, "texts.ipynb")
    widget = ".nbml-label-widget"
    page.wait_for_selector(f"{widget} .nbml-text-cell", timeout=120_000)
    lab.wait_idle(page)
    cells = page.locator(f"{widget} .nbml-cell")
    assert cells.count() == 30                                          # the unlabelled ones
    assert page.locator(f"{widget} .nbml-cell img, {widget} .nbml-thumb").count() == 0
    assert "note 2: lunch at noon?" in cells.first.inner_text()
    control = page.locator(f"{widget} .nbml-cell", has_text="ring the bell")
    assert "bell\\x07 twice" in control.inner_text()                    # the control character shown escaped
    long = page.locator(f"{widget} .nbml-cell", has_text="a long message")
    assert "full text" in long.inner_text() and "cut" in long.inner_text()

    first = int(cells.first.get_attribute("data-id"))
    n_cells = page.evaluate("() => window.jupyterapp.shell.currentWidget.content.widgets.length")
    cells.first.click()
    page.keyboard.press("2")                                           # classes ham, spam: 2 is spam
    assert poll(lambda: label_of(project, first) == [("spam",)])
    assert poll(lambda: page.locator(f"{widget} .nbml-cell[data-id='{first}']").count() == 0)
    for key in ("m", "a", "b", "d", "d"):                               # no notebook shortcut fires
        page.keyboard.press(key)
    time.sleep(0.5)
    assert lab.active_cell_type(page) == "code"
    assert page.evaluate("() => window.jupyterapp.shell.currentWidget.content.widgets.length") == n_cells
    page.keyboard.press("Backspace")                                   # undo
    assert poll(lambda: label_of(project, first) == [(None,)])

    # the full text: Space on the cursor, the part the model never reads greyed, Space again closes it
    long_id = int(long.get_attribute("data-id"))
    long.locator(".nbml-more").click()
    reader = page.locator(f"{widget} .nbml-reader")
    assert poll(lambda: reader.is_visible() and reader.get_attribute("data-id") == str(long_id))
    assert poll(lambda: reader.locator(".nbml-unread").count() == 1, timeout=30)
    assert reader.locator(".nbml-fulltext").inner_text().strip() == LONG.strip()
    assert "cut: the model reads only the first 256 tokens" in reader.inner_text()
    page.keyboard.press(" ")
    assert poll(lambda: not reader.is_visible())
    page.keyboard.press(" ")
    assert poll(lambda: reader.is_visible())
    page.keyboard.press("Escape")

    # search: only the matching texts, the match highlighted; then bulk labels by shift-click
    page.locator(f"{widget} .nbml-search").fill("free PRIZE")
    page.keyboard.press("Enter")
    assert poll(lambda: cells.count() == 7 and page.locator(f"{widget} .nbml-cell mark").count() == 7)
    assert page.locator(f"{widget} .nbml-cell mark").first.inner_text().lower() == "free prize"
    ids = [int(cells.nth(i).get_attribute("data-id")) for i in range(3)]
    cells.nth(0).click()
    cells.nth(2).click(modifiers=["Shift"])
    page.keyboard.press("2")
    assert poll(lambda: query(project, f"SELECT count(*) FROM items WHERE label='spam' AND id IN "
                                       f"({','.join(map(str, ids))})") == [(3,)])
    assert poll(lambda: cells.count() == 4)                              # labelled ones left the unlabelled list


def test_confusion_matrix_fixes_a_text_in_place(lab, page):
    project = str(lab.folder / "sms.nbml")
    lab.write_notebook("sms.ipynb", ["import nbml\nds = nbml.Dataset('sms.nbml')\n"
                                     "m = nbml.train(ds, epochs=2, quiet=True, seed=0)\nm.confusion()"])
    lab.open(page, "sms.ipynb")
    page.wait_for_selector(".nbml-confusion svg .mark-rect path", timeout=180_000)
    lab.wait_idle(page)
    page.locator(".nbml-confusion svg .mark-text text").first.click()
    page.wait_for_function("() => [...document.querySelectorAll('.nbml-confusion span.nbml-muted')]"
                           ".some((s) => /^\\d+ items$/.test(s.textContent))", timeout=30_000)   # the cell's items came
    cell = page.locator(".nbml-confusion .nbml-text-cell").first
    item = int(cell.get_attribute("data-id"))
    stored = query(project, "SELECT content, label FROM items WHERE id=?", item)[0]
    assert cell.locator(".nbml-text").inner_text().split()[:3] == stored[0].split()[:3]
    key, new = ("1", "ham") if stored[1] != "ham" else ("2", "spam")
    cell.click()
    page.keyboard.press(key)
    assert poll(lambda: query(project, "SELECT label, label_source FROM items WHERE id=?", item) == [(new, "human")]), \
        (stored[1], key, query(project, "SELECT label, label_source FROM items WHERE id=?", item))
    badge = page.locator(f".nbml-confusion .nbml-cell[data-id='{item}'] .nbml-decision")
    assert poll(lambda: badge.count() == 1 and new in badge.inner_text())


def test_explore_hovering_a_point_shows_its_text(lab, page):
    lab.write_notebook("explore.ipynb", ["import nbml\nds = nbml.Dataset('texts.nbml')\nw = ds.explore(projection='pca')\nw"])
    lab.open(page, "explore.ipynb")
    marks = ".nbml-explore .nbml-map svg .mark-symbol.role-mark path"
    page.wait_for_selector(marks, timeout=180_000)
    lab.wait_idle(page)
    points = page.evaluate(f"""() => [...document.querySelectorAll({marks!r})].map((p) => {{
        const r = p.getBoundingClientRect();
        return {{ id: p.__data__.datum.id, text: p.__data__.datum.text, x: r.x + r.width / 2, y: r.y + r.height / 2 }}; }})""")
    assert len(points) == 32
    control = next(p for p in points if "ring the bell" in p["text"])
    assert control["text"] == "ring the bell\\x07 twice"                   # escaped, as on the cards
    page.mouse.move(control["x"], control["y"])
    tooltip = page.locator("#vg-tooltip-element")
    assert poll(lambda: tooltip.is_visible() and "ring the bell\\x07 twice" in tooltip.inner_text(), timeout=20)
