"""Reading the files users hand to ingest, where kinds share the rule."""
from __future__ import annotations

from pathlib import Path

__all__ = ["read_parquet"]


def read_parquet(path: Path):
    """A Parquet file as a DataFrame, or a clear error when no Parquet engine is installed."""
    import pandas as pd
    try:
        return pd.read_parquet(path)
    except ImportError:
        raise ImportError(f"reading {Path(path).name} needs a Parquet engine: pip install pyarrow") from None
