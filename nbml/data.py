"""The training data path: check files, decode each image once to uint8 at the training size (a memory-mapped
cache beside the project file), and feed whole batches, augmented on the device, to the fastai Learner.
"""
from __future__ import annotations

import hashlib
import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ._imaging import ImageError, decode, read_file, to_square
from ._locks import file_lock

__all__ = ["check_files", "ImageCache", "BatchLoader", "ItemBatches", "TensorLoader", "Augment", "to_square", "normalize",
           "to_device_images", "DeviceScalars"]


def _fresh_seed() -> int:
    """A random seed that leaves torch's global generator alone (torch.seed() would re-seed it)."""
    return int.from_bytes(os.urandom(8), "little") >> 1


def _fs_path(row) -> str:
    raw = row["path_raw"] if "path_raw" in row else None
    return os.fsdecode(raw) if isinstance(raw, (bytes, bytearray)) else row["path"]


def check_files(frame: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Keep items whose file is still there and unchanged; a warning line for each one dropped.

    A file whose size or mtime moved is hashed again; it is kept only if its content is what was imported.
    """
    keep, warnings = [], []
    for i, row in enumerate(frame.itertuples(index=False)):
        row = row._asdict()
        path = _fs_path(row)
        try:
            st = os.stat(path)
        except OSError:
            warnings.append(f"item {row['id']} skipped: {row['path']} no longer exists")
            continue
        if st.st_size != row["size_bytes"] or (row["mtime"] is not None and abs(st.st_mtime - row["mtime"]) > 1e-3):
            try:
                digest = hashlib.sha256(read_file(path)).hexdigest()
            except ImageError as e:
                warnings.append(f"item {row['id']} skipped: {row['path']}: {e}")
                continue
            if digest != row["sha256"]:
                warnings.append(f"item {row['id']} skipped: {row['path']} changed since it was added "
                                f"(add it again to use the new content)")
                continue
        keep.append(i)
    return frame.iloc[keep].reset_index(drop=True), warnings


def _decode_square(path: str, sha256: str | None, size: int, max_pixels: int) -> np.ndarray:
    data = read_file(path)
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise ImageError("changed since it was added (add it again to use the new content)")
    return to_square(decode(data, max_pixels, draft=(size, size)), size)


class ImageCache:
    """uint8 [N, size, size, 3] rows in one memory-mapped file per size, indexed by content hash in the store."""

    def __init__(self, ds, size: int):
        self.ds, self.size = ds, int(size)
        self.folder = Path(ds.home) / "cache"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.file = self.folder / f"images_{self.size}.u8"
        self.row_bytes = self.size * self.size * 3

    def _lock(self):
        return file_lock(self.folder / f"images_{self.size}.lock")

    def _array(self) -> np.ndarray:
        n = self.file.stat().st_size // self.row_bytes if self.file.exists() else 0
        if n == 0:
            return np.zeros((0, self.size, self.size, 3), np.uint8)
        return np.memmap(self.file, np.uint8, "r", shape=(n, self.size, self.size, 3))

    def rows(self, frame: pd.DataFrame, progress=None) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
        """Cache rows for the frame's items, decoding what is missing.

        Returns (array, cache row of each kept item, positions of the kept items in frame, warnings).
        """
        index = self.ds._cache_rows(self.size)
        missing = frame[~frame["sha256"].isin(index.keys())].drop_duplicates("sha256")
        warnings: list[str] = []
        if len(missing):
            with self._lock():
                index = self.ds._cache_rows(self.size)       # another process may have filled some meanwhile
                missing = missing[~missing["sha256"].isin(index.keys())]
                warnings += self._append(missing, index, progress)
        keep = frame["sha256"].isin(index.keys()).to_numpy()
        rows = frame.loc[keep, "sha256"].map(index).to_numpy(np.int64)
        return self._array(), rows, np.flatnonzero(keep), warnings

    def _append(self, missing: pd.DataFrame, index: dict, progress) -> list[str]:
        warnings = []
        records = [r._asdict() for r in missing.itertuples(index=False)]

        def work(r):
            try:
                return _decode_square(_fs_path(r), r["sha256"], self.size, self.ds.max_pixels), None
            except ImageError as e:
                return None, f"item {r['id']} skipped: {r['path']}: {e}"

        start = self.file.stat().st_size // self.row_bytes if self.file.exists() else 0
        added = {}
        with open(self.file, "ab") as out, ThreadPoolExecutor(min(8, 2 * (os.cpu_count() or 1))) as pool:
            out.truncate(start * self.row_bytes)   # drop a partial row a crash may have left
            for i, (arr, warning) in enumerate(pool.map(work, records)):
                if warning:
                    warnings.append(warning)
                else:
                    out.write(arr.tobytes())
                    added[records[i]["sha256"]] = start + len(added)
                if progress:
                    progress(i + 1, len(records))
            out.flush()
            os.fsync(out.fileno())
        self.ds._add_cache_rows(self.size, added)
        index.update(added)
        return warnings


class Augment:
    """Random affine per image (zoom-crop, shift, rotation, optional flip), done for a whole batch on its device."""

    def __init__(self, max_zoom: float = 1.0, max_shift: float = 0.0, max_rotate: float = 0.0,
                 flip: bool = False):
        self.max_zoom, self.max_shift, self.max_rotate, self.flip = max_zoom, max_shift, max_rotate, flip

    @classmethod
    def for_image_size(cls, median_side: float) -> "Augment":
        """Photos get crops and flips; tiny images (icons, digits, glyphs) only small shifts and turns."""
        if median_side >= 96:
            return cls(max_zoom=1.4, max_shift=0.1, max_rotate=10, flip=True)
        return cls(max_zoom=1.1, max_shift=0.08, max_rotate=8, flip=False)

    @staticmethod
    def draw(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """The random numbers for `n` images, [n, 5] on the CPU (drawn a whole epoch at a time)."""
        return torch.rand(n, 5, generator=generator)

    def __call__(self, x: torch.Tensor, rand: torch.Tensor | None = None) -> torch.Tensor:
        """Augment a float NCHW batch with `rand` ([n, 5] from `draw`, on x's device; drawn here when None)."""
        if rand is None:
            rand = self.draw(x.shape[0]).to(x.device)
        zoom = 1.0 / (1.0 + rand[:, 0] * (self.max_zoom - 1.0))
        angle = (rand[:, 1] * 2 - 1) * math.radians(self.max_rotate)
        slack = (1 - zoom)
        tx = (rand[:, 2] * 2 - 1) * (slack + self.max_shift)
        ty = (rand[:, 3] * 2 - 1) * (slack + self.max_shift)
        sx = torch.where(rand[:, 4] < 0.5, -zoom, zoom) if self.flip else zoom
        cos, sin = torch.cos(angle), torch.sin(angle)
        theta = torch.stack([torch.stack([cos * sx, -sin * zoom, tx], 1),
                             torch.stack([sin * sx, cos * zoom, ty], 1)], 1).to(x.dtype)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def normalize(x_uint8_nhwc: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 NHWC to normalised float NCHW (channels_last memory, which is what NHWC already is)."""
    x = x_uint8_nhwc.permute(0, 3, 1, 2).float().div_(255)
    return (x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)


def to_device_images(array: np.ndarray, rows: np.ndarray, device: torch.device, max_fraction: float = 0.4,
                     chunk_rows: int = 512) -> tuple[torch.Tensor, np.ndarray] | None:
    """The cache rows a run uses, copied once into the GPU's memory (uint8), when they take at most `max_fraction`
    of its free memory: each batch is then a gather on the device, with no host copy or synchronisation per batch.

    Returns (images on the device, each input row's index into them), or None when they do not fit.
    """
    device = torch.device(device)
    if device.type != "cuda" or len(rows) == 0:
        return None
    used = np.unique(rows)
    row_bytes = int(np.prod(array.shape[1:]))
    free, _ = torch.cuda.mem_get_info(device)
    if len(used) * row_bytes > max_fraction * free:
        return None
    out = torch.empty((len(used),) + tuple(array.shape[1:]), dtype=torch.uint8, device=device)
    staging = torch.empty((min(chunk_rows, len(used)),) + tuple(array.shape[1:]), dtype=torch.uint8).pin_memory()
    for start in range(0, len(used), chunk_rows):
        part = used[start:start + chunk_rows]
        staging[:len(part)].numpy()[:] = array[part]
        out[start:start + len(part)].copy_(staging[:len(part)], non_blocking=True)
        torch.cuda.current_stream(device).synchronize()      # the staging buffer is reused
    return out, np.searchsorted(used, rows)


class DeviceScalars:
    """For the fastai Learner: metrics and losses of a batch stay on the device (`Learner.to_detach` asks the
    loader), so validation does not wait for the GPU after every batch. Anything but a scalar goes to the CPU.

    `shard = (rank, world size)` makes a loader yield only this process's part of each epoch (a distributed run,
    see nbml.distributed): every world-th position of the epoch's order from its rank, the order wrapped round so
    that every process gets as many items. The ranks' orders agree when their loaders were given the same seed."""
    shard: tuple[int, int] | None = None

    def _count(self, n: int) -> int:
        """How many of an epoch's `n` items this process takes."""
        return n if self.shard is None else -(-n // self.shard[1])

    def _sharded(self, order):
        if self.shard is None:
            return order
        rank, world = self.shard
        take = np.arange(rank, self._count(len(order)) * world, world) % max(len(order), 1)
        return order[torch.from_numpy(take) if isinstance(order, torch.Tensor) else take]

    def to_detach(self, b, cpu: bool = True, gather: bool = True):
        from fastai.torch_core import to_detach
        if isinstance(b, torch.Tensor) and b.ndim == 0:
            return b.detach()
        return to_detach(b, cpu=cpu, gather=gather)


class BatchLoader(DeviceScalars):
    """Batches from uint8 NHWC images, augmented and normalised on the device.

    `images` is the memory-mapped cache (numpy; each batch is read, pinned and copied ahead of use in a
    background thread on CUDA) or a uint8 tensor already on the device (`to_device_images`; a batch is a gather).
    Quacks enough like a fastai DataLoader for the Learner: iterable of (x, y), `len`, `bs`, `device`.
    """

    def __init__(self, images, rows: np.ndarray, targets: np.ndarray, bs: int, mean, std,
                 device: torch.device, shuffle: bool = False, drop_last: bool = False, augment: Augment | None = None,
                 channels_last: bool = False, seed: int | None = None):
        self.device = torch.device(device)
        self.images, self.rows = images, np.asarray(rows)
        self.on_device = isinstance(images, torch.Tensor)
        self.targets = torch.as_tensor(np.asarray(targets), dtype=torch.long)
        if self.on_device:
            self.rows_t = torch.from_numpy(self.rows.astype(np.int64)).to(self.device)
        self.targets_dev = self.targets.to(self.device)
        self.bs, self.shuffle, self.drop_last, self.augment = bs, shuffle, drop_last, augment
        self.mean = torch.as_tensor(mean, dtype=torch.float32, device=self.device)
        self.std = torch.as_tensor(std, dtype=torch.float32, device=self.device)
        self.channels_last = channels_last
        self.generator = torch.Generator().manual_seed(seed if seed is not None else _fresh_seed())
        self.n = len(self.rows)

    def __len__(self) -> int:
        n = self._count(self.n)
        return n // self.bs if self.drop_last else math.ceil(n / self.bs)

    def _order(self) -> np.ndarray:
        if self.shuffle:
            return torch.randperm(self.n, generator=self.generator).numpy()
        return np.arange(self.n)

    def _host_batch(self, idx: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        rows = self.rows[idx]
        sort = np.argsort(rows, kind="stable")      # sequential reads from the memory map
        x = torch.from_numpy(np.ascontiguousarray(self.images[rows[sort]]))
        if self.device.type == "cuda":
            x = x.pin_memory()
        return x, idx[sort]

    def _uint8_batches(self, order: np.ndarray):
        """(uint8 NHWC batch on the device, positions of its items) per batch."""
        n_batches = len(self)
        if self.on_device:
            order_t = torch.from_numpy(order.astype(np.int64)).to(self.device)
            for b in range(n_batches):
                idx = order_t[b * self.bs:(b + 1) * self.bs]
                yield self.images.index_select(0, self.rows_t[idx]), idx
            return
        slices = [order[b * self.bs:(b + 1) * self.bs] for b in range(n_batches)]
        if self.device.type != "cuda":
            for idx in slices:
                x, idx = self._host_batch(idx)
                yield x, torch.from_numpy(idx)
            return
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(1) as pool:     # read and pin the next batch while the GPU works on this one
            ahead = pool.submit(self._host_batch, slices[0]) if slices else None
            for b in range(n_batches):
                x, idx = ahead.result()
                if b + 1 < n_batches:
                    ahead = pool.submit(self._host_batch, slices[b + 1])
                yield x.to(self.device, non_blocking=True), torch.from_numpy(idx).to(self.device, non_blocking=True)

    def __iter__(self):
        order = self._sharded(self._order())
        rand = None
        if self.augment is not None:       # one epoch of random numbers, one copy to the device
            rand = self.augment.draw(len(self) * self.bs, self.generator).to(self.device)
        for b, (x, idx) in enumerate(self._uint8_batches(order)):
            x = normalize(x, self.mean, self.std)
            if rand is not None:
                x = self.augment(x, rand=rand[b * self.bs:b * self.bs + x.shape[0]])
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            else:
                x = x.contiguous()
            same = idx.device.type == self.device.type
            yield x, (self.targets_dev[idx] if same else self.targets[idx].to(self.device))


class ItemBatches(DeviceScalars):
    """Batches for a fastai Learner built per batch: `make(idx)` gives the inputs of those items as numpy arrays
    (padded to the batch's longest, say), and the targets are appended. Texts use it; images use BatchLoader."""

    def __init__(self, make, targets: np.ndarray, bs: int, device, shuffle: bool = False, drop_last: bool = False,
                 seed: int | None = None):
        self.make, self.targets, self.bs, self.device = make, np.asarray(targets, np.int64), bs, device
        self.shuffle, self.drop_last = shuffle, drop_last
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        n = self._count(len(self.targets))
        return n // self.bs if self.drop_last else -(-n // self.bs)

    def __iter__(self):
        n = len(self.targets)
        order = self._sharded(self.rng.permutation(n) if self.shuffle else np.arange(n))
        for b in range(len(self)):
            idx = order[b * self.bs:(b + 1) * self.bs]
            xs = [torch.from_numpy(np.ascontiguousarray(a)).to(self.device) for a in self.make(idx)]
            yield (*xs, torch.from_numpy(self.targets[idx]).to(self.device))


class TensorLoader(DeviceScalars):
    """Batches of tensors already in memory (cached features), for a Learner: iterable, `len`, `bs`, `device`."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, bs: int, shuffle: bool = False, drop_last: bool = False,
                 seed: int | None = None):
        self.x, self.y, self.bs, self.shuffle, self.drop_last = x, y, bs, shuffle, drop_last
        self.device = x.device
        self.generator = torch.Generator().manual_seed(seed if seed is not None else _fresh_seed())

    def __len__(self) -> int:
        n = self._count(len(self.y))
        return n // self.bs if self.drop_last else math.ceil(n / self.bs)

    def __iter__(self):
        n = len(self.y)
        order = self._sharded(torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n))
        order = order.to(self.device)
        for b in range(len(self)):
            idx = order[b * self.bs:(b + 1) * self.bs]
            yield self.x[idx], self.y[idx]
