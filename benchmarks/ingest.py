"""Benchmark: `nbml.Dataset(path).add_images(folder)` throughput (read, sha256, full decode, SQLite insert).

Generates N small distinct random-noise images (32x32, PNG and JPEG alternating) in 10 ImageNet-style class
folders inside a temporary directory, then times, in the same run:

  baseline   a plain single-threaded loop that reads each file and sha256-hashes it (no decode, no database)
  reference  the same loop plus a full Pillow decode (`nbml._imaging.decode`), single-threaded, no database
  nbml       `nbml.Dataset(project).add_images(folder)` into a fresh project (opening the project included)

and reports images per second and the ratio to the baseline.

    .venv/bin/python benchmarks/ingest.py [--n 10000]
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import print_machine, print_table, write_noise_images  # noqa: E402


def baseline_hash(paths: list[str]) -> float:
    t = time.perf_counter()
    digests = set()
    for p in paths:
        with open(p, "rb") as f:
            digests.add(hashlib.sha256(f.read()).hexdigest())
    dt = time.perf_counter() - t
    assert len(digests) == len(paths), "generated images are not all distinct"
    return dt


def reference_hash_decode(paths: list[str]) -> float:
    from nbml._imaging import decode
    t = time.perf_counter()
    for p in paths:
        with open(p, "rb") as f:
            data = f.read()
        hashlib.sha256(data).hexdigest()
        decode(data)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000, help="number of images (default 10000)")
    args = ap.parse_args()
    n = args.n

    print_machine("ingest: nbml.Dataset.add_images vs read+sha256")
    import nbml
    Dataset = nbml.Dataset          # resolve the lazy import (sqlalchemy, pandas, Pillow) before timing

    with tempfile.TemporaryDirectory(prefix="nbml-bench-ingest-") as tmp:
        folder = os.path.join(tmp, "images")
        t = time.perf_counter()
        paths = write_noise_images(folder, n)
        gen_s = time.perf_counter() - t
        total_bytes = sum(os.path.getsize(p) for p in paths)
        print(f"generated {n} images (32x32, half PNG / half JPEG, 10 class folders, "
              f"{total_bytes / n:.0f} B mean) in {gen_s:.1f}s")
        print()

        base_s = baseline_hash(paths)
        ref_s = reference_hash_decode(paths)

        project = os.path.join(tmp, "bench.nbml")
        t = time.perf_counter()
        ds = Dataset(project)
        open_s = time.perf_counter() - t
        report = ds.add_images(folder, label_from="folder", progress=False)
        nbml_s = time.perf_counter() - t

        n_items = len(ds)
        n_classes = len(ds.classes)
        ds.close()

    rows = [
        ["baseline: read + sha256 (1 thread)", f"{base_s:.3f}", f"{n / base_s:,.0f}", "1.00"],
        ["reference: read + sha256 + decode (1 thread)", f"{ref_s:.3f}", f"{n / ref_s:,.0f}",
         f"{base_s / ref_s:.3f}"],
        ["nbml: Dataset(path).add_images(folder)", f"{nbml_s:.3f}", f"{n / nbml_s:,.0f}",
         f"{base_s / nbml_s:.3f}"],
    ]
    print(f"N = {n} images")
    print_table(["method", "seconds", "images/s", "x baseline speed"], rows)
    print()
    print(f"ratio nbml / baseline time: {nbml_s / base_s:.1f}x slower "
          f"(nbml throughput = {base_s / nbml_s:.3f} of baseline)")
    print(f"of the nbml time, opening/creating the project took {open_s * 1e3:.1f} ms, add_images "
          f"{(nbml_s - open_s):.3f} s")
    print(f"nbml report: added {len(report.added)}, duplicates {len(report.duplicates)}, "
          f"skipped {len(report.skipped)}; len(ds) = {n_items}, classes = {n_classes}")
    if len(report.added) != n or report.duplicates or report.skipped:
        print("WARNING: not every generated image was added")
        for path, reason in report.skipped[:5]:
            print(f"  skipped {path}: {reason}")
        for path, dup in report.duplicates[:5]:
            print(f"  duplicate {path} of item {dup}")


if __name__ == "__main__":
    main()
