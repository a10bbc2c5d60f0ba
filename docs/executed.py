"""The executed copies of notebooks/*.ipynb that the docs site renders, in .cache/executed/.

`make test` leaves them there (nbval runs every notebook; the root conftest.py saves what it ran). This script runs
a notebook with nbclient only when its copy is missing or its code has changed since, offline like the tests:

    .venv/bin/python docs/executed.py          # what `make docs` runs first
    .venv/bin/python docs/executed.py --check  # list the stale copies, run nothing (exit 1 when some are)
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
EXECUTED = ROOT / ".cache" / "executed"


def code_of(nb) -> list[str]:
    return [c.source for c in nb.cells if c.cell_type == "code"]


def current_copy(source: Path) -> Path | None:
    """The executed copy of `source` when its code cells are those of `source` now and each ran; else None."""
    copy = EXECUTED / source.name
    if not copy.exists():
        return None
    try:
        ran = nbformat.read(copy, as_version=4)
    except Exception:        # a copy cut short by a killed run: run it again
        return None
    if code_of(ran) != code_of(nbformat.read(source, as_version=4)):
        return None
    if any(c.execution_count is None for c in ran.cells if c.cell_type == "code"):
        return None
    return copy


def execute(source: Path, timeout: int = 1200) -> Path:
    """Runs `source` in a fresh kernel in its own folder (as nbval does) and writes its executed copy."""
    from nbclient import NotebookClient
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("NBML_HOME", str(ROOT / ".cache" / "nbml"))
    nb = nbformat.read(source, as_version=4)
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(source.parent)}}).execute()
    EXECUTED.mkdir(parents=True, exist_ok=True)
    target = EXECUTED / source.name
    tmp = target.with_suffix(".ipynb.tmp")
    nbformat.write(nb, tmp)
    os.replace(tmp, target)
    return target


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="list stale copies and run nothing")
    args = ap.parse_args(argv)
    stale = [nb for nb in sorted(NOTEBOOKS.glob("*.ipynb")) if current_copy(nb) is None]
    for nb in stale:
        if args.check:
            print(f"stale: {nb.relative_to(ROOT)}")
            continue
        print(f"executing {nb.relative_to(ROOT)} (no current copy in .cache/executed/) ...", flush=True)
        execute(nb)
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
