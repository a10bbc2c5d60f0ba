"""Texts in: what `ds.add_texts` takes (lists, Series, DataFrames, CSV / JSON Lines / Parquet files, folders of .txt
files) and its bad-input rules, what training can read, and what the grid shows of a text. Part of the text kind
(nbml.kinds.text, its face)."""
from __future__ import annotations

import hashlib
import os
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd

from .._files import label_of, read_parquet
from .._report import IngestReport, Progress
from ..store import NewItem
from .text_encoding import MAX_TOKENS, tokenizer

NAME = "text"
UNIT = "tokens"
NOUN = "text"
LONG_CHARS = 20_000               # a text longer than this is still kept whole; the report says the model reads less
_BINARY_SNIFF = 8192


# -- ingest ---------------------------------------------------------------------------------------------------------
def normalized(text: str) -> str:
    """The form two texts are compared in for exact duplicates: Unicode NFC, whitespace runs folded to one space."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def text_sha256(text: str) -> str:
    return hashlib.sha256(normalized(text).encode("utf-8")).hexdigest()


def _decode(data: bytes, encoding: str) -> tuple[str, str | None]:
    try:
        return data.decode(encoding), None
    except UnicodeDecodeError as e:
        return data.decode(encoding, "replace"), f"not valid {encoding} (byte {e.start}): undecodable bytes replaced"
    except LookupError:
        raise ValueError(f"unknown text encoding {encoding!r}") from None


def _looks_binary(data: bytes) -> bool:
    head = data[:_BINARY_SNIFF]
    if b"\x00" in head:
        return True
    if not head:
        return False
    bad = sum(1 for b in head if b < 9 or 13 < b < 32)
    return bad / len(head) > 0.1


def _candidates(values, labels, shown, report: IngestReport, encoding: str):
    """NewItems of (text, label) pairs; each refused one is reported with its reason."""
    for value, label, name in zip(values, labels, shown):
        note = None
        if isinstance(value, (bytes, bytearray)):
            value, note = _decode(bytes(value), encoding)
        if value is None or (isinstance(value, float) and value != value) or value is pd.NA:
            report.skipped.append((name, "no text (missing value)"))
            continue
        if not isinstance(value, str):
            report.skipped.append((name, f"not a text: {type(value).__name__}"))
            continue
        if not value.strip():
            report.skipped.append((name, "empty or whitespace-only text"))
            continue
        if note:
            report.warnings.append((name, note))
        if len(value) > LONG_CHARS:
            report.warnings.append((name, f"long text ({len(value):,} characters): kept whole; the model reads "
                                          f"its first {MAX_TOKENS} tokens"))
        yield value, label_of(label), name


def _new_items(pairs, path: str | None = None):
    for text, label, name in pairs:
        yield NewItem(text_sha256(text), name, label, None,
                      dict(content=text, size_bytes=len(text.encode("utf-8", "surrogatepass")), path=path))


def _read_table(path: Path, encoding: str, report: IngestReport) -> pd.DataFrame:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return read_parquet(path)
    data = path.read_bytes()
    text, note = _decode(data, encoding)
    if note:
        report.warnings.append((str(path), note))
    import io
    if suffix in (".jsonl", ".ndjson") or (suffix == ".json" and text.lstrip().startswith("{")):
        return pd.read_json(io.StringIO(text), lines=True, dtype=False)
    if suffix == ".json":
        return pd.read_json(io.StringIO(text), dtype=False)
    if suffix in (".csv", ".tsv"):
        return pd.read_csv(io.StringIO(text), sep="\t" if suffix == ".tsv" else ",", dtype=str,
                           keep_default_na=False, na_values=[""])
    raise ValueError(f"{path}: add_texts reads .csv, .tsv, .jsonl, .json and .parquet files or a folder of .txt "
                     f"files, not {suffix or 'a file without extension'}")


def _folder_pairs(root: Path, encoding: str, label_from, report: IngestReport, progress):
    n = 0
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")):
        n += 1
        progress(n)
        name = str(path)
        if path.suffix.lower() != ".txt":
            report.skipped.append((name, f"not a .txt file ({path.suffix or 'no extension'})"))
            continue
        try:
            data = path.read_bytes()
        except OSError as e:
            report.skipped.append((name, f"unreadable: {e.strerror}"))
            continue
        if _looks_binary(data):
            report.skipped.append((name, "binary file, not text"))
            continue
        rel = path.parent.relative_to(root)
        label = str(rel.parts[-1]) if label_from == "folder" and rel.parts else None
        yield data, label, name


def add(ds, values, labels=None, **kw):
    """`ds.add(...)` for texts: as `add_texts`."""
    return add_texts(ds, values, labels, **kw)


def add_texts(ds, texts, labels=None, *, text_col: str = "text", label_col: str | None = None,
              encoding: str = "utf-8", label_from="folder", progress=None) -> IngestReport:
    ds.check_kind(NAME)
    report = IngestReport()
    pbar = Progress("ingest", enabled=progress)
    source_path = None
    if isinstance(texts, (str, os.PathLike)) and not (isinstance(texts, str) and "\n" in texts):
        path = Path(texts).expanduser()
        if path.is_dir():
            if labels is not None:
                raise ValueError("labels= goes with a list of texts; a folder's labels come from its class folders")
            triples = list(_folder_pairs(path, encoding, label_from, report, pbar.update))
            pairs = _candidates([t for t, _, _ in triples], [l for _, l, _ in triples],
                                [n for _, _, n in triples], report, encoding)
            ds.insert_items(NAME, (NewItem(it.sha256, it.shown, it.label, None, {**it.columns, "path": it.shown})
                                   for it in _new_items(pairs)), report)
            pbar.close(report.summary())
            return report
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist; add_texts takes texts, a DataFrame, a .csv/.jsonl/"
                                    f".parquet file or a folder of .txt files (for one text, pass [text])")
        texts = _read_table(path, encoding, report)
        source_path = str(path)
    if isinstance(texts, pd.DataFrame):
        frame = texts
        if text_col not in frame.columns:
            raise KeyError(f"no column {text_col!r} in the {'file' if source_path else 'DataFrame'}; its columns "
                           f"are {list(map(str, frame.columns))}. Name the text column with text_col=")
        if label_col is None and labels is None and "label" in frame.columns:
            label_col = "label"
        if label_col is not None and label_col not in frame.columns:
            raise KeyError(f"no column {label_col!r} in the {'file' if source_path else 'DataFrame'}; its columns "
                           f"are {list(map(str, frame.columns))}")
        values = frame[text_col].tolist()
        if labels is None:
            labels = frame[label_col].tolist() if label_col is not None else [None] * len(values)
        where = Path(source_path).name if source_path else "row"
        shown = [f"{where} row {i + 1}" if source_path else f"row {i}" for i in range(len(values))]
    elif isinstance(texts, (list, tuple, pd.Series, np.ndarray)):
        values = list(texts)
        shown = [f"text {i}" for i in range(len(values))] if not isinstance(texts, pd.Series) else \
            [f"text {i}" for i in texts.index]
    else:
        raise TypeError(f"add_texts takes a list or Series of texts, a DataFrame, a file path or a folder, not "
                        f"{type(texts).__name__}")
    if labels is None:
        labels = [None] * len(values)
    labels = list(labels)
    if len(labels) != len(values):
        raise ValueError(f"{len(values)} texts but {len(labels)} labels: give one label (or None) per text")
    pairs = _candidates(values, labels, shown, report, encoding)
    ds.insert_items(NAME, _new_items(pairs, source_path), report)
    pbar.close(report.summary())
    return report


# -- the grid's preview ------------------------------------------------------------------------------------------------
CARD = "text"
READ_LIMIT = MAX_TOKENS


def card_text(ds):
    return None


def read_chars(text: str) -> int:
    """How many leading characters of `text` the model reads (the tokens past MAX_TOKENS are dropped)."""
    if len(text) <= MAX_TOKENS:     # a token covers at least one character
        return len(text)
    enc = tokenizer().encode(text, add_special_tokens=False)
    if len(enc.ids) <= MAX_TOKENS:
        return len(text)
    return int(enc.offsets[MAX_TOKENS - 1][1])


def item_stats(ds, usable: pd.DataFrame) -> dict:
    """`ds.stats().lengths`: one row per usable text (id, label, characters, words)."""
    text = usable["content"].fillna("")
    return {"lengths": pd.DataFrame({"id": usable["id"].to_numpy(), "label": usable["label"].to_numpy(),
                                     "characters": text.str.len().to_numpy(),
                                     "words": text.str.split().str.len().to_numpy()})}


def usable(frame: pd.DataFrame):
    """The items training can read (a stored text), and a note per item left out."""
    bad = frame["content"].isna() | (frame["content"].fillna("").str.strip() == "")
    notes = [f"item {i} skipped: no text" for i in frame.loc[bad, "id"]]
    return frame[~bad].reset_index(drop=True), notes


def check_input(value) -> str:
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("utf-8")
    if not isinstance(value, str):
        raise TypeError(f"a text model predicts from a string, not {type(value).__name__}")
    if not value.strip():
        raise ValueError("the text is empty")
    return value


def add_logged(ds, logged: dict):
    """`ds.add_from_log`'s last step: logged texts ({sha256: UTF-8 bytes}) added as unlabelled items."""
    texts = [data.decode("utf-8", "replace") for data in logged.values()]
    return add_texts(ds, texts, progress=False)
