"""What the kinds' ingest shares: reading a Parquet file, the label a cell gives."""
from __future__ import annotations

from pathlib import Path

__all__ = ["read_parquet", "label_of"]


def read_parquet(path: Path):
    """A Parquet file as a DataFrame, or a clear error when no Parquet engine is installed."""
    import pandas as pd
    try:
        return pd.read_parquet(path)
    except ImportError:
        raise ImportError(f"reading {Path(path).name} needs a Parquet engine: pip install pyarrow") from None


def label_of(value) -> str | None:
    """A label from a cell: None for missing (None, NaN, pd.NA) or blank; a whole float as an integer ("1", not
    "1.0", as a column of 0/1 labels with a gap reads in pandas); else the text, stripped."""
    import pandas as pd
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip() or None
