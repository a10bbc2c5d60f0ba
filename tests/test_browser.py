"""The widgets in a real JupyterLab, in Debian's Chromium driven by Playwright: keys, clicks, a lasso, Stop, the
store, and a whole labelling notebook run with Run All whose every card shows its picture.

Needs /usr/bin/chromium (`apt-get install chromium`, as .ci/run does); skipped with that reason otherwise.
"""
import re
import sqlite3
import time
from pathlib import Path

import pytest

from conftest import make_images
from lab import Lab, block_outside, chromium_available

pytestmark = pytest.mark.skipif(not chromium_available(), reason="needs Debian's chromium (apt-get install chromium)")

SCREENSHOTS = Path(__file__).resolve().parent.parent / ".cache" / "screenshots"
TRAIN = "arch='test_resnet', size=32, bs=8, lr=2e-3, pretrained=False, seed=0"


def poll(fn, timeout=30.0, every=0.1):
    """fn() until it returns something truthy; its last value otherwise."""
    deadline = time.time() + timeout
    while True:
        value = fn()
        if value or time.time() > deadline:
            return value
        time.sleep(every)


def query(project, sql, *args):
    with sqlite3.connect(project) as c:
        return c.execute(sql, args).fetchall()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    import nbml
    folder = tmp_path_factory.mktemp("lab")
    make_images(folder / "images")
    for name in ("label.nbml", "model.nbml"):
        ds = nbml.Dataset(folder / name)
        report = ds.add_images(folder / "images")
        if name == "label.nbml":
            ds.set_label(report.added[:12], None)
        ds.close()
    with Lab(folder) as running:
        yield running


def screenshot_if_failed(pg, request) -> None:
    """The page and each widget into .cache/screenshots when the test failed."""
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        pg.screenshot(path=str(SCREENSHOTS / f"{request.node.name}-page.png"), full_page=True)
        for i, widget in enumerate(pg.query_selector_all(".nbml")):
            widget.screenshot(path=str(SCREENSHOTS / f"{request.node.name}-widget{i}.png"))


@pytest.fixture
def page(browser, request):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    yield pg
    screenshot_if_failed(pg, request)
    context.close()


def test_label_by_keyboard_without_leaking_keys(lab, page):
    project = str(lab.folder / "label.nbml")
    lab.write_notebook("label.ipynb", ["import nbml\nds = nbml.Dataset('label.nbml')\nw = ds.label(page_size=8)\nw"])
    lab.open(page, "label.ipynb")
    page.wait_for_selector(".nbml-label-widget .nbml-cell img", timeout=120_000)
    lab.wait_idle(page)
    cells = page.locator(".nbml-label-widget .nbml-cell")
    assert cells.count() == 8
    first = int(cells.first.get_attribute("data-id"))
    n_cells = page.evaluate("() => window.jupyterapp.shell.currentWidget.content.widgets.length")

    cells.first.click()
    page.keyboard.press("2")                       # classes: blue, green, red -> "green"
    assert poll(lambda: query(project, "SELECT label FROM items WHERE id=?", first) == [("green",)])
    assert poll(lambda: page.locator(f".nbml-label-widget .nbml-cell[data-id='{first}']").count() == 0)

    for key in ("m", "a", "b", "y", "d", "d"):     # notebook command-mode shortcuts must not fire
        page.keyboard.press(key)
    time.sleep(0.5)
    assert lab.active_cell_type(page) == "code"
    assert page.evaluate("() => window.jupyterapp.shell.currentWidget.content.widgets.length") == n_cells

    page.keyboard.press("Backspace")               # undo
    assert poll(lambda: query(project, "SELECT label FROM items WHERE id=?", first) == [(None,)])
    assert poll(lambda: page.locator(f".nbml-label-widget .nbml-cell[data-id='{first}']").count() == 1)

    second, third = (int(cells.nth(i).get_attribute("data-id")) for i in (1, 2))
    cells.nth(1).click()
    cells.nth(2).click(modifiers=["Shift"])
    page.keyboard.press("3")                       # bulk: both -> "red"
    assert poll(lambda: query(project, "SELECT count(*) FROM items WHERE id IN (?, ?) AND label='red'",
                              second, third) == [(2,)])


def test_confusion_cell_click_and_relabel(lab, page):
    project = str(lab.folder / "model.nbml")
    lab.write_notebook("confusion.ipynb", [
        "import nbml\nds = nbml.Dataset('model.nbml')\n"
        f"m = nbml.train(ds, epochs=2, quiet=True, {TRAIN})\nm.confusion()"])
    lab.open(page, "confusion.ipynb")
    page.wait_for_selector(".nbml-confusion svg .mark-rect path", timeout=180_000)
    lab.wait_idle(page)
    counts = query(project, "SELECT label, count(*) FROM items WHERE split='valid' GROUP BY label")
    assert counts
    page.locator(".nbml-confusion svg .mark-text text").first.click()     # the count drawn on the cell
    caption = page.locator(".nbml-confusion .nbml-muted").first
    assert poll(lambda: "showing actual" in caption.inner_text(), timeout=30)
    cell = page.locator(".nbml-confusion .nbml-cell").first
    cell.wait_for(timeout=30_000)
    item = int(cell.get_attribute("data-id"))
    before = query(project, "SELECT label FROM items WHERE id=?", item)[0][0]
    key, new = ("1", "blue") if before != "blue" else ("3", "red")
    cell.click()
    page.keyboard.press(key)
    assert poll(lambda: query(project, "SELECT label, label_source FROM items WHERE id=?", item) == [(new, "human")])
    badge = page.locator(f".nbml-confusion .nbml-cell[data-id='{item}'] .nbml-decision")
    assert poll(lambda: badge.count() == 1 and new in badge.inner_text())


def test_stop_button_stops_training(lab, page):
    project = str(lab.folder / "model.nbml")
    lab.write_notebook("train.ipynb", ["import nbml\nds = nbml.Dataset('model.nbml')\n"
                                       f"h = nbml.train(ds, epochs=5000, {TRAIN})"])
    lab.open(page, "train.ipynb")
    page.wait_for_selector(".nbml-monitor svg", timeout=120_000)
    status = page.locator(".nbml-monitor > .nbml-muted")
    def epoch():
        found = re.search(r"epoch (\d+)/", status.inner_text())
        return int(found.group(1)) if found else 0
    assert poll(lambda: epoch() >= 3, timeout=240)
    runs_before = query(project, "SELECT count(*) FROM runs WHERE status='stopped'")[0][0]
    page.locator(".nbml-monitor button").click()
    assert poll(lambda: query(project, "SELECT count(*) FROM runs WHERE status='stopped'")[0][0] > runs_before,
                timeout=60)
    assert poll(lambda: "stopped" in page.locator(".nbml-monitor").inner_text(), timeout=30)
    history = query(project, "SELECT history FROM runs ORDER BY id DESC LIMIT 1")[0][0]
    assert 2 <= history.count('"epoch"') < 5000


def inside(x, y, polygon):
    """Even-odd ray casting, written again here so the test does not trust the widget's own geometry."""
    hit = False
    for (xi, yi), (xj, yj) in zip(polygon, polygon[-1:] + polygon[:-1]):
        if (yi > y) != (yj > y) and x < (xj - xi) * (y - yi) / (yj - yi) + xi:
            hit = not hit
    return hit


def near_edge(x, y, polygon, px=4.0):
    """Whether (x, y) is within `px` of an edge (rounding may put such a point either side)."""
    for (x1, y1), (x2, y2) in zip(polygon, polygon[1:] + polygon[:1]):
        dx, dy = x2 - x1, y2 - y1
        t = max(0.0, min(1.0, ((x - x1) * dx + (y - y1) * dy) / (dx * dx + dy * dy or 1)))
        if ((x - x1 - t * dx) ** 2 + (y - y1 - t * dy) ** 2) ** 0.5 < px:
            return True
    return False


def test_explore_lasso_selects_points_to_label_in_bulk(lab, page):
    project = str(lab.folder / "explore.nbml")
    lab.write_notebook("explore.ipynb", [
        "import nbml\nds = nbml.Dataset('explore.nbml')\nds.add_images('images')\n"
        f"nbml.train(ds, epochs=1, quiet=True, {TRAIN})\n"
        "ds.set_label(ds.query_ids(), None)   # the map's points start unlabelled\n"
        "w = ds.explore(projection='pca')\nw"])
    lab.open(page, "explore.ipynb")
    marks = ".nbml-explore .nbml-map svg .mark-symbol.role-mark path"
    page.wait_for_selector(marks, timeout=180_000)
    lab.wait_idle(page)
    def centres():     # where each point is drawn now, in page pixels (read again after anything may scroll)
        return page.evaluate(f"""() => [...document.querySelectorAll({marks!r})].map((p) => {{
            const r = p.getBoundingClientRect();
            return {{ id: p.__data__.datum.id, x: r.x + r.width / 2, y: r.y + r.height / 2 }}; }})""")
    points = centres()
    assert len(points) == 36
    assert page.locator(".nbml-explore .nbml-tools button[aria-pressed='true']").inner_text() == "lasso"

    # a concave lasso: the left half of the map with a notch cut into it from the right
    xs, ys = [p["x"] for p in points], [p["y"] for p in points]
    x0, x1, y0, y1 = min(xs) - 12, max(xs) + 12, min(ys) - 12, max(ys) + 12
    xm, ym = (x0 + x1) / 2, (y0 + y1) / 2
    lasso = [(x0, y0), (xm, y0), (x0 + (x1 - x0) / 5, ym), (xm, y1), (x0, y1)]
    sure = {p["id"] for p in points if inside(p["x"], p["y"], lasso) and not near_edge(p["x"], p["y"], lasso)}
    unsure = {p["id"] for p in points if near_edge(p["x"], p["y"], lasso)}
    assert sure and len(sure | unsure) < len(points)
    page.mouse.move(*lasso[0])
    page.mouse.down()
    for x, y in lasso[1:] + lasso[:1]:
        page.mouse.move(x, y, steps=10)
    page.mouse.up()

    message = page.locator(".nbml-explore .nbml-bar .nbml-muted", has_text="selected on the map")
    assert poll(lambda: message.count() == 1, timeout=30)
    n_selected = int(message.inner_text().split()[0])
    assert page.locator(".nbml-explore .nbml-lasso path").get_attribute("d").endswith("Z")
    assert poll(lambda: page.locator(".nbml-explore .nbml-cell").count() == min(n_selected, 24))
    assert page.locator(".nbml-explore .nbml-cell.selected").count() == min(n_selected, 24)

    page.keyboard.press("1")                       # classes: blue, green, red -> every selected item "blue"
    def labelled():
        return {i for (i,) in query(project, "SELECT id FROM items WHERE label='blue'")}
    assert poll(lambda: len(labelled()) == n_selected)
    assert sure <= labelled() <= sure | unsure
    assert query(project, "SELECT count(*) FROM items WHERE label IS NOT NULL")[0][0] == n_selected

    # a click on a point still lists its neighbours in lasso mode
    far = max(points, key=lambda p: p["x"])
    page.mouse.click(far["x"], far["y"])
    assert poll(lambda: page.locator(".nbml-explore select").input_value() == "similar", timeout=30)
    assert poll(lambda: page.locator(".nbml-explore .nbml-cell").first.get_attribute("data-id") == str(far["id"]))

    # the box is still there: a box over the right half selects only points there
    page.locator(".nbml-explore .nbml-tools button", has_text="box").click()
    points = centres()
    xs, ys = [p["x"] for p in points], [p["y"] for p in points]
    xm = (min(xs) + max(xs)) / 2
    page.mouse.move(xm, min(ys) - 3)              # inside the plot: the box brush starts only there
    page.mouse.down()
    page.mouse.move(max(xs) + 3, max(ys) + 3, steps=10)
    page.mouse.up()
    right = sum(p["x"] > xm + 4 for p in points)
    maybe = sum(abs(p["x"] - xm) <= 4 for p in points)
    assert poll(lambda: page.locator(".nbml-explore select").input_value() == "selection", timeout=30)
    assert poll(lambda: message.count() == 1, timeout=30)
    n_box = int(message.inner_text().split()[0])
    assert right >= 1 and right <= n_box <= right + maybe

    # back to the lasso: the box is cleared from the map (and the selection stays)
    def box_width():
        return page.evaluate("""() => Math.max(0, ...[...document.querySelectorAll(
            '.nbml-explore .nbml-map .brush_brush path')].map((p) => p.getBoundingClientRect().width))""")
    assert box_width() > 10
    page.locator(".nbml-explore .nbml-tools button", has_text="lasso").click()
    assert poll(lambda: box_width() < 1, timeout=10)
    assert int(message.inner_text().split()[0]) == n_box


# The notebook of issue 11 (item 3), in its order, with a small network trained from scratch: every widget shows
# items while the kernel is still busy with later cells, so their thumbnails arrive only once Run All is over.
DIGITS_NOTEBOOK = [
    "import nbml\nds = nbml.Dataset('digits.nbml')\nds.add_images(nbml.datasets.digits('digits'))",
    "ds.set_label(ds.query_ids()[:30], None)\nds.label(page_size=24)",
    "model = nbml.train(ds, arch='test_resnet', epochs=1, size=32, pretrained=False, seed=0)",
    "model.wait(); model.confusion()",
    "model.top_losses()",
    "ds.label(model=model, filter='low_confidence')",
    "ds.explore()",
    "ds.stats()",
    "ds.compare_runs()",
    "model.serve()",
    "nbml.monitor(ds)",
]
GRIDS = {1: "label-widget", 3: "confusion", 4: "cleaner", 5: "label-widget", 6: "explore"}   # cell -> widget


@pytest.fixture(scope="module")
def digits_lab(lab, browser):
    """The digits notebook run once with Run All (every request outside 127.0.0.1 blocked), then left idle."""
    (lab.folder / "digits").mkdir()
    lab.write_notebook("digits/run_all.ipynb", DIGITS_NOTEBOOK)
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    outside = block_outside(context)
    pg = context.new_page()
    lab.open(pg, "digits/run_all.ipynb")
    lab.wait_run_all(pg)
    yield pg, lab.folder / "digits" / "digits.nbml", outside
    context.close()


@pytest.fixture
def digits(digits_lab, request):
    yield digits_lab
    screenshot_if_failed(digits_lab[0], request)


def pictures(widget) -> dict:
    """Cards, and cards showing a loaded picture with a layout box (a user sees it once scrolled to)."""
    return widget.evaluate("""(w) => { const cards = [...w.querySelectorAll('.nbml-cell')];
        return { cards: cards.length, shown: cards.filter((c) => { const img = c.querySelector('img');
          return img && img.complete && img.naturalWidth > 0 && img.getClientRects().length > 0
            && img.getBoundingClientRect().height > 10; }).length }; }""")


def test_run_all_notebook_shows_a_picture_in_every_card_of_every_widget(digits):
    """Cards whose thumbnails arrive after Run All, while their cell is off-screen, still show them (issue 11:
    Chromium left such images without a layout box in JupyterLab's content-visibility windowing)."""
    pg, _, outside = digits
    for cell, name in GRIDS.items():
        widget = pg.locator(".jp-Notebook .jp-CodeCell").nth(cell).locator(f".nbml-{name}")
        widget.scroll_into_view_if_needed()
        if name == "explore":            # it lists nothing until asked: a click on a point lists its neighbours
            point = widget.locator(".nbml-map svg .mark-symbol.role-mark path").first
            point.wait_for(timeout=60_000)
            box = point.bounding_box()
            pg.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        assert poll(lambda: pictures(widget)["cards"] > 0, timeout=60), f"cell {cell}: {name} lists no item"
        assert poll(lambda: pictures(widget)["shown"] == pictures(widget)["cards"], timeout=60), \
            f"cell {cell}: {name} {pictures(widget)}"
    assert outside == []


def test_digit_keys_label_the_digit_they_name(digits):
    pg, project, _ = digits
    grid = pg.locator(".jp-Notebook .nbml-label-widget").first
    grid.scroll_into_view_if_needed()
    chips = grid.locator(".nbml-class b")
    assert [chips.nth(i).text_content() for i in range(chips.count())] == [str(d) for d in range(10)]
    first, second = (int(grid.locator(".nbml-cell").nth(i).get_attribute("data-id")) for i in (0, 1))
    grid.locator(".nbml-cell").first.click()
    pg.keyboard.press("3")                          # the item leaves the unlabelled page; the cursor is on the next
    assert poll(lambda: query(project, "SELECT label FROM items WHERE id=?", first) == [("3",)])
    assert poll(lambda: grid.locator(f".nbml-cell[data-id='{first}']").count() == 0)
    pg.keyboard.press("9")
    assert poll(lambda: query(project, "SELECT label FROM items WHERE id=?", second) == [("9",)])
    assert query(project, "SELECT label_source FROM items WHERE id IN (?, ?)", first, second) == [("human",)] * 2
