"""The embedding store: one float16 [N, D] file per backbone beside the project file (`<project>.d/embeddings/`),
rows indexed by content hash in the store (`VectorFile`), and `Embeddings`, what a call gets back. Knows nothing of
how a backbone is chosen or run (nbml.embeddings) and nothing of the kinds of item."""
from __future__ import annotations

import copy
import json
import os
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ._locks import file_lock
from .backbone import Backbone

__all__ = ["VectorFile", "Embeddings", "tag", "safe_name"]


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._@-]+", "_", text)



# -- the float16 store ----------------------------------------------------------------------------------------------
class VectorFile:
    """One float16 [N, D] file per model id, rows indexed in the store's `embeddings` table."""

    def __init__(self, ds, model_id: str):
        self.ds, self.model_id = ds, model_id
        self.folder = Path(ds.home) / "embeddings"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.file = self.folder / f"{safe_name(model_id)}.f16"
        self.info_file = self.folder / f"{safe_name(model_id)}.json"

    def lock(self):
        return file_lock(self.folder / f"{safe_name(self.model_id)}.lock")

    def index(self) -> dict[str, int]:
        return self.ds._embedding_rows(self.model_id)

    @property
    def dim(self) -> int | None:
        if not self.info_file.exists():
            return None
        return int(json.loads(self.info_file.read_text())["dim"])

    def array(self) -> np.ndarray:
        dim = self.dim
        n = self.file.stat().st_size // (2 * dim) if dim and self.file.exists() else 0
        if n == 0:
            return np.zeros((0, dim or 0), np.float16)
        return np.memmap(self.file, np.float16, "r", shape=(n, dim))

    def append(self, shas: list[str], vectors: np.ndarray, backbone: Backbone, index: dict) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float16)
        if not np.isfinite(vectors).all():
            raise RuntimeError(f"the backbone {self.model_id} gave features too large or not finite for float16; "
                               f"its weights look broken")
        dim = self.dim
        if dim is None:
            dim = vectors.shape[1]
            tmp = self.info_file.with_suffix(".json.tmp")
            tmp.write_text(json.dumps({"model_id": self.model_id, "source": backbone.source, "dim": dim,
                                       "dtype": "float16", "arch": backbone.arch, "size": backbone.size,
                                       "created": time.time()}, indent=2))
            os.replace(tmp, self.info_file)
        elif dim != vectors.shape[1]:
            raise RuntimeError(f"embeddings for {self.model_id} have {dim} dimensions on disk but the backbone gives "
                               f"{vectors.shape[1]}; delete {self.file} and its .json to start again")
        row_bytes = 2 * dim
        with open(self.file, "ab") as out:
            start = out.tell() // row_bytes
            out.truncate(start * row_bytes)   # drop a partial row a crash may have left
            out.seek(start * row_bytes)
            out.write(vectors.tobytes())
            out.flush()
            os.fsync(out.fileno())
        added = {h: start + i for i, h in enumerate(shas)}
        self.ds._add_embedding_rows(self.model_id, added)
        index.update(added)


# -- embeddings -------------------------------------------------------------------------------------------------------
class Embeddings:
    """Embeddings of items: `ids`, `vectors` (float32, L2-normalised), `features` (float32 as the backbone gave
    them), `frame` (id, label, split, path), and where they came from (`model_id`, `source`).

    `computed` is how many were computed by the call that made this (the rest came from the store); `missing`
    lists the ids that have none (their file could not be read), with one reason each in `warnings`.
    """

    def __init__(self, frame: pd.DataFrame, raw: np.ndarray, backbone: Backbone, computed: int = 0,
                 missing: list | None = None, warnings: list | None = None):
        self.frame = frame.reset_index(drop=True)
        self.ids = self.frame["id"].to_numpy(np.int64)
        self.raw = raw                      # float16 [n, dim], as stored
        self.backbone = backbone
        self.model_id, self.source = backbone.model_id, backbone.source
        self.computed = int(computed)
        self.missing = list(missing or [])
        self.warnings = list(warnings or [])
        self._lazy: dict = {}     # vectors, features, positions: computed once, shared by copies (`_sharing`)

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        dim = self.raw.shape[1] if self.raw.ndim == 2 else 0
        extra = f", {len(self.missing)} without (unreadable)" if self.missing else ""
        return (f"Embeddings({len(self)} items x {dim}, from {self.model_id}: {self.source}; "
                f"{self.computed} computed now{extra})")

    @property
    def dim(self) -> int:
        return int(self.raw.shape[1])

    @property
    def features(self) -> np.ndarray:
        """float32, as the backbone gave them (to float16 precision)."""
        if "features" not in self._lazy:
            self._lazy["features"] = self.raw.astype(np.float32)
        return self._lazy["features"]

    @property
    def vectors(self) -> np.ndarray:
        """float32, each row scaled to unit length (cosine similarity is then a dot product)."""
        if "vectors" not in self._lazy:
            v = self.raw.astype(np.float32)
            v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
            self._lazy["vectors"] = v
        return self._lazy["vectors"]

    @property
    def labels(self) -> np.ndarray:
        return self.frame["label"].to_numpy(object)

    def _position_map(self) -> dict[int, int]:
        """{item id: row}, built once."""
        if "positions" not in self._lazy:
            self._lazy["positions"] = {int(i): p for p, i in enumerate(self.ids)}
        return self._lazy["positions"]

    def positions(self, ids) -> np.ndarray:
        """Row positions of these item ids; KeyError naming the first id without an embedding."""
        where = self._position_map()
        out = []
        for i in np.atleast_1d(ids):
            p = where.get(int(i))
            if p is None:
                why = next((w for w in self.warnings if w.startswith(f"item {int(i)} ")), None)
                raise KeyError(f"item {int(i)} has no embedding" + (f" ({why})" if why else
                               " (it is removed, unusable, or not in this project)"))
            out.append(p)
        return np.asarray(out, np.int64)

    def _sharing(self, frame: pd.DataFrame | None = None, computed: int = 0) -> "Embeddings":
        """The same vectors (shared, not copied, lazily computed ones included) with another `frame` (the same ids
        in the same order, other labels or splits) or another `computed`."""
        out = copy.copy(self)
        if frame is not None:
            out.frame = frame
        out.computed = int(computed)
        return out

    def take(self, ids) -> "Embeddings":
        """The embeddings of these ids only (in that order)."""
        return _subset(self, self.positions(ids))

    def rows(self, ds) -> np.ndarray:
        """Each item's row in its backbone's float16 file (items of the same content share one), as `embed`
        read them; looked up in `ds` for embeddings made otherwise."""
        if "rows" not in self._lazy:
            index = VectorFile(ds, self.model_id).index()
            self._lazy["rows"] = self.frame["sha256"].map(index).to_numpy(np.int64)
        return self._lazy["rows"]

    def pca(self, n_components: int = 2) -> pd.DataFrame:
        """A PCA map of the unit vectors: id, x, y (, z...), label, split, path; `attrs` say which backbone."""
        v = self.vectors
        names = ["x", "y", "z"][:n_components] if n_components <= 3 else [f"pc{i + 1}" for i in range(n_components)]
        if len(v) == 0:
            coords = np.zeros((0, n_components), np.float32)
        else:
            centred = v - v.mean(0)
            _, _, vt = np.linalg.svd(centred, full_matrices=False)
            coords = centred @ vt[:n_components].T
            if coords.shape[1] < n_components:
                coords = np.pad(coords, ((0, 0), (0, n_components - coords.shape[1])))
        out = pd.DataFrame(coords, columns=names)
        out.insert(0, "id", self.ids)
        for col in ("label", "split", "path"):
            out[col] = self.frame[col].to_numpy()
        return tag(out, self)


def tag(frame: pd.DataFrame, emb: Embeddings | Backbone) -> pd.DataFrame:
    """Record in `frame.attrs` which backbone the embeddings behind it came from."""
    frame.attrs["embeddings"] = emb.model_id
    frame.attrs["backbone"] = emb.source
    return frame



def _subset(emb: Embeddings, pos: np.ndarray) -> Embeddings:
    """Rows `pos` of `emb`, carrying the unit vectors and features already computed."""
    out = Embeddings(emb.frame.iloc[pos], emb.raw[pos], emb.backbone, 0, [], emb.warnings)
    for key in ("vectors", "features", "rows"):
        if key in emb._lazy:
            out._lazy[key] = emb._lazy[key][pos]
    return out


def _concat(a: Embeddings, b: Embeddings) -> Embeddings:
    """`a` and `b` together in id order (as `embed` gives them), carrying unit vectors already computed in `a`."""
    frame = pd.concat([a.frame, b.frame], ignore_index=True)
    raw = np.concatenate([a.raw, b.raw])
    vectors = np.concatenate([a._lazy["vectors"], b.vectors]) if "vectors" in a._lazy else None
    rows = np.concatenate([a._lazy["rows"], b._lazy["rows"]]) if "rows" in a._lazy and "rows" in b._lazy else None
    ids = frame["id"].to_numpy(np.int64)
    if len(ids) > 1 and not (np.diff(ids) > 0).all():      # restored items come back in their place
        order = np.argsort(ids, kind="stable")
        frame, raw = frame.iloc[order], raw[order]
        vectors = None if vectors is None else vectors[order]
        rows = None if rows is None else rows[order]
    out = Embeddings(frame, raw, a.backbone, b.computed, b.missing, b.warnings)
    if vectors is not None:
        out._lazy["vectors"] = vectors
    if rows is not None:
        out._lazy["rows"] = rows
    return out
