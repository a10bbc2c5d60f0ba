"""Images: files on disk, read through the decoded cache, a timm body and fastai's head, uint8 squares on the wire."""
from __future__ import annotations

import os

from ..ingest import Candidate, Progress, display_path, find_candidates, inspect_files
from ..store import SPLITS, NewItem

NAME = "image"


def _new_item(cand: Candidate, split: str | None = None) -> NewItem:
    shown = display_path(cand.path)
    # the exact bytes of the name are kept only for names that are not valid UTF-8
    return NewItem(cand.sha256, shown, cand.label, split, dict(
        path=shown, path_raw=os.fsencode(cand.path) if shown != cand.path else None, size_bytes=cand.size_bytes,
        mtime=cand.mtime, width=cand.width, height=cand.height))


def ingest(ds, candidates, splits: dict | None = None, progress=None, origin: str = "import"):
    """Read and check candidate files, then insert the good ones; each bad one is skipped with its reason."""
    from .._report import IngestReport
    report = IngestReport()
    pbar = Progress("ingest", enabled=progress)
    splits = splits or {}

    def good():
        for cand in inspect_files(candidates, ds.max_pixels, progress=pbar.update):
            if cand.problem:
                report.skipped.append((display_path(cand.path), cand.problem))
            else:
                yield _new_item(cand, splits.get(cand.path))

    ds.insert_items(NAME, good(), report, origin=origin)
    pbar.close(report.summary())
    return report


def add_images(ds, folder_or_paths, label_from="folder", *, progress=None):
    return ingest(ds, find_candidates(folder_or_paths, label_from), progress=progress)


def add_dataframe(ds, df, path_col="path", label_col="label", split_col=None, *, progress=None):
    for col in (path_col, label_col, split_col):
        if col is not None and col not in df.columns:
            raise KeyError(f"column {col!r} is not in the DataFrame (columns: {list(df.columns)})")
    splits, cands = {}, []
    for _, row in df.iterrows():
        label = row[label_col] if label_col else None
        label = None if label is None or (isinstance(label, float) and label != label) else str(label)
        cands.append(Candidate(os.path.abspath(os.fspath(row[path_col])), label=label))
        if split_col and isinstance(row[split_col], str):
            if row[split_col] not in SPLITS:
                raise ValueError(f"split must be one of {SPLITS}, found {row[split_col]!r}")
            splits[cands[-1].path] = row[split_col]
    return ingest(ds, iter(cands), splits=splits, progress=progress)
