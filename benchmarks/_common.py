"""Shared helpers for the benchmark scripts: machine description, aligned tables, percentiles, image files."""
from __future__ import annotations

import os
import platform
import statistics
import sys
import tempfile


def cpu_model() -> str:
    name = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return name or platform.machine() or "unknown"


def torch_version() -> str:
    # Read from the installed metadata, so printing it does not import torch into this process.
    try:
        from importlib.metadata import version
        return version("torch")
    except Exception:
        return "not installed"


def fs_type(path: str) -> str:
    """The file-system type of the mount holding `path` (fsync cost depends on it)."""
    path = os.path.realpath(path)
    best, kind = "", "unknown"
    try:
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and (path == parts[1] or path.startswith(parts[1].rstrip("/") + "/")):
                    if len(parts[1]) > len(best):
                        best, kind = parts[1], parts[2]
    except OSError:
        pass
    return kind


def print_machine(title: str) -> None:
    print(title)
    print("=" * len(title))
    rows = [
        ("cpu", cpu_model()),
        ("cpu count", str(os.cpu_count())),
        ("platform", platform.platform()),
        ("python", platform.python_version() + f" ({sys.executable})"),
        ("torch", torch_version()),
        ("temp dir", f"{tempfile.gettempdir()} ({fs_type(tempfile.gettempdir())})"),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    print()


def print_table(header: list[str], rows: list[list[str]]) -> None:
    """Left-align the first column, right-align the rest."""
    cells = [header] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]

    def fmt(r):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))

    print(fmt(header))
    print("  ".join("-" * w for w in widths))
    for r in cells[1:]:
        print(fmt(r))


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile, q in [0, 100]."""
    xs = sorted(values)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * q / 100.0
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def load_average() -> str:
    """The 1-, 5- and 15-minute load averages, 'load 2.1/1.9/1.5': printed beside every figure measured on a shared
    machine (on 2 cores a load above 2 slows everything)."""
    return "load {:.1f}/{:.1f}/{:.1f}".format(*os.getloadavg())


def median(values: list[float]) -> float:
    return statistics.median(values)


def write_noise_images(root: str, n: int, n_classes: int = 10, size: int = 32, seed: int = 0) -> list[str]:
    """n distinct random-noise images (PNG and JPEG alternating) in ImageNet-style class folders under root."""
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    classes = [f"class_{i:02d}" for i in range(n_classes)]
    for c in classes:
        os.makedirs(os.path.join(root, c), exist_ok=True)
    paths = []
    for i in range(n):
        arr = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
        ext, fmt = (".png", "PNG") if i % 2 == 0 else (".jpg", "JPEG")
        path = os.path.join(root, classes[i % n_classes], f"img_{i:06d}{ext}")
        buf = io.BytesIO()
        Image.fromarray(arr, "RGB").save(buf, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
        with open(path, "wb") as f:
            f.write(buf.getvalue())
        paths.append(path)
    return paths


def cycling_call(fn, batches: list):
    """A callable that times `fn(batch)` on the next of `batches` in turn (each called once first, to warm up):
    the bare model call the serving benchmarks compare a server's latency with."""
    import time
    for b in batches:
        fn(b)
    state = {"i": 0}

    def call() -> float:
        b = batches[state["i"] % len(batches)]
        state["i"] += 1
        t = time.perf_counter()
        fn(b)
        return time.perf_counter() - t
    return call


class Tee:
    """stdout also written to a results file (`mode` "w" starts it afresh, "a" adds to it)."""

    def __init__(self, path, mode: str = "w"):
        self.f = open(path, mode)
        self.out = sys.stdout

    def write(self, s):
        self.out.write(s)
        self.f.write(s)
        self.f.flush()

    def flush(self):
        self.out.flush()
        self.f.flush()


def results_file(name: str, quick: bool, out=None):
    """benchmarks/results/<name>[-quick]-cpu<N>-<date>.txt, or `out` when given."""
    import datetime
    from pathlib import Path
    date = datetime.date.today().isoformat()
    return Path(out or Path(__file__).parent / "results" /
                f"{name}{'-quick' if quick else ''}-cpu{os.cpu_count()}-{date}.txt")
