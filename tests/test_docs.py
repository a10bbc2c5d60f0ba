"""The documentation: every public name and method has a docstring that mentions each of its parameters, says what
it raises and shows a call (an Examples section whose code parses), the site
builds with `mkdocs build --strict` (broken links and references fail) and loads nothing from another host, and the
README is a short door whose links lead somewhere."""
from __future__ import annotations

import ast
import builtins
import importlib
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import nbml

ROOT = Path(__file__).resolve().parent.parent
# What the calls return, documented beside the exported names (docs/hooks.py API_EXTRA); their methods are checked.
RETURNED = ["nbml.serving.server.ServerHandle", "nbml.widgets.label.LabelWidget",
            "nbml.widgets.monitor.TrainingMonitor",
            "nbml.widgets.confusion.ConfusionWidget", "nbml.widgets.cleaner.TopLossesWidget",
            "nbml.widgets.runs.RunsWidget", "nbml.widgets.explore.ExploreWidget", "nbml.widgets.chart.Chart",
            "nbml.serving.ray_engine.RayServerHandle"]


def resolve(path: str):
    module, _, attr = path.rpartition(".")
    return getattr(importlib.import_module(module), attr)


def own_members(cls):
    """Public methods and properties that nbml's own classes in `cls`'s MRO define (not anywidget's or traitlets')."""
    seen = {}
    for klass in reversed(cls.__mro__):
        if not klass.__module__.startswith("nbml"):
            continue
        for name, value in vars(klass).items():
            if not name.startswith("_") and (inspect.isfunction(value) or isinstance(value, (property, classmethod,
                                                                                              staticmethod))):
                seen[name] = (klass, value)
    return seen


def documented_objects():
    """(name, object) for every exported name, the functions and classes of exported modules, what the calls return,
    and every public method and property of those classes."""
    found = []
    classes = []
    for name, (module, attr) in nbml._EXPORTS.items():
        obj = getattr(nbml, name)
        found.append((f"nbml.{name}", obj))
        if inspect.isclass(obj):
            classes.append((f"nbml.{name}", obj))
        if inspect.ismodule(obj):
            for member in getattr(obj, "__all__", []):
                value = getattr(obj, member)
                if inspect.isfunction(value) or inspect.isclass(value):
                    found.append((f"nbml.{name}.{member}", value))
    for path in RETURNED:
        obj = resolve(path)
        found.append((path, obj))
        classes.append((path, obj))
    for cls_name, cls in classes:
        for member, (_, value) in own_members(cls).items():
            found.append((f"{cls_name}.{member}", value))
    return found


def docstring_of(obj) -> str:
    if isinstance(obj, (classmethod, staticmethod)):
        obj = obj.__func__
    if isinstance(obj, property):
        return obj.__doc__ or obj.fget.__doc__ or ""
    doc = obj.__doc__ or ""
    if inspect.isclass(obj):
        doc = vars(obj).get("__doc__") or ""
        if doc.startswith(f"{obj.__name__}("):
            doc = ""                                      # what dataclass and NamedTuple write when there is none
        init = vars(obj).get("__init__")
        if init is not None and init.__doc__:
            doc += "\n" + init.__doc__
    return doc


def parameters(obj) -> list[str]:
    if isinstance(obj, (classmethod, staticmethod)):
        obj = obj.__func__
    if isinstance(obj, property) or inspect.ismodule(obj):
        return []
    if inspect.isclass(obj) and issubclass(obj, BaseException):
        return []
    if inspect.isclass(obj) and "__init__" not in vars(obj) and "__new__" not in vars(obj) \
            and not hasattr(obj, "__dataclass_fields__") and not hasattr(obj, "_fields"):
        return []                                          # constructed by nbml, never by the user
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return []
    return [p for p in sig.parameters if p not in ("self", "cls")]


def mentions(doc: str, name: str) -> bool:
    return re.search(rf"(?<![\w]){re.escape(name)}(?![\w])", doc) is not None


def test_every_public_name_and_method_has_a_docstring_that_mentions_its_parameters():
    missing, unmentioned = [], []
    for name, obj in documented_objects():
        doc = docstring_of(obj)
        if not doc.strip():
            missing.append(name)
            continue
        lost = [p for p in parameters(obj) if not mentions(doc, p)]
        if lost:
            unmentioned.append(f"{name}: {', '.join(lost)}")
    assert not missing, "no docstring: " + "; ".join(missing)
    assert not unmentioned, "parameters the docstring does not mention: " + "; ".join(unmentioned)


def test_the_check_finds_what_it_should():
    def quiet(a, b):
        """Uses a only."""
    assert [p for p in parameters(quiet) if not mentions(docstring_of(quiet), p)] == ["b"]
    assert not mentions("the item_ids given", "item_id") and mentions("`item_id`: one item", "item_id")


NO_RAISES = re.compile(r"^Raises: nothing of its own\.", re.M)
RAISES = re.compile(r"^Raises:\n((?:[ \t]+\S.*\n?)+)", re.M)
RAISED = re.compile(r"^[ \t]{4}([A-Za-z_][\w.]*):\s+\S", re.M)
EXAMPLES = re.compile(r"^Examples:\n((?:(?:[ \t]+\S.*)?\n?)+)", re.M)


def needs_sections(obj) -> bool:
    """Every walked callable and property says what it raises and shows a call; modules and exception classes
    (which are raised, not called) do not."""
    return not inspect.ismodule(obj) and not (inspect.isclass(obj) and issubclass(obj, BaseException))


def cleaned_docstring(obj) -> str:
    """docstring_of(obj) with each part (a class's and its __init__'s) dedented as mkdocstrings reads it."""
    if inspect.isclass(obj):
        parts = [vars(obj).get("__doc__") or "", (vars(obj).get("__init__") and vars(obj)["__init__"].__doc__) or ""]
        if parts[0].startswith(f"{obj.__name__}("):
            parts[0] = ""
        return "\n\n".join(inspect.cleandoc(p) for p in parts if p)
    return inspect.cleandoc(docstring_of(obj))


def raised_names(doc: str) -> list[str] | None:
    """The exception names a Google-style `Raises:` section lists ([] for "Raises: nothing of its own."), or None
    when the docstring has neither."""
    found = [name for block in RAISES.findall(doc) for name in RAISED.findall(block)]
    if found:
        return found
    return [] if NO_RAISES.search(doc) else None


def example_code(doc: str) -> list[str]:
    """The code of the `>>>` / `...` lines of each Examples section, prompts stripped."""
    blocks = []
    for section in EXAMPLES.findall(doc):
        lines = [line.strip() for line in section.splitlines()]
        code = [line[4:] if len(line) > 3 else "" for line in lines if line.startswith((">>>", "..."))]
        if code:
            blocks.append("\n".join(code))
    return blocks


def is_exception_name(name: str, obj) -> bool:
    """A builtin exception, or an exception class the object's module (or nbml) defines or imports."""
    value = getattr(builtins, name, None)
    if value is None:
        module = getattr(obj, "__module__", None)
        if isinstance(obj, property):
            module = obj.fget.__module__
        elif isinstance(obj, (classmethod, staticmethod)):
            module = obj.__func__.__module__
        value = getattr(sys.modules.get(module or ""), name, None)
    if value is None and "." in name:
        try:
            value = resolve(name)
        except (ImportError, AttributeError, ValueError):
            value = None
    return inspect.isclass(value) and issubclass(value, BaseException)


def section_problems(name: str, obj) -> list[str]:
    doc = cleaned_docstring(obj)
    problems = []
    raised = raised_names(doc)
    if raised is None:
        problems.append(f"{name}: no Raises section (or 'Raises: nothing of its own.')")
    else:
        problems += [f"{name}: raises {exc}, which is no exception class" for exc in raised
                     if not is_exception_name(exc, obj)]
    code = example_code(doc)
    if not code:
        problems.append(f"{name}: no Examples section with a >>> line")
    for block in code:
        try:
            ast.parse(block)
        except SyntaxError as e:
            problems.append(f"{name}: its example does not parse ({e.msg}): {block!r}")
    return problems


def test_every_public_callable_says_what_it_raises_and_shows_a_call_that_parses():
    problems = [p for name, obj in documented_objects() if needs_sections(obj) for p in section_problems(name, obj)]
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems)


def test_the_section_check_finds_what_it_should():
    def good(ds, item_id):
        """Takes `ds` and `item_id`.

        Raises:
            KeyError: when there is no such item.

        Examples:
            >>> good(ds, 3)
            >>> for i in [1, 2]:
            ...     good(ds, i)
        """

    def quiet():
        """Does nothing.

        Raises: nothing of its own.

        Examples:
            >>> quiet()
        """

    def broken():
        """Says nothing of errors.

        Examples:
            >>> broken(
        """

    def wrong():
        """Says the wrong thing.

        Raises:
            Nothing: at all.
        """

    assert section_problems("good", good) == [] and section_problems("quiet", quiet) == []
    assert example_code(cleaned_docstring(good)) == ["good(ds, 3)\nfor i in [1, 2]:\n    good(ds, i)"]
    problems = section_problems("broken", broken)
    assert any("no Raises section" in p for p in problems) and any("does not parse" in p for p in problems)
    problems = section_problems("wrong", wrong)
    assert any("Nothing, which is no exception class" in p for p in problems)
    assert any("no Examples section" in p for p in problems)


EXTERNAL = re.compile(r"""<script[^>]*\bsrc=["']?(https?:)?//|<link[^>]*\bhref=["']?(https?:)?//[^>]*>"""
                      r"""|@import\s+(url\()?["']?(https?:)?//|url\(["']?(https?:)?//""", re.I)


def external_loads(text: str) -> list[str]:
    """Scripts, styles, fonts or anything else a page would load from another host (links to read are fine)."""
    found = []
    for m in EXTERNAL.finditer(text):
        snippet = m.group(0)
        if snippet.lower().startswith("<link") and re.search(r"rel=[\"']?(canonical|alternate)", snippet, re.I):
            continue
        found.append(snippet[:120])
    return found


def test_external_loads_are_found():
    assert external_loads('<script src="https://cdn.example/x.js"></script>')
    assert external_loads('<link rel="stylesheet" href="https://fonts.googleapis.com/css?family=Roboto">')
    assert external_loads("@font-face{src:url(https://fonts.gstatic.com/a.woff2)}")
    assert not external_loads('<a href="https://docs.fast.ai">fastai</a><script src="../assets/x.js"></script>')


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)], cwd=ROOT,
                            capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return out


def test_site_builds_strict_and_loads_nothing_from_another_host(site):
    loads = {}
    for path in [*site.rglob("*.html"), *site.rglob("*.css")]:
        found = external_loads(path.read_text(errors="replace"))
        if found:
            loads[str(path.relative_to(site))] = found
    assert not loads, loads
    for page in sorted((ROOT / "docs").glob("*.md")):
        built = site / ("index.html" if page.stem == "index" else f"{page.stem}/index.html")
        assert built.exists(), f"{page.name} was not built"
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        assert (site / "notebooks" / notebook.stem / "index.html").exists(), notebook.name


def test_api_reference_covers_every_public_name(site):
    html = "".join(p.read_text() for p in (site / "api").rglob("*.html"))
    for name, (module, attr) in nbml._EXPORTS.items():
        obj = getattr(nbml, name)
        target = obj.__name__ if inspect.ismodule(obj) else f"{obj.__module__}.{obj.__qualname__}"
        assert f'id="{target}"' in html, f"nbml.{name} ({target}) has no entry in the API reference"
    for path in RETURNED:
        assert f'id="{path}"' in html, path
    for method in ("set_label", "undo", "add_texts", "label_issues"):
        assert f'id="nbml.dataset.Dataset.{method}"' in html, method


def test_readme_is_a_short_door_whose_links_lead_somewhere():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 160
    assert "make demo" in text and "make test" in text
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if "://" not in target:
            assert (ROOT / target).exists(), f"README links to {target}, which is not in the repository"


RECEIVERS = {"ds": ["nbml.dataset.Dataset"], "model": ["nbml.model.Model"], "head": ["nbml.model.Model"],
             "server": ["nbml.serving.server.ServerHandle", "nbml.serving.ray_engine.RayServerHandle"],
             "handle": ["nbml.training_loop.TrainingHandle"]}


def receivers(name: str) -> list:
    found = []
    for path in RECEIVERS[name]:
        try:
            found.append(resolve(path))
        except (ImportError, AttributeError):      # a handle class that is not in this checkout
            pass
    return found


def names_used_in_docs():
    """(page, 'receiver.name') for every `nbml.x.y`, `ds.x`, `model.x`, `server.x`, `handle.x` in the Python code
    blocks of the guides and the README."""
    pages = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
    for page in pages:
        for block in re.findall(r"```python\n(.*?)```", page.read_text(), re.S):
            code = "\n".join(line.split("#", 1)[0] for line in block.splitlines())
            for receiver, path in re.findall(r"(?<![\w.])(nbml|ds|model|head|server|handle)\.([A-Za-z_][\w.]*)", code):
                yield page.name, receiver, path


def test_the_guides_call_only_what_nbml_has():
    """Every name the README's examples and the guides' call must exist, so a renamed method cannot leave them stale.
    tests/test_docs_examples.py runs the guides' blocks; this also covers the README and the blocks marked skip."""
    missing = []
    for page, receiver, path in names_used_in_docs():
        if receiver != "nbml":
            if not any(hasattr(cls, path.split(".")[0]) for cls in receivers(receiver)):
                missing.append(f"{page}: {receiver}.{path}")
            continue
        obj = nbml
        for part in path.split("."):
            if inspect.ismodule(obj) and not hasattr(obj, part):
                try:
                    obj = importlib.import_module(f"{obj.__name__}.{part}")
                    continue
                except ImportError:
                    pass
            if not hasattr(obj, part):
                missing.append(f"{page}: {receiver}.{path}")
                break
            obj = getattr(obj, part)
            if not (inspect.ismodule(obj) or inspect.isclass(obj)):
                break
    assert not missing, missing
