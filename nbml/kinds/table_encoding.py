"""Rows to arrays, with numpy and the standard library only: the part of the table kind that training, prediction and
the server share (the server imports this module, never pandas).

A row is a dict of column -> value (a number, a bool, a string, None). The project's columns say each one's type:
'number', 'bool', 'category' or 'date' (ISO text, read as days since 1970-01-01). `fit_prep` learns, from the
training rows, what fastai's tabular processors learn (Categorify, FillMissing, Normalize) and writes it as JSON:

- a category (or bool) column: its levels, most frequent first; code 0 is missing or unknown, level i is i + 1;
- a number (or date) column: mean and standard deviation for normalising, the median that fills a missing value,
  and, when the training rows had missing values, a 0/1 "was missing" column after the numbers.

`encode` gives `cats` int64 [N, n_categories] and `conts` float32 [N, n_numbers (+ flags)]; `strict=True` (the
server) refuses a value of the wrong type with a `ColumnError` naming the column.
"""
from __future__ import annotations

import datetime as _dt
import json
import math

import numpy as np

__all__ = ["TYPES", "ColumnError", "Encoder", "fit_prep", "encode", "features", "number_of", "check_row", "MAX_LEVELS"]

TYPES = ("number", "bool", "category", "date")
MAX_LEVELS = 1000          # a category keeps its most frequent levels; rarer ones are read as unknown (code 0)
_EPOCH = _dt.datetime(1970, 1, 1)


class ColumnError(ValueError):
    """A row that does not fit the model's columns: missing, extra, or a value of the wrong type."""

    def __init__(self, column: str, message: str):
        super().__init__(message)
        self.column = column


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _days(value: str) -> float:
    text = value.strip().replace("Z", "+00:00")
    when = _dt.datetime.fromisoformat(text)
    if when.tzinfo is not None:
        when = when.astimezone(_dt.timezone.utc).replace(tzinfo=None)
    return (when - _EPOCH).total_seconds() / 86400.0


def number_of(value, kind: str, column: str, strict: bool) -> float:
    """A number or date column's value as a float (NaN when missing, or when not a number and not `strict`)."""
    if _missing(value):
        return math.nan
    if kind == "date":
        if isinstance(value, str):
            try:
                return _days(value)
            except ValueError:
                pass
        if strict:
            raise ColumnError(column, f"column {column!r} takes a date as ISO text (2024-05-31 or "
                                      f"2024-05-31T12:00:00), not {value!r}")
        return math.nan
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        x = float(value)
        return x if math.isfinite(x) else math.nan
    if strict:
        raise ColumnError(column, f"column {column!r} takes a number, not {type(value).__name__} {value!r}")
    try:
        x = float(value)
    except (TypeError, ValueError):
        return math.nan
    return x if math.isfinite(x) else math.nan


def _level_of(value, kind: str, column: str, strict: bool) -> str | None:
    """A category or bool column's value as the text its levels are kept in (None when missing)."""
    if _missing(value):
        return None
    if kind == "bool":
        if isinstance(value, bool):
            return "true" if value else "false"
        if strict:
            raise ColumnError(column, f"column {column!r} takes true or false, not {value!r}")
        return str(value).strip().lower() or None
    if strict and not isinstance(value, (str, int, float)) or isinstance(value, (list, dict)):
        raise ColumnError(column, f"column {column!r} takes a text value, not {type(value).__name__}")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def fit_prep(rows: list[dict], columns: list[dict]) -> dict:
    """What encoding needs, learnt from the training rows: `columns` are the feature columns ({name, type})."""
    cats, conts = [], []
    for col in columns:
        name, kind = col["name"], col["type"]
        if kind in ("category", "bool"):
            counts: dict[str, int] = {}
            for row in rows:
                level = _level_of(row.get(name), kind, name, False)
                if level is not None:
                    counts[level] = counts.get(level, 0) + 1
            levels = sorted(counts, key=lambda k: (-counts[k], k))[:MAX_LEVELS]
            cats.append({"name": name, "type": kind, "levels": levels})
        else:
            x = np.array([number_of(row.get(name), kind, name, False) for row in rows], np.float64)
            seen = x[~np.isnan(x)]
            mean = float(seen.mean()) if len(seen) else 0.0
            std = float(seen.std()) if len(seen) > 1 else 1.0
            conts.append({"name": name, "type": kind, "mean": mean, "std": std if std > 1e-12 else 1.0,
                          "fill": float(np.median(seen)) if len(seen) else 0.0,
                          "flag": bool(len(seen) < len(x))})
    return {"version": 1, "cats": cats, "conts": conts}


def feature_names(prep: dict) -> list[str]:
    """The columns of `features(...)`: the numbers, their missing flags, then the categories (as codes)."""
    return ([c["name"] for c in prep["conts"]] + [f"{c['name']}_missing" for c in prep["conts"] if c["flag"]]
            + [c["name"] for c in prep["cats"]])


def check_row(row, prep: dict, i: int = 0, n: int = 1) -> dict:
    """A row from outside (the server, `model.predict`): a dict with exactly the model's columns."""
    where = f"row {i + 1} of {n}" if n > 1 else "the row"
    if not isinstance(row, dict):
        raise ColumnError("", f"{where} must be an object of column: value, not {type(row).__name__}")
    known = [c["name"] for c in prep["cats"]] + [c["name"] for c in prep["conts"]]
    missing = [k for k in known if k not in row]
    if missing:
        raise ColumnError(missing[0], f"{where} has no column {missing[0]!r} (the model reads {known}; send "
                                      f"null for a value you do not know)")
    extra = [k for k in row if k not in known and k not in prep.get("ignored", ())]
    if extra:
        raise ColumnError(str(extra[0]), f"{where} has a column the model does not know: {extra[0]!r} (it reads "
                                         f"{known})")
    return row


class Encoder:
    """`encode` with its lookups built once (each category's level -> code map, each number's statistics): the
    server and `model.predict` keep one per model. Rows are encoded one at a time in plain Python and turned into
    arrays once, which for a single row costs a fraction of numpy's per-column calls."""

    def __init__(self, prep: dict):
        self.cats = [(c["name"], c["type"], {level: k + 1 for k, level in enumerate(c["levels"])})
                     for c in prep["cats"]]
        self.conts = [(c["name"], c["type"], c["mean"], c["std"], c["fill"]) for c in prep["conts"]]
        self.flagged = [j for j, c in enumerate(prep["conts"]) if c["flag"]]
        self.width = len(self.cats) + len(self.conts) + len(self.flagged)

    def _row(self, row: dict, strict: bool) -> tuple[list, list]:
        get = row.get
        codes = []
        for name, kind, index in self.cats:
            level = _level_of(get(name), kind, name, strict)
            codes.append(0 if level is None else index.get(level, 0))
        numbers, gone = [], []
        for name, kind, mean, std, fill in self.conts:
            x = number_of(get(name), kind, name, strict)
            missing = x != x
            gone.append(1.0 if missing else 0.0)
            numbers.append(((fill if missing else x) - mean) / std)
        return codes, numbers + [gone[j] for j in self.flagged]

    def __call__(self, rows: list[dict], strict: bool = False) -> tuple[np.ndarray, np.ndarray]:
        # a few rows: row by row in plain Python; many: a column at a time (3x faster for 10,000 rows)
        return self._columns(rows, strict) if len(rows) > 16 else self.unpack(self.packed(rows, strict))

    def _columns(self, rows: list[dict], strict: bool) -> tuple[np.ndarray, np.ndarray]:
        """Many rows: a column at a time, with numpy doing the arithmetic."""
        n = len(rows)
        cats = np.zeros((n, len(self.cats)), np.int64)
        for j, (name, kind, index) in enumerate(self.cats):
            for i, row in enumerate(rows):
                level = _level_of(row.get(name), kind, name, strict)
                cats[i, j] = 0 if level is None else index.get(level, 0)
        conts = np.zeros((n, self.width - len(self.cats)), np.float32)
        f = len(self.conts)
        for j, (name, kind, mean, std, fill) in enumerate(self.conts):
            x = np.array([number_of(row.get(name), kind, name, strict) for row in rows], np.float64)
            gone = np.isnan(x)
            x[gone] = fill
            conts[:, j] = (x - mean) / std
            if j in self.flagged:
                conts[:, f] = gone
                f += 1
        return cats, conts

    def packed(self, rows: list[dict], strict: bool = False) -> np.ndarray:
        """Codes then numbers in one float64 array [N, width] (codes are exact in float64): what the server
        batches; `unpack` gives `encode`'s two arrays back."""
        out = [c + x for c, x in (self._row(row, strict) for row in rows)]
        return np.array(out, np.float64).reshape(len(rows), self.width)

    def unpack(self, packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k = len(self.cats)
        return packed[:, :k].astype(np.int64), packed[:, k:].astype(np.float32)


def encode(rows: list[dict], prep: dict, strict: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(cats int64 [N, categories], conts float32 [N, numbers + missing flags]) for the network."""
    return Encoder(prep)(rows, strict)


def features(cats: np.ndarray, conts: np.ndarray) -> np.ndarray:
    """The gradient-boosted trees' input: numbers (with flags) then category codes, float32 [N, F]."""
    return np.hstack([conts, cats.astype(np.float32)]).astype(np.float32, copy=False)


def rows_of(frame) -> list[dict]:
    """The rows of store items (their `content` column, JSON) as dicts; {} for an item without content."""
    return [json.loads(c) if isinstance(c, str) else {} for c in frame["content"]]


def tree_probs(booster, X: np.ndarray, n_classes: int) -> np.ndarray:
    """A LightGBM booster's class probabilities as float32 [N, classes] (a binary booster gives one column)."""
    p = np.asarray(booster.predict(X), np.float64)
    if p.ndim == 1:
        p = np.column_stack([1 - p, p])
    return p.astype(np.float32)
