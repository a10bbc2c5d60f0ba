"""Files to candidate items: walking folders, reading labels from folder names, and the bad-input rules.

Nothing here touches the store; `Dataset.add_images` inserts what this module accepts.
"""
from __future__ import annotations

import hashlib
import os
import stat
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Iterable, Iterator

from ._report import IngestReport, Progress  # noqa: F401  (re-exported)
from ._imaging import IMAGE_EXTENSIONS, ImageError, check, read_file

__all__ = ["IngestReport", "Candidate", "find_candidates", "inspect_files"]


@dataclass
class Candidate:
    path: str                   # as the file system gives it (may hold surrogate escapes)
    label: str | None = None
    problem: str | None = None  # set when the path is refused before it is read
    sha256: str | None = None
    size_bytes: int | None = None
    mtime: float | None = None
    width: int | None = None
    height: int | None = None


def display_path(path: str) -> str:
    """A valid UTF-8 rendering of a file-system path (undecodable bytes become U+FFFD)."""
    return os.fsencode(path).decode("utf-8", "replace")


def _walk(root: str, label_from) -> Iterator[Candidate]:
    """Files under root, following links but never entering a folder twice (symlink loops)."""
    seen: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            st = os.stat(folder)
        except OSError as e:
            yield Candidate(folder, problem="symlink loop" if e.errno == 40 else f"unreadable folder: {e.strerror}")
            continue
        if (st.st_dev, st.st_ino) in seen:
            yield Candidate(folder, problem="symlink loop: this folder was already visited")
            continue
        seen.add((st.st_dev, st.st_ino))
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as e:
            yield Candidate(folder, problem=f"unreadable folder: {e.strerror}")
            continue
        subfolders = []
        folder_label = _folder_label(folder, root) if label_from == "folder" else None   # once, not per file
        for entry in entries:
            if entry.name.startswith("."):
                continue
            ext = os.path.splitext(entry.name)[1].lower()
            try:
                is_dir = entry.is_dir(follow_symlinks=True)
            except OSError:
                is_dir = False
            if is_dir:
                if ext in IMAGE_EXTENSIONS:
                    yield Candidate(entry.path, problem="a folder named like an image file; not entered")
                else:
                    subfolders.append(entry.path)
                continue
            if ext not in IMAGE_EXTENSIONS:
                yield Candidate(entry.path, problem=f"not an image file extension ({ext or 'none'})")
                continue
            yield Candidate(entry.path, label=folder_label if label_from == "folder"
                            else _label_for(entry.path, root, label_from))
        stack.extend(reversed(subfolders))


def _label_for(path: str, root: str | None, label_from) -> str | None:
    if label_from is None:
        return None
    if callable(label_from):
        label = label_from(Path(path))
        return None if label is None else str(label)
    if label_from == "folder":
        return _folder_label(os.path.dirname(path), root)
    raise ValueError(f"label_from must be 'folder', None or a function of the path, not {label_from!r}")


def _folder_label(folder: str, root: str | None) -> str | None:
    """The label from folder names of the files in `folder`: its top class folder under root, else its own name."""
    if root is None:
        return display_path(os.path.basename(folder)) or None
    rel = os.path.relpath(folder, root)
    return None if rel == os.curdir else display_path(rel.split(os.sep)[0])


def find_candidates(sources, label_from="folder") -> Iterator[Candidate]:
    """Expand a folder, a file, or a list of either into candidates (labels from ImageNet-style class folders)."""
    if isinstance(sources, (str, bytes, os.PathLike)):
        sources = [sources]
    for src in sources:
        src = os.path.abspath(os.fsdecode(src))
        try:
            st = os.stat(src)
        except FileNotFoundError:
            yield Candidate(src, problem="file not found (deleted, or a broken link)")
            continue
        except OSError as e:
            yield Candidate(src, problem="symlink loop" if e.errno == 40 else f"unreadable: {e.strerror}")
            continue
        if stat.S_ISDIR(st.st_mode):
            yield from _walk(src, label_from)
        else:
            yield Candidate(src, label=_label_for(src, None, label_from))


def _stat(c: Candidate) -> Candidate:
    """Size and mtime of a regular file, or the reason the path is not one."""
    if c.problem:
        return c
    try:
        st = os.stat(c.path)
    except FileNotFoundError:
        c.problem = "file not found (deleted, or a broken link)"
    except OSError as e:
        c.problem = "symlink loop" if e.errno == 40 else f"unreadable: {e.strerror or e}"
    else:
        if stat.S_ISREG(st.st_mode):
            c.size_bytes, c.mtime = st.st_size, st.st_mtime
        else:
            c.problem = "not a regular file (a device, pipe or socket)"
    return c


def _inspect(c: Candidate, max_pixels: int) -> Candidate:
    """Read, fully decode (the checks of `decode`, without building its RGB picture) and hash a stat-ed candidate."""
    if c.problem:
        return c
    try:
        data = read_file(c.path)
        c.width, c.height = check(data, max_pixels)
    except ImageError as e:
        c.problem = str(e)
        return c
    c.sha256 = hashlib.sha256(data).hexdigest()
    return c


# Mean file size of a chunk from which it is decoded in the thread pool. Decoding releases the GIL, so large images
# decode in parallel; for small ones (thumbnails, 32x32 datasets) Pillow's per-file Python work holds the GIL and
# threads only add hand-offs (on 2 vCPUs, 10,000 32x32 files took 10-60% longer with 2-4 threads than without).
_THREADS_FROM_BYTES = 64 * 1024


def inspect_files(candidates: Iterable[Candidate], max_pixels: int, workers: int | None = None,
                  progress: Callable[[int], None] | None = None) -> Iterator[Candidate]:
    """Stat, read, fully decode and hash each candidate, in order; chunks of large files in a thread pool."""
    workers = workers or min(8, 2 * (os.cpu_count() or 1))
    inspect = partial(_inspect, max_pixels=max_pixels)
    done = 0
    with ThreadPoolExecutor(workers) as pool:         # its threads start on the first submit, if any
        for chunk in _chunks(map(_stat, candidates), 256):     # bounded memory on folders of millions of files
            sizes = [c.size_bytes for c in chunk if not c.problem]
            threaded = workers > 1 and sum(sizes) > _THREADS_FROM_BYTES * len(sizes)
            for c in (pool.map if threaded else map)(inspect, chunk):
                done += 1
                if progress:
                    progress(done)
                yield c


def _chunks(iterable: Iterable, n: int) -> Iterator[list]:
    chunk = []
    for x in iterable:
        chunk.append(x)
        if len(chunk) == n:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
