"""Small real data sets that ship with a dependency, written out as image folders (nothing is downloaded)."""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["digits", "cache_dir"]


def cache_dir() -> Path:
    """nbml's cache folder: $NBML_HOME, else ~/.cache/nbml."""
    return Path(os.environ.get("NBML_HOME") or Path.home() / ".cache" / "nbml")


def digits(folder: str | os.PathLike | None = None, scale: int = 1) -> Path:
    """scikit-learn's 1,797 real 8x8 handwritten digits as PNG files in class folders `0` .. `9`.

    Written once (skipped when the folder is complete); `scale` enlarges each image by pixel repetition.
    Returns the folder, ready for `ds.add_images(folder)`.
    """
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits
    folder = Path(folder) if folder else cache_dir() / (f"digits" if scale == 1 else f"digits_x{scale}")
    done = folder / ".complete"
    if done.exists():
        return folder
    data = load_digits()
    for i, (img, target) in enumerate(zip(data.images, data.target)):
        pixels = (img * (255 / 16)).round().astype(np.uint8)
        if scale > 1:
            pixels = np.kron(pixels, np.ones((scale, scale), np.uint8))
        out = folder / str(target) / f"{i:04d}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels, "L").save(out)
    done.touch()
    return folder
