"""Table rows in: what `ds.add_table` takes (DataFrames, CSV / Parquet / JSON Lines files), each column's type and
role (`ds.columns()`, `ds.use_columns`), the bad-input rules, what training can read, and what the grid and
`ds.stats()` show of the rows. Part of the table kind (nbml.kinds.table, its face)."""
from __future__ import annotations

import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from .._files import label_of, read_parquet
from .._report import IngestReport, Progress
from ..store import NewItem
from .table_encoding import number_of, rows_of

NAME = "table"
COLUMNS_KEY = "table_columns"        # meta: the project's columns [{name, type, role, reason}]
EMBED_KEY = "table_embedding_prep"   # meta: the statistics the standardised rows (the embeddings) are made with
IMPORTANCE_KEY = "table_importance"  # meta: {column: share} of the latest trees, for the grid's column order
ARCHS = ("auto", "tabular", "lightgbm", "linear")
MODEL_OF_ARCH = {"tabular": "network", "lightgbm": "lightgbm", "linear": "linear"}
ID_MIN_ROWS = 20                     # a text column whose values are all different looks like an identifier past this


# -- ingest ---------------------------------------------------------------------------------------------------------
def _native(value):
    """A cell as JSON keeps it: Python numbers, bools and strings; None for missing and infinite."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        x = float(value)
        return x if math.isfinite(x) else None
    if isinstance(value, (pd.Timestamp, np.datetime64)):
        return pd.Timestamp(value).isoformat()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def row_sha256(row: dict) -> str:
    return hashlib.sha256(json.dumps(row, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


def _infer(name: str, s: pd.Series) -> tuple[dict, list[str]]:
    """A column's type and role from its values, and what to tell the user about it."""
    notes = []
    seen = s.dropna()
    if len(seen) == 0:
        return {"name": name, "type": "number", "role": "empty", "reason": "every value is missing"}, \
            [f"every value is missing: left out of the model"]
    if pd.api.types.is_bool_dtype(s):
        kind = "bool"
    elif pd.api.types.is_datetime64_any_dtype(s):
        kind = "date"
    elif pd.api.types.is_numeric_dtype(s):
        kind = "number"
        inf = int(np.isinf(seen.to_numpy(np.float64)).sum())
        if inf:
            notes.append(f"{inf} infinite values read as missing")
    else:
        types = {type(v) for v in seen}
        numbers = all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in seen)
        if numbers:
            kind = "number"
        elif types <= {bool, np.bool_}:
            kind = "bool"
        else:
            kind = "category"
            if len(types - {str}) and str in types:
                mixed = sorted({t.__name__ for t in types})
                notes.append(f"values of mixed types ({', '.join(mixed)}): kept as text")
    column = {"name": name, "type": kind, "role": "feature", "reason": None}
    if kind == "category":
        n_unique = seen.astype(str).nunique()
        if len(seen) >= ID_MIN_ROWS and n_unique >= 0.9 * len(seen):
            column.update(role="identifier", reason=f"an identifier? {n_unique} values in {len(seen)} rows")
            notes.append(f"{column['reason']}; left out of the model (ds.use_columns(['{name}']) puts it in)")
    return column, notes


def _read(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return read_parquet(path)
    if suffix in (".csv", ".tsv", ".txt"):
        return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
    if suffix in (".jsonl", ".ndjson"):
        return pd.read_json(path, lines=True)
    raise ValueError(f"{path}: add_table reads .csv, .tsv, .parquet and .jsonl files or a DataFrame, not "
                     f"{suffix or 'a file without extension'}")


def columns_of(ds) -> list[dict]:
    """The project's columns, as `add_table` recorded them: [{name, type, role, reason}]."""
    text = ds._meta_value(COLUMNS_KEY)
    return json.loads(text) if text else []


def feature_columns(ds) -> list[dict]:
    return [c for c in columns_of(ds) if c["role"] == "feature"]


def use_columns(ds, include=(), exclude=()) -> pd.DataFrame:
    """Put columns in the model (an identifier-like column, say) or leave them out; returns the columns table."""
    cols = columns_of(ds)
    names = {c["name"] for c in cols}
    for name in list(include) + list(exclude):
        if name not in names:
            raise KeyError(f"no column {name!r} in this project; its columns are {sorted(names)}")
    for c in cols:
        if c["name"] in include:
            if c["role"] == "empty":
                raise ValueError(f"column {c['name']!r} has no values: there is nothing for a model to read in it")
            c.update(role="feature", reason="put in by ds.use_columns")
        elif c["name"] in exclude:
            c.update(role="ignored", reason="left out by ds.use_columns")
    ds._set_meta(COLUMNS_KEY, json.dumps(cols))
    return pd.DataFrame(cols)


def add(ds, values, labels=None, **kw):
    """`ds.add(...)` for table rows: as `add_table` (labels come from `label_col`)."""
    if labels is not None:
        raise ValueError("table rows take their labels from a column: ds.add_table(df, label_col=...)")
    return add_table(ds, values, **kw)


def add_table(ds, data, label_col: str | None = "label", id_col: str | None = None, *, progress=None
              ) -> IngestReport:
    ds.check_kind(NAME)
    report = IngestReport()
    pbar = Progress("ingest", enabled=progress)
    source = None
    if isinstance(data, (str, os.PathLike)):
        path = Path(data).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"{path} is not a file; add_table takes a DataFrame or a .csv/.parquet/.jsonl file")
        frame, source = _read(path), path.name
    elif isinstance(data, pd.DataFrame):
        frame = data
    else:
        raise TypeError(f"add_table takes a pandas DataFrame or a path to a CSV or Parquet file, not "
                        f"{type(data).__name__}")
    frame = frame.copy()
    frame.columns = [str(c) for c in frame.columns]
    for col, what in ((label_col, "label_col"), (id_col, "id_col")):
        if col is not None and col not in frame.columns:
            if what == "label_col" and col == "label":
                label_col = None        # the default: no label column, every row unlabelled
                continue
            raise KeyError(f"no column {col!r} in the {'file' if source else 'DataFrame'}; its columns are "
                           f"{list(frame.columns)}. Name it with {what}=")
    data_cols = [c for c in frame.columns if c not in (label_col, id_col)]
    if not data_cols:
        raise ValueError("the table has no columns besides the label and id columns: nothing to learn from")
    held = columns_of(ds)
    if held:
        _check_same_columns(held, data_cols)
        columns = held
    else:
        columns = []
        for name in data_cols:
            column, notes = _infer(name, frame[name])
            columns.append(column)
            report.warnings += [(f"column {name!r}", n) for n in notes]
    kinds_of = {c["name"]: c["type"] for c in columns}
    records = _records(frame, data_cols, kinds_of, report)
    labels = frame[label_col].tolist() if label_col else [None] * len(frame)
    ids = frame[id_col].tolist() if id_col else None
    where = f"{source} row" if source else "row"

    def items():
        for i, row in enumerate(records):
            pbar.update(i + 1)
            shown = f"{id_col}={ids[i]}" if ids is not None else f"{where} {i + (2 if source else 0)}"
            label = label_of(_native(labels[i]))
            text = json.dumps(row, ensure_ascii=False)
            yield NewItem(row_sha256(row), shown, label, None,
                          dict(content=text, size_bytes=len(text.encode("utf-8")), path=shown))
    if not held:
        ds._set_meta(COLUMNS_KEY, json.dumps(columns))
    ds.insert_items(NAME, items(), report)
    pbar.close(report.summary())
    return report


def _check_same_columns(held: list[dict], names: list[str]) -> None:
    known = [c["name"] for c in held]
    missing, extra = [c for c in known if c not in names], [c for c in names if c not in known]
    if missing or extra:
        parts = ([f"missing {missing}"] if missing else []) + ([f"new {extra}"] if extra else [])
        raise ValueError(f"this table's columns differ from the project's ({'; '.join(parts)}). A project keeps one "
                         f"set of columns: rename or drop columns to match {known}, or use a new project")


def _records(frame: pd.DataFrame, names: list[str], kinds_of: dict, report: IngestReport) -> list[dict]:
    """Rows as dicts of JSON values in the project's types; values that do not fit a column's type are noted."""
    out = [dict() for _ in range(len(frame))]
    for name in names:
        kind = kinds_of[name]
        values = frame[name].tolist()
        bad = 0
        for row, v in zip(out, values):
            v = _native(v)
            if v is None:
                pass
            elif kind == "number" and (isinstance(v, bool) or not isinstance(v, (int, float))):
                x = number_of(v, "number", name, False)
                bad += math.isnan(x)
                v = None if math.isnan(x) else x
            elif kind == "category" and not isinstance(v, str):
                v = str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)
            elif kind == "bool" and not isinstance(v, bool):
                text = str(v).strip().lower()
                v = True if text in ("true", "1", "yes") else False if text in ("false", "0", "no") else None
            row[name] = v
        if bad:
            report.warnings.append((f"column {name!r}", f"{bad} values that are not numbers read as missing"))
    return out


def column_stats(ds, frame: pd.DataFrame) -> pd.DataFrame:
    """`ds.stats().columns`: per column its type, role, missing fraction, and range (numbers, dates) or number of
    values and the most frequent (categories, booleans)."""
    rows = pd.DataFrame(rows_of(frame))
    out = []
    for c in columns_of(ds):
        values = rows[c["name"]] if c["name"] in rows else pd.Series([], dtype=object)
        seen = values.dropna()
        entry = {"column": c["name"], "type": c["type"], "role": c["role"],
                 "missing": float(1 - len(seen) / max(len(values), 1)), "min": None, "max": None,
                 "values": int(seen.astype(str).nunique()), "most_frequent": None}
        if c["type"] in ("number", "date") and len(seen):
            entry.update(min=seen.min(), max=seen.max())
        elif len(seen):
            entry["most_frequent"] = str(seen.astype(str).value_counts().index[0])
        out.append(entry)
    return pd.DataFrame(out).set_index("column") if out else pd.DataFrame()


# -- the grid's card and the map's tooltip ---------------------------------------------------------------------------
def column_order(ds) -> list[str]:
    """Columns, those that matter most to the latest model first (by the trees' gain), then the rest in order."""
    names = [c["name"] for c in columns_of(ds)]
    text = ds._meta_value(IMPORTANCE_KEY)
    weight = json.loads(text) if text else {}
    return sorted(names, key=lambda n: (-weight.get(n, 0.0), names.index(n)))


def row_text(content: str | None, order: list[str] | None = None) -> str:
    """A row as the grid shows it: `column: value` lines, in `order`."""
    row = json.loads(content) if content else {}
    names = order or list(row)
    return "\n".join(f"{n}: {'—' if row.get(n) is None else row.get(n)}" for n in names if n in row)


def usable(frame: pd.DataFrame):
    bad = frame["content"].isna()
    return frame[~bad].reset_index(drop=True), [f"item {i} skipped: no row" for i in frame.loc[bad, "id"]]


def add_logged(ds, logged: dict):
    """`ds.add_from_log`'s last step: logged rows (JSON) added as unlabelled items."""
    rows = [json.loads(data.decode("utf-8")) for data in logged.values()]
    names = [c["name"] for c in columns_of(ds)]
    return add_table(ds, pd.DataFrame(rows).reindex(columns=names), label_col=None, progress=False)




def card_text(ds):
    """A row's card: `column: value` lines, the columns that matter most to the latest model first (read once)."""
    order = column_order(ds)
    return lambda content: row_text(content, order)


def read_chars(text: str) -> int:
    return len(text)


def item_stats(ds, usable: pd.DataFrame) -> dict:
    return {"columns": column_stats(ds, usable)}
