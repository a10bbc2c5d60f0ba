"""A vector index over one backbone's stored embeddings, for projects large enough to pay for it.

Below `MIN_ITEMS` embedded items, `ds.similar`, `ds.suggest(strategy="diverse")` and near-duplicate search compare
the query with every vector (exact, tens of milliseconds at 100,000). From `MIN_ITEMS` on they ask this index for
candidates, then score those exactly: FAISS's inverted-file index (IVF: k-means cells, `nprobe` of them searched),
over the unit vectors stored as float16. It was chosen over USearch and hnswlib (HNSW graphs) because it builds in
a minute on two cores where the graphs took many (see benchmarks/scale.py and the README's "Large projects").

The index's labels are rows of the backbone's float16 embeddings file (nbml.embeddings), which only ever grows:
the index is built once, extended with the rows appended since (items added), and saved beside that file
(`<model id>.ivf` and `.ivf.json`). Losing it, or a crash before a save, costs only a rebuild or a re-add of the
rows after the saved ones. It is trained again once the file has grown past `RETRAIN_GROWTH` times the rows its
cells were trained on, so the cells keep fitting the data.
"""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import numpy as np

from ._locks import file_lock

__all__ = ["VectorIndex", "MIN_ITEMS", "NPROBE", "index_for", "search", "nearest_distance", "pairs_above"]

MIN_ITEMS = 50_000        # embedded items from which the index is used (and built)
NPROBE = 24               # cells searched per query: recall@20 >= 0.95 in benchmarks/scale.py
RETRAIN_GROWTH = 4.0      # train the cells again when the rows have grown this many times since training
_TRAIN_PER_CELL = 64      # training sample: this many vectors per cell
_CHUNK = 65_536           # rows read, normalised and added at a time
_SAVE_EVERY = 0.05        # save after adding this share of the rows since the last save (and after a build)


def _faiss():
    try:
        import faiss
    except ImportError:     # pragma: no cover - a dependency; checked so the message says what to do
        raise ImportError("the vector index for large projects needs faiss-cpu: pip install faiss-cpu") from None
    return faiss


def _unit(raw: np.ndarray) -> np.ndarray:
    v = np.asarray(raw, np.float32)
    v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    return v


def n_cells(rows: int) -> int:
    """Cells for an index over `rows` vectors: about sqrt(rows), at least 64."""
    return int(max(64, min(4096, round(np.sqrt(rows)))))


class VectorIndex:
    """The IVF index over the rows of one backbone's float16 embeddings file (`source`, [rows, dim])."""

    def __init__(self, source: Path, model_id: str):
        self.source = Path(source)
        self.model_id = model_id
        self.file = self.source.with_suffix(".ivf")
        self.info_file = self.source.with_suffix(".ivf.json")
        self.index = None
        self.trained_rows = 0
        self.saved_rows = 0
        self.build_s = 0.0
        self._lock = threading.RLock()

    def __len__(self) -> int:
        return 0 if self.index is None else int(self.index.ntotal)

    def __repr__(self) -> str:
        cells = self.index.nlist if self.index is not None else 0
        return (f"VectorIndex({len(self)} rows of {self.model_id}, {cells} cells, nprobe {NPROBE}, "
                f"{self.memory_bytes() / 2**20:.0f} MiB)")

    def memory_bytes(self) -> int:
        """What the index holds: its float16 vectors, their ids and the cells' centroids."""
        if self.index is None:
            return 0
        return len(self) * (2 * self.index.d + 8) + self.index.nlist * self.index.d * 4

    # -- building, updating, saving -------------------------------------------------------------------------
    def sync(self, array: np.ndarray) -> int:
        """Bring the index up to the rows of `array` (the embeddings file, memory-mapped): load the saved index,
        build it when there is none (or it no longer fits the file), add the rows appended since. Returns how
        many rows were added."""
        with self._lock:
            rows = len(array)
            if self.index is None:
                self._load(array.shape[1])
            if self.index is not None and (len(self) > rows or self.index.d != array.shape[1]
                                           or rows > RETRAIN_GROWTH * max(self.trained_rows, 1)):
                self.index = None          # the file was replaced, or has outgrown the cells: train again
            if self.index is None:
                with file_lock(self.file.with_suffix(".ivf.lock")):
                    self._load(array.shape[1])      # another process may have built it meanwhile
                    if self.index is None or len(self) > rows:
                        self._build(array)
                        return rows
            added = rows - len(self)
            if added:
                self._add(array, len(self), rows)
                if rows - self.saved_rows >= _SAVE_EVERY * rows:
                    with file_lock(self.file.with_suffix(".ivf.lock")):
                        self._save()
            return added

    def _build(self, array: np.ndarray) -> None:
        faiss = _faiss()
        t0 = time.perf_counter()
        rows, dim = array.shape
        cells = n_cells(rows)
        rng = np.random.default_rng(0)
        sample = np.sort(rng.choice(rows, min(rows, cells * _TRAIN_PER_CELL), replace=False))
        index = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(dim), dim, cells, faiss.ScalarQuantizer.QT_fp16,
                                              faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = 0
        index.train(_unit(array[sample]))
        self.index, self.trained_rows = index, rows
        self._add(array, 0, rows)
        self.build_s = time.perf_counter() - t0
        self._save()

    def _add(self, array: np.ndarray, start: int, stop: int) -> None:
        for i in range(start, stop, _CHUNK):
            self.index.add(_unit(array[i:min(stop, i + _CHUNK)]))

    def _save(self) -> None:
        faiss = _faiss()
        tmp = self.file.with_suffix(".ivf.tmp")
        faiss.write_index(self.index, str(tmp))
        os.replace(tmp, self.file)
        info = {"model_id": self.model_id, "rows": len(self), "trained_rows": self.trained_rows,
                "cells": int(self.index.nlist), "dim": int(self.index.d), "faiss": faiss.__version__,
                "saved": time.time()}
        tmp = self.info_file.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(info, indent=2))
        os.replace(tmp, self.info_file)
        self.saved_rows = len(self)

    def _load(self, dim: int) -> None:
        if not (self.file.exists() and self.info_file.exists()):
            return
        try:
            info = json.loads(self.info_file.read_text())
            index = _faiss().read_index(str(self.file))
        except (OSError, ValueError, RuntimeError):      # a damaged file: built again
            return
        if index.ntotal != info.get("rows") or index.d != dim:
            return
        self.index, self.trained_rows, self.saved_rows = index, int(info["trained_rows"]), int(index.ntotal)

    # -- searching --------------------------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows [q, k], inner products [q, k]) of the `k` nearest rows to each unit query; -1 pads."""
        with self._lock:
            self.index.nprobe = NPROBE
            sims, rows = self.index.search(np.ascontiguousarray(np.atleast_2d(queries), np.float32),
                                           int(min(k, len(self))))
        return rows, sims


# -- what analysis uses ---------------------------------------------------------------------------------------------
def index_for(ds, emb) -> VectorIndex | None:
    """The index over `emb`'s backbone, in step with its embeddings file, when `emb` has `MIN_ITEMS` items or more
    (kept with the project's loaded embeddings); None below that, where exact search is as quick."""
    from .embedding_store import VectorFile
    if len(emb) < MIN_ITEMS:
        return None
    cache = ds._embedding_cache
    store = VectorFile(ds, emb.model_id)
    with cache._lock:
        found = cache.indexes.get(emb.model_id)
        if found is None:
            found = cache.indexes[emb.model_id] = VectorIndex(store.file, emb.model_id)
    array = store.array()
    found.sync(array)
    del array
    return found


def _row_positions(ds, emb) -> tuple[np.ndarray, np.ndarray]:
    """(rows sorted, positions in `emb` in that order): items of the same content share a row."""
    if "row_order" not in emb._lazy:
        rows = emb.rows(ds)
        order = np.argsort(rows, kind="stable")
        emb._lazy["row_order"] = (rows[order], order)
    return emb._lazy["row_order"]


def _positions_of(ds, emb, rows: np.ndarray) -> np.ndarray:
    """Positions in `emb` of these index rows, in their order (every item of a row; rows of no item dropped)."""
    sorted_rows, order = _row_positions(ds, emb)
    rows = rows[rows >= 0]
    lo = np.searchsorted(sorted_rows, rows, "left")
    hi = np.searchsorted(sorted_rows, rows, "right")
    if (hi - lo <= 1).all():
        return order[lo[hi > lo]]
    return np.concatenate([order[a:b] for a, b in zip(lo, hi)]) if len(rows) else np.zeros(0, np.int64)


def _exact_sims(emb, pos: np.ndarray, query: np.ndarray) -> np.ndarray:
    if "vectors" in emb._lazy:
        return emb._lazy["vectors"][pos] @ query
    return _unit(emb.raw[pos]) @ query


def search(ds, emb, query: np.ndarray, k: int, keep: np.ndarray | None = None):
    """(positions in `emb`, cosine similarities) of the `k` items most like the unit `query` among those `keep`
    allows, best first, from the index's candidates scored exactly; None when exact search should answer (too
    few items for the index, or too few of them kept)."""
    kept = len(emb) if keep is None else int(keep.sum())
    if kept < MIN_ITEMS or (index := index_for(ds, emb)) is None:
        return None
    fetch = max(4 * k, 64) * max(1, round(len(emb) / max(kept, 1)))
    while True:
        rows, _ = index.search(query, fetch)
        pos = np.unique(_positions_of(ds, emb, rows[0]))
        if keep is not None:
            pos = pos[keep[pos]]
        if len(pos) >= k or fetch >= len(index):
            break
        fetch *= 4
        if fetch > 16_384:          # the kept items are scattered thin: exact search is as quick
            return None
    sims = _exact_sims(emb, pos, query)
    best = np.argsort(-sims, kind="stable")[:k]
    return pos[best], sims[best]


def nearest_distance(ds, emb, queries: np.ndarray, among: np.ndarray) -> np.ndarray | None:
    """Cosine distance from each unit query to its nearest item among positions `among` of `emb`, or None when
    exact search should answer (fewer than `MIN_ITEMS` of them). A query none of whose candidates is among them
    gets its distance exactly."""
    if len(among) < MIN_ITEMS or (index := index_for(ds, emb)) is None:
        return None
    mask = np.zeros(len(emb), bool)
    mask[among] = True
    rows, _ = index.search(queries, 64)
    out = np.empty(len(queries))
    for q in range(len(queries)):
        pos = _positions_of(ds, emb, rows[q])
        pos = pos[mask[pos]]
        if len(pos):
            out[q] = 1 - float(_exact_sims(emb, pos, queries[q]).max())
        else:
            out[q] = 1 - max(float((_unit(emb.raw[among[i:i + 65_536]]) @ queries[q]).max())
                             for i in range(0, len(among), 65_536))
    return out


def pairs_above(ds, emb, positions: np.ndarray, threshold: float, limit: int, k: int = 16):
    """Pairs (a < b, as indices into `positions`) of items whose cosine similarity is >= `threshold`, from each
    item's `k` nearest (more for an item whose k-th is still above it); None below `MIN_ITEMS` items."""
    if len(positions) < MIN_ITEMS or (index := index_for(ds, emb)) is None:
        return None
    where = np.full(len(emb), -1, np.int64)
    where[positions] = np.arange(len(positions))
    a, b, s = [], [], []
    total = 0
    for i0 in range(0, len(positions), 4096):
        block = positions[i0:i0 + 4096]
        queries = _unit(emb.raw[block]) if "vectors" not in emb._lazy else emb._lazy["vectors"][block]
        rows, sims = index.search(queries, k)
        for q in range(len(block)):
            fetch, r, sv = k, rows[q], sims[q]
            while len(r) == fetch and sv[-1] >= threshold and fetch < len(index):     # more than k this close
                fetch *= 4
                r, sv = (x[0] for x in index.search(queries[q], fetch))
            pos = _positions_of(ds, emb, r[sv >= threshold])
            other = where[pos]
            other = other[other > i0 + q]
            if len(other):
                sims_q = _exact_sims(emb, positions[other], queries[q])
                keep = sims_q >= threshold
                a.append(np.full(int(keep.sum()), i0 + q)), b.append(other[keep]), s.append(sims_q[keep])
                total += int(keep.sum())
        if total > limit:
            break
    cat = (lambda xs, dt: np.concatenate(xs).astype(dt) if xs else np.zeros(0, dt))
    return cat(a, np.int64), cat(b, np.int64), cat(s, np.float32)
