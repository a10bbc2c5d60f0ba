"""The guides' code runs: every ```python block in docs/*.md is executed, doctest-style.

For each page with Python blocks, its blocks run in order as one script (each top-level expression is shown as the
REPL or a notebook cell shows it, so `repr` and the widgets' constructors run too), in a subprocess with the
repository's .venv python, in a fresh temporary folder, with HF_HUB_OFFLINE=1 and nbml's cache, the Hugging Face
cache and Jupyter's runtime folder inside that folder (nothing from this machine's caches, nothing downloaded).
A traceback names the page and the line of the Markdown file.

The guides read the reader's own data (`photos/`, a DataFrame `df`, a trained `model`): a per-page fixture below,
run before the page in the same process, makes a small stand-in from data that ships in packages (scikit-learn's
handwritten digits, the Titanic passengers and SMS messages inside nbml) and hands the page only the names it lists
in `provides`. The fixtures make the data small so the whole module runs in a few minutes on 2 cores; the pages keep
their realistic calls.

A block that cannot run here (it needs a GPU, a Ray cluster, a PostgreSQL server, a running Jupyter, ...) carries an
HTML comment on the line before its fence, `<!-- example: skip (the reason) -->`; MkDocs does not show it. Every such
marker must give a reason and sit right before a ```python fence.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
PYTHON = str(VENV_PYTHON) if VENV_PYTHON.exists() else sys.executable
TIMEOUT_S = 240                 # per page; the slowest (images) takes about a minute on 2 busy cores

FENCE = re.compile(r"^```python\s*$")
MARKER = re.compile(r"^\s*<!--\s*example:(.*?)-->\s*$")
LOOKS_LIKE_MARKER = re.compile(r"<!--\s*examples?\b", re.I)
SKIP = re.compile(r"^\s*skip\s*\((.*)\)\s*$")


@dataclass
class Block:
    page: str            # docs/<name>.md
    line: int            # the Markdown line of the block's first line of code
    code: str
    skip: str | None     # the reason, for a block marked `<!-- example: skip (reason) -->`


def read_blocks(path: Path) -> tuple[list[Block], list[str]]:
    """The ```python blocks of a Markdown page, and what is wrong with its example markers (a marker that is not
    `skip (a reason)`, or that is not on the line right before a ```python fence)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    page = f"docs/{path.name}"
    blocks, problems = [], []
    i = 0
    while i < len(lines):
        marker = MARKER.match(lines[i])
        if marker:
            skip = SKIP.match(marker.group(1))
            if not skip or not skip.group(1).strip():
                problems.append(f"{page}:{i + 1}: write the marker as <!-- example: skip (why it cannot run here) -->, "
                                f"not {lines[i].strip()!r}")
            if i + 1 >= len(lines) or not FENCE.match(lines[i + 1]):
                problems.append(f"{page}:{i + 1}: an example marker must be on the line right before a ```python fence")
        elif LOOKS_LIKE_MARKER.search(lines[i]):
            problems.append(f"{page}:{i + 1}: not an example marker nbml's test understands: {lines[i].strip()!r}")
        if FENCE.match(lines[i]):
            previous = MARKER.match(lines[i - 1]) if i else None
            reason = None
            if previous:
                skip = SKIP.match(previous.group(1))
                reason = skip.group(1).strip() if skip else ""
            start = i + 1
            end = start
            while end < len(lines) and not lines[end].startswith("```"):
                end += 1
            if end == len(lines):
                problems.append(f"{page}:{i + 1}: a ```python fence that is never closed")
            blocks.append(Block(page, start + 1, "\n".join(lines[start:end]) + "\n", reason))
            i = end
        i += 1
    return blocks, problems


def pages_with_examples() -> list[Path]:
    return [p for p in sorted(DOCS.glob("*.md")) if read_blocks(p)[0]]


# -- the fixtures: the reader's data, made small ------------------------------------------------------------------

# Helpers every fixture may use (run in the fixture's namespace only; the page sees just the names it `provides`).
# TESTS is this folder.
HELPERS = '''
import numpy as np
import pandas as pd
from pathlib import Path
from PIL import Image
import nbml


def digit_images(folder, digits, per_class, *, start=0, flat=False, size=32, fmt="png"):
    """scikit-learn's real handwritten digits as RGB images of `size` pixels: folder/<name>/... for each
    {name: digit} in `digits` (or all in `folder` itself with flat=True). Returns the paths written."""
    from sklearn.datasets import load_digits
    data = load_digits()
    written = []
    for name, digit in digits.items():
        picks = np.flatnonzero(data.target == digit)[start:start + per_class]
        out = Path(folder) if flat else Path(folder) / name
        out.mkdir(parents=True, exist_ok=True)
        for i in picks:
            pixels = (data.images[i] * (255 / 16)).round().astype(np.uint8)
            image = Image.fromarray(pixels, "L").resize((size, size), Image.NEAREST).convert("RGB")
            path = out / f"{name}-{i:04d}.{fmt}"
            image.save(path)
            written.append(path)
    return written


def tiny_encoder_in_hf_cache(repo):
    """tests/test_text_encoder.py's tiny encoder (a 2-layer BERT with random weights), saved in the Hugging Face
    cache ($HF_HOME) under the name `repo`, as a download leaves it: what arch="hf:<repo>" reads."""
    import os, sys
    sys.path.insert(0, TESTS)
    from test_text_encoder import write_tiny_encoder
    root = Path(os.environ["HF_HOME"]) / "hub" / ("models--" + repo.replace("/", "--"))
    commit = "0" * 40
    write_tiny_encoder(root / "snapshots" / commit)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(commit)


def pets_project(digits, per_class):
    """`ds`: the image project pets.nbml, of photos/<name>/ for each {name: digit} in `digits`."""
    digit_images("photos", digits, per_class)
    ds = nbml.Dataset("pets.nbml")
    ds.add_images("photos/")
    return ds


def quiet_train(ds):
    """What the reader did on an earlier page: a trained model (here timm's tiny test_resnet, one epoch, so that
    training and export take seconds)."""
    return nbml.train(ds, arch="test_resnet", epochs=1, pretrained=False, seed=0, quiet=True)
'''


@dataclass
class Fixture:
    what: str            # what it creates, for the reader of a failure
    code: str
    provides: tuple = ()


def fixture(what: str, code: str, provides=()) -> Fixture:
    return Fixture(what, textwrap.dedent(code), tuple(provides))


FIXTURES = {
    "getting-started.md": fixture(
        "nbml's digits folder with 6 of each digit instead of 1,797 (nbml.datasets.digits() keeps a complete "
        "folder): the same calls on 60 images",
        '''
        folder = nbml.datasets.digits()
        for digit in folder.iterdir():
            if digit.is_dir():
                for extra in sorted(digit.iterdir())[6:]:
                    extra.unlink()
        '''),
    "images.md": fixture(
        "photos/cat and photos/dog (4 digits 0 and 1 each, 32x32 PNG), unlabelled/ (32 other digits), "
        "a DataFrame `df` (columns file, species) of 2 more images in more/, new.jpg, and `paths` (5 images); "
        "hardware_report's time budget is cut from 45 s to 5 s (it then measures the first backbone or two and "
        "lists the rest as over the budget)",
        '''
        digit_images("photos", {"cat": 0, "dog": 1}, 4)
        unlabelled = digit_images("unlabelled", {str(d): d for d in range(2, 10)}, 4, flat=True)
        more = digit_images("more", {"cat": 0, "dog": 1}, 1, start=10)
        df = pd.DataFrame({"file": [str(p) for p in more], "species": [p.parent.name for p in more]})
        digit_images(".", {"new": 1}, 1, start=20, flat=True, fmt="jpg")[0].rename("new.jpg")
        paths = [str(p) for p in unlabelled[:5]]
        nbml.hardware_report.__kwdefaults__["budget_s"] = 5.0
        ''', provides=["df", "paths"]),
    "data-loop.md": fixture(
        "`ds`: an image project (pets.nbml) with 8 labelled digits of each of 0, 1, 2 and 12 unlabelled ones, "
        "and `model`: a tiny network trained on it for one epoch",
        '''
        ds = pets_project({"zero": 0, "one": 1, "two": 2}, 8)
        digit_images("unlabelled", {str(d): d for d in range(3)}, 4, start=12, flat=True)
        ds.add_images("unlabelled/", label_from=None)
        model = quiet_train(ds)
        ''', provides=["nbml", "ds", "model"]),
    "forecast.md": fixture(
        "`ds`: a table project of 240 labelled Titanic passengers (nbml.datasets.titanic())",
        '''
        ds = nbml.Dataset("titanic.nbml")
        ds.add_table(nbml.datasets.titanic().head(240), label_col="survived")
        ''', provides=["ds"]),
    "serving.md": fixture(
        "`ds`: an image project of 6 digits 0 and 1 each (as cat and dog), and `model`: a tiny network trained on "
        "it for one epoch",
        '''
        ds = pets_project({"cat": 0, "dog": 1}, 6)
        model = quiet_train(ds)
        ''', provides=["nbml", "ds", "model"]),
    "predict-files.md": fixture(
        "photos/ (6 digits 0 and 1 each, as cat and dog, 32x32 PNG) and pets-model/, a tiny network trained on them "
        "for one epoch and exported",
        '''
        ds = pets_project({"cat": 0, "dog": 1}, 6)
        quiet_train(ds).export("pets-model")
        ds.close()
        '''),
    "tables.md": fixture(
        "`df`: 160 made-up sign-ups (user_id, plan, plan_name, seats, signed_up, churned; churn follows plan and "
        "seats), and `new_rows_df`: 5 more with the columns the model reads (no user_id: predict_many refuses the "
        "project's id column as a column the model does not know)",
        '''
        rng = np.random.default_rng(0)
        n = 165
        plan = rng.choice(["free", "team", "pro"], n)
        seats = rng.integers(1, 40, n)
        churned = np.where((plan == "free") & (seats < 20) | (rng.random(n) < 0.1), "yes", "no")
        frame = pd.DataFrame({
            "user_id": [f"u{i:05d}" for i in range(n)],
            "plan": plan,
            "plan_name": [f"{p}-{rng.integers(1000, 9999)}" for p in plan],
            "seats": seats,
            "signed_up": pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 365, n), unit="D"),
            "churned": churned,
        })
        df, new_rows_df = frame.head(160), frame.tail(5).drop(columns=["user_id", "churned"])
        ''', provides=["nbml", "df", "new_rows_df"]),
    "texts.md": fixture(
        "`df` (columns body, queue: 10 SMS messages from nbml.datasets.sms_spam(), queue 'billing' for spam and "
        "'support' for the rest), tickets.csv (10 more, same columns), mails/billing and mails/support (8 .txt "
        "files), and in the Hugging Face cache, as sentence-transformers/all-MiniLM-L6-v2 (the default text "
        "encoder) and BAAI/bge-small-en-v1.5 (the page's other encoder), test_text_encoder.py's tiny 2-layer BERT "
        "with random weights, so fine-tuning takes seconds (that module tests the real encoder)",
        '''
        sms = nbml.datasets.sms_spam().drop_duplicates("text").sample(frac=1, random_state=0)
        sms = pd.concat([sms[sms["label"] == "spam"].head(14), sms[sms["label"] == "ham"].head(14)])
        sms = sms.sample(frac=1, random_state=1).reset_index(drop=True)
        frame = pd.DataFrame({"body": sms["text"], "queue": sms["label"].map({"spam": "billing", "ham": "support"})})
        df = frame.iloc[:10]
        frame.iloc[10:20].to_csv("tickets.csv", index=False)
        for i, row in frame.iloc[20:28].reset_index(drop=True).iterrows():
            folder = Path("mails") / row["queue"]
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{i:03d}.txt").write_text(row["body"], encoding="utf-8")
        for repo in ("sentence-transformers/all-MiniLM-L6-v2", "BAAI/bge-small-en-v1.5"):
            tiny_encoder_in_hf_cache(repo)
        ''', provides=["nbml", "df"]),
}


# The subprocess: the fixture in its own namespace, then the page's blocks in one namespace, each top-level
# expression shown through sys.displayhook as the REPL does. Code is compiled under the page's name, padded so that
# a traceback gives the Markdown file's line numbers.
RUNNER = r'''
import ast, json, sys, time
t0 = time.monotonic()
spec = json.loads(open(sys.argv[1], encoding="utf-8").read())
setup = {"__name__": "__fixture__", "TESTS": spec["tests"]}
exec(compile(spec["fixture"], "<fixture for " + spec["page"] + ">", "exec"), setup)
ns = {"__name__": "__main__"}
for name in spec["provides"]:
    ns[name] = setup[name]
ran = 0
for block in spec["blocks"]:
    print(f"--- {spec['page']}:{block['line']} at {time.monotonic() - t0:.1f}s", flush=True)
    tree = ast.parse("\n" * (block["line"] - 1) + block["code"], spec["page"])
    for stmt in tree.body:
        if isinstance(stmt, ast.Expr):
            code = compile(ast.Interactive(body=[stmt]), spec["page"], "single")
        else:
            code = compile(ast.Module(body=[stmt], type_ignores=[]), spec["page"], "exec")
        began = time.monotonic()
        exec(code, ns)
        if time.monotonic() - began > 3:
            print(f"--- {spec['page']}:{stmt.lineno} took {time.monotonic() - began:.1f}s", flush=True)
        sys.stdout.flush()
    ran += 1
print(f"--- ran {ran} blocks of {spec['page']} in {time.monotonic() - t0:.1f}s", flush=True)
'''


def example_env(tmp: Path) -> dict:
    env = {k: v for k, v in os.environ.items()      # nothing of this machine's caches, Jupyter or nbml settings
           if not k.startswith(("JPY_", "JUPYTER", "COLAB_", "VSCODE_", "HF_", "HUGGINGFACE_", "TRANSFORMERS_",
                                "NBML_", "XDG_CACHE", "TORCH_HOME"))
           and k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", NBML_HOME=str(tmp / ".nbml-home"),
               HF_HOME=str(tmp / ".hf-home"), JUPYTER_RUNTIME_DIR=str(tmp / ".jupyter-runtime"), MPLBACKEND="Agg",
               PYTHONHASHSEED="0", PYTHONUNBUFFERED="1",
               # one thread per torch op: on 2 cores shared with other tests, torch's second OpenMP thread only
               # waits (getting-started's 10 epochs on 60 digits: 115 s on two threads at load 6, 18 s on one)
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


def run_page(page: Path, tmp: Path, timeout: float = TIMEOUT_S) -> tuple[int, str]:
    """Run `page`'s blocks (not those marked skip) after its fixture in a subprocess in `tmp`: (exit status, output).
    Whatever the script leaves running (a server's process, loky's workers) is ended with it."""
    blocks, _ = read_blocks(page)
    fix = FIXTURES.get(page.name, Fixture("nothing", "", ()))
    spec = dict(page=f"docs/{page.name}", fixture=HELPERS + fix.code, provides=list(fix.provides),
                tests=str(ROOT / "tests"),
                blocks=[dict(line=b.line, code=b.code) for b in blocks if b.skip is None])
    work = tmp / "work"
    work.mkdir()
    (tmp / "spec.json").write_text(json.dumps(spec), encoding="utf-8")
    log = tmp / "output.txt"
    with open(log, "wb") as out:
        proc = subprocess.Popen([PYTHON, "-c", RUNNER, str(tmp / "spec.json")], cwd=work, env=example_env(work),
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            code = None
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)     # its own session: the script and what it started
            except ProcessLookupError:
                pass
            proc.wait()
    text = log.read_text(encoding="utf-8", errors="replace")
    if code is None:
        text += f"\n[timed out after {timeout:.0f}s]"
        code = -1
    return code, text


# -- the tests ----------------------------------------------------------------------------------------------------

def test_every_skip_marker_gives_a_reason_and_marks_a_python_block():
    problems = [p for page in sorted(DOCS.glob("*.md")) for p in read_blocks(page)[1]]
    assert not problems, "\n".join(problems)
    for page in sorted(DOCS.glob("*.md")):
        for block in read_blocks(page)[0]:
            assert block.skip is None or len(block.skip) >= 10, f"{block.page}:{block.line}: say why it is skipped"


def test_markers_are_read_as_written(tmp_path):
    page = tmp_path / "demo.md"
    page.write_text("text\n\n```python\na = 1\n```\n\n<!-- example: skip (needs a Ray cluster at ray_address) -->\n"
                    "```python\nb = 2\n```\n<!-- example: skip () -->\n```python\nc = 3\n```\n"
                    "<!-- example: skip (orphan) -->\n\n```python\nd = 4\n```\n<!-- example: hide -->\n```python\n"
                    "e = 5\n```\n", encoding="utf-8")
    blocks, problems = read_blocks(page)
    assert [(b.line, b.code, b.skip) for b in blocks] == [
        (4, "a = 1\n", None), (9, "b = 2\n", "needs a Ray cluster at ray_address"), (13, "c = 3\n", ""),
        (18, "d = 4\n", None), (22, "e = 5\n", "")]
    assert [p.split(":")[1] for p in problems] == ["11", "15", "20"]


def test_every_fixture_is_for_a_page_with_examples():
    names = {p.name for p in pages_with_examples()}
    assert set(FIXTURES) <= names, set(FIXTURES) - names


def test_the_runner_fails_on_a_wrong_example_and_names_the_line(tmp_path):
    page = tmp_path / "wrong.md"
    page.write_text("# Wrong\n\n```python\nimport nbml\nnbml.no_such_function()\n```\n", encoding="utf-8")
    code, output = run_page(page, tmp_path, timeout=120)
    assert code != 0
    assert 'File "docs/wrong.md", line 5' in output and "no_such_function" in output, output[-2000:]


def runnable_pages():
    params = []
    for page in pages_with_examples():
        blocks, _ = read_blocks(page)
        if any(b.skip is None for b in blocks):
            params.append(pytest.param(page, id=page.stem))
    return params


@pytest.mark.parametrize("page", runnable_pages())
def test_page_examples_run(page, tmp_path):
    """Runs the page's blocks after its fixture, which creates (FIXTURES[page].what has the details):
    getting-started: nbml's digits folder cut to 6 of each digit; images: photos/cat and photos/dog, unlabelled/,
    `df` of more images, new.jpg, `paths`; data-loop and serving: an image project `ds` and a tiny `model` trained for
    one epoch; predict-files: photos/ and an exported pets-model/; forecast: a table project of 240 Titanic passengers;
    tables: made-up sign-ups `df` and `new_rows_df`; texts: `df`, tickets.csv and mails/ from SMS messages, and tiny
    random encoders in the Hugging Face cache under the names the page uses."""
    blocks, _ = read_blocks(page)
    runnable = [b for b in blocks if b.skip is None]
    started = time.monotonic()
    code, output = run_page(page, tmp_path)
    fix = FIXTURES.get(page.name)
    assert code == 0, (f"docs/{page.name} failed (fixture: {fix.what if fix else 'none'}) after "
                       f"{time.monotonic() - started:.0f}s:\n{output[-6000:]}")
    assert f"--- ran {len(runnable)} blocks of docs/{page.name}" in output, output[-3000:]
