"""Large reads of a SQLite project straight into Arrow columns (the ADBC SQLite driver), for `ds.df` on big
projects: sqlite3's `fetchall` alone took 3.9 s for a million items here, making a Python object per value; the
driver reads the same rows into Arrow in about 2 s and pandas takes the columns without a copy per value.

The driver infers each column's type from the values of the first batch, so the batch holds every row (a column
whose first thousand rows are NULL would otherwise be taken for integers and fail at its first string). Anything
the driver cannot read (a column mixing types, the driver missing) returns None and the caller reads as before.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

MIN_ROWS = 20_000          # below this the plain read takes under 0.1 s: not worth a second connection


def sqlite_frame(path: Path, statement, columns: list[str], rows: int) -> pd.DataFrame | None:
    """The rows of a SQLAlchemy `statement` on the SQLite file `path` as a DataFrame with `columns`, typed as
    nbml.store._columns_frame types them (text as pandas' `str`, whole numbers int64 or float64 with NaN where
    missing, a column of nothing but NULL as object None); None when the ADBC driver cannot do it. `rows` is how
    many rows at most the statement returns (the batch size)."""
    try:
        import adbc_driver_sqlite.dbapi as adbc
    except ImportError:
        return None
    from sqlalchemy.dialects import sqlite
    sql = str(statement.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}))
    try:
        with adbc.connect(f"{Path(path).as_uri()}?mode=ro") as conn, conn.cursor() as cur:
            cur.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": str(max(1024, int(rows)))})
            cur.execute(sql)
            table = cur.fetch_arrow_table()
    except Exception:      # a type the first batch did not predict, a locked or odd file: the plain read decides
        return None
    if table.num_columns != len(columns):
        return None
    expected = [_arrow_kind(c.type) for c in statement.selected_columns]
    out = {}
    for name, col, want in zip(columns, table.columns, expected):
        if len(col) and col.null_count == len(col):
            out[name] = np.full(len(col), None, dtype=object)
            continue
        if _arrow_kind(col.type) != want:
            # SQLite stores any value in any column; the driver turns a column of mixed values into text, where the
            # plain read keeps each value as it is: let it
            return None
        if _is_string(col.type):
            out[name] = pd.array(col, dtype=pd.StringDtype(na_value=np.nan))
        else:
            out[name] = col.to_pandas()        # int64, or float64 with NaN where a value is missing
    return pd.DataFrame(out, columns=columns)


def _is_string(t) -> bool:
    import pyarrow as pa
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _arrow_kind(t) -> str | None:
    """'int', 'float' or 'str' for an Arrow type or a SQLAlchemy column type; None for anything else."""
    import pyarrow as pa
    from sqlalchemy import Float, Integer, String
    if isinstance(t, pa.DataType):
        return ("int" if pa.types.is_integer(t) else "float" if pa.types.is_floating(t)
                else "str" if _is_string(t) else None)
    return "int" if isinstance(t, Integer) else "float" if isinstance(t, Float) else "str" if isinstance(t, String) \
        else None
