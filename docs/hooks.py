"""MkDocs hooks of nbml's site (mkdocs.yml `hooks:`): the notebooks as pages with their outputs, the API reference
generated from `nbml._EXPORTS`, and any page in docs/ that the nav does not name added to it.

Notebook pages come from the executed copies in .cache/executed/ (written by the test run, or by docs/executed.py),
or from notebooks/ without outputs when no current copy exists. A widget has no static HTML: its output shows the
screenshot docs/screenshots.py took of that cell's widget (docs/img/widgets.json), when there is one.
"""
from __future__ import annotations

import base64
import html
import json
import re
import sys
from pathlib import Path

from mkdocs.structure.files import File

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(DOCS))
sys.path.insert(0, str(ROOT))

import executed  # noqa: E402  (docs/executed.py)

NOTEBOOK_TITLES = {"quickstart": "Images: the quickstart", "text": "Texts: SMS spam", "tabular": "Tables: Titanic"}
WIDGET = "application/vnd.jupyter.widget-view+json"
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
SCRIPT = re.compile(r"<script\b.*?</script>", re.S | re.I)

# Pages another piece of work may add to docs/, and the nav section each belongs in; any other page goes to "More".
EXTRA_SECTIONS = {"forecast.md": "Guides", "serving-ray.md": "Export and serving"}

# The API reference: page -> (title, public names of nbml in that page's order). A name nbml exports that no page
# lists lands in api/more.md, so every exported name has a page.
API_PAGES = {
    "dataset": ("Dataset and projects", ["Dataset", "IngestReport", "Agreement", "UndoConflictError", "ImageError"]),
    "training": ("Training", ["train", "TrainingHandle", "DistributedTrainingError", "backbones",
                              "PretrainedWeightsWarning", "hardware_report", "events"]),
    "model": ("Model", ["Model", "Evaluation", "Prediction", "load"]),
    "serving": ("Export and serving", ["serve", "predict_files", "monitor"]),
    "datasets": ("Data sets", ["datasets"]),
}
# Classes documented beside the exported names: what the calls above return.
API_EXTRA = {
    "serving": ["nbml.serving.server.ServerHandle", "nbml.serving.ray_engine.RayServerHandle"],
    "widgets": ["nbml.widgets.label.LabelWidget", "nbml.widgets.monitor.TrainingMonitor",
                "nbml.widgets.confusion.ConfusionWidget", "nbml.widgets.cleaner.TopLossesWidget",
                "nbml.widgets.runs.RunsWidget", "nbml.widgets.explore.ExploreWidget", "nbml.widgets.chart.Chart"],
}
API_INTRO = {
    "dataset": "`nbml.Dataset` opens or creates a project; its methods include those of the store it is built on.",
    "widgets": "What `ds.label()`, `nbml.train(ds)` in a notebook, `model.confusion()`, `model.top_losses()`, "
               "`ds.compare_runs()`, `ds.explore()`, `ds.stats()` and `nbml.monitor()` return. Their keys: "
               "[the widgets and their keys](../widgets.md).",
    "serving": "`model.serve()` and `nbml.serve()` return a `ServerHandle` (with `engine=\"ray\"`, a "
               "`RayServerHandle`).",
}


def module_file(module: str) -> Path:
    """The source file of a module of nbml (read by mkdocstrings without importing it)."""
    return ROOT.joinpath(*module.split(".")).with_suffix(".py")


def exports() -> dict[str, tuple[str, str | None]]:
    import nbml
    return dict(nbml._EXPORTS)


def api_target(name: str, module: str, attr: str | None) -> str:
    """Where mkdocstrings finds the name: the module that defines it (a package may re-export it lazily)."""
    import inspect
    import nbml
    obj = getattr(nbml, name)
    if inspect.ismodule(obj):
        return obj.__name__
    return f"{getattr(obj, '__module__', module)}.{getattr(obj, '__qualname__', attr)}"


def api_pages() -> dict[str, str]:
    """src_uri -> Markdown of every API page and its index."""
    exp = exports()
    listed = {n for _, names in API_PAGES.values() for n in names}
    pages = dict(API_PAGES)
    pages["widgets"] = ("Widgets", [])
    rest = [n for n in exp if n not in listed]
    if rest:
        pages["more"] = ("More", rest)
    out, index = {}, ["# API reference", "",
                      "Every public name `import nbml` gives, and what those calls return, generated from the "
                      "docstrings. `import nbml` stays light: each name loads its module on first use.", ""]
    for page, (title, names) in pages.items():
        lines = [f"# {title}", ""]
        if page in API_INTRO:
            lines += [API_INTRO[page], ""]
        index.append(f"## [{title}]({page}.md)")
        index.append("")
        for name in names:
            if name not in exp:
                continue
            target = api_target(name, *exp[name])
            lines += [f"::: {target}", f"    options:", f"      heading: nbml.{name}", ""]
            if name == "Dataset":
                lines[-2:-1] = ["      heading: nbml.Dataset", "      inherited_members: true"]
            index.append(f"- [`nbml.{name}`]({page}.md#{target})")
        extra = [t for t in API_EXTRA.get(page, []) if module_file(t.rsplit(".", 1)[0]).exists()]
        for target in extra:
            short = target.rsplit(".", 1)[1]
            lines += [f"::: {target}", ""]
            index.append(f"- [`{short}`]({page}.md#{target})")
        index.append("")
        out[f"api/{page}.md"] = "\n".join(lines)
    out["api/index.md"] = "\n".join(index)
    return out


# ---- notebooks -------------------------------------------------------------------------------------------------

def widget_images() -> dict[tuple[str, str], list[dict]]:
    """(notebook file name, cell source) -> the screenshots of that cell's widgets."""
    path = DOCS / "img" / "widgets.json"
    shots = json.loads(path.read_text()) if path.exists() else []
    found: dict[tuple[str, str], list[dict]] = {}
    for shot in shots:
        if (DOCS / "img" / shot["image"]).exists():
            found.setdefault((shot["notebook"], shot["source"]), []).append(shot)
    for cell_shots in found.values():
        cell_shots.sort(key=lambda shot: "during" not in shot["image"])    # a run in progress before its end
    return found


def fence(text: str, lang: str = "") -> str:
    ticks = "```"
    while ticks in text:
        ticks += "`"
    return f"{ticks}{lang}\n{text.rstrip()}\n{ticks}\n"


def output_md(out, shots: list[dict], shown: set) -> str:
    kind = out.get("output_type")
    if kind == "stream":
        return fence(ANSI.sub("", out.get("text", "")), "text")
    if kind == "error":
        return fence(ANSI.sub("", "\n".join(out.get("traceback", []))), "text")
    data = out.get("data", {})
    if WIDGET in data:
        todo = [s for s in shots if s["image"] not in shown]
        if todo:
            shown.update(s["image"] for s in todo)
            return "\n".join(f'![{html.escape(s["alt"])}](../img/{s["image"]})\n' for s in todo)
        return '<p class="nbml-widget-note">(a live widget in the notebook)</p>\n'
    if "image/png" in data:
        png = data["image/png"]
        png = png if isinstance(png, str) else base64.b64encode(png).decode()
        return f'<img alt="output" src="data:image/png;base64,{png.strip()}">\n'
    if "text/html" in data:
        body = SCRIPT.sub("", "".join(data["text/html"]))
        body = "\n".join(line for line in body.splitlines() if line.strip())
        return f'<div class="nbml-output">\n{body}\n</div>\n'
    if "text/markdown" in data:
        return "".join(data["text/markdown"]) + "\n"
    if "text/plain" in data:
        return fence(ANSI.sub("", "".join(data["text/plain"])), "text")
    return ""


def notebook_md(source: Path) -> str:
    """One notebook as a Markdown page: its cells in order, each code cell's outputs from the executed copy."""
    import nbformat
    copy = executed.current_copy(source)
    nb = nbformat.read(copy or source, as_version=4)
    shots = widget_images()
    link = f"https://github.com/nbml/nbml/blob/main/notebooks/{source.name}"
    parts = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            parts.append(cell.source + "\n")
            if i == 0:
                note = (f"*This page is [`notebooks/{source.name}`]({link}) with the outputs of its run by the test "
                        "suite.*" if copy else
                        f"*This page is [`notebooks/{source.name}`]({link}); its outputs appear once `make test` or "
                        "`make docs` has run it.*")
                parts.append(note + "\n")
        elif cell.cell_type == "code":
            parts.append(fence(cell.source, "python"))
            shown: set = set()
            cell_shots = shots.get((source.name, cell.source), [])
            for out in cell.get("outputs", []):
                parts.append(output_md(out, cell_shots, shown))
            if not cell.get("outputs") and copy is None:
                for s in cell_shots:
                    parts.append(f'![{html.escape(s["alt"])}](../img/{s["image"]})\n')
    return "\n".join(parts)


# ---- MkDocs events ---------------------------------------------------------------------------------------------

def _nav_files(nav) -> set[str]:
    found = set()
    for entry in nav or []:
        value = list(entry.values())[0] if isinstance(entry, dict) else entry
        if isinstance(value, list):
            found |= _nav_files(value)
        elif isinstance(value, str):
            found.add(value)
    return found


def on_config(config):
    """The API reference's pages join the nav, and so do pages in docs/ that the nav does not name (another piece of
    work's new guide)."""
    nav = config["nav"]
    for entry in nav:
        if isinstance(entry, dict) and entry.get("API reference") == "api/index.md":
            titles = {uri: text.split("\n", 1)[0].lstrip("# ") for uri, text in api_pages().items()}
            entry["API reference"] = [{"Overview": "api/index.md"}] + [
                {title: uri} for uri, title in titles.items() if uri != "api/index.md"]
    named = _nav_files(nav)
    for page in sorted(DOCS.glob("*.md")):
        if page.name in named:
            continue
        section = EXTRA_SECTIONS.get(page.name, "More")
        title = page.read_text(errors="replace").split("\n", 1)[0].lstrip("# ").strip() or page.stem
        for entry in nav:
            if isinstance(entry, dict) and section in entry:
                entry[section].append({title: page.name})
                break
        else:
            nav.append({section: [{title: page.name}]})
    return config


def on_files(files, config):
    for source in sorted((ROOT / "notebooks").glob("*.ipynb")):
        files.append(File.generated(config, f"notebooks/{source.stem}.md", content=notebook_md(source)))
    for uri, text in api_pages().items():
        files.append(File.generated(config, uri, content=text))
    return files
