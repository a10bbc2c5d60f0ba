"""Per-item embeddings: a backbone's pooled features for each item, stored as float16 in one memory-mapped file per
backbone beside the project file (`<project>.d/embeddings/`), indexed by content hash and model id in the store, and
computed only for the items that have none yet.

Which backbone (`resolve_backbone`): a pretrained timm backbone when its weights can be had; otherwise the body of
the project's latest trained model; never a randomly initialised network. Random features are close to useless:
on scikit-learn's digits, random-init resnet18 embeddings give 48% accuracy under a cross-validated logistic
regression where raw pixels give 92%, and cleanlab's precision on them falls from 0.84 to 0.21.

Every `Embeddings` says where it came from: `model_id` (`timm:resnet18.a1_in1k@224`, `run-12@64`,
`file:resnet18-3f2a9c01b7d4@224`, `model-<fingerprint>@64`) and `source`, the same in words.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import sys
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from . import kinds
from .backbone import Backbone, NoBackboneError
from .embedding_store import Embeddings, VectorFile, _concat, _subset, safe_name, tag  # noqa: F401  (tag: re-exported)
from .model_files import is_model

__all__ = ["Backbone", "Embeddings", "EmbeddingCache", "NoBackboneError", "resolve_backbone", "embed"]

_NO_RANDOM = ("A randomly initialised network is never used: its features are close to useless for finding "
              "similar items, label errors or what to label next.")


# -- choosing the backbone ----------------------------------------------------------------------------------------
_PRETRAINED: dict = {}   # (arch, weights key) -> (time, (body, source, digest) or the exception)
_PRETRAINED_LOCK = threading.Lock()
_RETRY_S = 60.0          # a failed load (offline, not cached) is not tried again for this long


def _load_pretrained(arch: str, weights=None):
    """(body, source, file digest) from `create_body(pretrained=True)`, memoised per process; a failure is
    remembered for a minute, so an offline session does not retry the hub on every call."""
    from .pretrained import create_body
    key = (arch, None)
    if weights is not None:
        path = Path(weights).expanduser().resolve()
        st = path.stat() if path.exists() else None
        key = (arch, str(path), st and (st.st_mtime, st.st_size))
    with _PRETRAINED_LOCK:
        when, found = _PRETRAINED.get(key, (None, None))
        if found is None or (isinstance(found, Exception) and time.monotonic() - when > _RETRY_S):
            try:
                body, source = create_body(arch, pretrained=True, weights=weights)
                digest = hashlib.sha256(Path(source[5:]).read_bytes()).hexdigest()[:12] \
                    if source.startswith("file:") else None
                found = (body, source, digest)
            except (RuntimeError, OSError, ValueError) as e:
                found = e
            _PRETRAINED[key] = (time.monotonic(), found)
    if isinstance(found, Exception):
        raise found
    return found


def _pretrained_backbone(arch: str, size: int | None, weights, device) -> Backbone:
    from .nets import IMAGENET_MEAN, IMAGENET_STD
    body, source, digest = _load_pretrained(arch, weights)
    cfg = getattr(body, "pretrained_cfg", None) or {}
    size = int(size or (cfg.get("input_size") or (3, 224, 224))[-1])
    name = arch.split(".")[0]
    if source.startswith("file:"):
        model_id, words = f"file:{name}-{digest}@{size}", f"{name} with weights from {source[5:]}, {size} px"
    else:
        tag = source[5:]
        model_id, words = f"timm:{tag}@{size}", f"pretrained timm {tag}, {size} px"
    return Backbone(model_id, words, name, size, tuple(cfg.get("mean", IMAGENET_MEAN)),
                    tuple(cfg.get("std", IMAGENET_STD)), source, loader=lambda: body, device=device)


def _config_backbone(ds, config: dict, loader: Callable, device, model_id: str | None = None) -> Backbone:
    """The body of a trained model, from its config: a head-only model shares the embeddings of its body."""
    run = config.get("run_id")
    size = int(config["size"])
    if config.get("body"):
        model_id, words = config["body"], config.get("body_source") or f"the body behind {config['body']}"
    else:
        model_id = model_id or f"run-{run}@{size}"
        words = (f"body of run {run} ({config['arch']} trained on this project, {size} px; no pretrained "
                 f"weights were used)" if str(config.get("weights")) == "random" else
                 f"body of run {run} ({config['arch']} fine-tuned on this project from {config.get('weights')}, "
                 f"{size} px)")
    weights = config.get("body_weights") or (f"run-{run}" if run is not None else "model")
    unit = kinds.get(config.get("kind")).UNIT
    if unit != "px":
        words = words.replace(" px", f" {unit}")
    return Backbone(model_id, words, config["arch"].split(".")[0], size, tuple(config.get("mean") or ()),
                    tuple(config.get("std") or ()), weights, loader=loader, device=device,
                    kind=config.get("kind") or "image")


def _run_backbone(ds, run_id: int | None, device) -> Backbone:
    done = dict(ds._saved_runs())        # run id -> model folder; resolved on every analysis call, so kept light
    if not done:
        raise LookupError("this project has no trained model yet")
    if run_id is None:
        run_id = max(done)
    elif int(run_id) not in done:
        raise LookupError(f"run {run_id} has no saved model (runs with one: {sorted(done)})")
    folder = Path(done[int(run_id)])
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise LookupError(f"run {run_id}'s model folder {folder} is gone")
    config = json.loads(config_file.read_text())

    def loader():
        from .model_files import read_model
        return ds._embedding_cache.body(folder, lambda: read_model(folder, device="cpu").net[0])
    bb = _config_backbone(ds, config, loader, device)
    bb.fresh = True
    return bb


def _model_backbone(ds, model, device) -> Backbone:
    config = model.config
    run = config.get("run_id")
    model_id = None
    if run is not None and not config.get("body"):
        runs = ds.runs()
        row = runs[runs["id"] == run] if not runs.empty else runs
        if row.empty or row.iloc[0]["snapshot_id"] != config.get("snapshot_id"):
            # not one of this project's runs: name it by a fingerprint so it never borrows a run's embeddings
            blob = json.dumps([config.get("name"), config.get("created"), config.get("arch"), run], default=str)
            model_id = f"model-{hashlib.sha256(blob.encode()).hexdigest()[:12]}@{int(config['size'])}"
    elif run is None and not config.get("body"):
        blob = json.dumps([config.get("name"), config.get("created"), config.get("arch")], default=str)
        model_id = f"model-{hashlib.sha256(blob.encode()).hexdigest()[:12]}@{int(config['size'])}"
    bb = _config_backbone(ds, config, lambda: model.net[0], model.device, model_id)
    if model_id and model_id.startswith("model-"):
        bb.source = f"body of the given model ({config['arch']}, {int(config['size'])} px)"
    return bb


def resolve_backbone(ds, backbone=None, *, arch: str = "resnet18", size: int | None = None, weights=None,
                     pretrained="auto", device=None) -> Backbone:
    """The backbone that computes embeddings.

    `backbone`: None (default: pretrained `arch` when its weights can be had, else the body of the project's
    latest trained model), an `nbml.Model` (its body), a run id or "run-12", "latest" (the latest run's body),
    "pretrained" or a timm name (pretrained weights required), or a `Backbone`. `weights` is a local weights file
    for `arch`. `pretrained=False` skips the pretrained backbone. A randomly initialised backbone is never used.
    """
    if isinstance(backbone, Backbone):
        return backbone
    own = kinds.get(ds.kind).pretrained_backbone if getattr(ds, "kind", None) else None
    if own is not None and backbone in (None, "pretrained") and pretrained is not False:
        return own(device, arch)      # the kind's own: WordLlama's for texts, a table's standardised rows
    if is_model(backbone):
        return _model_backbone(ds, backbone, device)
    if hasattr(backbone, "wait") and hasattr(backbone, "run_id"):       # a TrainingHandle
        return _model_backbone(ds, backbone.wait(), device)
    if isinstance(backbone, (int, np.integer)) or (isinstance(backbone, str) and re.fullmatch(r"run-\d+", backbone)):
        run_id = int(backbone) if not isinstance(backbone, str) else int(backbone[4:])
        try:
            return _run_backbone(ds, run_id, device)
        except LookupError as e:
            raise NoBackboneError(f"{e}; see ds.runs()") from None
    if backbone == "latest":
        try:
            return _run_backbone(ds, None, device)
        except LookupError:
            raise NoBackboneError("this project has no trained model yet: train one with nbml.train(ds)") from None
    if isinstance(backbone, str):
        name = arch if backbone == "pretrained" else backbone
        return _pretrained_backbone(name, size, weights, device)
    if backbone is not None:
        raise TypeError(f"backbone must be None, an nbml.Model, a run id, 'latest', 'pretrained' or a timm name, "
                        f"not {type(backbone).__name__}")
    if pretrained not in ("auto", True, False):
        raise ValueError(f"pretrained must be 'auto', True or False, not {pretrained!r}")
    why = "pretrained=False was given"
    if pretrained or weights is not None:
        try:
            return _pretrained_backbone(arch, size, weights, device)
        except (RuntimeError, OSError, ValueError) as e:
            if pretrained is True or weights is not None:
                raise
            why = str(e).split(". ")[0]
    try:
        return _run_backbone(ds, None, device)
    except LookupError as e:
        raise NoBackboneError(
            f"No backbone to compute embeddings with: {why}, and {e}. Train a model first (nbml.train(ds)), whose "
            f"body then gives the embeddings, or pass weights='path/to/{arch}.safetensors'. {_NO_RANDOM}") from None


_ITEM_COLUMNS = ["id", "kind", "path", "path_raw", "content", "sha256", "size_bytes", "mtime", "label", "split"]
_NO_ITEMS = ("this project has no usable items to embed; add images with ds.add_images(folder) or texts with "
             "ds.add_texts(texts)")


class EmbeddingCache:
    """A project's loaded `Embeddings`, one per backbone (model id), reused while the store says they are current.

    Reading 100,000 stored embeddings takes seconds, a query on loaded ones milliseconds. Each use reads a token
    from the store (`Dataset._embedding_state`: counters of item and split changes, the newest label change, the
    newest embedding row; three indexed reads): unchanged, the loaded vectors are returned as they are; changed
    labels or splits are read into a new frame beside the same vectors; items added, removed or marked unusable
    (or embeddings written elsewhere) load the embeddings of the new items only. A cached object is never changed
    in place: whoever holds one keeps what it showed. `loads` counts full loads from the store, `updates` partial
    ones, `hits` uses that read no vector. The `keep` most recently used backbones are kept.
    """

    RELABEL_LIMIT = 5000     # more label changes than this since the last use: read every label instead

    def __init__(self, ds, keep: int = 2):
        self.ds, self.keep = ds, int(keep)
        self._entries: OrderedDict[str, tuple[tuple, Embeddings]] = OrderedDict()
        self._bodies: OrderedDict[tuple, object] = OrderedDict()     # saved runs' bodies, see `body`
        self.indexes: dict = {}     # model id -> nbml.vector_index.VectorIndex, for large projects
        self._lock = threading.RLock()
        self.loads = self.updates = self.hits = 0

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bodies.clear()
            self.indexes.clear()

    def holds(self, model_id: str) -> bool:
        """Whether embeddings for this backbone are loaded (possibly stale: `get` brings them up to date)."""
        with self._lock:
            return model_id in self._entries

    def body(self, folder, load: Callable):
        """A copy of a saved run's body (torch module, CPU), loaded from `folder` once while its file is unchanged:
        a copy costs a fraction of rebuilding the network and reading its weights."""
        folder = Path(folder)
        key = (str(folder), *(os.stat(f).st_mtime_ns for f in sorted(folder.glob("*.safetensors"))))
        with self._lock:
            module = self._bodies.get(key)
            if module is None:
                module = load()
                self._bodies[key] = module
                while len(self._bodies) > self.keep:
                    self._bodies.popitem(last=False)
            self._bodies.move_to_end(key)
            return copy.deepcopy(module)

    def get(self, backbone=None, *, bs: int | None = None, progress: bool | None = None, **resolve_kw) -> Embeddings:
        """The embeddings of every usable item for `backbone` (see `resolve_backbone`), computing the missing ones,
        as current as the store. `computed` says how many this call computed."""
        try:
            bb = resolve_backbone(self.ds, backbone, **resolve_kw)
        except NoBackboneError:
            if not self.ds.count_ids(usable_only=True):      # the first thing to fix, as `embed` says
                raise ValueError(_NO_ITEMS) from None
            raise
        with self._lock:
            token = self.ds._embedding_state(bb.model_id)   # read before loading: a later change shows next time
            found = self._entries.get(bb.model_id)
            if found is None:
                emb = embed(self.ds, bb, bs=bs, progress=progress)
                self.loads += 1
                computed = emb.computed
            else:
                old, emb = found
                computed = 0
                if old[0] != token[0] or old[3] != token[3]:
                    emb, computed = self._update_items(emb, bs, progress)
                    self.updates += 1
                else:
                    self.hits += 1
                emb = self._refresh_labels(emb, old, token)
            if computed:      # the embedding rows this call wrote are in `emb`: no reason to look again next time
                token = token[:3] + self.ds._embedding_state(bb.model_id)[3:]
            self._entries[bb.model_id] = (token, emb)
            self._entries.move_to_end(bb.model_id)
            while len(self._entries) > self.keep:
                self._entries.popitem(last=False)
            return emb._sharing(computed=computed) if computed != emb.computed else emb

    def _update_items(self, emb: Embeddings, bs, progress) -> tuple[Embeddings, int]:
        """Drop the items no longer usable, load (computing where needed) the embeddings of those new to it."""
        usable = np.asarray(self.ds.query_ids(usable_only=True), np.int64)
        if not len(usable):
            raise ValueError(_NO_ITEMS)
        keep = np.isin(emb.ids, usable)
        new = np.setdiff1d(usable, emb.ids)        # added, restored, or without an embedding before: tried again
        if keep.all() and not len(new):
            return emb, 0
        kept = emb if keep.all() else _subset(emb, np.flatnonzero(keep))
        if not len(new):
            return kept, 0
        added = embed(self.ds, emb.backbone, ids=new.tolist(), bs=bs, progress=progress)
        return _concat(kept, added), added.computed

    def _refresh_labels(self, emb: Embeddings, old: tuple, token: tuple) -> Embeddings:
        """`emb` with the labels and splits the store has now (a new frame; the vectors are shared)."""
        if old[1] == token[1] and old[2] == token[2]:
            return emb
        ids = None
        if old[1] == token[1]:                      # only labels changed: read those that did
            ids = self.ds._relabelled_since(old[2], self.RELABEL_LIMIT)
            if ids is not None and not ids:
                return emb
        current = self.ds._item_columns(["label", "split"], ids)
        where = emb._position_map()
        found = [(where[i], k) for k, i in enumerate(current["id"]) if i in where]
        if not found:
            return emb
        rows, src = (np.asarray(x, np.int64) for x in zip(*found))
        frame = emb.frame.copy(deep=False)
        for col in ("label", "split"):
            column = frame[col].astype(object) if frame[col].dtype.kind == "f" else frame[col].copy()
            column.iloc[rows] = np.asarray(current[col], object)[src]
            frame[col] = column
        return emb._sharing(frame, emb.computed)


def embed(ds, backbone=None, *, ids=None, bs: int | None = None, progress: bool | None = None,
          **resolve_kw) -> Embeddings:
    """Embeddings of the project's usable items (or of `ids`), computing only those the store lacks.

    See `resolve_backbone` for `backbone` and its keywords (`arch`, `size`, `weights`, `pretrained`, `device`).
    """
    ids = ds.query_ids(usable_only=True) if ids is None else [int(i) for i in np.atleast_1d(ids)]
    if not ids:
        raise ValueError(_NO_ITEMS)
    bb = resolve_backbone(ds, backbone, **resolve_kw)
    rows = ds.item_rows(ids)
    frame = pd.DataFrame([{k: r.get(k) for k in _ITEM_COLUMNS} for r in rows], columns=_ITEM_COLUMNS)
    unknown = sorted(set(ids) - set(frame["id"]))
    warnings = [f"item {i} skipped: not in this project" for i in unknown]
    not_images = frame["kind"].fillna("image") != bb.kind
    warnings += [f"item {i} skipped: a {k} item, and this backbone embeds {bb.kind}s" for i, k in
                 frame.loc[not_images, ["id", "kind"]].itertuples(index=False)]
    frame = frame[~not_images].reset_index(drop=True)
    store = VectorFile(ds, bb.model_id)
    index = store.index()
    computed = 0

    def stored() -> np.ndarray:          # a dict lookup per item (pandas' isin on 10,000 hashes took 60 ms)
        return np.fromiter((h in index for h in frame["sha256"]), bool, len(frame))

    if not stored().all():
        with store.lock():
            index = store.index()         # another process may have filled some meanwhile
            todo = frame[~stored()].drop_duplicates("sha256")
            todo, notes = kinds.get(bb.kind).usable(todo)
            warnings += notes
            if len(todo):
                computed = _compute(ds, bb, store, todo, index, warnings, bs, progress)
    have = stored()
    missing = frame.loc[~have, "id"].astype(int).tolist()
    frame = frame[have].reset_index(drop=True)
    arr = store.array()
    rows = frame["sha256"].map(index).to_numpy(np.int64)
    raw = np.asarray(arr[rows]) if len(frame) else np.zeros((0, max(store.dim or 0, 0)), np.float16)
    del arr
    out = Embeddings(frame[["id", "label", "split", "path", "sha256", "content"]], raw, bb, computed, missing,
                     warnings)
    out._lazy["rows"] = rows      # where each is in the file: the vector index (nbml.vector_index) is by row
    return out


def _compute(ds, bb: Backbone, store: VectorFile, todo: pd.DataFrame, index: dict, warnings: list, bs, progress) -> int:
    show = sys.stderr.isatty() if progress is None else bool(progress)
    t0 = time.perf_counter()
    if show:
        print(f"embedding {len(todo)} items with {bb.source}...", file=sys.stderr, flush=True)
    todo, features_of, notes = kinds.get(bb.kind).compute(ds, bb, todo)
    warnings += notes
    bb.body()
    bs = int(bs or (256 if bb.device.type == "cuda" else 64))
    done, n = 0, len(todo)
    for start in range(0, n, bs * 16):         # append in chunks, so an interrupted run keeps its work
        stop = min(n, start + bs * 16)
        feats = np.concatenate([features_of(i, min(stop, i + bs)) for i in range(start, stop, bs)])
        store.append(todo["sha256"].iloc[start:stop].tolist(), feats, bb, index)
        done += stop - start
        if show:
            print(f"\rembedded {done}/{n}", end="", file=sys.stderr, flush=True)
    if show:
        print(f"\rembedded {done} items in {time.perf_counter() - t0:.1f}s", file=sys.stderr, flush=True)
    return done


