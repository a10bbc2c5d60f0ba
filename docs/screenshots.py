"""Pictures of every widget for the docs: runs notebooks/*.ipynb with Run All in a real JupyterLab in Chromium (as
the browser tests do: loopback only, every other request blocked) and saves a PNG of each widget into docs/img/,
cropped to the widget and reduced to 256 colours. `make screenshots` runs it; `make docs` reuses the PNGs.

    .venv/bin/python docs/screenshots.py                     # every notebook (about 10 minutes on 2 cores)
    .venv/bin/python docs/screenshots.py --only text,tabular

docs/img/widgets.json records which notebook cell each picture shows, so the notebook pages show it in place of the
widget (a widget has no static HTML). Needs Debian's Chromium (/usr/bin/chromium) and the dev extras (playwright).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
IMG = DOCS / "img"
sys.path.insert(0, str(ROOT / "tests"))

from lab import Lab, block_outside, chromium_available, launch  # noqa: E402   (tests/lab.py)

KERNEL_JS = """async (code) => {
  const future = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.requestExecute({code});
  await future.done;
}"""

# notebook, the cell's first line, what to photograph in its output, file name, alt text
SHOTS = [
    ("quickstart.ipynb", "ds.set_label(ds.df['id'].iloc[:30].tolist(), None)", ".nbml-label-widget",
     "label-images.png", "The labelling grid on handwritten digits: a chip and a key per class, a count per class"),
    ("quickstart.ipynb", "model = nbml.train(", ".nbml-monitor", "monitor-after.png",
     "The training monitor after training: losses, validation accuracy and the summary"),
    ("quickstart.ipynb", "print(f'accuracy", ".nbml-confusion", "confusion.png",
     "The confusion matrix: click a cell to list its items and fix them"),
    ("quickstart.ipynb", "model.top_losses()", ".nbml-cleaner", "top-losses.png",
     "The top losses: each item with its label, the prediction and both probabilities"),
    ("quickstart.ipynb", "ds.label(queue='suggest'", ".nbml-label-widget", "label-suggest.png",
     "The grid working through what to label next, with the model's suggestion and confidence"),
    ("quickstart.ipynb", "ds.explore()", ".nbml-explore", "explore.png",
     "The explorer: an embedding map with a lasso, neighbours, class counts, duplicates and label issues"),
    ("quickstart.ipynb", "server.stop()", ".nbml-chart", "serving-monitor.png",
     "nbml.monitor: predictions, latency, confidence and the class mix of what the server answered"),
    ("quickstart.ipynb", "ds.compare_runs()", ".nbml-runs", "runs.png",
     "The run comparison: every run's validation curves and a table of parameters and metrics"),
    ("text.ipynb", "ds.label(page_size=12)", ".nbml-label-widget", "label-texts.png",
     "The labelling grid on SMS messages: texts as cards, with a search box"),
    ("text.ipynb", "model = nbml.train(", ".nbml-monitor", "monitor-texts.png",
     "The training monitor of a text model, with its refit phase"),
    ("text.ipynb", "print(model.evaluate())", ".nbml-confusion", "confusion-texts.png",
     "The confusion matrix of the SMS model"),
    ("text.ipynb", "model.top_losses()", ".nbml-cleaner", "top-losses-texts.png",
     "The top losses of the SMS model: each text with its label, the prediction and both probabilities"),
    ("text.ipynb", "ds.stats()", ".nbml-chart", "stats-texts.png",
     "ds.stats() of a text project: counts per class and split, and the text lengths"),
    ("tabular.ipynb", "ds.label(page_size=12)", ".nbml-label-widget", "label-rows.png",
     "The labelling grid on table rows: each row a card of column: value lines"),
    ("tabular.ipynb", "model = nbml.train(", ".nbml-monitor", "monitor-rows.png",
     "The training monitor of a table project: the network's curves, then the three models compared"),
    ("tabular.ipynb", "print(model.evaluate())", ".nbml-confusion", "confusion-rows.png",
     "The confusion matrix of the Titanic model"),
    ("tabular.ipynb", "model.top_losses()", ".nbml-cleaner", "top-losses-rows.png",
     "The top losses of the Titanic model: each row with its label, the prediction and both probabilities"),
    ("tabular.ipynb", "ds.stats()", ".nbml-chart", "stats-rows.png",
     "ds.stats() of a table project: counts per class and a summary of every column"),
]
DURING = ("quickstart.ipynb", "model = nbml.train(", "monitor-during.png",
          "The training monitor during training: the live loss curve, progress with ETA, and Stop")
PREVIOUS: list[dict] = []     # docs/img/widgets.json as it was: a picture that could not be taken again stays
PANEL = ("panel.png", "The nbml side panel in JupyterLab: model servers and projects with their runs")


def cell_index(nb_path: Path, first_line: str) -> tuple[int, str]:
    """The cell's position among all cells, and its whole source."""
    import nbformat
    for i, cell in enumerate(nbformat.read(nb_path, as_version=4).cells):
        if cell.cell_type == "code" and cell.source.startswith(first_line):
            return i, cell.source
    raise LookupError(f"{nb_path.name}: no code cell starts with {first_line!r}")


def cell_locator(page, index: int):
    """The cell at `index`, scrolled into view (JupyterLab keeps only the cells near the view in the page)."""
    page.evaluate("""async (i) => { const nb = window.jupyterapp.shell.currentWidget.content;
        await Promise.race([nb.scrollToItem(i, 'start'), new Promise((r) => setTimeout(r, 3000))]);
        nb.widgets[i].node.setAttribute('data-nbml-shot', String(i)); }""", index)
    return page.locator(f'.jp-Cell[data-nbml-shot="{index}"]')


def dismiss_news(page) -> None:
    """JupyterLab's question about news, which would cover the lower right corner."""
    button = page.locator(".jp-Notification-Toast-Close, .jp-toast-dismiss").first
    if button.count():
        button.click()


def optimise(path: Path, trim: bool = False) -> None:
    """256 colours, PNG optimised: a widget's flat colours survive and the file is a fraction of the size. `trim`
    cuts the empty background below and beside the content (the side panel is as tall as the window)."""
    from PIL import Image, ImageChops
    with Image.open(path) as im:
        rgb = im.convert("RGB")
    if trim:
        box = ImageChops.difference(rgb, Image.new("RGB", rgb.size, rgb.getpixel((rgb.width - 1, rgb.height - 1))))
        bbox = box.getbbox()
        if bbox:
            rgb = rgb.crop((0, 0, min(rgb.width, bbox[2] + 8), min(rgb.height, bbox[3] + 8)))
    small = rgb.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    small.save(path, optimize=True)


def photograph(page, locator, path: Path, settle: float = 2.0, trim: bool = False) -> None:
    locator.scroll_into_view_if_needed(timeout=60_000)
    page.wait_for_timeout(settle * 1000)   # charts draw, thumbnails arrive (never time.sleep: the page's requests
                                           # pass through Playwright's route handler, which runs only while it waits)
    locator.screenshot(path=str(path), timeout=60_000)
    optimise(path, trim)
    print(f"  {path.relative_to(ROOT)} ({path.stat().st_size // 1024} KiB)", flush=True)


def during_training(page, index: int, path: Path, timeout: float = 1200) -> bool:
    """The monitor of a run in progress, once it says epoch 3 (or whatever it shows when the run is nearly over)."""
    deadline, shown = time.time() + timeout, 0.0
    while time.time() < deadline:
        monitor = cell_locator(page, index).locator(".nbml-monitor").first   # scrolled to it again each time
        text = monitor.inner_text(timeout=5_000) if monitor.count() else ""
        if time.time() > shown:
            print(f"  monitor: {text.splitlines()[0] if text else 'not shown yet'}", flush=True)
            shown = time.time() + 60
        if "epoch 3/" in text or "epoch 4/" in text or "Done" in text:
            photograph(page, monitor, path, settle=0.5)
            return True
        page.wait_for_timeout(2000)
    print(f"  {path.name}: no running monitor within {timeout:.0f} s; skipped", flush=True)
    return False


def side_panel(page, path: Path) -> None:
    """The panel with the quickstart's project and a server started for the picture (stopped afterwards)."""
    page.evaluate(KERNEL_JS, "server = model.serve()")
    page.evaluate("() => window.jupyterapp.shell.activateById('nbml-panel')")
    page.wait_for_selector("#nbml-panel .nbml-server", timeout=60_000)
    page.wait_for_selector("#nbml-panel .nbml-run", timeout=60_000)
    photograph(page, page.locator("#nbml-panel"), path, trim=True)
    page.evaluate(KERNEL_JS, "server.stop()")


def run_notebook(lab, browser, name: str, records: list[dict]) -> None:
    print(f"{name}: Run All in JupyterLab", flush=True)
    context = browser.new_context(viewport={"width": 1300, "height": 1800})   # the tallest widget (top losses) whole
    blocked = block_outside(context)
    page = context.new_page()
    try:
        lab.open(page, name, run_all=False)
        # Run All without waiting for it (Lab.open's evaluate returns the command's promise, which settles only
        # when the last cell has run): the monitor is photographed while it trains
        page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
        if name == DURING[0]:
            index, source = cell_index(lab.folder / name, DURING[1])
            if during_training(page, index, IMG / DURING[2]):
                records.append({"notebook": name, "source": source, "image": DURING[2], "alt": DURING[3]})
            else:
                records.extend(r for r in PREVIOUS if r["image"] == DURING[2])
        lab.wait_run_all(page, timeout=1800)
        dismiss_news(page)
        for nb, first_line, selector, image, alt in SHOTS:
            if nb != name:
                continue
            index, source = cell_index(lab.folder / name, first_line)
            try:
                photograph(page, cell_locator(page, index).locator(selector).first, IMG / image)
            except Exception as e:      # one missing picture should not cost the others
                print(f"  {image}: not taken ({type(e).__name__}: {str(e).splitlines()[0]})", flush=True)
                records.extend(r for r in PREVIOUS if r["image"] == image)    # the older picture stays
                continue
            records.append({"notebook": name, "source": source, "image": image, "alt": alt})
        if name == "quickstart.ipynb":
            side_panel(page, IMG / PANEL[0])
        if blocked:
            print(f"  requests outside 127.0.0.1 were blocked: {blocked[:5]}", flush=True)
    finally:
        context.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default="", help="comma-separated notebook names (without .ipynb)")
    args = ap.parse_args(argv)
    if not chromium_available():
        print("needs Debian's chromium (apt-get install chromium)", file=sys.stderr)
        return 1
    from playwright.sync_api import sync_playwright
    names = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
    if args.only:
        names = [n for n in names if n[:-6] in args.only.split(",")]
    IMG.mkdir(exist_ok=True)
    index_path = IMG / "widgets.json"
    PREVIOUS[:] = json.loads(index_path.read_text()) if index_path.exists() else []
    records = [r for r in PREVIOUS if r["notebook"] not in names]
    with tempfile.TemporaryDirectory(prefix="nbml-screenshots-") as tmp:
        folder = Path(tmp)
        for name in names:
            shutil.copy(ROOT / "notebooks" / name, folder / name)
        os.environ["NBML_HOME"] = str(folder / "home")       # fresh projects, under Jupyter's root for the panel
        os.environ["HF_HUB_OFFLINE"] = "1"
        with Lab(folder) as lab, sync_playwright() as pw:
            browser = launch(pw)
            try:
                for name in names:
                    run_notebook(lab, browser, name, records)
            finally:
                browser.close()
    records.sort(key=lambda r: (r["notebook"], r["image"]))
    index_path.write_text(json.dumps(records, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
