"""Benchmark: wall time of `import nbml` against `import torch` (and `import fastai.vision.all` for reference).

Each import is timed inside a fresh subprocess (so nothing is cached in-process), 5 repetitions after one
untimed warm-up run per module (so the OS page cache and __pycache__ are warm for every module alike).
Prints median seconds per module and the ratio nbml / torch. Also reports whether `import nbml` pulled
torch (or fastai / timm) into sys.modules.

    .venv/bin/python benchmarks/import_time.py [--reps 5]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import median, print_machine, print_table  # noqa: E402

PROBE = """\
import time
t = time.perf_counter()
import {module}
dt = time.perf_counter() - t
import json, sys
print(json.dumps({{"seconds": dt, "n_modules": len(sys.modules),
                  "heavy": sorted(m for m in ("torch", "torchvision", "fastai", "timm", "pandas", "sqlalchemy",
                                              "PIL", "numpy") if m in sys.modules)}}))
"""

MODULES = [("nbml", "nbml"), ("torch", "torch"), ("fastai.vision.all", "fastai.vision.all")]


def probe(module: str, cwd: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE.format(module=module)], cwd=cwd, check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()

    print_machine("import time: nbml vs torch")
    with tempfile.TemporaryDirectory(prefix="nbml-bench-import-") as tmp:   # neutral cwd, no stray files
        results = {}
        for label, module in MODULES:
            probe(module, tmp)                                   # warm-up, not timed
            runs = [probe(module, tmp) for _ in range(args.reps)]
            results[label] = runs

    torch_med = median([r["seconds"] for r in results["torch"]])
    rows = []
    for label, _ in MODULES:
        secs = [r["seconds"] for r in results[label]]
        med = median(secs)
        rows.append([f"import {label}", f"{med:.4f}", f"{min(secs):.4f}", f"{max(secs):.4f}",
                     str(results[label][-1]["n_modules"]), f"{med / torch_med:.4f}"])
    print(f"fresh subprocess per import, {args.reps} repetitions each (+1 untimed warm-up)")
    print_table(["import", "median s", "min s", "max s", "modules", "x torch"], rows)
    print()

    nbml_med = median([r["seconds"] for r in results["nbml"]])
    print(f"ratio nbml / torch (median): {nbml_med / torch_med:.4f}  "
          f"(torch / nbml: {torch_med / nbml_med:.1f}x)")
    torch_loaded = [("torch" in r["heavy"]) for r in results["nbml"]]
    print(f"'torch' in sys.modules after `import nbml`: {any(torch_loaded)} "
          f"(checked in each of {len(torch_loaded)} subprocesses)")
    print(f"heavy modules loaded by `import nbml`: {results['nbml'][-1]['heavy'] or 'none'}")


if __name__ == "__main__":
    main()
