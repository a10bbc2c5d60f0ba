"""The prediction log: one row per prediction served, written in batches off the request path.

Rows go to a project's store (the `predictions` table of a `Dataset`) or, when a server runs without a project, to
`<artifact>/predictions.sqlite`, which holds the same table.

What is durable when: a row is queued in memory just after its answer is sent, and written with the other queued
rows in one SQLite transaction (WAL, `synchronous=FULL`) at most `flush_s` seconds later (1 s by default), and at
once when the server stops. After a clean stop (`handle.stop()`, Ctrl-C or SIGTERM for `nbml serve`), every prediction that was
answered is on disk. A hard kill (SIGKILL, power cut) loses at most the rows of the last `flush_s` seconds, never
part of a flush, and never anything written before.

The `image` column keeps the input itself when logging inputs is on: an image model's encoded image as received, a
text model's text (its first `log_text_chars` characters, UTF-8; `sha256` is of the whole text). `add_from_log`
hands them to the project's kind (`add_logged` at the end of nbml/kinds/<kind>.py).
"""
from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path

from sqlalchemy import func, insert, select

from . import _schema as S
from ._sqlite import sqlite_engine

__all__ = ["PredictionLog", "read_log", "add_from_log", "LOG_FILE"]

LOG_FILE = "predictions.sqlite"
_MAX_PENDING = 200_000   # rows kept in memory while the database cannot be written, before the oldest are dropped


class _FileStore:
    """The `predictions` table alone in a SQLite file, with the store's engine settings (WAL, synchronous=FULL)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = sqlite_engine(self.path, immediate=True)
        self._reader = sqlite_engine(self.path, immediate=False)
        with self._writer.begin() as c:
            S.predictions.create(c, checkfirst=True)

    def _write(self):
        return self._writer.begin()

    def _read(self):
        return self._reader.begin()

    def close(self) -> None:
        self._writer.dispose()
        self._reader.dispose()


def _open(source):
    """(store, owned) for a Dataset, a ServerHandle, an artifact folder or a predictions.sqlite file."""
    if hasattr(source, "_write") and hasattr(source, "_read"):
        return source, False
    if hasattr(source, "log") and isinstance(getattr(source, "log"), PredictionLog):
        return source.log.store, False
    path = Path(os.fspath(source)).expanduser()
    if path.is_dir():
        path = path / LOG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no prediction log at {path}: serve the model first (nbml.serve), or pass the "
                                f"project (nbml.Dataset) the server logged to")
    return _FileStore(path), True


class PredictionLog:
    """Queues prediction rows and writes them in batches from a background thread.

    `log_images`: how many input images to keep in the log in all (counted over the whole log, restarts included);
    an image is kept only if it is at most `max_image_bytes` long and its confidence is below `images_below`.
    """

    def __init__(self, target, *, model: str, log_images: int = 0, max_image_bytes: int = 2_000_000,
                 images_below: float = 1.01, flush_s: float = 1.0):
        if hasattr(target, "_write"):
            self.store, self._owned = target, False
        else:
            self.store, self._owned = _FileStore(Path(target)), True
        self.model, self.flush_s = model, float(flush_s)
        self.max_image_bytes, self.images_below = int(max_image_bytes), float(images_below)
        with self.store._read() as c:
            stored = c.execute(select(func.count()).select_from(S.predictions)
                               .where(S.predictions.c.image.is_not(None))).scalar()
        self._images_left = max(0, int(log_images) - int(stored))
        self._pending: list[dict] = []
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._closed = threading.Event()
        self.written = 0
        self.dropped = 0
        self._warned = False
        self._thread = threading.Thread(target=self._loop, name="nbml-predlog", daemon=True)
        self._thread.start()

    @property
    def where(self) -> str:
        return str(getattr(self.store, "path", None) or getattr(self.store, "url", "?"))

    def record(self, when: float, latency_ms: float, label: str, confidence: float, sha256: str,
               image: bytes | None = None) -> None:
        """Queue one row (cheap: no I/O). The image is kept only while the image budget lasts."""
        keep = None
        if image is not None and confidence < self.images_below and len(image) <= self.max_image_bytes:
            with self._lock:
                if self._images_left > 0:
                    self._images_left -= 1
                    keep = bytes(image)
        row = dict(time=when, model=self.model, latency_ms=latency_ms, label=label, confidence=confidence,
                   sha256=sha256, image=keep)
        with self._lock:
            self._pending.append(row)
            if len(self._pending) > _MAX_PENDING:
                del self._pending[0]
                self.dropped += 1

    def flush(self) -> int:
        """Write every queued row now, in one transaction; returns how many were written."""
        with self._flush_lock:
            with self._lock:
                rows, self._pending = self._pending, []
            if not rows:
                return 0
            try:
                with self.store._write() as c:
                    c.execute(insert(S.predictions), rows)
            except Exception as e:
                with self._lock:   # keep them for the next try
                    self._pending[:0] = rows
                if not self._warned:
                    self._warned = True
                    warnings.warn(f"nbml could not write the prediction log at {self.where} ({e}); rows are kept in "
                                  f"memory and retried every {self.flush_s:g} s")
                return 0
            self.written += len(rows)
            return len(rows)

    def _loop(self) -> None:
        while not self._closed.wait(self.flush_s):
            self.flush()

    def close(self) -> None:
        """Stop the background writer and write what is queued."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._thread.join(30)
        self.flush()
        if self._owned:
            self.store.close()


_LOG_COLUMNS = ["id", "time", "model", "latency_ms", "label", "confidence", "sha256"]


def read_log(source, model: str | None = None, since: float | None = None) -> pd.DataFrame:
    """The prediction log as a DataFrame: id, time (datetime), model, latency_ms, label, confidence, sha256,
    has_image. `source`: a Dataset, a server handle, an artifact folder or a predictions.sqlite file."""
    import pandas as pd     # here, not at the top: the server writes the log and never pays for pandas
    store, owned = _open(source)
    try:
        p = S.predictions.c
        q = select(*[p[n] for n in _LOG_COLUMNS], p.image.is_not(None).label("has_image"))
        if model is not None:
            q = q.where(p.model == model)
        if since is not None:
            q = q.where(p.time >= since)
        with store._read() as c:
            rows = c.execute(q.order_by(p.id)).all()
    finally:
        if owned:
            store.close()
    frame = pd.DataFrame(rows, columns=_LOG_COLUMNS + ["has_image"])
    frame["time"] = pd.to_datetime(frame["time"], unit="s")
    frame["has_image"] = frame["has_image"].astype(bool)
    return frame


def add_from_log(ds, max_confidence: float = 0.6, limit: int | None = None, source=None, model: str | None = None):
    """Bring logged inputs whose confidence is at most `max_confidence` (lowest first) back into `ds` as unlabelled
    items. Only predictions logged with their input can come back (images: serve with `log_images=N`; texts are
    logged by default, `log_texts`). Images are written to `ds.home / "from_log"` and added with `ds.add_images`,
    texts with `ds.add_texts`; returns the IngestReport (inputs the project already holds are duplicates).
    `source`: where the log is (default: the project's own log; or an artifact folder / predictions.sqlite file).
    """
    store, owned = _open(ds if source is None else source)
    try:
        p = S.predictions.c
        q = (select(p.sha256, p.image).where(p.image.is_not(None), p.confidence <= float(max_confidence))
             .order_by(p.confidence, p.id))
        if model is not None:
            q = q.where(p.model == model)
        with store._read() as c:
            rows = c.execute(q).all()
    finally:
        if owned:
            store.close()
    from . import kinds
    from ._report import IngestReport
    seen: dict[str, bytes] = {}
    for sha, data in rows:
        if sha not in seen:
            seen[sha] = data
        if limit is not None and len(seen) >= limit:
            break
    if not seen:
        return IngestReport()
    return kinds.get(ds.kind or _artifact_kind(source)).add_logged(ds, seen)


def _artifact_kind(source) -> str | None:
    """The kind of the model an artifact folder holds (for a project that is still empty); None: images."""
    import json
    try:
        folder = Path(os.fspath(source)).expanduser()
        config = folder / "config.json" if folder.is_dir() else folder.parent / "config.json"
        return json.loads(config.read_text()).get("kind")
    except (TypeError, OSError, ValueError):
        return None
